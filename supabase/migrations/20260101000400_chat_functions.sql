-- Atomic actions of the live-chat module: SQL functions called through PostgREST RPC
-- (`POST /rest/v1/rpc/<name>` with a JSON object of named arguments `p_…`).
--
-- Every action that touches more than one row, or reads a counter and writes it back, is one
-- function here, so it runs as one transaction and is safe under concurrent calls. The functions
-- run with the caller's rights (SECURITY INVOKER): row-level security applies, so a dashboard user
-- acting on another agency's rows gets "not found", never that agency's data. The two exceptions,
-- for the anonymous widget, are marked SECURITY DEFINER below and return only public data.
--
-- Invariant kept by every function: an agent's current_chat_count equals the number of its
-- conversations whose status is pending, active or waiting ("open": they hold one of the agent's
-- slots). Conversations in resolved, closed or missed hold no slot.
--
-- Locking, to stay free of deadlocks: a function locks the conversation row(s) first (in id order
-- when several), then agent rows in id order; no function waits for a conversation while it holds
-- an agent. mod_chat_delete_agent, which must lock many conversations of one agent, takes them
-- first and retries (releasing its locks) if another assignment slipped in before it held the
-- agent. Where no row exists yet, a transaction-scoped advisory lock serialises the callers
-- (departments of a site; visitors by site + email / WhatsApp phone). The widget-settings row is
-- created with INSERT … ON CONFLICT (site_id) DO NOTHING.
--
-- ---------------------------------------------------------------------------------------------
-- Errors. Each error has a fixed message, a DETAIL with the specifics, and a stable key in the
-- HINT that the client library maps to an error kind. PostgREST passes code/message/details/hint
-- through; the HTTP status follows from the SQLSTATE (PTnnn → nnn, 22023 → 400).
--
--   HINT key                              SQLSTATE  HTTP  message
--   livechat:invalid_input                22023     400   invalid input: <what>
--   livechat:site_not_found               PT404     404   site not found
--   livechat:conversation_not_found       PT404     404   conversation not found
--   livechat:agent_not_found              PT404     404   agent not found
--   livechat:department_not_found         PT404     404   department not found
--   livechat:visitor_not_found            PT404     404   visitor not found
--   livechat:canned_response_not_found    PT404     404   canned response not found
--   livechat:agent_at_capacity            PT409     409   agent at capacity
--   livechat:agent_inactive               PT409     409   agent is not active
--   livechat:already_assigned             PT409     409   conversation is already assigned to this agent
--   livechat:invalid_state                PT409     409   conversation is <status>: <what is allowed>
--   livechat:default_department           PT409     409   cannot delete the default department
--   livechat:retry                        40001     500   agent is too busy to delete now; try again
--                                                         (mod_chat_delete_agent, after 50 rounds of
--                                                         assignments racing it; practically never)
--
-- "Not found" also covers rows that exist but are hidden by row-level security, and an agent,
-- department or visitor that belongs to another site than the conversation or site named.
--
-- ---------------------------------------------------------------------------------------------
-- Functions (→ result shape through PostgREST)
--
--   Conversations
--   mod_chat_create_conversation(p_site_id, p_visitor_id, p_channel='widget', p_department_id=null,
--       p_subject=null, p_auto_assign=true)                          → conversation object
--   mod_chat_assign_conversation(p_conversation_id, p_agent_id)       → conversation object
--   mod_chat_transfer_conversation(p_conversation_id, p_to_agent_id, p_note=null)
--                                                                     → conversation object
--   mod_chat_resolve_conversation(p_conversation_id)                  → conversation object
--   mod_chat_close_conversation(p_conversation_id)                    → conversation object
--   mod_chat_reopen_conversation(p_conversation_id)                   → conversation object
--   mod_chat_mark_conversation_read(p_conversation_id, p_role)        → conversation object
--   mod_chat_auto_assign_conversation(p_conversation_id)              → conversation object
--   mod_chat_auto_assign_pending(p_site_id=null, p_limit=20)          → array of conversations
--   mod_chat_list_conversations(p_site_id, p_status, p_channel, p_assigned_agent_id,
--       p_department_id, p_priority, p_search, p_date_from, p_date_to, p_limit=20, p_offset=0)
--                                                                     → array of list items
--   mod_chat_conversation_stats(p_site_id, p_time_zone='UTC')         → stats object
--   Messages
--   mod_chat_send_message(p_conversation_id, p_sender_type, p_content=null, p_content_type='text',
--       p_sender_id=null, p_sender_name=null, p_sender_avatar=null, p_is_internal_note=false,
--       p_file_url=null, p_file_name=null, p_file_size=null, p_file_mime_type=null,
--       p_site_id=null)                                               → message object
--   Agents
--   mod_chat_delete_agent(p_agent_id)                                 → agent object
--   mod_chat_get_available_agent(p_site_id, p_department_id=null)     → array of 0 or 1 agents
--   mod_chat_agent_performance(p_site_id, p_date_from=null, p_date_to=null)
--                                                                     → array of per-agent rows
--   Departments
--   mod_chat_create_department(p_site_id, p_name, p_description=null, p_auto_assign=true,
--       p_max_concurrent_chats=5, p_sort_order=null, p_is_active=true) → department object
--   mod_chat_delete_department(p_department_id)                       → 204, no body
--   mod_chat_set_default_department(p_site_id, p_department_id)       → department object
--   Canned responses and knowledge base
--   mod_chat_increment_canned_response_usage(p_id)                    → canned response object
--   mod_chat_search_canned_responses(p_site_id, p_query)              → array of canned responses
--   mod_chat_search_knowledge_base(p_site_id, p_query)                → array of articles
--   Widget and visitors
--   mod_chat_get_widget_settings(p_site_id)                           → widget settings object
--   mod_chat_get_public_widget_settings(p_site_id)                    → public settings object
--   mod_chat_create_or_update_visitor(p_site_id, p_channel=null, p_name, p_email, p_phone,
--       p_browser, p_os, p_device, p_ip_address, p_country, p_city, p_current_page_url,
--       p_current_page_title, p_referrer_url, p_landing_page_url, p_whatsapp_phone,
--       p_external_id (all optional but p_site_id))                   → visitor object
--   mod_chat_widget_identify_visitor(same arguments)                  → visitor id (a JSON string)
--
-- ---------------------------------------------------------------------------------------------
-- Who may call what (grants at the end of this file):
--   * authenticated (dashboard users; RLS applies) and service_role (bypasses RLS): everything.
--   * anon (the embeddable widget): only mod_chat_get_public_widget_settings and
--     mod_chat_widget_identify_visitor. Both are SECURITY DEFINER, because anon may not create
--     settings rows nor read visitors: the first creates the site's default settings row if it is
--     missing and returns only the public fields (no ids, no WhatsApp account ids, no blocked
--     IPs); the second runs mod_chat_create_or_update_visitor and returns only the visitor's id.
--     Both answer "site not found" for a site that does not exist. Call them with POST (the
--     supabase-js default): creating the missing settings row is a write, which a GET (read-only
--     transaction) refuses. Note that, as in the original, whoever knows a visitor's e-mail can
--     update that visitor's tracking and contact fields through the widget path; they learn only
--     its id, which gives no read access (anon has no SELECT on visitors).
--
-- Behaviour decisions, beyond spec/parity.md:
--   * Assign, transfer and reopen refuse an inactive (soft-deleted) agent (agent_inactive) and a
--     full one (agent_at_capacity). Assign and transfer act on open conversations only; assigning
--     the conversation's current agent changes no counter; transferring to it is refused.
--     Transfer is assign plus messages: a pending conversation becomes active there too.
--   * Resolve acts on pending, active, waiting or missed conversations; an already resolved one is
--     returned unchanged (idempotent: no second message, no second total_chats_handled); a closed
--     one is refused (reopen it first).
--   * Close acts on any status; an already closed one is returned unchanged. When it sets
--     resolved_at it also sets resolution_time_seconds if that is empty.
--   * Reopen acts on resolved or closed conversations. With an active agent it becomes active and
--     the agent takes the slot again (refused at capacity); without an agent, or when the agent was
--     deleted, it becomes pending and unassigned, so that assignment can route it again.
--   * Send message never assigns and never changes agent counters: a pending conversation becomes
--     active when an agent sends a visible (non-note) message, and its wait_time_seconds is set if
--     empty; a pending conversation stays in its agent's slot either way (pending and active both
--     hold it). Internal notes and system messages are not responses.
--   * Create conversation assigns with mod_chat_auto_assign_conversation: a conversation with a
--     department is routed only if that department auto-assigns, and only to its agents; one
--     without a department to any agent of the site; always the least-loaded online, active
--     agent with free capacity (ties: lowest id). p_auto_assign=false skips it.
--   * Visitors are matched by e-mail case-insensitively (after trimming), else by whatsapp_phone.
--   * "Today" in stats: [local midnight, next local midnight) in the given IANA zone, DST-correct.
--     today_resolved counts conversations whose resolved_at is today (resolved, or closed the same
--     day); average first response and satisfaction are over the conversations created today.
--   * Agent performance counts the conversations assigned to the agent and created in the range
--     (both bounds inclusive); "resolved" means status resolved or closed.

-- =============================================================================================
-- Conversations: assignment and status
-- =============================================================================================

-- Sets the agent of an open conversation. pending → active with wait_time_seconds; the new agent
-- takes a slot (refused at capacity or when inactive), the previous agent, if any, frees one.
create or replace function public.mod_chat_assign_conversation(
  p_conversation_id uuid,
  p_agent_id uuid
)
returns public.mod_chat_conversations
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_conv public.mod_chat_conversations;
  v_agent public.mod_chat_agents;
begin
  if p_conversation_id is null or p_agent_id is null then
    raise exception 'invalid input: p_conversation_id and p_agent_id are required'
      using errcode = '22023', hint = 'livechat:invalid_input';
  end if;

  select * into v_conv
  from public.mod_chat_conversations c
  where c.id = p_conversation_id
  for update;
  if not found then
    raise exception 'conversation not found'
      using errcode = 'PT404', hint = 'livechat:conversation_not_found',
            detail = format('No conversation %s is visible to the current role.', p_conversation_id);
  end if;
  if v_conv.status not in ('pending', 'active', 'waiting') then
    raise exception 'conversation is %: only pending, active or waiting conversations can be assigned', v_conv.status
      using errcode = 'PT409', hint = 'livechat:invalid_state',
            detail = format('Conversation %s has status %s.', v_conv.id, v_conv.status);
  end if;

  -- Agents in id order (the previous one and the new one).
  perform 1
  from public.mod_chat_agents a
  where a.id in (p_agent_id, v_conv.assigned_agent_id)
  order by a.id
  for update;

  select * into v_agent
  from public.mod_chat_agents a
  where a.id = p_agent_id and a.site_id = v_conv.site_id;
  if not found then
    raise exception 'agent not found'
      using errcode = 'PT404', hint = 'livechat:agent_not_found',
            detail = format('No agent %s in the conversation''s site %s is visible to the current role.',
                            p_agent_id, v_conv.site_id);
  end if;

  if v_conv.assigned_agent_id is distinct from p_agent_id then
    if v_agent.is_active is not true then
      raise exception 'agent is not active'
        using errcode = 'PT409', hint = 'livechat:agent_inactive',
              detail = format('Agent %s has been deleted or deactivated.', p_agent_id);
    end if;
    if coalesce(v_agent.current_chat_count, 0) >= coalesce(v_agent.max_concurrent_chats, 5) then
      raise exception 'agent at capacity'
        using errcode = 'PT409', hint = 'livechat:agent_at_capacity',
              detail = format('Agent %s already has %s of %s conversations.', p_agent_id,
                              coalesce(v_agent.current_chat_count, 0),
                              coalesce(v_agent.max_concurrent_chats, 5));
    end if;
    if v_conv.assigned_agent_id is not null then
      update public.mod_chat_agents a
      set current_chat_count = greatest(coalesce(a.current_chat_count, 0) - 1, 0)
      where a.id = v_conv.assigned_agent_id;
    end if;
    update public.mod_chat_agents a
    set current_chat_count = coalesce(a.current_chat_count, 0) + 1
    where a.id = p_agent_id;
  end if;

  update public.mod_chat_conversations c
  set assigned_agent_id = p_agent_id,
      wait_time_seconds = case
        when c.status = 'pending'
          then greatest(0, floor(extract(epoch from (now() - c.created_at))))::integer
        else c.wait_time_seconds
      end,
      status = case when c.status = 'pending' then 'active' else c.status end
  where c.id = v_conv.id
  returning * into v_conv;

  return v_conv;
end
$$;

comment on function public.mod_chat_assign_conversation(uuid, uuid) is
  'Assign an open conversation to an agent (pending becomes active, wait_time_seconds set); the new agent takes a slot, the previous one frees it. Errors: conversation_not_found, agent_not_found, invalid_state, agent_inactive, agent_at_capacity.';

-- Moves an open conversation to another agent, with a system message and an optional internal
-- note.
create or replace function public.mod_chat_transfer_conversation(
  p_conversation_id uuid,
  p_to_agent_id uuid,
  p_note text default null
)
returns public.mod_chat_conversations
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_conv public.mod_chat_conversations;
  v_agent public.mod_chat_agents;
begin
  if p_conversation_id is null or p_to_agent_id is null then
    raise exception 'invalid input: p_conversation_id and p_to_agent_id are required'
      using errcode = '22023', hint = 'livechat:invalid_input';
  end if;

  select * into v_conv
  from public.mod_chat_conversations c
  where c.id = p_conversation_id
  for update;
  if not found then
    raise exception 'conversation not found'
      using errcode = 'PT404', hint = 'livechat:conversation_not_found',
            detail = format('No conversation %s is visible to the current role.', p_conversation_id);
  end if;
  if v_conv.status not in ('pending', 'active', 'waiting') then
    raise exception 'conversation is %: only pending, active or waiting conversations can be transferred', v_conv.status
      using errcode = 'PT409', hint = 'livechat:invalid_state',
            detail = format('Conversation %s has status %s.', v_conv.id, v_conv.status);
  end if;

  perform 1
  from public.mod_chat_agents a
  where a.id in (p_to_agent_id, v_conv.assigned_agent_id)
  order by a.id
  for update;

  select * into v_agent
  from public.mod_chat_agents a
  where a.id = p_to_agent_id and a.site_id = v_conv.site_id;
  if not found then
    raise exception 'agent not found'
      using errcode = 'PT404', hint = 'livechat:agent_not_found',
            detail = format('No agent %s in the conversation''s site %s is visible to the current role.',
                            p_to_agent_id, v_conv.site_id);
  end if;
  if v_conv.assigned_agent_id = p_to_agent_id then
    raise exception 'conversation is already assigned to this agent'
      using errcode = 'PT409', hint = 'livechat:already_assigned',
            detail = format('Conversation %s is already assigned to agent %s.', v_conv.id, p_to_agent_id);
  end if;
  if v_agent.is_active is not true then
    raise exception 'agent is not active'
      using errcode = 'PT409', hint = 'livechat:agent_inactive',
            detail = format('Agent %s has been deleted or deactivated.', p_to_agent_id);
  end if;
  if coalesce(v_agent.current_chat_count, 0) >= coalesce(v_agent.max_concurrent_chats, 5) then
    raise exception 'agent at capacity'
      using errcode = 'PT409', hint = 'livechat:agent_at_capacity',
            detail = format('Agent %s already has %s of %s conversations.', p_to_agent_id,
                            coalesce(v_agent.current_chat_count, 0),
                            coalesce(v_agent.max_concurrent_chats, 5));
  end if;

  if v_conv.assigned_agent_id is not null then
    update public.mod_chat_agents a
    set current_chat_count = greatest(coalesce(a.current_chat_count, 0) - 1, 0)
    where a.id = v_conv.assigned_agent_id;
  end if;
  update public.mod_chat_agents a
  set current_chat_count = coalesce(a.current_chat_count, 0) + 1
  where a.id = p_to_agent_id;

  -- clock_timestamp(), not now(): the note must sort after the system message.
  insert into public.mod_chat_messages
    (conversation_id, site_id, sender_type, content, content_type, created_at)
  values (v_conv.id, v_conv.site_id, 'system',
          'Conversation transferred to ' || v_agent.display_name, 'system', clock_timestamp());
  if nullif(btrim(p_note), '') is not null then
    insert into public.mod_chat_messages
      (conversation_id, site_id, sender_type, content, content_type, is_internal_note, created_at)
    values (v_conv.id, v_conv.site_id, 'system', p_note, 'note', true, clock_timestamp());
  end if;

  update public.mod_chat_conversations c
  set assigned_agent_id = p_to_agent_id,
      wait_time_seconds = case
        when c.status = 'pending'
          then greatest(0, floor(extract(epoch from (now() - c.created_at))))::integer
        else c.wait_time_seconds
      end,
      status = case when c.status = 'pending' then 'active' else c.status end
  where c.id = v_conv.id
  returning * into v_conv;

  return v_conv;
end
$$;

comment on function public.mod_chat_transfer_conversation(uuid, uuid, text) is
  'Transfer an open conversation to another agent: old agent frees a slot, new agent takes one, system message "Conversation transferred to <name>", optional internal note. Errors: conversation_not_found, agent_not_found, invalid_state, already_assigned, agent_inactive, agent_at_capacity.';

-- pending/active/waiting/missed → resolved.
create or replace function public.mod_chat_resolve_conversation(p_conversation_id uuid)
returns public.mod_chat_conversations
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_conv public.mod_chat_conversations;
begin
  select * into v_conv
  from public.mod_chat_conversations c
  where c.id = p_conversation_id
  for update;
  if not found then
    raise exception 'conversation not found'
      using errcode = 'PT404', hint = 'livechat:conversation_not_found',
            detail = format('No conversation %s is visible to the current role.', p_conversation_id);
  end if;
  if v_conv.status = 'resolved' then
    return v_conv;
  end if;
  if v_conv.status = 'closed' then
    raise exception 'conversation is closed: reopen it before resolving it'
      using errcode = 'PT409', hint = 'livechat:invalid_state',
            detail = format('Conversation %s has status closed.', v_conv.id);
  end if;

  if v_conv.assigned_agent_id is not null then
    update public.mod_chat_agents a
    set current_chat_count = case
          when v_conv.status in ('pending', 'active', 'waiting')
            then greatest(coalesce(a.current_chat_count, 0) - 1, 0)
          else a.current_chat_count
        end,
        total_chats_handled = coalesce(a.total_chats_handled, 0) + 1
    where a.id = v_conv.assigned_agent_id;
  end if;

  insert into public.mod_chat_messages (conversation_id, site_id, sender_type, content, content_type)
  values (v_conv.id, v_conv.site_id, 'system', 'Conversation resolved', 'system');

  update public.mod_chat_conversations c
  set status = 'resolved',
      resolved_at = now(),
      resolution_time_seconds = greatest(0, floor(extract(epoch from (now() - c.created_at))))::integer
  where c.id = v_conv.id
  returning * into v_conv;

  return v_conv;
end
$$;

comment on function public.mod_chat_resolve_conversation(uuid) is
  'Resolve a conversation (resolved_at, resolution_time_seconds, system message "Conversation resolved"); the agent frees its slot and total_chats_handled + 1. Idempotent on a resolved conversation. Errors: conversation_not_found, invalid_state (closed).';

-- Any status → closed.
create or replace function public.mod_chat_close_conversation(p_conversation_id uuid)
returns public.mod_chat_conversations
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_conv public.mod_chat_conversations;
begin
  select * into v_conv
  from public.mod_chat_conversations c
  where c.id = p_conversation_id
  for update;
  if not found then
    raise exception 'conversation not found'
      using errcode = 'PT404', hint = 'livechat:conversation_not_found',
            detail = format('No conversation %s is visible to the current role.', p_conversation_id);
  end if;
  if v_conv.status = 'closed' then
    return v_conv;
  end if;

  if v_conv.assigned_agent_id is not null and v_conv.status in ('pending', 'active', 'waiting') then
    update public.mod_chat_agents a
    set current_chat_count = greatest(coalesce(a.current_chat_count, 0) - 1, 0)
    where a.id = v_conv.assigned_agent_id;
  end if;

  update public.mod_chat_conversations c
  set status = 'closed',
      closed_at = now(),
      resolved_at = coalesce(c.resolved_at, now()),
      resolution_time_seconds = coalesce(
        c.resolution_time_seconds,
        greatest(0, floor(extract(epoch from (now() - c.created_at))))::integer
      )
  where c.id = v_conv.id
  returning * into v_conv;

  return v_conv;
end
$$;

comment on function public.mod_chat_close_conversation(uuid) is
  'Close a conversation (closed_at; resolved_at if empty); the agent frees its slot if the conversation held one. Idempotent on a closed conversation. Errors: conversation_not_found.';

-- resolved/closed → active (with its agent) or pending (without).
create or replace function public.mod_chat_reopen_conversation(p_conversation_id uuid)
returns public.mod_chat_conversations
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_conv public.mod_chat_conversations;
  v_agent public.mod_chat_agents;
  v_keep_agent boolean := false;
begin
  select * into v_conv
  from public.mod_chat_conversations c
  where c.id = p_conversation_id
  for update;
  if not found then
    raise exception 'conversation not found'
      using errcode = 'PT404', hint = 'livechat:conversation_not_found',
            detail = format('No conversation %s is visible to the current role.', p_conversation_id);
  end if;
  if v_conv.status not in ('resolved', 'closed') then
    raise exception 'conversation is %: only resolved or closed conversations can be reopened', v_conv.status
      using errcode = 'PT409', hint = 'livechat:invalid_state',
            detail = format('Conversation %s has status %s.', v_conv.id, v_conv.status);
  end if;

  if v_conv.assigned_agent_id is not null then
    select * into v_agent
    from public.mod_chat_agents a
    where a.id = v_conv.assigned_agent_id
    for update;
    v_keep_agent := found and v_agent.is_active is true;
    if v_keep_agent then
      if coalesce(v_agent.current_chat_count, 0) >= coalesce(v_agent.max_concurrent_chats, 5) then
        raise exception 'agent at capacity'
          using errcode = 'PT409', hint = 'livechat:agent_at_capacity',
                detail = format('Agent %s already has %s of %s conversations; the conversation stays %s.',
                                v_agent.id, coalesce(v_agent.current_chat_count, 0),
                                coalesce(v_agent.max_concurrent_chats, 5), v_conv.status);
      end if;
      update public.mod_chat_agents a
      set current_chat_count = coalesce(a.current_chat_count, 0) + 1
      where a.id = v_agent.id;
    end if;
  end if;

  update public.mod_chat_conversations c
  set status = case when v_keep_agent then 'active' else 'pending' end,
      assigned_agent_id = case when v_keep_agent then c.assigned_agent_id else null end,
      resolved_at = null,
      closed_at = null
  where c.id = v_conv.id
  returning * into v_conv;

  return v_conv;
end
$$;

comment on function public.mod_chat_reopen_conversation(uuid) is
  'Reopen a resolved or closed conversation: active with its agent (who takes the slot again), or pending and unassigned when it has no active agent. resolved_at and closed_at are cleared. Errors: conversation_not_found, invalid_state, agent_at_capacity.';

-- =============================================================================================
-- Conversations: creation and automatic assignment
-- =============================================================================================

-- Assigns one pending, unassigned conversation to the least-loaded online, active agent with free
-- capacity, following the routing rules (department: only if it auto-assigns, only its agents;
-- no department: any agent of the site). Returns the conversation, assigned or still pending.
create or replace function public.mod_chat_auto_assign_conversation(p_conversation_id uuid)
returns public.mod_chat_conversations
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_conv public.mod_chat_conversations;
  v_agent_id uuid;
begin
  select * into v_conv
  from public.mod_chat_conversations c
  where c.id = p_conversation_id
  for update;
  if not found then
    raise exception 'conversation not found'
      using errcode = 'PT404', hint = 'livechat:conversation_not_found',
            detail = format('No conversation %s is visible to the current role.', p_conversation_id);
  end if;
  if v_conv.status <> 'pending' or v_conv.assigned_agent_id is not null then
    return v_conv;
  end if;
  if v_conv.department_id is not null and not exists (
    select 1 from public.mod_chat_departments d
    where d.id = v_conv.department_id and coalesce(d.auto_assign, true)
  ) then
    return v_conv;
  end if;

  -- FOR UPDATE re-checks the WHERE clause on the newest row version, so the agent returned still
  -- has free capacity once it is locked.
  select a.id into v_agent_id
  from public.mod_chat_agents a
  where a.site_id = v_conv.site_id
    and a.is_active is true
    and a.status = 'online'
    and coalesce(a.current_chat_count, 0) < coalesce(a.max_concurrent_chats, 5)
    and (v_conv.department_id is null or a.department_id = v_conv.department_id)
  order by coalesce(a.current_chat_count, 0), a.id
  limit 1
  for update;
  if v_agent_id is null then
    return v_conv;
  end if;

  update public.mod_chat_agents a
  set current_chat_count = coalesce(a.current_chat_count, 0) + 1
  where a.id = v_agent_id;

  update public.mod_chat_conversations c
  set assigned_agent_id = v_agent_id,
      status = 'active',
      wait_time_seconds = greatest(0, floor(extract(epoch from (now() - c.created_at))))::integer
  where c.id = v_conv.id
  returning * into v_conv;

  return v_conv;
end
$$;

comment on function public.mod_chat_auto_assign_conversation(uuid) is
  'Route one pending, unassigned conversation to the least-loaded online, active agent with free capacity (department rules apply); returns it, assigned or still pending. Errors: conversation_not_found.';

-- For workers: assigns up to p_limit pending, unassigned conversations (oldest first), skipping
-- conversations and agents that another transaction holds, so any number of workers can run at
-- once without double assignment and without waiting on each other. Returns the conversations it
-- assigned.
create or replace function public.mod_chat_auto_assign_pending(
  p_site_id uuid default null,
  p_limit integer default 20
)
returns setof public.mod_chat_conversations
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_conv public.mod_chat_conversations;
  v_agent_id uuid;
  v_assigned integer := 0;
begin
  if p_limit is null or p_limit < 1 then
    raise exception 'invalid input: p_limit must be at least 1'
      using errcode = '22023', hint = 'livechat:invalid_input';
  end if;

  for v_conv in
    select c.*
    from public.mod_chat_conversations c
    where c.status = 'pending'
      and c.assigned_agent_id is null
      and (p_site_id is null or c.site_id = p_site_id)
      and (c.department_id is null or exists (
        select 1 from public.mod_chat_departments d
        where d.id = c.department_id and coalesce(d.auto_assign, true)
      ))
    order by c.created_at, c.id
    for update of c skip locked
  loop
    select a.id into v_agent_id
    from public.mod_chat_agents a
    where a.site_id = v_conv.site_id
      and a.is_active is true
      and a.status = 'online'
      and coalesce(a.current_chat_count, 0) < coalesce(a.max_concurrent_chats, 5)
      and (v_conv.department_id is null or a.department_id = v_conv.department_id)
    order by coalesce(a.current_chat_count, 0), a.id
    limit 1
    for update skip locked;

    if v_agent_id is not null then
      update public.mod_chat_agents a
      set current_chat_count = coalesce(a.current_chat_count, 0) + 1
      where a.id = v_agent_id;

      update public.mod_chat_conversations c
      set assigned_agent_id = v_agent_id,
          status = 'active',
          wait_time_seconds = greatest(0, floor(extract(epoch from (now() - c.created_at))))::integer
      where c.id = v_conv.id
      returning * into v_conv;

      return next v_conv;
      v_assigned := v_assigned + 1;
      exit when v_assigned >= p_limit;
    end if;
  end loop;
  return;
end
$$;

comment on function public.mod_chat_auto_assign_pending(uuid, integer) is
  'Worker sweep: assign up to p_limit pending, unassigned conversations (oldest first, optionally of one site) with FOR UPDATE SKIP LOCKED; returns those assigned.';

-- createConversation: insert as pending / normal, then automatic assignment.
create or replace function public.mod_chat_create_conversation(
  p_site_id uuid,
  p_visitor_id uuid,
  p_channel text default 'widget',
  p_department_id uuid default null,
  p_subject text default null,
  p_auto_assign boolean default true
)
returns public.mod_chat_conversations
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_conv public.mod_chat_conversations;
begin
  if p_site_id is null or p_visitor_id is null then
    raise exception 'invalid input: p_site_id and p_visitor_id are required'
      using errcode = '22023', hint = 'livechat:invalid_input';
  end if;
  if coalesce(p_channel, 'widget') not in ('widget', 'whatsapp', 'api') then
    raise exception 'invalid input: channel must be widget, whatsapp or api'
      using errcode = '22023', hint = 'livechat:invalid_input',
            detail = format('Got channel %s.', p_channel);
  end if;
  if not exists (
    select 1 from public.mod_chat_visitors v where v.id = p_visitor_id and v.site_id = p_site_id
  ) then
    raise exception 'visitor not found'
      using errcode = 'PT404', hint = 'livechat:visitor_not_found',
            detail = format('No visitor %s of site %s is visible to the current role.', p_visitor_id, p_site_id);
  end if;
  if p_department_id is not null and not exists (
    select 1 from public.mod_chat_departments d where d.id = p_department_id and d.site_id = p_site_id
  ) then
    raise exception 'department not found'
      using errcode = 'PT404', hint = 'livechat:department_not_found',
            detail = format('No department %s of site %s is visible to the current role.', p_department_id, p_site_id);
  end if;

  insert into public.mod_chat_conversations
    (site_id, visitor_id, department_id, status, priority, channel, subject)
  values
    (p_site_id, p_visitor_id, p_department_id, 'pending', 'normal', coalesce(p_channel, 'widget'), p_subject)
  returning * into v_conv;

  if coalesce(p_auto_assign, true) then
    v_conv := public.mod_chat_auto_assign_conversation(v_conv.id);
  end if;
  return v_conv;
end
$$;

comment on function public.mod_chat_create_conversation(uuid, uuid, text, uuid, text, boolean) is
  'Create a pending, normal-priority conversation and (unless p_auto_assign is false) route it with mod_chat_auto_assign_conversation. Errors: invalid_input, visitor_not_found, department_not_found.';

-- =============================================================================================
-- Messages and read state
-- =============================================================================================

create or replace function public.mod_chat_send_message(
  p_conversation_id uuid,
  p_sender_type text,
  p_content text default null,
  p_content_type text default 'text',
  p_sender_id text default null,
  p_sender_name text default null,
  p_sender_avatar text default null,
  p_is_internal_note boolean default false,
  p_file_url text default null,
  p_file_name text default null,
  p_file_size integer default null,
  p_file_mime_type text default null,
  p_site_id uuid default null
)
returns public.mod_chat_messages
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_conv public.mod_chat_conversations;
  v_msg public.mod_chat_messages;
  v_type text := coalesce(p_content_type, 'text');
  v_note boolean := coalesce(p_is_internal_note, false) or coalesce(p_content_type, 'text') = 'note';
begin
  if p_sender_type is null or p_sender_type not in ('visitor', 'agent', 'system', 'ai') then
    raise exception 'invalid input: sender type must be visitor, agent, system or ai'
      using errcode = '22023', hint = 'livechat:invalid_input',
            detail = format('Got sender type %s.', coalesce(p_sender_type, 'null'));
  end if;
  if v_type not in ('text', 'image', 'file', 'audio', 'video', 'location', 'system', 'note', 'whatsapp_template') then
    raise exception 'invalid input: unknown content type'
      using errcode = '22023', hint = 'livechat:invalid_input',
            detail = format('Got content type %s.', v_type);
  end if;
  if v_type in ('text', 'note') and nullif(btrim(p_content), '') is null then
    raise exception 'invalid input: message content is empty'
      using errcode = '22023', hint = 'livechat:invalid_input',
            detail = 'A text message or note needs non-blank content.';
  end if;
  if v_type in ('image', 'file', 'audio', 'video') and nullif(btrim(p_file_url), '') is null then
    raise exception 'invalid input: a % message needs a file URL', v_type
      using errcode = '22023', hint = 'livechat:invalid_input';
  end if;
  if p_file_size is not null and p_file_size < 0 then
    raise exception 'invalid input: file size is negative'
      using errcode = '22023', hint = 'livechat:invalid_input';
  end if;

  select * into v_conv
  from public.mod_chat_conversations c
  where c.id = p_conversation_id
    and (p_site_id is null or c.site_id = p_site_id)
  for update;
  if not found then
    raise exception 'conversation not found'
      using errcode = 'PT404', hint = 'livechat:conversation_not_found',
            detail = format('No conversation %s is visible to the current role.', p_conversation_id);
  end if;

  insert into public.mod_chat_messages (
    conversation_id, site_id, sender_type, sender_id, sender_name, sender_avatar, content,
    content_type, file_url, file_name, file_size, file_mime_type, is_internal_note
  )
  values (
    v_conv.id, v_conv.site_id, p_sender_type, p_sender_id, p_sender_name, p_sender_avatar, p_content,
    v_type, p_file_url, p_file_name, p_file_size, p_file_mime_type, v_note
  )
  returning * into v_msg;

  if not v_note and p_sender_type in ('agent', 'ai') then
    update public.mod_chat_conversations c
    set first_response_time_seconds = coalesce(
          c.first_response_time_seconds,
          greatest(0, floor(extract(epoch from (v_msg.created_at - c.created_at))))::integer
        ),
        wait_time_seconds = case
          when c.status = 'pending' and p_sender_type = 'agent'
            then coalesce(c.wait_time_seconds,
                          greatest(0, floor(extract(epoch from (now() - c.created_at))))::integer)
          else c.wait_time_seconds
        end,
        status = case
          when c.status = 'pending' and p_sender_type = 'agent' then 'active'
          else c.status
        end
    where c.id = v_conv.id;
  end if;

  return v_msg;
end
$$;

comment on function public.mod_chat_send_message(uuid, text, text, text, text, text, text, boolean, text, text, integer, text, uuid) is
  'Insert a message. content_type note implies an internal note; blank text is refused; the first visible agent or ai message sets first_response_time_seconds; a visible agent message makes a pending conversation active (no assignment, no counter change). Errors: invalid_input, conversation_not_found.';

create or replace function public.mod_chat_mark_conversation_read(
  p_conversation_id uuid,
  p_role text
)
returns public.mod_chat_conversations
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_conv public.mod_chat_conversations;
begin
  if p_role is null or p_role not in ('agent', 'visitor') then
    raise exception 'invalid input: role must be agent or visitor'
      using errcode = '22023', hint = 'livechat:invalid_input',
            detail = format('Got role %s.', coalesce(p_role, 'null'));
  end if;

  select * into v_conv
  from public.mod_chat_conversations c
  where c.id = p_conversation_id
  for update;
  if not found then
    raise exception 'conversation not found'
      using errcode = 'PT404', hint = 'livechat:conversation_not_found',
            detail = format('No conversation %s is visible to the current role.', p_conversation_id);
  end if;

  if p_role = 'agent' then
    update public.mod_chat_messages m
    set status = 'read'
    where m.conversation_id = v_conv.id
      and m.sender_type = 'visitor'
      and m.status is distinct from 'read';
    update public.mod_chat_conversations c
    set unread_agent_count = 0
    where c.id = v_conv.id
    returning * into v_conv;
  else
    -- The visitor never sees internal notes, so they are not marked read for them.
    update public.mod_chat_messages m
    set status = 'read'
    where m.conversation_id = v_conv.id
      and m.sender_type in ('agent', 'ai')
      and m.is_internal_note is not true
      and m.status is distinct from 'read';
    update public.mod_chat_conversations c
    set unread_visitor_count = 0
    where c.id = v_conv.id
    returning * into v_conv;
  end if;

  return v_conv;
end
$$;

comment on function public.mod_chat_mark_conversation_read(uuid, text) is
  'Zero the unread counter of one side (agent or visitor) and mark the other side''s messages read. Errors: invalid_input, conversation_not_found.';

-- =============================================================================================
-- Agents
-- =============================================================================================

-- Soft delete: is_active false, status offline, count 0; its open conversations become pending and
-- unassigned, in the same transaction.
create or replace function public.mod_chat_delete_agent(p_agent_id uuid)
returns public.mod_chat_agents
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_agent public.mod_chat_agents;
  v_locked uuid[];
  v_attempt integer := 0;
begin
  loop
    v_attempt := v_attempt + 1;
    begin
      -- Conversations first (the global lock order), then the agent.
      select coalesce(array_agg(l.id), '{}') into v_locked
      from (
        select c.id
        from public.mod_chat_conversations c
        where c.assigned_agent_id = p_agent_id
          and c.status in ('pending', 'active', 'waiting')
        order by c.id
        for update
      ) l;

      select * into v_agent
      from public.mod_chat_agents a
      where a.id = p_agent_id
      for update;
      if not found then
        raise exception 'agent not found'
          using errcode = 'PT404', hint = 'livechat:agent_not_found',
                detail = format('No agent %s is visible to the current role.', p_agent_id);
      end if;

      -- While we hold the agent nobody can assign to it; one assignment may have committed
      -- between the two steps above. Then release everything (roll back to the block's
      -- savepoint) and start again, rather than wait for a conversation while holding the agent.
      if exists (
        select 1
        from public.mod_chat_conversations c
        where c.assigned_agent_id = p_agent_id
          and c.status in ('pending', 'active', 'waiting')
          and c.id <> all (v_locked)
      ) then
        raise exception 'retry' using errcode = 'LCRTY';
      end if;

      update public.mod_chat_conversations c
      set assigned_agent_id = null,
          status = 'pending'
      where c.id = any (v_locked);

      update public.mod_chat_agents a
      set is_active = false,
          status = 'offline',
          current_chat_count = 0
      where a.id = p_agent_id
      returning * into v_agent;

      return v_agent;
    exception
      when sqlstate 'LCRTY' then
        if v_attempt >= 50 then
          raise exception 'agent is too busy to delete now; try again'
            using errcode = '40001', hint = 'livechat:retry';
        end if;
    end;
  end loop;
end
$$;

comment on function public.mod_chat_delete_agent(uuid) is
  'Soft-delete an agent (is_active false, status offline, count 0); its pending/active/waiting conversations become pending and unassigned. Errors: agent_not_found.';

-- The least-loaded online, active agent with free capacity (in the department when given): an
-- array of one agent, or empty when nobody is free.
create or replace function public.mod_chat_get_available_agent(
  p_site_id uuid,
  p_department_id uuid default null
)
returns setof public.mod_chat_agents
language sql
stable
security invoker
set search_path = ''
as $$
  select a.*
  from public.mod_chat_agents a
  where a.site_id = p_site_id
    and a.is_active is true
    and a.status = 'online'
    and coalesce(a.current_chat_count, 0) < coalesce(a.max_concurrent_chats, 5)
    and (p_department_id is null or a.department_id = p_department_id)
  order by coalesce(a.current_chat_count, 0), a.id
  limit 1
$$;

comment on function public.mod_chat_get_available_agent(uuid, uuid) is
  'The least-loaded online, active agent with free capacity (optionally of one department): an array of 0 or 1 agents.';

-- Per active agent: chats in the range (created_at, bounds inclusive), resolved ones, averages,
-- current and maximum load. One request instead of 4 × N.
create or replace function public.mod_chat_agent_performance(
  p_site_id uuid,
  p_date_from timestamptz default null,
  p_date_to timestamptz default null
)
returns table (
  agent_id uuid,
  display_name text,
  avatar_url text,
  status text,
  department_id uuid,
  total_chats integer,
  resolved_chats integer,
  avg_first_response_seconds integer,
  avg_rating numeric,
  rating_count integer,
  current_load integer,
  max_load integer
)
language sql
stable
security invoker
set search_path = ''
as $$
  select
    a.id,
    a.display_name,
    a.avatar_url,
    a.status,
    a.department_id,
    coalesce(s.total_chats, 0)::integer,
    coalesce(s.resolved_chats, 0)::integer,
    coalesce(s.avg_first_response, 0)::integer,
    coalesce(round(s.avg_rating, 2), 0),
    coalesce(s.rating_count, 0)::integer,
    coalesce(a.current_chat_count, 0),
    coalesce(a.max_concurrent_chats, 5)
  from public.mod_chat_agents a
  left join lateral (
    select
      count(*) as total_chats,
      count(*) filter (where c.status in ('resolved', 'closed')) as resolved_chats,
      round(avg(c.first_response_time_seconds)) as avg_first_response,
      avg(c.rating) as avg_rating,
      count(c.rating) as rating_count
    from public.mod_chat_conversations c
    where c.assigned_agent_id = a.id
      and c.site_id = p_site_id
      and (p_date_from is null or c.created_at >= p_date_from)
      and (p_date_to is null or c.created_at <= p_date_to)
  ) s on true
  where a.site_id = p_site_id
    and a.is_active is true
  order by a.display_name, a.id
$$;

comment on function public.mod_chat_agent_performance(uuid, timestamptz, timestamptz) is
  'Per active agent of the site: total and resolved chats created in the range, average first response, average rating and count, current and maximum load.';

-- =============================================================================================
-- Departments (the per-site advisory lock serialises create / delete / set default)
-- =============================================================================================

create or replace function public.mod_chat_create_department(
  p_site_id uuid,
  p_name text,
  p_description text default null,
  p_auto_assign boolean default true,
  p_max_concurrent_chats integer default 5,
  p_sort_order integer default null,
  p_is_active boolean default true
)
returns public.mod_chat_departments
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_dept public.mod_chat_departments;
  v_first boolean;
begin
  if p_site_id is null or nullif(btrim(p_name), '') is null then
    raise exception 'invalid input: a site and a non-blank name are required'
      using errcode = '22023', hint = 'livechat:invalid_input';
  end if;
  if p_max_concurrent_chats is not null and p_max_concurrent_chats < 0 then
    raise exception 'invalid input: max_concurrent_chats is negative'
      using errcode = '22023', hint = 'livechat:invalid_input';
  end if;

  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended('mod_chat_departments:' || p_site_id::text, 0)
  );

  v_first := not exists (select 1 from public.mod_chat_departments d where d.site_id = p_site_id);

  begin
    insert into public.mod_chat_departments
      (site_id, name, description, is_default, is_active, auto_assign, max_concurrent_chats, sort_order)
    values (
      p_site_id, btrim(p_name), p_description, v_first, coalesce(p_is_active, true),
      coalesce(p_auto_assign, true), coalesce(p_max_concurrent_chats, 5),
      coalesce(p_sort_order, (
        select coalesce(max(d.sort_order), -1) + 1
        from public.mod_chat_departments d
        where d.site_id = p_site_id
      ))
    )
    returning * into v_dept;
  exception
    when foreign_key_violation or insufficient_privilege then
      raise exception 'site not found'
        using errcode = 'PT404', hint = 'livechat:site_not_found',
              detail = format('No site %s is visible to the current role.', p_site_id);
  end;

  return v_dept;
end
$$;

comment on function public.mod_chat_create_department(uuid, text, text, boolean, integer, integer, boolean) is
  'Create a department; the site''s first one becomes the default. sort_order defaults to after the last. Errors: invalid_input, site_not_found.';

create or replace function public.mod_chat_delete_department(p_department_id uuid)
returns void
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_site_id uuid;
  v_dept public.mod_chat_departments;
  v_default_id uuid;
begin
  select d.site_id into v_site_id
  from public.mod_chat_departments d
  where d.id = p_department_id;
  if v_site_id is not null then
    perform pg_catalog.pg_advisory_xact_lock(
      pg_catalog.hashtextextended('mod_chat_departments:' || v_site_id::text, 0)
    );
    select * into v_dept
    from public.mod_chat_departments d
    where d.id = p_department_id
    for update;
  end if;
  if v_dept.id is null then
    raise exception 'department not found'
      using errcode = 'PT404', hint = 'livechat:department_not_found',
            detail = format('No department %s is visible to the current role.', p_department_id);
  end if;
  if v_dept.is_default is true then
    raise exception 'cannot delete the default department'
      using errcode = 'PT409', hint = 'livechat:default_department',
            detail = format('Department %s is the default of site %s; make another department the default first.',
                            v_dept.id, v_dept.site_id);
  end if;

  select d.id into v_default_id
  from public.mod_chat_departments d
  where d.site_id = v_dept.site_id and d.is_default is true
  order by d.id
  limit 1;

  -- Agents in id order, then move them.
  perform 1
  from public.mod_chat_agents a
  where a.department_id = v_dept.id
  order by a.id
  for update;
  update public.mod_chat_agents a
  set department_id = v_default_id
  where a.department_id = v_dept.id;

  delete from public.mod_chat_departments d where d.id = v_dept.id;
end
$$;

comment on function public.mod_chat_delete_department(uuid) is
  'Delete a department after moving its agents to the site''s default department; refused for the default department. Errors: department_not_found, default_department.';

create or replace function public.mod_chat_set_default_department(
  p_site_id uuid,
  p_department_id uuid
)
returns public.mod_chat_departments
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_dept public.mod_chat_departments;
begin
  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended('mod_chat_departments:' || p_site_id::text, 0)
  );
  perform 1
  from public.mod_chat_departments d
  where d.site_id = p_site_id
  order by d.id
  for update;

  if not exists (
    select 1 from public.mod_chat_departments d where d.id = p_department_id and d.site_id = p_site_id
  ) then
    raise exception 'department not found'
      using errcode = 'PT404', hint = 'livechat:department_not_found',
            detail = format('No department %s of site %s is visible to the current role.', p_department_id, p_site_id);
  end if;

  update public.mod_chat_departments d
  set is_default = (d.id = p_department_id)
  where d.site_id = p_site_id
    and d.is_default is distinct from (d.id = p_department_id);

  select * into v_dept from public.mod_chat_departments d where d.id = p_department_id;
  return v_dept;
end
$$;

comment on function public.mod_chat_set_default_department(uuid, uuid) is
  'Make one department the site''s only default. Errors: department_not_found.';

-- =============================================================================================
-- Canned responses and knowledge base
-- =============================================================================================

create or replace function public.mod_chat_increment_canned_response_usage(p_id uuid)
returns public.mod_chat_canned_responses
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_row public.mod_chat_canned_responses;
begin
  update public.mod_chat_canned_responses r
  set usage_count = coalesce(r.usage_count, 0) + 1,
      last_used_at = now()
  where r.id = p_id
  returning * into v_row;
  if not found then
    raise exception 'canned response not found'
      using errcode = 'PT404', hint = 'livechat:canned_response_not_found',
            detail = format('No canned response %s is visible to the current role.', p_id);
  end if;
  return v_row;
end
$$;

comment on function public.mod_chat_increment_canned_response_usage(uuid) is
  'usage_count + 1 and last_used_at = now(), atomically. Errors: canned_response_not_found.';

-- User text is matched literally (strpos, never LIKE): no character has a special meaning. A null
-- or empty query matches every active row.
create or replace function public.mod_chat_search_canned_responses(p_site_id uuid, p_query text)
returns setof public.mod_chat_canned_responses
language sql
stable
security invoker
set search_path = ''
as $$
  select r.*
  from public.mod_chat_canned_responses r
  where r.site_id = p_site_id
    and r.is_active is true
    and (
      coalesce(p_query, '') = ''
      or strpos(lower(r.title), lower(p_query)) > 0
      or strpos(lower(r.content), lower(p_query)) > 0
      or strpos(lower(coalesce(r.shortcut, '')), lower(p_query)) > 0
    )
  order by r.usage_count desc nulls last, r.id
$$;

comment on function public.mod_chat_search_canned_responses(uuid, text) is
  'Active canned responses whose title, content or shortcut contains the query (case-insensitive, literal), by usage_count desc.';

create or replace function public.mod_chat_search_knowledge_base(p_site_id uuid, p_query text)
returns setof public.mod_chat_knowledge_base
language sql
stable
security invoker
set search_path = ''
as $$
  select k.*
  from public.mod_chat_knowledge_base k
  where k.site_id = p_site_id
    and k.is_active is true
    and (
      coalesce(p_query, '') = ''
      or strpos(lower(k.title), lower(p_query)) > 0
      or strpos(lower(k.content), lower(p_query)) > 0
    )
  order by k.usage_count desc nulls last, k.id
$$;

comment on function public.mod_chat_search_knowledge_base(uuid, text) is
  'Active knowledge-base articles whose title or content contains the query (case-insensitive, literal), by usage_count desc.';

-- =============================================================================================
-- Conversation list / search and statistics
-- =============================================================================================

-- getConversations in one call. Filters left null (or 'all') do not filter. p_assigned_agent_id is
-- an agent id or 'unassigned'. p_search is a case-insensitive literal substring of the last
-- message, the visitor's name or the visitor's e-mail. Sorted last_message_at desc nulls last, then
-- id. total_count (on every row) is the number of matches before limit/offset; a page past the
-- end has no rows.
create or replace function public.mod_chat_list_conversations(
  p_site_id uuid,
  p_status text default null,
  p_channel text default null,
  p_assigned_agent_id text default null,
  p_department_id uuid default null,
  p_priority text default null,
  p_search text default null,
  p_date_from timestamptz default null,
  p_date_to timestamptz default null,
  p_limit integer default 20,
  p_offset integer default 0
)
returns table (
  id uuid,
  site_id uuid,
  visitor_id uuid,
  assigned_agent_id uuid,
  department_id uuid,
  status text,
  priority text,
  channel text,
  subject text,
  last_message_text text,
  last_message_at timestamptz,
  last_message_by text,
  message_count integer,
  unread_agent_count integer,
  unread_visitor_count integer,
  first_response_time_seconds integer,
  resolution_time_seconds integer,
  wait_time_seconds integer,
  rating integer,
  rating_comment text,
  rated_at timestamptz,
  tags text[],
  internal_notes text,
  metadata jsonb,
  whatsapp_conversation_id text,
  whatsapp_window_expires_at timestamptz,
  created_at timestamptz,
  updated_at timestamptz,
  resolved_at timestamptz,
  closed_at timestamptz,
  visitor_name text,
  visitor_email text,
  visitor_avatar_url text,
  agent_display_name text,
  agent_avatar_url text,
  department_name text,
  total_count integer
)
language plpgsql
stable
security invoker
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_status text := nullif(nullif(p_status, ''), 'all');
  v_channel text := nullif(nullif(p_channel, ''), 'all');
  v_priority text := nullif(nullif(p_priority, ''), 'all');
  v_agent text := nullif(nullif(p_assigned_agent_id, ''), 'all');
  v_agent_id uuid;
  v_search text := lower(nullif(p_search, ''));
begin
  if v_status is not null
     and v_status not in ('pending', 'active', 'waiting', 'resolved', 'closed', 'missed') then
    raise exception 'invalid input: unknown status filter'
      using errcode = '22023', hint = 'livechat:invalid_input', detail = format('Got %s.', v_status);
  end if;
  if v_channel is not null and v_channel not in ('widget', 'whatsapp', 'api') then
    raise exception 'invalid input: unknown channel filter'
      using errcode = '22023', hint = 'livechat:invalid_input', detail = format('Got %s.', v_channel);
  end if;
  if v_priority is not null and v_priority not in ('low', 'normal', 'high', 'urgent') then
    raise exception 'invalid input: unknown priority filter'
      using errcode = '22023', hint = 'livechat:invalid_input', detail = format('Got %s.', v_priority);
  end if;
  if v_agent is not null and v_agent <> 'unassigned' then
    if v_agent !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      raise exception 'invalid input: assigned agent must be an agent id or "unassigned"'
        using errcode = '22023', hint = 'livechat:invalid_input', detail = format('Got %s.', v_agent);
    end if;
    v_agent_id := v_agent::uuid;
  end if;
  if p_limit is null or p_limit < 0 or p_offset is null or p_offset < 0 then
    raise exception 'invalid input: limit and offset must be zero or more'
      using errcode = '22023', hint = 'livechat:invalid_input';
  end if;

  return query
  select
    c.id, c.site_id, c.visitor_id, c.assigned_agent_id, c.department_id, c.status, c.priority,
    c.channel, c.subject, c.last_message_text, c.last_message_at, c.last_message_by,
    c.message_count, c.unread_agent_count, c.unread_visitor_count, c.first_response_time_seconds,
    c.resolution_time_seconds, c.wait_time_seconds, c.rating, c.rating_comment, c.rated_at, c.tags,
    c.internal_notes, c.metadata, c.whatsapp_conversation_id, c.whatsapp_window_expires_at,
    c.created_at, c.updated_at, c.resolved_at, c.closed_at,
    v.name, v.email, v.avatar_url, a.display_name, a.avatar_url, d.name,
    (count(*) over ())::integer
  from public.mod_chat_conversations c
  left join public.mod_chat_visitors v on v.id = c.visitor_id
  left join public.mod_chat_agents a on a.id = c.assigned_agent_id
  left join public.mod_chat_departments d on d.id = c.department_id
  where c.site_id = p_site_id
    and (v_status is null or c.status = v_status)
    and (v_channel is null or c.channel = v_channel)
    and (v_priority is null or c.priority = v_priority)
    and (v_agent is null
         or (v_agent = 'unassigned' and c.assigned_agent_id is null)
         or c.assigned_agent_id = v_agent_id)
    and (p_department_id is null or c.department_id = p_department_id)
    and (p_date_from is null or c.created_at >= p_date_from)
    and (p_date_to is null or c.created_at <= p_date_to)
    and (v_search is null
         or strpos(lower(coalesce(c.last_message_text, '')), v_search) > 0
         or strpos(lower(coalesce(v.name, '')), v_search) > 0
         or strpos(lower(coalesce(v.email, '')), v_search) > 0)
  order by c.last_message_at desc nulls last, c.id
  limit p_limit
  offset p_offset;
end
$$;

comment on function public.mod_chat_list_conversations(uuid, text, text, text, uuid, text, text, timestamptz, timestamptz, integer, integer) is
  'getConversations: filtered, literal-search, paginated list with visitor, agent and department fields and total_count. Errors: invalid_input.';

create or replace function public.mod_chat_conversation_stats(
  p_site_id uuid,
  p_time_zone text default 'UTC',
  out active_conversations integer,
  out pending_conversations integer,
  out online_agents integer,
  out today_conversations integer,
  out today_resolved integer,
  out today_missed integer,
  out avg_first_response_seconds integer,
  out satisfaction_score numeric,
  out today_start timestamptz,
  out today_end timestamptz
)
language plpgsql
stable
security invoker
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_tz text := coalesce(nullif(p_time_zone, ''), 'UTC');
  v_local_day timestamp;
begin
  begin
    v_local_day := date_trunc('day', now() at time zone v_tz);
  exception
    when invalid_parameter_value then
      raise exception 'invalid input: unknown time zone'
        using errcode = '22023', hint = 'livechat:invalid_input',
              detail = format('Got time zone %s; use an IANA name such as Africa/Lusaka.', v_tz);
  end;
  today_start := v_local_day at time zone v_tz;
  today_end := (v_local_day + interval '1 day') at time zone v_tz;

  select
    count(*) filter (where c.status = 'active'),
    count(*) filter (where c.status = 'pending'),
    count(*) filter (where c.created_at >= today_start and c.created_at < today_end),
    count(*) filter (where c.resolved_at >= today_start and c.resolved_at < today_end),
    count(*) filter (where c.status = 'missed' and c.created_at >= today_start and c.created_at < today_end),
    coalesce(round(avg(c.first_response_time_seconds)
                   filter (where c.created_at >= today_start and c.created_at < today_end)), 0),
    coalesce(round(avg(c.rating)
                   filter (where c.created_at >= today_start and c.created_at < today_end) * 20, 2), 0)
  into active_conversations, pending_conversations, today_conversations, today_resolved,
       today_missed, avg_first_response_seconds, satisfaction_score
  from public.mod_chat_conversations c
  where c.site_id = p_site_id;

  select count(*) into online_agents
  from public.mod_chat_agents a
  where a.site_id = p_site_id
    and a.is_active is true
    and a.status in ('online', 'away', 'busy');
end
$$;

comment on function public.mod_chat_conversation_stats(uuid, text) is
  'getConversationStats in one call; "today" is the current day in p_time_zone (IANA, default UTC). Errors: invalid_input (time zone).';

-- =============================================================================================
-- Widget settings and visitors
-- =============================================================================================

-- The site's settings row, created with the column defaults on first use (concurrent first calls
-- create one row).
create or replace function public.mod_chat_get_widget_settings(p_site_id uuid)
returns public.mod_chat_widget_settings
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_row public.mod_chat_widget_settings;
begin
  select * into v_row from public.mod_chat_widget_settings w where w.site_id = p_site_id;
  if found then
    return v_row;
  end if;
  if p_site_id is not null then
    begin
      insert into public.mod_chat_widget_settings (site_id) values (p_site_id)
      on conflict (site_id) do nothing;
    exception
      when foreign_key_violation or insufficient_privilege then
        null; -- reported as "site not found" below
    end;
    select * into v_row from public.mod_chat_widget_settings w where w.site_id = p_site_id;
  end if;
  if v_row.id is null then
    raise exception 'site not found'
      using errcode = 'PT404', hint = 'livechat:site_not_found',
            detail = format('No site %s is visible to the current role.', p_site_id);
  end if;
  return v_row;
end
$$;

comment on function public.mod_chat_get_widget_settings(uuid) is
  'The site''s widget settings, created with defaults when missing. Errors: site_not_found.';

-- For the anonymous widget: only the public fields (SECURITY DEFINER, see the header).
create or replace function public.mod_chat_get_public_widget_settings(
  p_site_id uuid,
  out primary_color text,
  out text_color text,
  out "position" text,
  out launcher_icon text,
  out launcher_size integer,
  out border_radius integer,
  out z_index integer,
  out company_name text,
  out welcome_message text,
  out away_message text,
  out offline_message text,
  out logo_url text,
  out pre_chat_enabled boolean,
  out pre_chat_name_required boolean,
  out pre_chat_email_required boolean,
  out pre_chat_phone_enabled boolean,
  out pre_chat_phone_required boolean,
  out pre_chat_message_required boolean,
  out pre_chat_department_selector boolean,
  out business_hours_enabled boolean,
  out business_hours jsonb,
  out timezone text,
  out auto_open_delay_seconds integer,
  out show_agent_avatar boolean,
  out show_agent_name boolean,
  out show_typing_indicator boolean,
  out enable_file_uploads boolean,
  out enable_emoji boolean,
  out enable_sound_notifications boolean,
  out enable_satisfaction_rating boolean,
  out language text,
  out custom_translations jsonb,
  out whatsapp_enabled boolean,
  out whatsapp_phone_number text,
  out allowed_domains text[],
  out max_file_size_mb integer,
  out allowed_file_types text[]
)
language sql
volatile
security definer
set search_path = ''
as $$
  select
    w.primary_color, w.text_color, w.position, w.launcher_icon, w.launcher_size, w.border_radius,
    w.z_index, w.company_name, w.welcome_message, w.away_message, w.offline_message, w.logo_url,
    w.pre_chat_enabled, w.pre_chat_name_required, w.pre_chat_email_required,
    w.pre_chat_phone_enabled, w.pre_chat_phone_required, w.pre_chat_message_required,
    w.pre_chat_department_selector, w.business_hours_enabled, w.business_hours, w.timezone,
    w.auto_open_delay_seconds, w.show_agent_avatar, w.show_agent_name, w.show_typing_indicator,
    w.enable_file_uploads, w.enable_emoji, w.enable_sound_notifications,
    w.enable_satisfaction_rating, w.language, w.custom_translations, w.whatsapp_enabled,
    w.whatsapp_phone_number, w.allowed_domains, w.max_file_size_mb, w.allowed_file_types
  from public.mod_chat_get_widget_settings(p_site_id) w
$$;

comment on function public.mod_chat_get_public_widget_settings(uuid) is
  'getPublicWidgetSettings for the anon widget: appearance, branding, pre-chat form, business hours, behaviour, language, WhatsApp number, allowed domains, file limits; no ids. Creates the default row when missing. Errors: site_not_found.';

-- createOrUpdateVisitor. Match: same site and e-mail (case-insensitive), else same site and
-- whatsapp_phone; update last_seen_at, total_visits + 1 and the given (non-null) fields; else
-- insert. Concurrent calls for one e-mail / phone are serialised by advisory locks, so they create
-- one visitor.
create or replace function public.mod_chat_create_or_update_visitor(
  p_site_id uuid,
  p_channel text default null,
  p_name text default null,
  p_email text default null,
  p_phone text default null,
  p_browser text default null,
  p_os text default null,
  p_device text default null,
  p_ip_address inet default null,
  p_country text default null,
  p_city text default null,
  p_current_page_url text default null,
  p_current_page_title text default null,
  p_referrer_url text default null,
  p_landing_page_url text default null,
  p_whatsapp_phone text default null,
  p_external_id text default null
)
returns public.mod_chat_visitors
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_email text := nullif(btrim(p_email), '');
  v_wa text := nullif(btrim(p_whatsapp_phone), '');
  v_key bigint;
  v_row public.mod_chat_visitors;
begin
  if p_site_id is null then
    raise exception 'invalid input: p_site_id is required'
      using errcode = '22023', hint = 'livechat:invalid_input';
  end if;
  if p_channel is not null and p_channel not in ('widget', 'whatsapp', 'api') then
    raise exception 'invalid input: channel must be widget, whatsapp or api'
      using errcode = '22023', hint = 'livechat:invalid_input', detail = format('Got %s.', p_channel);
  end if;

  -- Advisory locks on every identity given, in ascending key order (no deadlock between calls
  -- that give different subsets).
  for v_key in
    select k
    from unnest(array[
      case when v_email is not null then pg_catalog.hashtextextended(
        'mod_chat_visitors:' || p_site_id::text || ':email:' || lower(v_email), 0) end,
      case when v_wa is not null then pg_catalog.hashtextextended(
        'mod_chat_visitors:' || p_site_id::text || ':whatsapp:' || v_wa, 0) end
    ]) as t(k)
    where k is not null
    order by k
  loop
    perform pg_catalog.pg_advisory_xact_lock(v_key);
  end loop;

  if v_email is not null then
    select * into v_row
    from public.mod_chat_visitors v
    where v.site_id = p_site_id and lower(v.email) = lower(v_email)
    order by v.created_at, v.id
    limit 1
    for update;
  end if;
  if v_row.id is null and v_wa is not null then
    select * into v_row
    from public.mod_chat_visitors v
    where v.site_id = p_site_id and v.whatsapp_phone = v_wa
    order by v.created_at, v.id
    limit 1
    for update;
  end if;

  if v_row.id is not null then
    update public.mod_chat_visitors v
    set last_seen_at = now(),
        total_visits = coalesce(v.total_visits, 0) + 1,
        channel = coalesce(p_channel, v.channel),
        name = coalesce(p_name, v.name),
        email = coalesce(v_email, v.email),
        phone = coalesce(p_phone, v.phone),
        browser = coalesce(p_browser, v.browser),
        os = coalesce(p_os, v.os),
        device = coalesce(p_device, v.device),
        ip_address = coalesce(p_ip_address, v.ip_address),
        country = coalesce(p_country, v.country),
        city = coalesce(p_city, v.city),
        current_page_url = coalesce(p_current_page_url, v.current_page_url),
        current_page_title = coalesce(p_current_page_title, v.current_page_title),
        referrer_url = coalesce(p_referrer_url, v.referrer_url),
        landing_page_url = coalesce(p_landing_page_url, v.landing_page_url),
        whatsapp_phone = coalesce(v_wa, v.whatsapp_phone),
        external_id = coalesce(p_external_id, v.external_id)
    where v.id = v_row.id
    returning * into v_row;
    return v_row;
  end if;

  begin
    insert into public.mod_chat_visitors (
      site_id, channel, name, email, phone, browser, os, device, ip_address, country, city,
      current_page_url, current_page_title, referrer_url, landing_page_url, whatsapp_phone,
      external_id
    )
    values (
      p_site_id, coalesce(p_channel, 'widget'), p_name, v_email, p_phone, p_browser, p_os, p_device,
      p_ip_address, p_country, p_city, p_current_page_url, p_current_page_title, p_referrer_url,
      p_landing_page_url, v_wa, p_external_id
    )
    returning * into v_row;
  exception
    when foreign_key_violation or insufficient_privilege then
      raise exception 'site not found'
        using errcode = 'PT404', hint = 'livechat:site_not_found',
              detail = format('No site %s is visible to the current role.', p_site_id);
  end;
  return v_row;
end
$$;

comment on function public.mod_chat_create_or_update_visitor(uuid, text, text, text, text, text, text, text, inet, text, text, text, text, text, text, text, text) is
  'createOrUpdateVisitor: match by site + e-mail (case-insensitive), else site + whatsapp_phone, and update (last_seen_at, total_visits + 1, given fields); else insert. One visitor under concurrent calls. Errors: invalid_input, site_not_found.';

-- For the anonymous widget (SECURITY DEFINER, see the header): the same, returning only the id.
create or replace function public.mod_chat_widget_identify_visitor(
  p_site_id uuid,
  p_channel text default null,
  p_name text default null,
  p_email text default null,
  p_phone text default null,
  p_browser text default null,
  p_os text default null,
  p_device text default null,
  p_ip_address inet default null,
  p_country text default null,
  p_city text default null,
  p_current_page_url text default null,
  p_current_page_title text default null,
  p_referrer_url text default null,
  p_landing_page_url text default null,
  p_whatsapp_phone text default null,
  p_external_id text default null
)
returns uuid
language sql
volatile
security definer
set search_path = ''
as $$
  select v.id
  from public.mod_chat_create_or_update_visitor(
    p_site_id => p_site_id, p_channel => p_channel, p_name => p_name, p_email => p_email,
    p_phone => p_phone, p_browser => p_browser, p_os => p_os, p_device => p_device,
    p_ip_address => p_ip_address, p_country => p_country, p_city => p_city,
    p_current_page_url => p_current_page_url, p_current_page_title => p_current_page_title,
    p_referrer_url => p_referrer_url, p_landing_page_url => p_landing_page_url,
    p_whatsapp_phone => p_whatsapp_phone, p_external_id => p_external_id
  ) v
$$;

comment on function public.mod_chat_widget_identify_visitor(uuid, text, text, text, text, text, text, text, inet, text, text, text, text, text, text, text, text) is
  'createOrUpdateVisitor for the anon widget: same matching and updates, returns only the visitor id. Errors: invalid_input, site_not_found.';

-- =============================================================================================
-- Grants: no function of this file is executable by PUBLIC or anon, except the two widget ones.
-- (Supabase's default privileges grant EXECUTE on new functions to anon, hence the explicit
-- revokes.)
-- =============================================================================================
do $$
declare
  f regprocedure;
begin
  for f in
    select p.oid::regprocedure
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'public'
      and p.proname = any (array[
        'mod_chat_assign_conversation', 'mod_chat_transfer_conversation',
        'mod_chat_resolve_conversation', 'mod_chat_close_conversation',
        'mod_chat_reopen_conversation', 'mod_chat_auto_assign_conversation',
        'mod_chat_auto_assign_pending', 'mod_chat_create_conversation', 'mod_chat_send_message',
        'mod_chat_mark_conversation_read', 'mod_chat_delete_agent', 'mod_chat_get_available_agent',
        'mod_chat_agent_performance', 'mod_chat_create_department', 'mod_chat_delete_department',
        'mod_chat_set_default_department', 'mod_chat_increment_canned_response_usage',
        'mod_chat_search_canned_responses', 'mod_chat_search_knowledge_base',
        'mod_chat_list_conversations', 'mod_chat_conversation_stats',
        'mod_chat_get_widget_settings', 'mod_chat_get_public_widget_settings',
        'mod_chat_create_or_update_visitor', 'mod_chat_widget_identify_visitor'
      ])
  loop
    execute format('revoke all on function %s from public, anon', f);
    execute format('grant execute on function %s to authenticated, service_role', f);
  end loop;
end
$$;

grant execute on function public.mod_chat_get_public_widget_settings(uuid) to anon;
grant execute on function public.mod_chat_widget_identify_visitor(uuid, text, text, text, text, text, text, text, inet, text, text, text, text, text, text, text, text) to anon;

notify pgrst, 'reload schema';
