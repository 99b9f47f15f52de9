-- Platform prerequisites of the live-chat module.
--
-- On the real platform database these objects already exist and are left alone. On a fresh project
-- (`supabase db reset`, or the local stack) minimal versions are created: only the columns that
-- spec/platform-schema.md says the chat module relies on, plus created_at.
--
-- Every table created here is marked with the comment below. Row-level security, policies and
-- grants are applied only to marked tables, so a platform table that existed before this migration
-- is never touched. Re-running the file is a no-op.

-- ---------------------------------------------------------------------------------------------
-- Tables (only where absent)
-- ---------------------------------------------------------------------------------------------
do $$
declare
  marker constant text := 'livechat: minimal platform prerequisite';
begin
  if to_regclass('public.agencies') is null then
    create table if not exists public.agencies (
      id uuid primary key default gen_random_uuid(),
      name text not null,
      created_at timestamptz default now()
    );
    execute format('comment on table public.agencies is %L', marker);
  end if;

  if to_regclass('public.sites') is null then
    create table if not exists public.sites (
      id uuid primary key default gen_random_uuid(),
      agency_id uuid not null references public.agencies (id) on delete cascade,
      name text not null,
      created_at timestamptz default now()
    );
    create index if not exists idx_sites_agency_id on public.sites (agency_id);
    execute format('comment on table public.sites is %L', marker);
  end if;

  if to_regclass('public.agency_members') is null then
    create table if not exists public.agency_members (
      id uuid primary key default gen_random_uuid(),
      agency_id uuid not null references public.agencies (id) on delete cascade,
      user_id uuid not null,
      role text default 'member' check (role in ('owner', 'admin', 'member')),
      created_at timestamptz default now(),
      unique (agency_id, user_id)
    );
    create index if not exists idx_agency_members_user_id on public.agency_members (user_id);
    execute format('comment on table public.agency_members is %L', marker);
  end if;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- update_updated_at_column(): only if the platform has no function of that name
-- ---------------------------------------------------------------------------------------------
do $$
begin
  if not exists (
    select 1
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where p.proname = 'update_updated_at_column'
      and n.nspname = 'public'
  ) then
    create function public.update_updated_at_column() returns trigger
    language plpgsql
    set search_path = ''
    as $fn$
    begin
      new.updated_at = now();
      return new;
    end
    $fn$;
  end if;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Row-level security on the tables created above: an authenticated user reads their own
-- memberships, the agencies they belong to and those agencies' sites. The chat tables' "site
-- isolation" policy reads sites and agency_members as `authenticated`, so these rows must be
-- visible to it.
-- ---------------------------------------------------------------------------------------------
do $$
declare
  marker constant text := 'livechat: minimal platform prerequisite';
begin
  if obj_description('public.agency_members'::regclass, 'pg_class') = marker then
    alter table public.agency_members enable row level security;
    if not exists (
      select 1 from pg_catalog.pg_policies
      where schemaname = 'public' and tablename = 'agency_members'
        and policyname = 'members read own memberships'
    ) then
      create policy "members read own memberships" on public.agency_members
        for select to authenticated
        using (user_id = auth.uid());
    end if;
    grant select on public.agency_members to authenticated;
    grant select, insert, update, delete on public.agency_members to service_role;
  end if;

  if obj_description('public.agencies'::regclass, 'pg_class') = marker then
    alter table public.agencies enable row level security;
    if not exists (
      select 1 from pg_catalog.pg_policies
      where schemaname = 'public' and tablename = 'agencies'
        and policyname = 'members read their agencies'
    ) then
      create policy "members read their agencies" on public.agencies
        for select to authenticated
        using (id in (
          select am.agency_id from public.agency_members am where am.user_id = auth.uid()
        ));
    end if;
    grant select on public.agencies to authenticated;
    grant select, insert, update, delete on public.agencies to service_role;
  end if;

  if obj_description('public.sites'::regclass, 'pg_class') = marker then
    alter table public.sites enable row level security;
    if not exists (
      select 1 from pg_catalog.pg_policies
      where schemaname = 'public' and tablename = 'sites'
        and policyname = 'members read their agencies'' sites'
    ) then
      create policy "members read their agencies' sites" on public.sites
        for select to authenticated
        using (agency_id in (
          select am.agency_id from public.agency_members am where am.user_id = auth.uid()
        ));
    end if;
    grant select on public.sites to authenticated;
    grant select, insert, update, delete on public.sites to service_role;
  end if;
end
$$;
