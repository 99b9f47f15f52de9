-- The auto-assignment worker (`livechat worker`): what it needs from the database.
--
-- 1. Agents in the `supabase_realtime` publication, with full old rows, so a worker learns from
--    postgres_changes that an agent came online, was re-activated, got a higher capacity or freed
--    a slot, and can route waiting conversations at once instead of at its next sweep. Added only
--    if the publication exists and does not already hold the table (same guard as
--    20260101000300_chat_realtime.sql), so this is a no-op where Realtime is absent. Subscribers
--    still only receive agent rows their JWT may SELECT (RLS).
--
-- 2. A partial index over pending, unassigned conversations: the worker's sweep reads exactly
--    those, oldest first, every few seconds; without it each sweep scans the site's (or, without
--    a site filter, the whole) conversation table.
--
-- 3. mod_chat_worker_assign_pending(p_site_ids, p_limit): one batch of the worker's sweep, in
--    one transaction. Why not mod_chat_auto_assign_pending (20260101000400)? Its routing rules
--    are the right ones, and this function keeps them word for word:
--      * a conversation with a department is routed only if that department auto-assigns
--        (auto_assign true or null), and only to agents of that department;
--      * a conversation without a department is routed to any agent of its site;
--      * always the least-loaded (current_chat_count) online, active agent with a free slot
--        (current_chat_count < max_concurrent_chats, default 5), ties by lowest id;
--      * the conversation becomes active, wait_time_seconds = now - created_at, and the agent's
--        current_chat_count + 1 in the same transaction (the invariant holds).
--    What a worker needs in addition, and the old function cannot give:
--      * it locks (FOR UPDATE) every pending conversation it walks over, also the ones it cannot
--        assign, so with a backlog and no free agent each sweep locks, and writes lock marks
--        into, the whole backlog, and blocks the dashboard's actions on those conversations
--        until it commits. Here a conversation is locked only to assign it, and once a routing
--        pool (site, or site + department) has no free agent the rest of that pool is skipped
--        without touching it (as is, for this batch, a pool whose free agents another
--        transaction holds);
--      * when the least-loaded agent is locked by another worker it cannot tell "no agent free"
--        from "agent busy in another transaction", so two workers racing can both give up on a
--        conversation that an agent could take. Here that case is reported ("contended") and
--        the worker retries shortly;
--      * it takes one site or all; a worker may serve several;
--      * it returns the conversation rows only, so a worker cannot log whom it chose and why,
--        nor report the backlog. Here the result says who got what (agent load and capacity,
--        wait), which pools wait for a free agent, and the backlog.
--    mod_chat_auto_assign_pending is left as it is (other callers may use it).
--
-- Concurrency: the function never waits for a row lock. Conversations and agents are locked
-- with SKIP LOCKED (a conversation another worker holds is skipped: that worker is deciding on
-- it), and it updates only rows it holds. So any number of workers run side by side without
-- double assignment, without waiting on each other and without deadlocks; a dashboard action
-- that needs a row a worker holds waits only for that worker's (short) batch. The FOR UPDATE on
-- the agent re-checks the capacity condition on the newest row version, so an agent is never
-- given more than max_concurrent_chats. "Least-loaded" is exact among agents not held by another
-- transaction at that moment.
--
-- Result (one JSON object):
--   {
--     "assigned":  [{"conversation_id", "site_id", "department_id", "agent_id", "agent_name",
--                    "agent_load" (after), "agent_capacity", "wait_time_seconds",
--                    "latency_seconds" (created_at → now, fractional), "created_at"}, …],
--     "waiting":   [{"site_id", "department_id", "conversations"}, …]  -- pools without a free
--                   agent, and how many of the conversations walked over wait in each
--     "backlog":   pending, unassigned conversations that auto-assignment routes (at the start)
--     "manual":    pending, unassigned conversations whose department does not auto-assign
--     "contended": conversations left because their agents were held by another transaction
--     "held":      conversations skipped because another transaction held them
--     "more":      true when it stopped at p_limit with candidates left (call again)
--   }
-- Errors: invalid_input (p_limit outside 1..1000).

-- 1. Agents in the realtime publication ---------------------------------------------------------
alter table public.mod_chat_agents replica identity full;

do $$
begin
  if not exists (select 1 from pg_catalog.pg_publication where pubname = 'supabase_realtime') then
    raise notice 'publication supabase_realtime does not exist; mod_chat_agents not published';
    return;
  end if;
  if (select puballtables from pg_catalog.pg_publication where pubname = 'supabase_realtime') then
    return;
  end if;
  if not exists (
    select 1 from pg_catalog.pg_publication_tables
    where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'mod_chat_agents'
  ) then
    alter publication supabase_realtime add table public.mod_chat_agents;
  end if;
end
$$;

-- 2. The sweep's index ----------------------------------------------------------------------------
create index if not exists idx_mod_chat_conversations_pending_unassigned
  on public.mod_chat_conversations (created_at, id)
  where status = 'pending' and assigned_agent_id is null;

-- 3. One batch of a worker's sweep ----------------------------------------------------------------
create or replace function public.mod_chat_worker_assign_pending(
  p_site_ids uuid[] default null,
  p_limit integer default 50
)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_cand record;
  v_conv public.mod_chat_conversations;
  v_agent public.mod_chat_agents;
  v_pool text;
  v_site_pool text;
  v_exhausted text[] := '{}';
  v_busy text[] := '{}';
  v_waiting jsonb := '{}';
  v_assigned jsonb := '[]';
  v_count integer := 0;
  v_contended integer := 0;
  v_held integer := 0;
  v_more boolean := false;
  v_backlog bigint;
  v_manual bigint;
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'invalid input: p_limit must be between 1 and 1000'
      using errcode = '22023', hint = 'livechat:invalid_input',
            detail = format('Got %s.', p_limit);
  end if;

  select
    count(*) filter (where s.routed),
    count(*) filter (where not s.routed)
  into v_backlog, v_manual
  from (
    select c.department_id is null or exists (
             select 1 from public.mod_chat_departments d
             where d.id = c.department_id and coalesce(d.auto_assign, true)
           ) as routed
    from public.mod_chat_conversations c
    where c.status = 'pending'
      and c.assigned_agent_id is null
      and (p_site_ids is null or c.site_id = any (p_site_ids))
  ) s;

  -- Candidates, oldest first, read without locks; each is locked only when it is assigned.
  for v_cand in
    select c.id, c.site_id, c.department_id
    from public.mod_chat_conversations c
    where c.status = 'pending'
      and c.assigned_agent_id is null
      and (p_site_ids is null or c.site_id = any (p_site_ids))
      and (c.department_id is null or exists (
        select 1 from public.mod_chat_departments d
        where d.id = c.department_id and coalesce(d.auto_assign, true)
      ))
    order by c.created_at, c.id
  loop
    if v_count >= p_limit then
      v_more := true;
      exit;
    end if;

    -- Routing pools: the site's agents (no department), or one department's agents. A
    -- department's agents are agents of the site, so a site without a free agent has no
    -- department with one either.
    v_site_pool := v_cand.site_id::text || '/';
    v_pool := v_site_pool || coalesce(v_cand.department_id::text, '');
    if v_site_pool = any (v_exhausted) or v_pool = any (v_exhausted) then
      v_waiting := jsonb_set(v_waiting, array[v_pool],
                             to_jsonb(coalesce((v_waiting ->> v_pool)::integer, 0) + 1));
      continue;
    end if;
    -- The pool's free agents are held by another transaction: so they are for the rest of the
    -- pool's conversations too (the caller retries shortly).
    if v_pool = any (v_busy) then
      v_contended := v_contended + 1;
      continue;
    end if;

    -- Claim it, unless another transaction holds it or it changed since the candidates were
    -- read (assigned meanwhile, or its department stopped auto-assigning).
    select c.* into v_conv
    from public.mod_chat_conversations c
    where c.id = v_cand.id
      and c.status = 'pending'
      and c.assigned_agent_id is null
      and (c.department_id is null or exists (
        select 1 from public.mod_chat_departments d
        where d.id = c.department_id and coalesce(d.auto_assign, true)
      ))
    for update skip locked;
    if not found then
      if exists (
        select 1 from public.mod_chat_conversations c
        where c.id = v_cand.id and c.status = 'pending' and c.assigned_agent_id is null
      ) then
        v_held := v_held + 1;
      end if;
      continue;
    end if;

    -- The least-loaded online, active agent with a free slot in the pool. FOR UPDATE re-checks
    -- the conditions on the newest row version, so the slot is still free once locked.
    select a.* into v_agent
    from public.mod_chat_agents a
    where a.site_id = v_conv.site_id
      and a.is_active is true
      and a.status = 'online'
      and coalesce(a.current_chat_count, 0) < coalesce(a.max_concurrent_chats, 5)
      and (v_conv.department_id is null or a.department_id = v_conv.department_id)
    order by coalesce(a.current_chat_count, 0), a.id
    limit 1
    for update skip locked;

    if not found then
      if exists (
        select 1
        from public.mod_chat_agents a
        where a.site_id = v_conv.site_id
          and a.is_active is true
          and a.status = 'online'
          and coalesce(a.current_chat_count, 0) < coalesce(a.max_concurrent_chats, 5)
          and (v_conv.department_id is null or a.department_id = v_conv.department_id)
      ) then
        -- A free agent exists but another transaction holds it: not a "no agent" decision.
        v_contended := v_contended + 1;
        v_busy := v_busy || v_pool;
      else
        v_exhausted := v_exhausted || v_pool;
        v_waiting := jsonb_set(v_waiting, array[v_pool],
                               to_jsonb(coalesce((v_waiting ->> v_pool)::integer, 0) + 1));
      end if;
      continue;
    end if;

    update public.mod_chat_agents a
    set current_chat_count = coalesce(a.current_chat_count, 0) + 1
    where a.id = v_agent.id
    returning * into v_agent;

    update public.mod_chat_conversations c
    set assigned_agent_id = v_agent.id,
        status = 'active',
        wait_time_seconds = greatest(0, floor(extract(epoch from (now() - c.created_at))))::integer
    where c.id = v_conv.id
    returning * into v_conv;

    v_count := v_count + 1;
    v_assigned := v_assigned || jsonb_build_object(
      'conversation_id', v_conv.id,
      'site_id', v_conv.site_id,
      'department_id', v_conv.department_id,
      'agent_id', v_agent.id,
      'agent_name', v_agent.display_name,
      'agent_load', coalesce(v_agent.current_chat_count, 0),
      'agent_capacity', coalesce(v_agent.max_concurrent_chats, 5),
      'wait_time_seconds', v_conv.wait_time_seconds,
      'latency_seconds', greatest(0, extract(epoch from (pg_catalog.clock_timestamp() - v_conv.created_at))),
      'created_at', v_conv.created_at
    );
  end loop;

  return jsonb_build_object(
    'assigned', v_assigned,
    'waiting', (
      select coalesce(jsonb_agg(jsonb_build_object(
               'site_id', split_part(w.key, '/', 1),
               'department_id', nullif(split_part(w.key, '/', 2), ''),
               'conversations', w.value::integer
             ) order by w.key), '[]'::jsonb)
      from jsonb_each_text(v_waiting) w
    ),
    'backlog', v_backlog,
    'manual', v_manual,
    'contended', v_contended,
    'held', v_held,
    'more', v_more
  );
end
$$;

comment on function public.mod_chat_worker_assign_pending(uuid[], integer) is
  'Worker sweep batch: assign up to p_limit pending, unassigned conversations (oldest first; of the given sites, or all) with the auto-assignment routing rules, never waiting for a row lock (SKIP LOCKED); returns who got what, the pools waiting for a free agent, the backlog and whether to call again. Errors: invalid_input.';

revoke all on function public.mod_chat_worker_assign_pending(uuid[], integer) from public, anon;
grant execute on function public.mod_chat_worker_assign_pending(uuid[], integer)
  to authenticated, service_role;

notify pgrst, 'reload schema';
