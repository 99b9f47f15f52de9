-- Columns the widget may not read or write, and internal notes kept out of the conversation row.
--
-- Row-level security (migration 20260101000500_visitor_access.sql) decides which ROWS a visitor
-- token sees: its own visitor row, its own conversations, their non-note messages. It cannot hide
-- COLUMNS of a visible row, and two paths led from a visible row to what agents keep from the
-- visitor:
--
--   1. Columns agents write about the visitor: mod_chat_conversations.internal_notes and .tags,
--      mod_chat_visitors.notes, .tags and .crm_contact_id. A visitor token could read them
--      (REST, and the record of realtime UPDATE events) for its own rows.
--   2. The deployed message trigger copied every message, internal notes included, into the
--      conversation's last_message_text / last_message_at / last_message_by and counted notes
--      in message_count and an agent's note in unread_visitor_count: note text readable by the
--      visitor, and an unread badge for messages the visitor can never read.
--
-- This file closes both:
--
--   * Column privileges for `anon` (the plain anon key and visitor tokens alike; `authenticated`
--     and `service_role` are unchanged) on the three tables a visitor reaches and on the
--     publicly readable widget settings:
--       SELECT: every column except
--         mod_chat_conversations: internal_notes, tags
--         mod_chat_visitors:      notes, tags, crm_contact_id
--         mod_chat_widget_settings: blocked_ips and the WhatsApp account fields
--                                 (whatsapp_business_account_id, whatsapp_phone_number_id,
--                                 whatsapp_welcome_template), which the public settings
--                                 function withholds too
--         (mod_chat_messages: the whole table, as before; its notes are hidden as rows by RLS)
--       INSERT: only the columns a widget supplies (a visitor cannot plant internal notes, tags,
--         counters, ratings, a priority or backdated timestamps in the agents' view):
--         mod_chat_visitors:      id, site_id, external_id, name, email, phone, avatar_url,
--                                 browser, os, device, ip_address, country, city,
--                                 current_page_url, current_page_title, referrer_url,
--                                 landing_page_url, custom_data, channel, whatsapp_phone
--         mod_chat_conversations: id, site_id, visitor_id, assigned_agent_id (the RLS check
--                                 keeps it null), department_id, status (kept pending),
--                                 channel, subject, metadata
--         mod_chat_messages:      id, conversation_id, site_id, sender_type (kept 'visitor'),
--                                 sender_id, sender_name, sender_avatar, content, content_type,
--                                 file_url, file_name, file_size, file_mime_type,
--                                 is_internal_note and is_ai_generated (both kept false)
--         mod_chat_widget_settings: none (as before: no anon INSERT policy)
--       UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER: none (no policy allowed UPDATE or DELETE
--         already; TRUNCATE is not row-level-security checked, so it goes too).
--     Consequences for widget code: `select=*` on mod_chat_conversations or mod_chat_visitors
--     as anon is refused (401, code 42501, "permission denied for table ..."), as in SQL;
--     list the columns instead. An insert that reads its row back must name the columns it
--     reads (`Prefer: return=representation` with `select=id,status,...`); `return=minimal`
--     needs no SELECT privilege at all. Realtime drops the hidden columns from the records
--     of postgres_changes events sent to anon subscribers (Supabase Realtime sends only the
--     columns the subscriber's role may select).
--
--   * The message trigger leaves the conversation row alone for an internal note
--     (is_internal_note, or content_type 'note', which mod_chat_send_message treats as a note):
--     last_message_*, message_count and the unread counters describe the messages of the
--     conversation, i.e. what both sides can read. Not even an UPDATE event tells a visitor
--     that an agent wrote a note. (The deployed trigger counted notes; message_count of rows
--     written before this migration keeps those counts.)
--
-- Moving an existing platform database: run this file after 20260101000500 (it is idempotent;
-- the migration files are meant to run in order: re-running 20260101000100 alone re-creates
-- the deployed trigger function, so run this one after it again).
-- It revokes every table privilege of anon on the three tables and grants the column lists
-- above; SELECT lists are computed from the table's columns when the file runs, so re-run it
-- after adding a column that the widget should read. Check what remains with
--   select table_name, column_name, privilege_type from information_schema.column_privileges
--   where grantee = 'anon' and table_name like 'mod_chat_%' order by 1, 3, 2;

-- ---------------------------------------------------------------------------------------------
-- Column privileges for anon
-- ---------------------------------------------------------------------------------------------
do $$
declare
  spec record;
  priv text;
  cols text;
begin
  for spec in
    select *
    from (values
      ('mod_chat_visitors',
       array['notes', 'tags', 'crm_contact_id'],
       array['id', 'site_id', 'external_id', 'name', 'email', 'phone', 'avatar_url', 'browser',
             'os', 'device', 'ip_address', 'country', 'city', 'current_page_url',
             'current_page_title', 'referrer_url', 'landing_page_url', 'custom_data', 'channel',
             'whatsapp_phone']),
      ('mod_chat_conversations',
       array['internal_notes', 'tags'],
       array['id', 'site_id', 'visitor_id', 'assigned_agent_id', 'department_id', 'status',
             'channel', 'subject', 'metadata']),
      ('mod_chat_widget_settings',
       array['blocked_ips', 'whatsapp_business_account_id', 'whatsapp_phone_number_id',
             'whatsapp_welcome_template'],
       array[]::text[]),
      ('mod_chat_messages',
       array[]::text[],
       array['id', 'conversation_id', 'site_id', 'sender_type', 'sender_id', 'sender_name',
             'sender_avatar', 'content', 'content_type', 'file_url', 'file_name', 'file_size',
             'file_mime_type', 'is_internal_note', 'is_ai_generated'])
    ) as t(tbl, hidden, insertable)
  loop
    -- Revoking a table privilege also revokes that privilege on every column.
    execute format('revoke all on table public.%I from anon', spec.tbl);

    -- Nothing hidden (messages: their notes are hidden as rows): a table-level SELECT, so that
    -- columns the platform adds later stay readable and `select=*` keeps working.
    if cardinality(spec.hidden) = 0 then
      execute format('grant select on table public.%I to anon', spec.tbl);
    end if;
    foreach priv in array array['select', 'insert'] loop
      continue when priv = 'select' and cardinality(spec.hidden) = 0;
      select string_agg(format('%I', a.attname), ', ' order by a.attnum)
      into cols
      from pg_catalog.pg_attribute a
      where a.attrelid = format('public.%I', spec.tbl)::regclass
        and a.attnum > 0
        and not a.attisdropped
        and case priv
              when 'select' then not (a.attname::text = any (spec.hidden))
              else a.attname::text = any (spec.insertable)
            end;
      continue when cols is null;
      execute format('grant %s (%s) on table public.%I to anon', priv, cols, spec.tbl);
    end loop;
  end loop;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- The message trigger: internal notes do not touch the conversation row
-- ---------------------------------------------------------------------------------------------
create or replace function public.mod_chat_on_message_insert() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.is_internal_note is true or new.content_type is not distinct from 'note' then
    return null;
  end if;
  update public.mod_chat_conversations c
  set message_count = coalesce(c.message_count, 0) + 1,
      last_message_text = new.content,
      last_message_at = new.created_at,
      last_message_by = new.sender_type,
      unread_agent_count = coalesce(c.unread_agent_count, 0)
        + case when new.sender_type = 'visitor' then 1 else 0 end,
      unread_visitor_count = coalesce(c.unread_visitor_count, 0)
        + case when new.sender_type in ('agent', 'ai') then 1 else 0 end
  where c.id = new.conversation_id;
  return null;
end
$$;

comment on function public.mod_chat_on_message_insert() is
  'After INSERT on mod_chat_messages: message_count, last_message_* and unread counters of the conversation, for every message except internal notes.';

revoke execute on function public.mod_chat_on_message_insert() from public, anon, authenticated;

notify pgrst, 'reload schema';
