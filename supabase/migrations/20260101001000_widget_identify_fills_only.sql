-- The anonymous widget may not rewrite who a known visitor is.
--
-- mod_chat_widget_identify_visitor (migration 20260101000400) is createOrUpdateVisitor for the
-- widget: callable with the bare anon key, it matches a visitor of the site by e-mail, then by
-- WhatsApp phone, and updated the match with every field given. The widget has no proof of
-- who is typing, so anyone who knew a visitor's e-mail could rename it, change its phone or
-- external id, and the agents would trust what they read. From this migration on, for a
-- visitor that already exists the anonymous call
--   * still records the visit: last_seen_at, total_visits + 1, channel, browser, os, device,
--     ip_address, country, city and the page fields (what the widget observes);
--   * fills name, e-mail, phone, WhatsApp phone and external_id only where they are empty,
--     never overwrites them (a visitor matched by WhatsApp phone keeps its e-mail, and the
--     other way round).
-- A new visitor is created with everything given, as before. The trusted side (service role,
-- agency members) keeps the full createOrUpdateVisitor (mod_chat_create_or_update_visitor),
-- and a verified identity belongs in a visitor token minted by the site's backend.
-- Both public functions are thin wrappers of one private upsert whose single UPDATE either
-- replaces or only fills the identity fields, under the same advisory and row locks (so a
-- concurrent call cannot slip a value in between a read and a write).
-- Idempotent (create or replace, same signatures and grants).

-- createOrUpdateVisitor's body (migration 20260101000400), with the choice of replacing or only
-- filling the identity fields (name, e-mail, phone, WhatsApp phone, external id).
create or replace function mod_chat_private.upsert_visitor(
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
  p_external_id text default null,
  p_overwrite boolean default true
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
        -- Identity: replaced by what is given (p_overwrite), or only filled where empty.
        name = case when p_overwrite then coalesce(p_name, v.name) else coalesce(v.name, p_name) end,
        email = case when p_overwrite then coalesce(v_email, v.email) else coalesce(v.email, v_email) end,
        phone = case when p_overwrite then coalesce(p_phone, v.phone) else coalesce(v.phone, p_phone) end,
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
        whatsapp_phone = case when p_overwrite then coalesce(v_wa, v.whatsapp_phone)
                              else coalesce(v.whatsapp_phone, v_wa) end,
        external_id = case when p_overwrite then coalesce(p_external_id, v.external_id)
                           else coalesce(v.external_id, p_external_id) end
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

revoke all on function mod_chat_private.upsert_visitor(uuid, text, text, text, text, text, text, text, inet, text, text, text, text, text, text, text, text, boolean) from public, anon;
grant execute on function mod_chat_private.upsert_visitor(uuid, text, text, text, text, text, text, text, inet, text, text, text, text, text, text, text, text, boolean) to authenticated, service_role;

-- createOrUpdateVisitor (trusted callers, as the caller): identity fields replaced.
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
language sql
volatile
security invoker
set search_path = ''
as $$
  select * from mod_chat_private.upsert_visitor(
    p_site_id => p_site_id, p_channel => p_channel, p_name => p_name, p_email => p_email,
    p_phone => p_phone, p_browser => p_browser, p_os => p_os, p_device => p_device,
    p_ip_address => p_ip_address, p_country => p_country, p_city => p_city,
    p_current_page_url => p_current_page_url, p_current_page_title => p_current_page_title,
    p_referrer_url => p_referrer_url, p_landing_page_url => p_landing_page_url,
    p_whatsapp_phone => p_whatsapp_phone, p_external_id => p_external_id,
    p_overwrite => true
  )
$$;

-- The anonymous widget (SECURITY DEFINER, as in 20260101000400): identity fields only filled.
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
  from mod_chat_private.upsert_visitor(
    p_site_id => p_site_id, p_channel => p_channel, p_name => p_name, p_email => p_email,
    p_phone => p_phone, p_browser => p_browser, p_os => p_os, p_device => p_device,
    p_ip_address => p_ip_address, p_country => p_country, p_city => p_city,
    p_current_page_url => p_current_page_url, p_current_page_title => p_current_page_title,
    p_referrer_url => p_referrer_url, p_landing_page_url => p_landing_page_url,
    p_whatsapp_phone => p_whatsapp_phone, p_external_id => p_external_id,
    p_overwrite => false
  ) v
$$;

comment on function public.mod_chat_widget_identify_visitor(uuid, text, text, text, text, text, text, text, inet, text, text, text, text, text, text, text, text) is
  'createOrUpdateVisitor for the anon widget: same matching; records the visit on a match but only fills an existing visitor''s empty name, e-mail, phone, WhatsApp phone and external_id; returns only the visitor id. Errors: invalid_input, site_not_found.';

revoke all on function public.mod_chat_widget_identify_visitor(uuid, text, text, text, text, text, text, text, inet, text, text, text, text, text, text, text, text) from public;
grant execute on function public.mod_chat_widget_identify_visitor(uuid, text, text, text, text, text, text, text, inet, text, text, text, text, text, text, text, text) to anon, authenticated, service_role;
