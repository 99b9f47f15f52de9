-- livechat-stack: cluster-wide objects that every Supabase project already has.
--
-- Run once per cluster, as the superuser `postgres`, before bootstrap.sql. Idempotent: every
-- statement may run again on a cluster that already has these roles (attributes are re-asserted).
--
--   anon           NOLOGIN NOINHERIT            requests without a user JWT (the anon key)
--   authenticated  NOLOGIN NOINHERIT            requests with a user's access token
--   service_role   NOLOGIN NOINHERIT BYPASSRLS  the service_role key: bypasses row-level security
--   authenticator  LOGIN NOINHERIT              the gateway's login role; switches to one of the
--                                               three roles above per request (SET LOCAL ROLE)

do $$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;

-- Re-assert the attributes, in case a role existed with different ones.
alter role anon nologin noinherit;
alter role authenticated nologin noinherit;
alter role service_role nologin noinherit bypassrls;
alter role authenticator login noinherit password 'postgres';

-- The authenticator may become any of the API roles (granting an existing membership again is a
-- no-op with a NOTICE).
grant anon, authenticated, service_role to authenticator;
