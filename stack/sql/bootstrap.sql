-- livechat-stack: per-database objects that Supabase provides before a project's migrations run.
--
-- Run as the superuser `postgres` in a fresh database, after roles.sql. Idempotent.
-- Everything here mirrors what a Supabase project has (schemas `auth` and `extensions`, the
-- `auth.users` table and the `auth.uid()` family, the API grants, the `supabase_realtime`
-- publication, `realtime.messages` for private channels, the PostgREST schema-reload event
-- triggers). Nothing project-specific belongs here:
-- the project's own objects live in supabase/migrations.

-- ---------------------------------------------------------------------------------------------
-- Schemas and extensions
-- ---------------------------------------------------------------------------------------------
create schema if not exists auth;
create schema if not exists extensions;

create extension if not exists pgcrypto with schema extensions;
create extension if not exists "uuid-ossp" with schema extensions;

-- ---------------------------------------------------------------------------------------------
-- auth.users: the main columns of Supabase Auth's table (enough for seeds and foreign lookups).
-- The four token columns exist in Supabase too; GoTrue expects '' rather than NULL in them, so
-- seeds that want password sign-in on a real stack set them.
-- ---------------------------------------------------------------------------------------------
create table if not exists auth.users (
  instance_id uuid,
  id uuid primary key default gen_random_uuid(),
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  confirmation_token varchar(255),
  recovery_token varchar(255),
  email_change_token_new varchar(255),
  email_change varchar(255),
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

-- ---------------------------------------------------------------------------------------------
-- JWT helpers, as in supabase/auth migrations 20220224000811 and 20220531120530: the legacy
-- per-claim GUC first, then the `request.jwt.claims` JSON that PostgREST (and our gateway) sets.
-- ---------------------------------------------------------------------------------------------
create or replace function auth.uid() returns uuid
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

comment on function auth.uid() is 'Deprecated in Supabase in favour of auth.jwt() ->> ''sub'', still the usual RLS helper.';

-- ---------------------------------------------------------------------------------------------
-- Grants, like a Supabase project
-- ---------------------------------------------------------------------------------------------
grant usage on schema public, auth, extensions to anon, authenticated, service_role;

grant execute on function auth.uid(), auth.role(), auth.email(), auth.jwt()
  to anon, authenticated, service_role;

-- Objects that `postgres` creates in public later (the migrations) are reachable by the API roles;
-- row-level security decides what each role actually sees.
alter default privileges for role postgres in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on functions to anon, authenticated, service_role;

-- ... and the same on whatever already exists.
grant all on all tables in schema public to anon, authenticated, service_role;
grant all on all sequences in schema public to anon, authenticated, service_role;
grant all on all functions in schema public to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Realtime publication (tables are added by the project's migrations)
-- ---------------------------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_catalog.pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Realtime Authorization: `realtime.messages` and `realtime.topic()`, which Supabase Realtime
-- uses to authorize private channels (a SELECT as the client's role, with `realtime.topic` set
-- to the channel name, for read; an INSERT for write). RLS is on and there are no policies, so
-- private channels are closed until a project's migrations add policies, as on Supabase.
-- (Supabase partitions the table by day; the stack only ever inserts inside transactions it
-- rolls back, so one plain table does.)
-- ---------------------------------------------------------------------------------------------
create schema if not exists realtime;
grant usage on schema realtime to anon, authenticated, service_role;

create table if not exists realtime.messages (
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp not null default now(),
  inserted_at timestamp not null default now(),
  id uuid not null default gen_random_uuid(),
  primary key (id, inserted_at)
);
alter table realtime.messages enable row level security;
grant select, insert, update on realtime.messages to anon, authenticated, service_role;

create or replace function realtime.topic() returns text
language sql
stable
as $$
  select nullif(current_setting('realtime.topic', true), '')::text
$$;
grant execute on function realtime.topic() to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Schema-cache reload: after DDL, tell the REST gateway (channel `pgrst`, as PostgREST listens) to
-- reload. Equivalent of Supabase's extensions.pgrst_ddl_watch / pgrst_drop_watch. Changes that
-- only touch temporary objects do not notify. NOTIFY is transactional and duplicate payloads in
-- one transaction are folded, so a migration file sends one notification at commit.
-- ---------------------------------------------------------------------------------------------
create or replace function extensions.pgrst_ddl_watch() returns event_trigger
language plpgsql
as $$
begin
  if exists (
    select 1
    from pg_event_trigger_ddl_commands() as cmd
    where cmd.schema_name is distinct from 'pg_temp'
  ) then
    notify pgrst, 'reload schema';
  end if;
end
$$;

create or replace function extensions.pgrst_drop_watch() returns event_trigger
language plpgsql
as $$
begin
  if exists (
    select 1
    from pg_event_trigger_dropped_objects() as obj
    where not obj.is_temporary
  ) then
    notify pgrst, 'reload schema';
  end if;
end
$$;

do $$
begin
  if not exists (select 1 from pg_catalog.pg_event_trigger where evtname = 'pgrst_ddl_watch') then
    create event trigger pgrst_ddl_watch on ddl_command_end
      execute function extensions.pgrst_ddl_watch();
  end if;
  if not exists (select 1 from pg_catalog.pg_event_trigger where evtname = 'pgrst_drop_watch') then
    create event trigger pgrst_drop_watch on sql_drop
      execute function extensions.pgrst_drop_watch();
  end if;
end
$$;
