-- Realtime Authorization for the chat channels: who may join them as PRIVATE channels.
--
-- The dashboard hooks use three channels per tenant object:
--   chat:<conversationId>        typing broadcasts (and the conversation's message changes)
--   conversations:<siteId>       the site's conversation changes
--   presence:chat:<siteId>       agent presence of the site
-- As PUBLIC channels (what the deployed hooks join) anyone holding the anon key and an id can
-- join them: a conversation's typing and a site's agent presence are open to whoever knows the
-- id (postgres_changes are RLS-checked per subscriber either way). Supabase Realtime authorizes
-- PRIVATE channels (`config.private = true`) with row-level security on `realtime.messages`:
-- joining reads (SELECT) a row of the topic with `realtime.topic()` = the channel name and
-- `extension` 'broadcast'/'presence'; sending broadcasts and tracking presence writes (INSERT).
-- Public and private channels of one name are separate rooms, so both sides of a conversation
-- (Rust: `Live::private_channels(true)`; supabase-js: `supabase.channel(name, { config:
-- { private: true } })`) must switch together.
--
-- Policies (the checks run as the client's role):
--   chat:<id>              read and write for whoever can SELECT that conversation: members of
--                          its site's agency (authenticated) and the visitor token of its
--                          visitor (anon, migration 20260101000500). The plain anon key
--                          cannot.
--   conversations:<site>   read and write for members of the site's agency (authenticated;
--   presence:chat:<site>   public.mod_chat_can_access_site below). Not anon, not visitor tokens.
--   anything else          no policy of this file (other policies of the project still apply).
-- service_role bypasses row-level security and joins everything.
--
-- Idempotent; does nothing where `realtime.messages` does not exist (an old self-hosted
-- Realtime without authorization).

-- The uuid after `prefix` in `topic`, or null (never an error) when the topic has another
-- prefix or the rest is not a uuid.
create or replace function mod_chat_private.topic_uuid(p_topic text, p_prefix text)
returns uuid
language sql
immutable
set search_path = ''
as $$
  select case
    when left(p_topic, length(p_prefix)) = p_prefix
     and substr(p_topic, length(p_prefix) + 1)
         ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    then substr(p_topic, length(p_prefix) + 1)::uuid
  end
$$;

comment on function mod_chat_private.topic_uuid(text, text) is
  'The uuid that follows a prefix in a realtime topic (chat:<id>, conversations:<id>, presence:chat:<id>), or null.';

revoke all on function mod_chat_private.topic_uuid(text, text) from public;
grant execute on function mod_chat_private.topic_uuid(text, text) to anon, authenticated, service_role;

-- Whether the calling role may follow a site: a member of the site's agency (the membership
-- that "site isolation" checks: public.sites joined to public.agency_members on auth.uid()),
-- or a role that bypasses row-level security (service_role) for any existing site. Not
-- whatever the platform's own policies on public.sites let a role read: those may be wider
-- (a CMS may publish its sites). SECURITY INVOKER; callable through /rest/v1/rpc, where
-- `live` feeds ask it before joining a site's channels. Not for anon (like every chat
-- function but the two widget ones), which follows no site.
create or replace function public.mod_chat_can_access_site(p_site_id uuid)
returns boolean
language sql
stable
security invoker
set search_path = ''
as $$
  select case
    when exists (
      select 1 from pg_catalog.pg_roles r
      where r.rolname = current_user and (r.rolbypassrls or r.rolsuper)
    )
    then exists (select 1 from public.sites s where s.id = p_site_id)
    else exists (
      select 1
      from public.sites s
      join public.agency_members am on am.agency_id = s.agency_id
      where s.id = p_site_id
        and am.user_id = (select auth.uid())
    )
  end
$$;

comment on function public.mod_chat_can_access_site(uuid) is
  'True when the caller is a member of the site''s agency (or bypasses RLS and the site exists): who may follow the site''s conversations and agent presence.';

revoke all on function public.mod_chat_can_access_site(uuid) from public, anon;
grant execute on function public.mod_chat_can_access_site(uuid) to authenticated, service_role;

do $$
begin
  if to_regclass('realtime.messages') is null then
    raise notice 'realtime authorization: realtime.messages does not exist; no policies created';
    return;
  end if;

  -- chat:<conversationId>: whoever may read the conversation (its RLS decides).
  drop policy if exists "chat topic: conversation readers join" on realtime.messages;
  create policy "chat topic: conversation readers join" on realtime.messages
    for select to authenticated, anon
    using (
      extension in ('broadcast', 'presence')
      and exists (
        select 1 from public.mod_chat_conversations c
        where c.id = mod_chat_private.topic_uuid((select realtime.topic()), 'chat:')
      )
    );
  drop policy if exists "chat topic: conversation readers send" on realtime.messages;
  create policy "chat topic: conversation readers send" on realtime.messages
    for insert to authenticated, anon
    with check (
      extension in ('broadcast', 'presence')
      and exists (
        select 1 from public.mod_chat_conversations c
        where c.id = mod_chat_private.topic_uuid((select realtime.topic()), 'chat:')
      )
    );

  -- conversations:<siteId> and presence:chat:<siteId>: members of the site's agency (the
  -- sites table's RLS decides).
  drop policy if exists "site topics: agency members join" on realtime.messages;
  create policy "site topics: agency members join" on realtime.messages
    for select to authenticated
    using (
      extension in ('broadcast', 'presence')
      and public.mod_chat_can_access_site(coalesce(
        mod_chat_private.topic_uuid((select realtime.topic()), 'presence:chat:'),
        mod_chat_private.topic_uuid((select realtime.topic()), 'conversations:')
      ))
    );
  drop policy if exists "site topics: agency members send" on realtime.messages;
  create policy "site topics: agency members send" on realtime.messages
    for insert to authenticated
    with check (
      extension in ('broadcast', 'presence')
      and public.mod_chat_can_access_site(coalesce(
        mod_chat_private.topic_uuid((select realtime.topic()), 'presence:chat:'),
        mod_chat_private.topic_uuid((select realtime.topic()), 'conversations:')
      ))
    );
end
$$;
