-- Demo data for the live-chat module. Deterministic ids; timestamps are relative to now() so the
-- data always looks fresh. Applies after the migrations on the local stack and on a real Supabase
-- project (`supabase db reset`). Re-running it is a no-op (ON CONFLICT DO NOTHING everywhere; the
-- counter triggers only fire for rows actually inserted).
--
-- Id scheme: the first two hex digits say the kind of row, the last digits say which one
-- (for site-scoped rows: site number, then index).
--
--   agencies          a0000000-0000-4000-8000-000000000001  Acme Agency (agency A)
--                     a0000000-0000-4000-8000-000000000002  Beta Agency (agency B)
--   sites             b0000000-0000-4000-8000-000000000001  Acme Store  (agency A)  "site 1"
--                     b0000000-0000-4000-8000-000000000002  Acme Blog   (agency A)  "site 2"
--                     b0000000-0000-4000-8000-000000000003  Beta Shop   (agency B)  "site 3"
--   auth.users        c0000000-0000-4000-8000-000000000001  alice@acme.test  (A owner)
--                     c0000000-0000-4000-8000-000000000002  bob@acme.test    (A admin)
--                     c0000000-0000-4000-8000-000000000003  carol@acme.test  (A member)
--                     c0000000-0000-4000-8000-000000000004  dave@beta.test   (B owner)
--                     (password of all four on a real Supabase stack: password123)
--   agency_members    a1000000-0000-4000-8000-00000000000N  N = 1 alice, 2 bob, 3 carol, 4 dave
--   departments       d0000000-0000-4000-8000-000000000101  Acme Store / Sales     (default)
--                     d0000000-0000-4000-8000-000000000102  Acme Store / Support
--                     d0000000-0000-4000-8000-000000000201  Acme Blog  / General   (default)
--                     d0000000-0000-4000-8000-000000000202  Acme Blog  / Editorial
--                     d0000000-0000-4000-8000-000000000301  Beta Shop  / Support   (default)
--                     d0000000-0000-4000-8000-000000000302  Beta Shop  / Billing
--   agents            e0000000-0000-4000-8000-000000000101  Acme Store alice  online  max 5  load 1
--                     e0000000-0000-4000-8000-000000000102  Acme Store bob    online  max 3  load 1
--                     e0000000-0000-4000-8000-000000000103  Acme Store carol  away    max 4  load 0
--                     e0000000-0000-4000-8000-000000000201  Acme Blog  alice  offline max 5  load 0
--                     e0000000-0000-4000-8000-000000000202  Acme Blog  bob    busy    max 3  load 0
--                     e0000000-0000-4000-8000-000000000203  Acme Blog  carol  online  max 2  load 1
--                     e0000000-0000-4000-8000-000000000301  Beta Shop  dave   online  max 5  load 1
--   widget settings   f0000000-0000-4000-8000-00000000000S  S = site 1, 2, 3 (site 1 has business
--                                                           hours Mon-Fri 09:00-17:00 Africa/Lusaka)
--   visitors          10000000-0000-4000-8000-000000000101  Acme Store  Mia Mwale
--                     10000000-0000-4000-8000-000000000102  Acme Store  Noah Banda
--                     10000000-0000-4000-8000-000000000103  Acme Store  Olivia Phiri
--                     10000000-0000-4000-8000-000000000104  Acme Store  Peter Zulu (WhatsApp)
--                     10000000-0000-4000-8000-000000000201  Acme Blog   Quinn Tembo
--                     10000000-0000-4000-8000-000000000301  Beta Shop   Ruth Lungu
--   conversations     20000000-0000-4000-8000-000000000101  Acme Store  pending   unassigned
--                     20000000-0000-4000-8000-000000000102  Acme Store  active    alice (e..101)
--                     20000000-0000-4000-8000-000000000103  Acme Store  resolved  bob (e..102), rated 5
--                     20000000-0000-4000-8000-000000000104  Acme Store  closed    alice (e..101)
--                     20000000-0000-4000-8000-000000000105  Acme Store  waiting   bob (e..102), WhatsApp
--                     20000000-0000-4000-8000-000000000106  Acme Store  missed    unassigned
--                     20000000-0000-4000-8000-000000000201  Acme Blog   active    carol (e..203)
--                     20000000-0000-4000-8000-000000000301  Beta Shop   active    dave (e..301)
--                     20000000-0000-4000-8000-000000000302  Beta Shop   resolved  dave (e..301), rated 4
--   messages          30000000-0000-4000-8000-000000CCCCMM  CCCC = conversation suffix, MM = index,
--                     e.g. 30000000-0000-4000-8000-000000010201 = 1st message of conversation ..102;
--                     ..010204 is an internal note; ..010102 is an AI message; ..010502 an image
--   canned responses  40000000-0000-4000-8000-000000000SNN  (101-103 site 1, 201 site 2, 301-302 site 3)
--   knowledge base    50000000-0000-4000-8000-000000000SNN  (101-103 site 1, 201 site 2, 301 site 3)
--   analytics         60000000-0000-4000-8000-000000000SNN  (101-102 site 1, 301 site 3; yesterday)
--
-- Invariant: every agent's current_chat_count equals the number of its conversations whose status
-- is pending, active or waiting.

-- ---------------------------------------------------------------------------------------------
-- Auth users (only columns that exist in Supabase's auth.users)
-- ---------------------------------------------------------------------------------------------
insert into auth.users (
  instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
  confirmation_token, recovery_token, email_change_token_new, email_change,
  raw_app_meta_data, raw_user_meta_data, created_at, updated_at
)
values
  ('00000000-0000-0000-0000-000000000000', 'c0000000-0000-4000-8000-000000000001',
   'authenticated', 'authenticated', 'alice@acme.test',
   extensions.crypt('password123', extensions.gen_salt('bf')), now(), '', '', '', '',
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Alice Anderson"}', now(), now()),
  ('00000000-0000-0000-0000-000000000000', 'c0000000-0000-4000-8000-000000000002',
   'authenticated', 'authenticated', 'bob@acme.test',
   extensions.crypt('password123', extensions.gen_salt('bf')), now(), '', '', '', '',
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Bob Brown"}', now(), now()),
  ('00000000-0000-0000-0000-000000000000', 'c0000000-0000-4000-8000-000000000003',
   'authenticated', 'authenticated', 'carol@acme.test',
   extensions.crypt('password123', extensions.gen_salt('bf')), now(), '', '', '', '',
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Carol Chen"}', now(), now()),
  ('00000000-0000-0000-0000-000000000000', 'c0000000-0000-4000-8000-000000000004',
   'authenticated', 'authenticated', 'dave@beta.test',
   extensions.crypt('password123', extensions.gen_salt('bf')), now(), '', '', '', '',
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Dave Daka"}', now(), now())
on conflict (id) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Platform: agencies, members, sites
-- ---------------------------------------------------------------------------------------------
insert into public.agencies (id, name) values
  ('a0000000-0000-4000-8000-000000000001', 'Acme Agency'),
  ('a0000000-0000-4000-8000-000000000002', 'Beta Agency')
on conflict (id) do nothing;

insert into public.agency_members (id, agency_id, user_id, role) values
  ('a1000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001',
   'c0000000-0000-4000-8000-000000000001', 'owner'),
  ('a1000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000001',
   'c0000000-0000-4000-8000-000000000002', 'admin'),
  ('a1000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001',
   'c0000000-0000-4000-8000-000000000003', 'member'),
  ('a1000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000002',
   'c0000000-0000-4000-8000-000000000004', 'owner')
on conflict (id) do nothing;

insert into public.sites (id, agency_id, name) values
  ('b0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'Acme Store'),
  ('b0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000001', 'Acme Blog'),
  ('b0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000002', 'Beta Shop')
on conflict (id) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Departments (the first of each site is the default)
-- ---------------------------------------------------------------------------------------------
insert into public.mod_chat_departments
  (id, site_id, name, description, is_default, is_active, auto_assign, max_concurrent_chats, sort_order)
values
  ('d0000000-0000-4000-8000-000000000101', 'b0000000-0000-4000-8000-000000000001',
   'Sales', 'Pre-sales questions, product advice and orders', true, true, true, 5, 0),
  ('d0000000-0000-4000-8000-000000000102', 'b0000000-0000-4000-8000-000000000001',
   'Support', 'Deliveries, returns and after-sales help', false, true, true, 3, 1),
  ('d0000000-0000-4000-8000-000000000201', 'b0000000-0000-4000-8000-000000000002',
   'General', 'Anything about the blog', true, true, true, 5, 0),
  ('d0000000-0000-4000-8000-000000000202', 'b0000000-0000-4000-8000-000000000002',
   'Editorial', 'Guest posts and corrections', false, true, false, 2, 1),
  ('d0000000-0000-4000-8000-000000000301', 'b0000000-0000-4000-8000-000000000003',
   'Support', 'Orders and deliveries', true, true, true, 5, 0),
  ('d0000000-0000-4000-8000-000000000302', 'b0000000-0000-4000-8000-000000000003',
   'Billing', 'Invoices and payments', false, true, true, 5, 1)
on conflict (id) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Agents: one per member user per site of their agency.
-- current_chat_count = number of the agent's pending/active/waiting conversations below.
-- ---------------------------------------------------------------------------------------------
insert into public.mod_chat_agents (
  id, site_id, user_id, display_name, avatar_url, email, role, status, department_id,
  max_concurrent_chats, current_chat_count, total_chats_handled, avg_response_time_seconds,
  avg_rating, total_ratings, is_active, last_active_at
)
values
  -- Acme Store
  ('e0000000-0000-4000-8000-000000000101', 'b0000000-0000-4000-8000-000000000001',
   'c0000000-0000-4000-8000-000000000001', 'Alice Anderson', null, 'alice@acme.test',
   'admin', 'online', 'd0000000-0000-4000-8000-000000000101',
   5, 1, 0, 90, 0, 0, true, now()),
  ('e0000000-0000-4000-8000-000000000102', 'b0000000-0000-4000-8000-000000000001',
   'c0000000-0000-4000-8000-000000000002', 'Bob Brown', null, 'bob@acme.test',
   'supervisor', 'online', 'd0000000-0000-4000-8000-000000000102',
   3, 1, 1, 60, 5.00, 1, true, now() - interval '2 minutes'),
  ('e0000000-0000-4000-8000-000000000103', 'b0000000-0000-4000-8000-000000000001',
   'c0000000-0000-4000-8000-000000000003', 'Carol Chen', null, 'carol@acme.test',
   'agent', 'away', 'd0000000-0000-4000-8000-000000000101',
   4, 0, 0, 0, 0, 0, true, now() - interval '40 minutes'),
  -- Acme Blog
  ('e0000000-0000-4000-8000-000000000201', 'b0000000-0000-4000-8000-000000000002',
   'c0000000-0000-4000-8000-000000000001', 'Alice Anderson', null, 'alice@acme.test',
   'admin', 'offline', 'd0000000-0000-4000-8000-000000000201',
   5, 0, 0, 0, 0, 0, true, now() - interval '2 days'),
  ('e0000000-0000-4000-8000-000000000202', 'b0000000-0000-4000-8000-000000000002',
   'c0000000-0000-4000-8000-000000000002', 'Bob Brown', null, 'bob@acme.test',
   'supervisor', 'busy', 'd0000000-0000-4000-8000-000000000201',
   3, 0, 0, 0, 0, 0, true, now() - interval '10 minutes'),
  ('e0000000-0000-4000-8000-000000000203', 'b0000000-0000-4000-8000-000000000002',
   'c0000000-0000-4000-8000-000000000003', 'Carol Chen', null, 'carol@acme.test',
   'agent', 'online', 'd0000000-0000-4000-8000-000000000202',
   2, 1, 0, 45, 0, 0, true, now()),
  -- Beta Shop
  ('e0000000-0000-4000-8000-000000000301', 'b0000000-0000-4000-8000-000000000003',
   'c0000000-0000-4000-8000-000000000004', 'Dave Daka', null, 'dave@beta.test',
   'admin', 'online', 'd0000000-0000-4000-8000-000000000301',
   5, 1, 1, 120, 4.00, 1, true, now())
on conflict (id) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Widget settings (one per site)
-- ---------------------------------------------------------------------------------------------
insert into public.mod_chat_widget_settings (
  id, site_id, primary_color, position, company_name, welcome_message,
  pre_chat_department_selector, pre_chat_email_required, business_hours_enabled, business_hours,
  timezone, enable_file_uploads, whatsapp_enabled, whatsapp_phone_number, allowed_domains
)
values
  ('f0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000001',
   '#e11d48', 'bottom-right', 'Acme Store', 'Hi! Questions about an order? We''re here to help.',
   true, true, true,
   '{
      "monday":    {"enabled": true,  "start": "09:00", "end": "17:00"},
      "tuesday":   {"enabled": true,  "start": "09:00", "end": "17:00"},
      "wednesday": {"enabled": true,  "start": "09:00", "end": "17:00"},
      "thursday":  {"enabled": true,  "start": "09:00", "end": "17:00"},
      "friday":    {"enabled": true,  "start": "09:00", "end": "17:00"},
      "saturday":  {"enabled": false, "start": "09:00", "end": "17:00"},
      "sunday":    {"enabled": false, "start": "09:00", "end": "17:00"}
    }',
   'Africa/Lusaka', true, false, null, '{acme-store.example,www.acme-store.example}'),
  ('f0000000-0000-4000-8000-000000000002', 'b0000000-0000-4000-8000-000000000002',
   '#2563eb', 'bottom-left', 'Acme Blog', 'Hi there! How can we help you today?',
   false, false, false, '{}',
   'Africa/Lusaka', false, false, null, '{}'),
  ('f0000000-0000-4000-8000-000000000003', 'b0000000-0000-4000-8000-000000000003',
   '#16a34a', 'bottom-right', 'Beta Shop', 'Welcome to Beta Shop! Ask us anything.',
   false, true, false, '{}',
   'Africa/Lusaka', true, true, '+260970000003', '{}')
on conflict (id) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Visitors (total_conversations is counted by the conversation trigger; total_messages is set at
-- the end of this file)
-- ---------------------------------------------------------------------------------------------
insert into public.mod_chat_visitors (
  id, site_id, name, email, phone, browser, os, device, ip_address, country, city,
  current_page_url, current_page_title, referrer_url, landing_page_url, total_visits,
  first_seen_at, last_seen_at, tags, channel, whatsapp_phone, created_at
)
values
  ('10000000-0000-4000-8000-000000000101', 'b0000000-0000-4000-8000-000000000001',
   'Mia Mwale', 'mia@example.com', null, 'Chrome', 'Windows', 'desktop', '102.145.10.11',
   'Zambia', 'Lusaka', 'https://acme-store.example/shipping', 'Shipping', 'https://www.google.com/',
   'https://acme-store.example/', 4, now() - interval '7 days', now() - interval '6 minutes',
   '{returning}', 'widget', null, now() - interval '7 days'),
  ('10000000-0000-4000-8000-000000000102', 'b0000000-0000-4000-8000-000000000001',
   'Noah Banda', 'noah@example.com', null, 'Safari', 'iOS', 'mobile', '102.145.10.12',
   'Zambia', 'Ndola', 'https://acme-store.example/orders/1042', 'Order #1042', null,
   'https://acme-store.example/orders/1042', 2, now() - interval '3 days', now() - interval '3 minutes',
   '{}', 'widget', null, now() - interval '3 days'),
  ('10000000-0000-4000-8000-000000000103', 'b0000000-0000-4000-8000-000000000001',
   'Olivia Phiri', 'olivia@example.com', null, 'Firefox', 'Linux', 'desktop', '102.145.10.13',
   'Zambia', 'Kitwe', 'https://acme-store.example/products/t-shirt', 'Classic T-shirt', null,
   'https://acme-store.example/products/t-shirt', 3, now() - interval '4 days', now() - interval '1 day',
   '{vip}', 'widget', null, now() - interval '4 days'),
  ('10000000-0000-4000-8000-000000000104', 'b0000000-0000-4000-8000-000000000001',
   'Peter Zulu', null, '+260971234567', null, null, null, null,
   'Zambia', 'Livingstone', null, null, null, null, 1, now() - interval '1 hour', now() - interval '1 hour',
   '{}', 'whatsapp', '+260971234567', now() - interval '1 hour'),
  ('10000000-0000-4000-8000-000000000201', 'b0000000-0000-4000-8000-000000000002',
   'Quinn Tembo', 'quinn@example.com', null, 'Edge', 'Windows', 'desktop', '102.145.10.21',
   'Zambia', 'Lusaka', 'https://blog.acme.example/write-for-us', 'Write for us', null,
   'https://blog.acme.example/', 1, now() - interval '20 minutes', now() - interval '15 minutes',
   '{}', 'widget', null, now() - interval '20 minutes'),
  ('10000000-0000-4000-8000-000000000301', 'b0000000-0000-4000-8000-000000000003',
   'Ruth Lungu', 'ruth@example.com', null, 'Chrome', 'Android', 'mobile', '102.145.10.31',
   'Zambia', 'Lusaka', 'https://beta-shop.example/checkout', 'Checkout', null,
   'https://beta-shop.example/', 5, now() - interval '6 days', now() - interval '10 minutes',
   '{returning}', 'widget', null, now() - interval '6 days')
on conflict (id) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Conversations (every status). message_count, last_message_*, unread_* come from the message
-- trigger below.
-- ---------------------------------------------------------------------------------------------
insert into public.mod_chat_conversations (
  id, site_id, visitor_id, assigned_agent_id, department_id, status, priority, channel, subject,
  first_response_time_seconds, resolution_time_seconds, wait_time_seconds,
  rating, rating_comment, rated_at, tags, internal_notes, metadata,
  whatsapp_conversation_id, whatsapp_window_expires_at, created_at, resolved_at, closed_at
)
values
  -- Acme Store: pending, unassigned
  ('20000000-0000-4000-8000-000000000101', 'b0000000-0000-4000-8000-000000000001',
   '10000000-0000-4000-8000-000000000101', null, 'd0000000-0000-4000-8000-000000000101',
   'pending', 'normal', 'widget', 'Shipping to Lusaka',
   null, null, null, null, null, null, '{shipping}', null, '{}',
   null, null, now() - interval '6 minutes', null, null),
  -- Acme Store: active, alice
  ('20000000-0000-4000-8000-000000000102', 'b0000000-0000-4000-8000-000000000001',
   '10000000-0000-4000-8000-000000000102', 'e0000000-0000-4000-8000-000000000101',
   'd0000000-0000-4000-8000-000000000101',
   'active', 'high', 'widget', 'Order #1042 not delivered',
   90, null, 60, null, null, null, '{delivery,order}', 'Courier contacted.', '{"order_id": 1042}',
   null, null, now() - interval '25 minutes', null, null),
  -- Acme Store: resolved with rating, bob
  ('20000000-0000-4000-8000-000000000103', 'b0000000-0000-4000-8000-000000000001',
   '10000000-0000-4000-8000-000000000103', 'e0000000-0000-4000-8000-000000000102',
   'd0000000-0000-4000-8000-000000000102',
   'resolved', 'normal', 'widget', 'Change order size',
   60, 900, 30, 5, 'Super helpful, thanks!', now() - interval '2 days' + interval '20 minutes',
   '{order}', null, '{}',
   null, null, now() - interval '2 days', now() - interval '2 days' + interval '15 minutes', null),
  -- Acme Store: closed, alice
  ('20000000-0000-4000-8000-000000000104', 'b0000000-0000-4000-8000-000000000001',
   '10000000-0000-4000-8000-000000000101', 'e0000000-0000-4000-8000-000000000101',
   'd0000000-0000-4000-8000-000000000101',
   'closed', 'low', 'widget', 'Gift wrapping',
   120, 600, 45, null, null, null, '{}', null, '{}',
   null, null, now() - interval '3 days',
   now() - interval '3 days' + interval '10 minutes', now() - interval '3 days' + interval '10 minutes'),
  -- Acme Store: waiting (for the visitor), bob, WhatsApp
  ('20000000-0000-4000-8000-000000000105', 'b0000000-0000-4000-8000-000000000001',
   '10000000-0000-4000-8000-000000000104', 'e0000000-0000-4000-8000-000000000102',
   'd0000000-0000-4000-8000-000000000102',
   'waiting', 'normal', 'whatsapp', 'Colour options',
   600, null, 20, null, null, null, '{}', null, '{}',
   'wa-conv-0001', now() - interval '1 hour' + interval '24 hours', now() - interval '1 hour', null, null),
  -- Acme Store: missed (arrived out of hours), unassigned
  ('20000000-0000-4000-8000-000000000106', 'b0000000-0000-4000-8000-000000000001',
   '10000000-0000-4000-8000-000000000103', null, 'd0000000-0000-4000-8000-000000000101',
   'missed', 'normal', 'widget', null,
   null, null, null, null, null, null, '{}', null, '{}',
   null, null, now() - interval '1 day', null, null),
  -- Acme Blog: active, carol
  ('20000000-0000-4000-8000-000000000201', 'b0000000-0000-4000-8000-000000000002',
   '10000000-0000-4000-8000-000000000201', 'e0000000-0000-4000-8000-000000000203',
   'd0000000-0000-4000-8000-000000000202',
   'active', 'normal', 'widget', 'Guest post pitch',
   45, null, 15, null, null, null, '{}', null, '{}',
   null, null, now() - interval '15 minutes', null, null),
  -- Beta Shop: active, dave
  ('20000000-0000-4000-8000-000000000301', 'b0000000-0000-4000-8000-000000000003',
   '10000000-0000-4000-8000-000000000301', 'e0000000-0000-4000-8000-000000000301',
   'd0000000-0000-4000-8000-000000000302',
   'active', 'urgent', 'widget', 'Card declined at checkout',
   120, null, 30, null, null, null, '{payment}', null, '{}',
   null, null, now() - interval '10 minutes', null, null),
  -- Beta Shop: resolved with rating, dave
  ('20000000-0000-4000-8000-000000000302', 'b0000000-0000-4000-8000-000000000003',
   '10000000-0000-4000-8000-000000000301', 'e0000000-0000-4000-8000-000000000301',
   'd0000000-0000-4000-8000-000000000301',
   'resolved', 'normal', 'widget', 'Where is my parcel?',
   120, 1200, 40, 4, 'Quick answer.', now() - interval '5 days' + interval '25 minutes',
   '{delivery}', null, '{}',
   null, null, now() - interval '5 days', now() - interval '5 days' + interval '20 minutes', null)
on conflict (id) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Messages, oldest first within each conversation (the trigger keeps the conversation's
-- last_message_* from the last inserted one). Every sender_type appears, plus an internal note.
-- ---------------------------------------------------------------------------------------------
insert into public.mod_chat_messages (
  id, conversation_id, site_id, sender_type, sender_id, sender_name, content, content_type,
  file_url, file_name, file_size, file_mime_type, status, is_internal_note, is_ai_generated,
  ai_confidence, created_at
)
values
  -- 101 pending: visitor question, AI auto-answer
  ('30000000-0000-4000-8000-000000010101', '20000000-0000-4000-8000-000000000101',
   'b0000000-0000-4000-8000-000000000001', 'visitor', '10000000-0000-4000-8000-000000000101', 'Mia Mwale',
   'Hi, how long does shipping to Lusaka take?', 'text',
   null, null, null, null, 'delivered', false, false, null, now() - interval '6 minutes'),
  ('30000000-0000-4000-8000-000000010102', '20000000-0000-4000-8000-000000000101',
   'b0000000-0000-4000-8000-000000000001', 'ai', null, 'Acme Assistant',
   'Deliveries within Lusaka usually take 1-2 business days. An agent will confirm shortly.', 'text',
   null, null, null, null, 'sent', false, true, 0.82, now() - interval '5 minutes 50 seconds'),
  -- 102 active: visitor, system, agent, internal note, visitor
  ('30000000-0000-4000-8000-000000010201', '20000000-0000-4000-8000-000000000102',
   'b0000000-0000-4000-8000-000000000001', 'visitor', '10000000-0000-4000-8000-000000000102', 'Noah Banda',
   'Hello, my order #1042 has not arrived yet.', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '25 minutes'),
  ('30000000-0000-4000-8000-000000010202', '20000000-0000-4000-8000-000000000102',
   'b0000000-0000-4000-8000-000000000001', 'system', null, null,
   'Alice Anderson joined the conversation', 'system',
   null, null, null, null, 'sent', false, false, null, now() - interval '24 minutes'),
  ('30000000-0000-4000-8000-000000010203', '20000000-0000-4000-8000-000000000102',
   'b0000000-0000-4000-8000-000000000001', 'agent', 'e0000000-0000-4000-8000-000000000101', 'Alice Anderson',
   'Hi Noah! Let me check with the courier for you.', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '23 minutes 30 seconds'),
  ('30000000-0000-4000-8000-000000010204', '20000000-0000-4000-8000-000000000102',
   'b0000000-0000-4000-8000-000000000001', 'agent', 'e0000000-0000-4000-8000-000000000101', 'Alice Anderson',
   'Courier says the parcel is held at the Ndola depot. Follow up tomorrow.', 'note',
   null, null, null, null, 'sent', true, false, null, now() - interval '20 minutes'),
  ('30000000-0000-4000-8000-000000010205', '20000000-0000-4000-8000-000000000102',
   'b0000000-0000-4000-8000-000000000001', 'visitor', '10000000-0000-4000-8000-000000000102', 'Noah Banda',
   'Thanks, any idea when it will be delivered?', 'text',
   null, null, null, null, 'delivered', false, false, null, now() - interval '3 minutes'),
  -- 103 resolved
  ('30000000-0000-4000-8000-000000010301', '20000000-0000-4000-8000-000000000103',
   'b0000000-0000-4000-8000-000000000001', 'visitor', '10000000-0000-4000-8000-000000000103', 'Olivia Phiri',
   'Can I change the size of my order?', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '2 days'),
  ('30000000-0000-4000-8000-000000010302', '20000000-0000-4000-8000-000000000103',
   'b0000000-0000-4000-8000-000000000001', 'agent', 'e0000000-0000-4000-8000-000000000102', 'Bob Brown',
   'Sure, which size would you like?', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '2 days' + interval '1 minute'),
  ('30000000-0000-4000-8000-000000010303', '20000000-0000-4000-8000-000000000103',
   'b0000000-0000-4000-8000-000000000001', 'visitor', '10000000-0000-4000-8000-000000000103', 'Olivia Phiri',
   'Medium, please.', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '2 days' + interval '3 minutes'),
  ('30000000-0000-4000-8000-000000010304', '20000000-0000-4000-8000-000000000103',
   'b0000000-0000-4000-8000-000000000001', 'agent', 'e0000000-0000-4000-8000-000000000102', 'Bob Brown',
   'Done! Your order now has a medium. Anything else?', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '2 days' + interval '5 minutes'),
  ('30000000-0000-4000-8000-000000010305', '20000000-0000-4000-8000-000000000103',
   'b0000000-0000-4000-8000-000000000001', 'system', null, null,
   'Conversation resolved', 'system',
   null, null, null, null, 'sent', false, false, null, now() - interval '2 days' + interval '15 minutes'),
  -- 104 closed
  ('30000000-0000-4000-8000-000000010401', '20000000-0000-4000-8000-000000000104',
   'b0000000-0000-4000-8000-000000000001', 'visitor', '10000000-0000-4000-8000-000000000101', 'Mia Mwale',
   'Do you offer gift wrapping?', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '3 days'),
  ('30000000-0000-4000-8000-000000010402', '20000000-0000-4000-8000-000000000104',
   'b0000000-0000-4000-8000-000000000001', 'agent', 'e0000000-0000-4000-8000-000000000101', 'Alice Anderson',
   'Yes, you can choose it at checkout for K25.', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '3 days' + interval '2 minutes'),
  ('30000000-0000-4000-8000-000000010403', '20000000-0000-4000-8000-000000000104',
   'b0000000-0000-4000-8000-000000000001', 'system', null, null,
   'Conversation closed', 'system',
   null, null, null, null, 'sent', false, false, null, now() - interval '3 days' + interval '10 minutes'),
  -- 105 waiting (WhatsApp): visitor, agent image
  ('30000000-0000-4000-8000-000000010501', '20000000-0000-4000-8000-000000000105',
   'b0000000-0000-4000-8000-000000000001', 'visitor', '10000000-0000-4000-8000-000000000104', 'Peter Zulu',
   'Do you have the classic T-shirt in blue?', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '1 hour'),
  ('30000000-0000-4000-8000-000000010502', '20000000-0000-4000-8000-000000000105',
   'b0000000-0000-4000-8000-000000000001', 'agent', 'e0000000-0000-4000-8000-000000000102', 'Bob Brown',
   'Here it is in blue. Which size do you need?', 'image',
   'https://acme-store.example/media/tshirt-blue.jpg', 'tshirt-blue.jpg', 48213, 'image/jpeg',
   'delivered', false, false, null, now() - interval '50 minutes'),
  -- 106 missed
  ('30000000-0000-4000-8000-000000010601', '20000000-0000-4000-8000-000000000106',
   'b0000000-0000-4000-8000-000000000001', 'visitor', '10000000-0000-4000-8000-000000000103', 'Olivia Phiri',
   'Is anyone there?', 'text',
   null, null, null, null, 'delivered', false, false, null, now() - interval '1 day'),
  ('30000000-0000-4000-8000-000000010602', '20000000-0000-4000-8000-000000000106',
   'b0000000-0000-4000-8000-000000000001', 'system', null, null,
   'No agent was available. We will get back to you by email.', 'system',
   null, null, null, null, 'sent', false, false, null, now() - interval '1 day' + interval '5 minutes'),
  -- 201 active (Acme Blog)
  ('30000000-0000-4000-8000-000000020101', '20000000-0000-4000-8000-000000000201',
   'b0000000-0000-4000-8000-000000000002', 'visitor', '10000000-0000-4000-8000-000000000201', 'Quinn Tembo',
   'I would like to pitch a guest post about Zambian coffee.', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '15 minutes'),
  ('30000000-0000-4000-8000-000000020102', '20000000-0000-4000-8000-000000000201',
   'b0000000-0000-4000-8000-000000000002', 'agent', 'e0000000-0000-4000-8000-000000000203', 'Carol Chen',
   'Sounds great! Could you send a short outline?', 'text',
   null, null, null, null, 'delivered', false, false, null, now() - interval '14 minutes'),
  -- 301 active (Beta Shop)
  ('30000000-0000-4000-8000-000000030101', '20000000-0000-4000-8000-000000000301',
   'b0000000-0000-4000-8000-000000000003', 'visitor', '10000000-0000-4000-8000-000000000301', 'Ruth Lungu',
   'My card was declined at checkout.', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '10 minutes'),
  ('30000000-0000-4000-8000-000000030102', '20000000-0000-4000-8000-000000000301',
   'b0000000-0000-4000-8000-000000000003', 'agent', 'e0000000-0000-4000-8000-000000000301', 'Dave Daka',
   'Sorry about that! Which card type are you using?', 'text',
   null, null, null, null, 'delivered', false, false, null, now() - interval '8 minutes'),
  -- 302 resolved (Beta Shop)
  ('30000000-0000-4000-8000-000000030201', '20000000-0000-4000-8000-000000000302',
   'b0000000-0000-4000-8000-000000000003', 'visitor', '10000000-0000-4000-8000-000000000301', 'Ruth Lungu',
   'Where is my parcel?', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '5 days'),
  ('30000000-0000-4000-8000-000000030202', '20000000-0000-4000-8000-000000000302',
   'b0000000-0000-4000-8000-000000000003', 'agent', 'e0000000-0000-4000-8000-000000000301', 'Dave Daka',
   'It is out for delivery and will reach you today.', 'text',
   null, null, null, null, 'read', false, false, null, now() - interval '5 days' + interval '2 minutes'),
  ('30000000-0000-4000-8000-000000030203', '20000000-0000-4000-8000-000000000302',
   'b0000000-0000-4000-8000-000000000003', 'system', null, null,
   'Conversation resolved', 'system',
   null, null, null, null, 'sent', false, false, null, now() - interval '5 days' + interval '20 minutes')
on conflict (id) do nothing;

-- Visitors' message totals (not maintained by any trigger): their own messages.
update public.mod_chat_visitors v
set total_messages = (
  select count(*)
  from public.mod_chat_messages m
  join public.mod_chat_conversations c on c.id = m.conversation_id
  where c.visitor_id = v.id and m.sender_type = 'visitor'
)
where v.id in (
  '10000000-0000-4000-8000-000000000101', '10000000-0000-4000-8000-000000000102',
  '10000000-0000-4000-8000-000000000103', '10000000-0000-4000-8000-000000000104',
  '10000000-0000-4000-8000-000000000201', '10000000-0000-4000-8000-000000000301'
);

-- ---------------------------------------------------------------------------------------------
-- Canned responses
-- ---------------------------------------------------------------------------------------------
insert into public.mod_chat_canned_responses (
  id, site_id, title, content, shortcut, category, tags, usage_count, last_used_at, created_by,
  is_shared, is_active
)
values
  ('40000000-0000-4000-8000-000000000101', 'b0000000-0000-4000-8000-000000000001',
   'Greeting', 'Hi! Thanks for contacting Acme Store. How can I help you today?', '/hi', 'General',
   '{greeting}', 42, now() - interval '25 minutes', 'c0000000-0000-4000-8000-000000000001', true, true),
  ('40000000-0000-4000-8000-000000000102', 'b0000000-0000-4000-8000-000000000001',
   'Shipping times', 'Deliveries within Lusaka take 1-2 business days, elsewhere in Zambia 2-4 business days.',
   '/shipping', 'Shipping', '{shipping,delivery}', 17, now() - interval '1 day',
   'c0000000-0000-4000-8000-000000000002', true, true),
  ('40000000-0000-4000-8000-000000000103', 'b0000000-0000-4000-8000-000000000001',
   'Refund policy (100% guaranteed)', 'You can return any item within 30 days for a full refund.',
   '/refund', 'Billing', '{refund,returns}', 5, null,
   'c0000000-0000-4000-8000-000000000002', false, true),
  ('40000000-0000-4000-8000-000000000201', 'b0000000-0000-4000-8000-000000000002',
   'Thanks for reading', 'Thanks for reading the Acme Blog! Anything we can help with?', '/thanks',
   'General', '{}', 3, null, 'c0000000-0000-4000-8000-000000000003', true, true),
  ('40000000-0000-4000-8000-000000000301', 'b0000000-0000-4000-8000-000000000003',
   'Greeting', 'Hello from Beta Shop! How can we help?', '/hi', 'General',
   '{greeting}', 8, now() - interval '10 minutes', 'c0000000-0000-4000-8000-000000000004', true, true),
  ('40000000-0000-4000-8000-000000000302', 'b0000000-0000-4000-8000-000000000003',
   'Payment methods', 'We accept Visa, Mastercard, Airtel Money and MTN MoMo.', '/pay', 'Billing',
   '{payment}', 2, null, 'c0000000-0000-4000-8000-000000000004', true, false)
on conflict (id) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Knowledge base
-- ---------------------------------------------------------------------------------------------
insert into public.mod_chat_knowledge_base (
  id, site_id, title, content, category, tags, is_active, usage_count, last_matched_at, created_by
)
values
  ('50000000-0000-4000-8000-000000000101', 'b0000000-0000-4000-8000-000000000001',
   'Shipping within Zambia',
   'Orders ship from Lusaka. Lusaka deliveries take 1-2 business days; Copperbelt, Livingstone and other towns 2-4 business days. Shipping is free over K500.',
   'Shipping', '{shipping,delivery}', true, 12, now() - interval '6 minutes',
   'c0000000-0000-4000-8000-000000000001'),
  ('50000000-0000-4000-8000-000000000102', 'b0000000-0000-4000-8000-000000000001',
   'Returns and refunds',
   'Items can be returned within 30 days in their original condition. Refunds are paid to the original payment method within 5 business days.',
   'Billing', '{refund,returns}', true, 4, null, 'c0000000-0000-4000-8000-000000000002'),
  ('50000000-0000-4000-8000-000000000103', 'b0000000-0000-4000-8000-000000000001',
   'Order tracking',
   'Every order gets a tracking link by email once it leaves the warehouse (usually the same day, 50% of orders within 2 hours).',
   'Shipping', '{tracking}', false, 0, null, 'c0000000-0000-4000-8000-000000000002'),
  ('50000000-0000-4000-8000-000000000201', 'b0000000-0000-4000-8000-000000000002',
   'Guest posts',
   'We welcome guest posts of 800-1500 words. Send an outline first; the editorial team replies within a week.',
   'Editorial', '{guest-post}', true, 1, null, 'c0000000-0000-4000-8000-000000000003'),
  ('50000000-0000-4000-8000-000000000301', 'b0000000-0000-4000-8000-000000000003',
   'Accepted payment methods',
   'Beta Shop accepts Visa, Mastercard, Airtel Money and MTN MoMo. Declined cards are usually fixed by enabling online payments with the bank.',
   'Billing', '{payment}', true, 3, now() - interval '10 minutes', 'c0000000-0000-4000-8000-000000000004')
on conflict (id) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Analytics (yesterday): one site-level row and one agent row for Acme Store, one site-level row
-- for Beta Shop
-- ---------------------------------------------------------------------------------------------
insert into public.mod_chat_analytics (
  id, site_id, date, total_conversations, total_messages, new_visitors, returning_visitors,
  widget_conversations, whatsapp_conversations, resolved_conversations, missed_conversations,
  avg_first_response_seconds, avg_resolution_seconds, avg_wait_seconds,
  avg_messages_per_conversation, avg_rating, total_ratings, satisfaction_score,
  ai_auto_responses, ai_resolved, agent_id
)
values
  ('60000000-0000-4000-8000-000000000101', 'b0000000-0000-4000-8000-000000000001',
   current_date - 1, 3, 11, 1, 2, 3, 0, 1, 1, 75, 900, 30, 3.67, 5.00, 1, 100.00, 1, 0, null),
  ('60000000-0000-4000-8000-000000000102', 'b0000000-0000-4000-8000-000000000001',
   current_date - 1, 1, 3, 0, 1, 1, 0, 0, 0, 120, 600, 45, 3.00, 0, 0, 0, 0, 0,
   'e0000000-0000-4000-8000-000000000101'),
  ('60000000-0000-4000-8000-000000000301', 'b0000000-0000-4000-8000-000000000003',
   current_date - 1, 1, 3, 0, 1, 1, 0, 1, 0, 120, 1200, 40, 3.00, 4.00, 1, 80.00, 0, 0, null)
on conflict (id) do nothing;
