-- References between chat rows stay inside one site.
--
-- The chat tables reference each other by foreign keys (a message's conversation, a
-- conversation's visitor, agent and department, an agent's department, an analytics row's
-- agent), and every row carries its own site_id, which "site isolation" checks. Nothing checked
-- that the referenced row is of the SAME site, and the counter triggers (SECURITY DEFINER)
-- write into the referenced row. So a member of agency A, with a plain REST insert as
-- supabase-js does it, could
--   * insert a message with A's site_id into agency B's conversation: the message trigger then
--     rewrote B's conversation (last_message_text = A's text, unread_agent_count + 1) and B's
--     agents got an UPDATE event;
--   * insert a conversation of A's site for B's visitor: B's visitor's total_conversations + 1;
--   * point A's conversations or agents at B's agents or departments;
-- and learn whether any id exists anywhere (a foreign key error or not).
--
-- The trigger below refuses such a row with exactly the error PostgreSQL gives for a key that
-- does not exist (SQLSTATE 23503, "insert or update on table ... violates foreign key constraint
-- ...", detail "Key is not present in table ..." — with the key only for roles that bypass
-- RLS; PostgREST answers 409): another site's row looks absent, as it is absent for the
-- caller. It is an AFTER ROW trigger, so row-level security refuses a row first (42501) and
-- the foreign keys (whose triggers sort first) report a missing key first, exactly as before.
-- It runs for every role, the service role included: no legitimate row references another
-- site.
--
-- Moving an existing platform database: rows written before may already break the rule. Find
-- them before (or after) applying this file with
--   select m.id from mod_chat_messages m join mod_chat_conversations c on c.id = m.conversation_id
--   where c.site_id <> m.site_id;
-- (and likewise for the other references listed at the end of this file). Idempotent.

create or replace function mod_chat_private.same_site_references() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  i integer := 0;
  col text;
  target text;
  ref_id uuid;
  ref_site uuid;
  fk_name text;
  row_json jsonb := to_jsonb(new);
  shows_keys boolean;
begin
  -- TG_ARGV: column, referenced table, column, referenced table, ...
  while i + 1 < TG_NARGS loop
    col := TG_ARGV[i];
    target := TG_ARGV[i + 1];
    i := i + 2;
    ref_id := (row_json ->> col)::uuid;
    continue when ref_id is null;
    execute format('select site_id from public.%I where id = $1', target)
      into ref_site
      using ref_id;
    -- Absent rows are the foreign key's to report (its trigger runs first).
    continue when ref_site is null or ref_site = new.site_id;
    select c.conname into fk_name
    from pg_catalog.pg_constraint c
    join pg_catalog.pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
    where c.conrelid = TG_RELID and c.contype = 'f' and a.attname = col
    limit 1;
    -- PostgreSQL shows the key only to roles that row-level security does not apply to (the
    -- chat tables have RLS on): superusers and BYPASSRLS roles such as service_role. This
    -- function runs as its owner, so the caller is the `role` setting (SET ROLE, as the API
    -- does), else the session user.
    select r.rolsuper or r.rolbypassrls into shows_keys
    from pg_catalog.pg_roles r
    where r.rolname = coalesce(nullif(current_setting('role', true), 'none'), session_user);
    raise exception 'insert or update on table "%" violates foreign key constraint "%"',
        TG_TABLE_NAME, coalesce(fk_name, TG_TABLE_NAME || '_' || col || '_fkey')
      using errcode = 'foreign_key_violation',
            detail = case
              when shows_keys then format('Key (%s)=(%s) is not present in table "%s".', col, ref_id, target)
              else format('Key is not present in table "%s".', target)
            end;
  end loop;
  return new;
end
$$;

comment on function mod_chat_private.same_site_references() is
  'AFTER INSERT/UPDATE trigger: a referenced chat row (arguments: column, table, ...) must be of the same site as the row; another site''s row is reported exactly like a missing key (23503).';

revoke all on function mod_chat_private.same_site_references() from public, anon, authenticated;

drop trigger if exists mod_chat_messages_same_site on public.mod_chat_messages;
create trigger mod_chat_messages_same_site
  after insert or update of site_id, conversation_id on public.mod_chat_messages
  for each row execute function mod_chat_private.same_site_references(
    'conversation_id', 'mod_chat_conversations');

drop trigger if exists mod_chat_conversations_same_site on public.mod_chat_conversations;
create trigger mod_chat_conversations_same_site
  after insert or update of site_id, visitor_id, assigned_agent_id, department_id
  on public.mod_chat_conversations
  for each row execute function mod_chat_private.same_site_references(
    'visitor_id', 'mod_chat_visitors',
    'assigned_agent_id', 'mod_chat_agents',
    'department_id', 'mod_chat_departments');

drop trigger if exists mod_chat_agents_same_site on public.mod_chat_agents;
create trigger mod_chat_agents_same_site
  after insert or update of site_id, department_id on public.mod_chat_agents
  for each row execute function mod_chat_private.same_site_references(
    'department_id', 'mod_chat_departments');

drop trigger if exists mod_chat_analytics_same_site on public.mod_chat_analytics;
create trigger mod_chat_analytics_same_site
  after insert or update of site_id, agent_id on public.mod_chat_analytics
  for each row execute function mod_chat_private.same_site_references(
    'agent_id', 'mod_chat_agents');
