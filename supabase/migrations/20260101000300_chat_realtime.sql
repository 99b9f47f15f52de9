-- Realtime for the chat: full old rows in UPDATE/DELETE change events, and both tables in the
-- `supabase_realtime` publication (added only if the publication exists and they are not already
-- members, so the file can run again, and on a project without Realtime it is a no-op).
--
-- What a subscriber receives is still decided by RLS on its JWT: anon widget clients get no
-- conversation or message rows unless a narrower SELECT policy is added later.

alter table public.mod_chat_messages replica identity full;
alter table public.mod_chat_conversations replica identity full;

do $$
declare
  t text;
begin
  if not exists (select 1 from pg_catalog.pg_publication where pubname = 'supabase_realtime') then
    raise notice 'publication supabase_realtime does not exist; chat tables not published';
    return;
  end if;

  if (select puballtables from pg_catalog.pg_publication where pubname = 'supabase_realtime') then
    -- FOR ALL TABLES already includes them (and ADD TABLE would fail).
    return;
  end if;

  foreach t in array array['mod_chat_messages', 'mod_chat_conversations']
  loop
    if not exists (
      select 1 from pg_catalog.pg_publication_tables
      where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = t
    ) then
      execute format('alter publication supabase_realtime add table public.%I', t);
    end if;
  end loop;
end
$$;
