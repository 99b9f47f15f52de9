-- Visitor access without the anon hole.
--
-- The embeddable widget runs in the visitor's browser with the project's anon key. The deployed
-- platform let that key read every conversation and message of every site (anon SELECT policies
-- `USING (true)`) and insert messages anywhere. This migration replaces that with **visitor
-- tokens**: short-lived JWTs that the trusted side (the site's backend, with the project's JWT
-- secret; `livechat::visitor_token::mint_visitor_token` in the Rust library) mints for one
-- visitor:
--
--   {"role": "anon", "visitor_id": "<uuid>", "site_id": "<uuid>",
--    "iat": <unix s>, "exp": <unix s, short>, "iss": "livechat"}
--
-- The token has role `anon` and NO `sub`, so auth.uid() stays null and no `authenticated`
-- policy ("site isolation") applies to it; only the anon policies below do, and they read the
-- `visitor_id` and `site_id` claims through mod_chat_private.current_visitor_id() and
-- mod_chat_private.current_visitor_site_id() (null when absent or not a uuid).
--
-- What each caller can do on the chat tables afterwards:
--
--   caller                         | visitors            | conversations        | messages
--   -------------------------------+---------------------+----------------------+---------------------------
--   anon key (no visitor claims)   | insert              | insert (pending,     | nothing
--                                  |                     |  unassigned, visitor |
--                                  |                     |  of the same site)   |
--   visitor token (V, site S)      | read V;             | read V's in S;       | read those conversations'
--                                  | insert              | insert for V in S    |  messages except internal
--                                  |                     |  (pending,           |  notes; insert into them
--                                  |                     |  unassigned)         |  only as sender_type
--                                  |                     |                      |  'visitor' (no notes, no
--                                  |                     |                      |  system/template content)
--   agency member (authenticated)  | "site isolation": rows of the sites of their agencies (unchanged)
--   service_role                   | bypasses RLS (unchanged)
--
-- Realtime postgres_changes are RLS-checked per subscriber (SELECT as the subscriber's role and
-- claims), so the SELECT policies above are also exactly what a visitor receives: INSERT/UPDATE
-- events of its own conversations and of their non-internal messages, nothing for the anon key.
-- (DELETE events are never RLS-checked by Supabase Realtime; on RLS tables they carry only the
-- primary key. Subscribe with a filter such as `conversation_id=eq.<id>` to receive only yours.)
-- Widget settings stay publicly readable (policy "widget public read" of the earlier migration)
-- and the two SECURITY DEFINER widget functions stay callable by anon.
--
-- Not covered by row-level security: columns. What agents write about the visitor inside the
-- rows above (a conversation's `internal_notes` and `tags`, a visitor's `notes`, `tags` and
-- `crm_contact_id`, a note's text in `last_message_text`) is hidden by column privileges and a
-- note-aware message trigger in 20260101000700_visitor_columns.sql.
--
-- ---------------------------------------------------------------------------------------------
-- Moving an existing platform database
-- ---------------------------------------------------------------------------------------------
-- Run this file after the earlier ones (it is idempotent). Policies are permissive, i.e. OR-ed,
-- so one leftover broad anon policy reopens the hole. The file therefore drops, on
-- mod_chat_visitors, mod_chat_conversations and mod_chat_messages, every PERMISSIVE policy that
-- applies to anon (TO anon or TO public) and is unconditional:
--   * SELECT, UPDATE, DELETE or ALL policies whose USING is `true` (the deployed realtime read
--     policies, and any unconditional anon update or delete), and
--   * INSERT or ALL policies on conversations and messages whose WITH CHECK is `true` (the
--     deployed widget insert policies),
-- whatever their names, raising a NOTICE for each. Conditional policies that apply to anon are
-- left alone but reported with a WARNING: review them by hand (`select * from pg_policies where
-- tablename like 'mod_chat_%'`). The anon INSERT policy on mod_chat_visitors (`WITH CHECK
-- (true)`) is kept: creating a visitor stays public.

-- ---------------------------------------------------------------------------------------------
-- Claim helpers, in a schema of their own
-- ---------------------------------------------------------------------------------------------
-- `mod_chat_private` is not an exposed API schema (supabase/config.toml exposes `public`), so
-- these helpers cannot be called through /rest/v1/rpc; the policies below call them as the
-- requesting role, hence USAGE and EXECUTE for the API roles.
create schema if not exists mod_chat_private;
revoke all on schema mod_chat_private from public;
grant usage on schema mod_chat_private to anon, authenticated, service_role;

-- The `visitor_id` claim of the request's JWT as a uuid; null when there is no such claim, it
-- is not a JSON string, or not a uuid (never an error, so a malformed claim just matches
-- nothing).
create or replace function mod_chat_private.current_visitor_id()
returns uuid
language sql
stable
set search_path = ''
as $$
  select case
    when jsonb_typeof(c -> 'visitor_id') = 'string'
     and (c ->> 'visitor_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    then (c ->> 'visitor_id')::uuid
  end
  from (select auth.jwt() as c) claims
$$;

comment on function mod_chat_private.current_visitor_id() is
  'The visitor_id claim of a visitor token (null when absent or not a uuid). Used by the anon RLS policies of the chat tables.';

-- The `site_id` claim, likewise.
create or replace function mod_chat_private.current_visitor_site_id()
returns uuid
language sql
stable
set search_path = ''
as $$
  select case
    when jsonb_typeof(c -> 'site_id') = 'string'
     and (c ->> 'site_id') ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    then (c ->> 'site_id')::uuid
  end
  from (select auth.jwt() as c) claims
$$;

comment on function mod_chat_private.current_visitor_site_id() is
  'The site_id claim of a visitor token (null when absent or not a uuid). Used by the anon RLS policies of the chat tables.';

-- Whether a visitor belongs to a site. SECURITY DEFINER because anon cannot read visitors; it
-- answers only this yes/no question (for the anon conversation INSERT check: a conversation's
-- visitor must be of the same site).
create or replace function mod_chat_private.visitor_in_site(p_visitor_id uuid, p_site_id uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.mod_chat_visitors v
    where v.id = p_visitor_id and v.site_id = p_site_id
  )
$$;

comment on function mod_chat_private.visitor_in_site(uuid, uuid) is
  'True when the visitor belongs to the site (for the anon conversation INSERT policy).';

revoke all on function mod_chat_private.current_visitor_id() from public;
revoke all on function mod_chat_private.current_visitor_site_id() from public;
revoke all on function mod_chat_private.visitor_in_site(uuid, uuid) from public;
grant execute on function mod_chat_private.current_visitor_id() to anon, authenticated, service_role;
grant execute on function mod_chat_private.current_visitor_site_id() to anon, authenticated, service_role;
grant execute on function mod_chat_private.visitor_in_site(uuid, uuid) to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Remove unconditional anon policies (the deployed hole), whatever their names
-- ---------------------------------------------------------------------------------------------
do $$
declare
  p record;
  ours constant text[] := array[
    'visitor reads own row', 'visitor reads own conversations', 'visitor reads own messages',
    'widget creates conversations', 'visitor sends messages', 'widget public insert'
  ];
begin
  for p in
    select pol.tablename, pol.policyname, pol.cmd, pol.qual, pol.with_check
    from pg_catalog.pg_policies pol
    where pol.schemaname = 'public'
      and pol.tablename in ('mod_chat_visitors', 'mod_chat_conversations', 'mod_chat_messages')
      and pol.permissive = 'PERMISSIVE'
      and (pol.roles && array['anon', 'public']::name[])
  loop
    if (p.cmd in ('SELECT', 'UPDATE', 'DELETE', 'ALL') and p.qual = 'true')
       or (p.tablename <> 'mod_chat_visitors' and p.cmd in ('INSERT', 'ALL')
           and p.with_check = 'true')
    then
      raise notice 'visitor access: dropping unconditional anon policy % on %', p.policyname, p.tablename;
      execute format('drop policy %I on public.%I', p.policyname, p.tablename);
    elsif not (p.policyname = any (ours)) and p.policyname <> 'site isolation' then
      raise warning 'visitor access: policy % on % (%) also applies to anon; review it', p.policyname, p.tablename, p.cmd;
    end if;
  end loop;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Policies for anon (visitor tokens and the plain anon key)
-- ---------------------------------------------------------------------------------------------
-- `(select f())` makes PostgreSQL evaluate each helper once per statement, not once per row.

-- Visitors: a visitor token reads its own row. (INSERT stays "widget public insert".)
drop policy if exists "visitor reads own row" on public.mod_chat_visitors;
create policy "visitor reads own row" on public.mod_chat_visitors
  for select to anon
  using (
    id = (select mod_chat_private.current_visitor_id())
    and site_id = (select mod_chat_private.current_visitor_site_id())
  );

-- Conversations: a visitor token reads its own conversations of its site.
drop policy if exists "visitor reads own conversations" on public.mod_chat_conversations;
create policy "visitor reads own conversations" on public.mod_chat_conversations
  for select to anon
  using (
    visitor_id = (select mod_chat_private.current_visitor_id())
    and site_id = (select mod_chat_private.current_visitor_site_id())
  );

-- Conversations: the widget starts a conversation. Always pending and unassigned (assignment
-- and agent slots belong to the trusted side), for a visitor of the same site; with a visitor
-- token only for that visitor and site.
drop policy if exists "widget public insert" on public.mod_chat_conversations;
drop policy if exists "widget creates conversations" on public.mod_chat_conversations;
create policy "widget creates conversations" on public.mod_chat_conversations
  for insert to anon
  with check (
    status = 'pending'
    and assigned_agent_id is null
    and mod_chat_private.visitor_in_site(visitor_id, site_id)
    and (
      (select mod_chat_private.current_visitor_id()) is null
      or (
        visitor_id = (select mod_chat_private.current_visitor_id())
        and site_id = (select mod_chat_private.current_visitor_site_id())
      )
    )
  );

-- Messages: a visitor token reads the messages of its own conversations, except internal notes
-- (is_internal_note, or content_type 'note', which mod_chat_send_message treats as a note).
drop policy if exists "visitor reads own messages" on public.mod_chat_messages;
create policy "visitor reads own messages" on public.mod_chat_messages
  for select to anon
  using (
    is_internal_note is not true
    and content_type is distinct from 'note'
    and site_id = (select mod_chat_private.current_visitor_site_id())
    and conversation_id in (
      select c.id
      from public.mod_chat_conversations c
      where c.visitor_id = (select mod_chat_private.current_visitor_id())
        and c.site_id = (select mod_chat_private.current_visitor_site_id())
    )
  );

-- Messages: a visitor token sends into its own conversations, as the visitor only. The plain
-- anon key cannot insert messages any more.
drop policy if exists "widget public insert" on public.mod_chat_messages;
drop policy if exists "visitor sends messages" on public.mod_chat_messages;
create policy "visitor sends messages" on public.mod_chat_messages
  for insert to anon
  with check (
    sender_type = 'visitor'
    and (sender_id is null or sender_id = (select mod_chat_private.current_visitor_id())::text)
    and is_internal_note is not true
    and is_ai_generated is not true
    and coalesce(content_type, 'text') in ('text', 'image', 'file', 'audio', 'video', 'location')
    and site_id = (select mod_chat_private.current_visitor_site_id())
    and conversation_id in (
      select c.id
      from public.mod_chat_conversations c
      where c.visitor_id = (select mod_chat_private.current_visitor_id())
        and c.site_id = (select mod_chat_private.current_visitor_site_id())
    )
  );

-- Privileges the policies need (Supabase grants them by default; explicit for other setups).
-- Row-level security decides which rows. Only where anon has none at all: a re-run must not
-- widen the column privileges of 20260101000700_visitor_columns.sql back to whole tables.
do $$
declare
  t text;
  priv text;
begin
  foreach t in array array['mod_chat_visitors', 'mod_chat_conversations', 'mod_chat_messages'] loop
    foreach priv in array array['SELECT', 'INSERT'] loop
      if not has_any_column_privilege('anon', format('public.%I', t), priv) then
        execute format('grant %s on public.%I to anon', priv, t);
      end if;
    end loop;
  end loop;
end
$$;

notify pgrst, 'reload schema';
