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
-- Idempotent (create or replace, same signature and grants).

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
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_email text := nullif(btrim(p_email), '');
  v_wa text := nullif(btrim(p_whatsapp_phone), '');
  v_prev public.mod_chat_visitors;
  v_id uuid;
begin
  -- The visitor the call will match (createOrUpdateVisitor's rules: e-mail, then WhatsApp
  -- phone), as it is before the call.
  if v_email is not null then
    select * into v_prev
    from public.mod_chat_visitors v
    where v.site_id = p_site_id and lower(v.email) = lower(v_email)
    order by v.created_at, v.id
    limit 1;
  end if;
  if v_prev.id is null and v_wa is not null then
    select * into v_prev
    from public.mod_chat_visitors v
    where v.site_id = p_site_id and v.whatsapp_phone = v_wa
    order by v.created_at, v.id
    limit 1;
  end if;

  select v.id into v_id
  from public.mod_chat_create_or_update_visitor(
    p_site_id => p_site_id, p_channel => p_channel, p_name => p_name, p_email => p_email,
    p_phone => p_phone, p_browser => p_browser, p_os => p_os, p_device => p_device,
    p_ip_address => p_ip_address, p_country => p_country, p_city => p_city,
    p_current_page_url => p_current_page_url, p_current_page_title => p_current_page_title,
    p_referrer_url => p_referrer_url, p_landing_page_url => p_landing_page_url,
    p_whatsapp_phone => p_whatsapp_phone, p_external_id => p_external_id
  ) v;

  -- An existing visitor keeps every identity field it had; the call only filled empty ones.
  if v_prev.id is not null and v_prev.id = v_id then
    update public.mod_chat_visitors v
    set name = coalesce(v_prev.name, v.name),
        email = coalesce(v_prev.email, v.email),
        phone = coalesce(v_prev.phone, v.phone),
        whatsapp_phone = coalesce(v_prev.whatsapp_phone, v.whatsapp_phone),
        external_id = coalesce(v_prev.external_id, v.external_id)
    where v.id = v_id;
  end if;
  return v_id;
end
$$;

comment on function public.mod_chat_widget_identify_visitor(uuid, text, text, text, text, text, text, text, inet, text, text, text, text, text, text, text, text) is
  'createOrUpdateVisitor for the anon widget: same matching; records the visit on a match but only fills an existing visitor''s empty name, e-mail, phone, WhatsApp phone and external_id; returns only the visitor id. Errors: invalid_input, site_not_found.';

revoke all on function public.mod_chat_widget_identify_visitor(uuid, text, text, text, text, text, text, text, inet, text, text, text, text, text, text, text, text) from public;
grant execute on function public.mod_chat_widget_identify_visitor(uuid, text, text, text, text, text, text, text, inet, text, text, text, text, text, text, text, text) to anon, authenticated, service_role;
