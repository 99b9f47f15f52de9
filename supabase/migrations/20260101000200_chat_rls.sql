-- Row-level security of the mod_chat_* tables.
--
-- * "site isolation" (every table): an authenticated dashboard user sees and changes only rows of
--   sites that belong to an agency they are a member of.
-- * Public widget access (anon): read the widget settings; create visitors, conversations and
--   messages. Unlike the deployed platform, there is deliberately NO broad anon SELECT on
--   conversations or messages (that policy let any anon client read every site's chats).
-- * service_role bypasses RLS (role attribute BYPASSRLS).
--
-- Policies are dropped and re-created, so the file can run again and always leaves exactly
-- these definitions.

do $$
declare
  t text;
begin
  foreach t in array array[
    'mod_chat_departments', 'mod_chat_agents', 'mod_chat_widget_settings', 'mod_chat_visitors',
    'mod_chat_conversations', 'mod_chat_messages', 'mod_chat_canned_responses',
    'mod_chat_knowledge_base', 'mod_chat_analytics'
  ]
  loop
    execute format('alter table public.%I enable row level security', t);

    execute format('drop policy if exists "site isolation" on public.%I', t);
    execute format(
      $p$
      create policy "site isolation" on public.%I
        for all
        to authenticated
        using (site_id in (
          select s.id
          from public.sites s
          join public.agency_members am on am.agency_id = s.agency_id
          where am.user_id = auth.uid()
        ))
        with check (site_id in (
          select s.id
          from public.sites s
          join public.agency_members am on am.agency_id = s.agency_id
          where am.user_id = auth.uid()
        ))
      $p$,
      t
    );

    -- Table privileges, explicit so they exist even without Supabase's default privileges.
    execute format('grant select, insert, update, delete on public.%I to authenticated', t);
    execute format('grant all on public.%I to service_role', t);
  end loop;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Public widget (anon)
-- ---------------------------------------------------------------------------------------------
drop policy if exists "widget public read" on public.mod_chat_widget_settings;
create policy "widget public read" on public.mod_chat_widget_settings
  for select to anon
  using (true);

drop policy if exists "widget public insert" on public.mod_chat_visitors;
create policy "widget public insert" on public.mod_chat_visitors
  for insert to anon
  with check (true);

drop policy if exists "widget public insert" on public.mod_chat_conversations;
create policy "widget public insert" on public.mod_chat_conversations
  for insert to anon
  with check (true);

drop policy if exists "widget public insert" on public.mod_chat_messages;
create policy "widget public insert" on public.mod_chat_messages
  for insert to anon
  with check (true);

-- Only where anon has no privilege of the kind yet: a re-run must not widen the column
-- privileges of 20260101000700_visitor_columns.sql back to whole tables.
do $$
declare
  g record;
begin
  for g in
    select * from (values
      ('mod_chat_widget_settings', 'SELECT'),
      ('mod_chat_visitors', 'INSERT'),
      ('mod_chat_conversations', 'INSERT'),
      ('mod_chat_messages', 'INSERT')
    ) as v(tbl, priv)
  loop
    if not has_any_column_privilege('anon', format('public.%I', g.tbl), g.priv) then
      execute format('grant %s on public.%I to anon', g.priv, g.tbl);
    end if;
  end loop;
end
$$;
