-- The live-chat module's nine mod_chat_* tables, exactly as in spec/platform-schema.md (column
-- order, types, defaults, NOT NULLs, CHECKs, foreign keys and their ON DELETE actions, unique
-- constraints), their indexes, the updated_at triggers and the two counter triggers.
--
-- `create table if not exists` is safe here: a table that already exists is the platform's own
-- deployed table, which is this same contract. Indexes use `if not exists`, functions
-- `create or replace`, triggers `drop ... if exists` then `create`, so the file can run again.

-- ---------------------------------------------------------------------------------------------
-- mod_chat_departments
-- ---------------------------------------------------------------------------------------------
create table if not exists public.mod_chat_departments (
  id uuid primary key default gen_random_uuid(),
  site_id uuid not null references public.sites (id) on delete cascade,
  name text not null,
  description text,
  is_default boolean default false,
  is_active boolean default true,
  auto_assign boolean default true,
  max_concurrent_chats integer default 5,
  sort_order integer default 0,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

-- ---------------------------------------------------------------------------------------------
-- mod_chat_agents
-- ---------------------------------------------------------------------------------------------
create table if not exists public.mod_chat_agents (
  id uuid primary key default gen_random_uuid(),
  site_id uuid not null references public.sites (id) on delete cascade,
  user_id uuid not null,
  display_name text not null,
  avatar_url text,
  email text,
  role text not null default 'agent' check (role in ('agent', 'supervisor', 'admin')),
  status text not null default 'offline' check (status in ('online', 'away', 'busy', 'offline')),
  department_id uuid references public.mod_chat_departments (id) on delete set null,
  max_concurrent_chats integer default 5,
  current_chat_count integer default 0,
  total_chats_handled integer default 0,
  avg_response_time_seconds integer default 0,
  avg_rating numeric(3,2) default 0,
  total_ratings integer default 0,
  is_active boolean default true,
  last_active_at timestamptz,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  unique (site_id, user_id)
);

-- ---------------------------------------------------------------------------------------------
-- mod_chat_widget_settings
-- ---------------------------------------------------------------------------------------------
create table if not exists public.mod_chat_widget_settings (
  id uuid primary key default gen_random_uuid(),
  site_id uuid not null references public.sites (id) on delete cascade,
  primary_color text default '#2563eb',
  text_color text default '#ffffff',
  position text default 'bottom-right' check (position in ('bottom-right', 'bottom-left')),
  launcher_icon text default 'message-circle',
  launcher_size integer default 60,
  border_radius integer default 16,
  z_index integer default 9999,
  company_name text,
  welcome_message text default 'Hi there! How can we help you today?',
  away_message text default 'We''re currently away. Leave us a message and we''ll get back to you.',
  offline_message text default 'We''re offline right now. Please leave your details and we''ll reach out.',
  logo_url text,
  pre_chat_enabled boolean default true,
  pre_chat_name_required boolean default true,
  pre_chat_email_required boolean default true,
  pre_chat_phone_enabled boolean default false,
  pre_chat_phone_required boolean default false,
  pre_chat_message_required boolean default false,
  pre_chat_department_selector boolean default false,
  business_hours_enabled boolean default false,
  business_hours jsonb default '{}',
  timezone text default 'Africa/Lusaka',
  auto_open_delay_seconds integer default 0,
  show_agent_avatar boolean default true,
  show_agent_name boolean default true,
  show_typing_indicator boolean default true,
  enable_file_uploads boolean default true,
  enable_emoji boolean default true,
  enable_sound_notifications boolean default true,
  enable_satisfaction_rating boolean default true,
  language text default 'en',
  custom_translations jsonb default '{}',
  whatsapp_enabled boolean default false,
  whatsapp_phone_number text,
  whatsapp_phone_number_id text,
  whatsapp_business_account_id text,
  whatsapp_welcome_template text,
  allowed_domains text[] default '{}',
  blocked_ips text[] default '{}',
  max_file_size_mb integer default 10,
  allowed_file_types text[] default array[
    'image/jpeg', 'image/png', 'image/gif', 'image/webp', 'application/pdf', 'application/msword',
    'application/vnd.openxmlformats-officedocument.wordprocessingml.document'
  ],
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  unique (site_id)
);

-- ---------------------------------------------------------------------------------------------
-- mod_chat_visitors
-- ---------------------------------------------------------------------------------------------
create table if not exists public.mod_chat_visitors (
  id uuid primary key default gen_random_uuid(),
  site_id uuid not null references public.sites (id) on delete cascade,
  external_id text,
  name text,
  email text,
  phone text,
  avatar_url text,
  browser text,
  os text,
  device text,
  ip_address inet,
  country text,
  city text,
  current_page_url text,
  current_page_title text,
  referrer_url text,
  landing_page_url text,
  total_visits integer default 1,
  total_conversations integer default 0,
  total_messages integer default 0,
  first_seen_at timestamptz default now(),
  last_seen_at timestamptz default now(),
  crm_contact_id uuid,
  tags text[] default '{}',
  notes text,
  custom_data jsonb default '{}',
  channel text default 'widget' check (channel in ('widget', 'whatsapp', 'api')),
  whatsapp_phone text,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

-- ---------------------------------------------------------------------------------------------
-- mod_chat_conversations
-- ---------------------------------------------------------------------------------------------
create table if not exists public.mod_chat_conversations (
  id uuid primary key default gen_random_uuid(),
  site_id uuid not null references public.sites (id) on delete cascade,
  visitor_id uuid not null references public.mod_chat_visitors (id) on delete cascade,
  assigned_agent_id uuid references public.mod_chat_agents (id) on delete set null,
  department_id uuid references public.mod_chat_departments (id) on delete set null,
  status text not null default 'pending'
    check (status in ('pending', 'active', 'waiting', 'resolved', 'closed', 'missed')),
  priority text default 'normal' check (priority in ('low', 'normal', 'high', 'urgent')),
  channel text not null default 'widget' check (channel in ('widget', 'whatsapp', 'api')),
  subject text,
  last_message_text text,
  last_message_at timestamptz,
  last_message_by text check (last_message_by in ('visitor', 'agent', 'system', 'ai')),
  message_count integer default 0,
  unread_agent_count integer default 0,
  unread_visitor_count integer default 0,
  first_response_time_seconds integer,
  resolution_time_seconds integer,
  wait_time_seconds integer,
  rating integer check (rating >= 1 and rating <= 5),
  rating_comment text,
  rated_at timestamptz,
  tags text[] default '{}',
  internal_notes text,
  metadata jsonb default '{}',
  whatsapp_conversation_id text,
  whatsapp_window_expires_at timestamptz,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  resolved_at timestamptz,
  closed_at timestamptz
);

-- ---------------------------------------------------------------------------------------------
-- mod_chat_messages
-- ---------------------------------------------------------------------------------------------
create table if not exists public.mod_chat_messages (
  id uuid primary key default gen_random_uuid(),
  conversation_id uuid not null references public.mod_chat_conversations (id) on delete cascade,
  site_id uuid not null references public.sites (id) on delete cascade,
  sender_type text not null check (sender_type in ('visitor', 'agent', 'system', 'ai')),
  sender_id text,
  sender_name text,
  sender_avatar text,
  content text,
  content_type text default 'text' check (content_type in (
    'text', 'image', 'file', 'audio', 'video', 'location', 'system', 'note', 'whatsapp_template'
  )),
  file_url text,
  file_name text,
  file_size integer,
  file_mime_type text,
  status text default 'sent' check (status in ('sending', 'sent', 'delivered', 'read', 'failed')),
  is_internal_note boolean default false,
  whatsapp_message_id text,
  whatsapp_status text,
  is_ai_generated boolean default false,
  ai_confidence numeric(3,2),
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

-- ---------------------------------------------------------------------------------------------
-- mod_chat_canned_responses
-- ---------------------------------------------------------------------------------------------
create table if not exists public.mod_chat_canned_responses (
  id uuid primary key default gen_random_uuid(),
  site_id uuid not null references public.sites (id) on delete cascade,
  title text not null,
  content text not null,
  shortcut text,
  category text,
  tags text[] default '{}',
  usage_count integer default 0,
  last_used_at timestamptz,
  created_by uuid,
  is_shared boolean default true,
  is_active boolean default true,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

-- ---------------------------------------------------------------------------------------------
-- mod_chat_knowledge_base
-- ---------------------------------------------------------------------------------------------
create table if not exists public.mod_chat_knowledge_base (
  id uuid primary key default gen_random_uuid(),
  site_id uuid not null references public.sites (id) on delete cascade,
  title text not null,
  content text not null,
  category text,
  tags text[] default '{}',
  is_active boolean default true,
  usage_count integer default 0,
  last_matched_at timestamptz,
  created_by uuid,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

-- ---------------------------------------------------------------------------------------------
-- mod_chat_analytics
-- ---------------------------------------------------------------------------------------------
create table if not exists public.mod_chat_analytics (
  id uuid primary key default gen_random_uuid(),
  site_id uuid not null references public.sites (id) on delete cascade,
  date date not null,
  total_conversations integer default 0,
  total_messages integer default 0,
  new_visitors integer default 0,
  returning_visitors integer default 0,
  widget_conversations integer default 0,
  whatsapp_conversations integer default 0,
  resolved_conversations integer default 0,
  missed_conversations integer default 0,
  avg_first_response_seconds integer default 0,
  avg_resolution_seconds integer default 0,
  avg_wait_seconds integer default 0,
  avg_messages_per_conversation numeric(5,2) default 0,
  avg_rating numeric(3,2) default 0,
  total_ratings integer default 0,
  satisfaction_score numeric(5,2) default 0,
  ai_auto_responses integer default 0,
  ai_resolved integer default 0,
  agent_id uuid references public.mod_chat_agents (id) on delete set null,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  unique (site_id, date, agent_id)
);

-- ---------------------------------------------------------------------------------------------
-- Indexes (the "Indexes (as deployed)" list)
-- ---------------------------------------------------------------------------------------------
create index if not exists idx_mod_chat_agents_site_id on public.mod_chat_agents (site_id);
create index if not exists idx_mod_chat_agents_site_status on public.mod_chat_agents (site_id, status);
create index if not exists idx_mod_chat_agents_site_user on public.mod_chat_agents (site_id, user_id);

create index if not exists idx_mod_chat_visitors_site_id on public.mod_chat_visitors (site_id);
create index if not exists idx_mod_chat_visitors_site_email on public.mod_chat_visitors (site_id, email);
create index if not exists idx_mod_chat_visitors_site_whatsapp_phone
  on public.mod_chat_visitors (site_id, whatsapp_phone);

create index if not exists idx_mod_chat_conversations_site_status
  on public.mod_chat_conversations (site_id, status);
create index if not exists idx_mod_chat_conversations_agent_status
  on public.mod_chat_conversations (assigned_agent_id, status);
create index if not exists idx_mod_chat_conversations_visitor_id
  on public.mod_chat_conversations (visitor_id);
create index if not exists idx_mod_chat_conversations_site_channel
  on public.mod_chat_conversations (site_id, channel);

create index if not exists idx_mod_chat_messages_conversation_id
  on public.mod_chat_messages (conversation_id);
create index if not exists idx_mod_chat_messages_site_id on public.mod_chat_messages (site_id);

create index if not exists idx_mod_chat_analytics_site_date on public.mod_chat_analytics (site_id, date);

create index if not exists idx_mod_chat_departments_site_id on public.mod_chat_departments (site_id);
create index if not exists idx_mod_chat_canned_responses_site_id
  on public.mod_chat_canned_responses (site_id);
create index if not exists idx_mod_chat_knowledge_base_site_id
  on public.mod_chat_knowledge_base (site_id);

-- ---------------------------------------------------------------------------------------------
-- updated_at triggers on every mod_chat table
-- ---------------------------------------------------------------------------------------------
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
    execute format('drop trigger if exists %I on public.%I', 'update_' || t || '_updated_at', t);
    execute format(
      'create trigger %I before update on public.%I '
      'for each row execute function public.update_updated_at_column()',
      'update_' || t || '_updated_at', t
    );
  end loop;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Counter triggers ("Triggers on the platform (as deployed)").
-- SECURITY DEFINER: they must update the parent row even when the inserting role cannot (the
-- widget inserts as `anon`, which has no UPDATE policy on conversations or visitors).
-- ---------------------------------------------------------------------------------------------
create or replace function public.mod_chat_on_message_insert() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
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

create or replace function public.mod_chat_on_conversation_insert() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.mod_chat_visitors v
  set total_conversations = coalesce(v.total_conversations, 0) + 1
  where v.id = new.visitor_id;
  return null;
end
$$;

-- Trigger functions are not meant to be called through the API.
revoke execute on function public.mod_chat_on_message_insert() from public, anon, authenticated;
revoke execute on function public.mod_chat_on_conversation_insert() from public, anon, authenticated;

drop trigger if exists mod_chat_messages_update_conversation on public.mod_chat_messages;
create trigger mod_chat_messages_update_conversation
  after insert on public.mod_chat_messages
  for each row execute function public.mod_chat_on_message_insert();

drop trigger if exists mod_chat_conversations_update_visitor on public.mod_chat_conversations;
create trigger mod_chat_conversations_update_visitor
  after insert on public.mod_chat_conversations
  for each row execute function public.mod_chat_on_conversation_insert();
