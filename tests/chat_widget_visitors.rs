//! Widget settings and visitors against the real local stack: every action with the
//! service-role key and with a dashboard user's JWT (alice, agency A), compared with direct SQL
//! over the same data; the public settings work with the anon key and carry no internal ids;
//! business hours of the seeded Acme Store; get-or-create and create-or-update are single rows
//! under concurrency; a user of another agency (dave) gets nothing of agency A and writes
//! nothing; invalid input never leaves the process.

use chrono::{DateTime, Duration, Utc};
use livechat::chat::entity_views::PublicWidgetSettings;
use livechat::chat::models::{Channel, Conversation, Visitor, WidgetPosition, WidgetSettings};
use livechat::chat::visitors::{VisitorInfoPatch, VisitorInput};
use livechat::chat::widget::WidgetSettingsPatch;
use livechat::chat::ChatError;
use livechat::ErrorKind;
use serde_json::json;
use uuid::Uuid;

use crate::entity;
use entity::{assert_invalid, id, Env, SITE_1, SITE_2};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const VISITOR_MIA: &str = "10000000-0000-4000-8000-000000000101";
const VISITOR_PETER: &str = "10000000-0000-4000-8000-000000000104";
/// The public columns, in the order of `mod_chat_get_public_widget_settings`.
const PUBLIC_COLUMNS: &str = "primary_color, text_color, position, launcher_icon, launcher_size, \
    border_radius, z_index, company_name, welcome_message, away_message, offline_message, \
    logo_url, pre_chat_enabled, pre_chat_name_required, pre_chat_email_required, \
    pre_chat_phone_enabled, pre_chat_phone_required, pre_chat_message_required, \
    pre_chat_department_selector, business_hours_enabled, business_hours, timezone, \
    auto_open_delay_seconds, show_agent_avatar, show_agent_name, show_typing_indicator, \
    enable_file_uploads, enable_emoji, enable_sound_notifications, enable_satisfaction_rating, \
    language, custom_translations, whatsapp_enabled, whatsapp_phone_number, allowed_domains, \
    max_file_size_mb, allowed_file_types";

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("an RFC 3339 instant")
        .with_timezone(&Utc)
}

impl Env {
    async fn settings_rows(&self, site: Uuid) -> Vec<WidgetSettings> {
        self.json_rows(
            "select to_jsonb(w)::text from public.mod_chat_widget_settings w where w.site_id = $1::text::uuid",
            &[&site.to_string()],
        )
        .await
    }

    async fn visitor_rows(&self, visitor: Uuid) -> Vec<Visitor> {
        self.json_rows(
            "select to_jsonb(v)::text from public.mod_chat_visitors v where v.id = $1::text::uuid",
            &[&visitor.to_string()],
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Widget settings
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn widget_settings_are_the_sites_row_for_the_service_role_and_for_alice() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        for site in [SITE_1, SITE_2] {
            let got = chat.widget().get(id(site)).await.expect("get");
            assert_eq!(
                vec![got.clone()],
                env.settings_rows(id(site)).await,
                "{who}: {site}"
            );
        }
        let e = chat
            .widget()
            .get(Uuid::new_v4())
            .await
            .expect_err("no such site");
        assert_eq!(ChatError::of(&e), Some(ChatError::SiteNotFound), "{who}");
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
    let acme = env.service.widget().get(id(SITE_1)).await.expect("get");
    assert_eq!(acme.primary_color.as_deref(), Some("#e11d48"));
    assert_eq!(acme.business_hours_enabled, Some(true));
}

#[tokio::test]
async fn concurrent_first_widget_reads_create_one_row_with_the_defaults() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        let site = env.new_site(&format!("Fresh {who}")).await;
        let results = futures::future::join_all((0..8).map(|_| chat.widget().get(site))).await;
        let rows: Vec<WidgetSettings> = results
            .into_iter()
            .map(|r| r.expect("get-or-create"))
            .collect();
        let stored = env.settings_rows(site).await;
        assert_eq!(stored.len(), 1, "{who}: one row");
        assert!(
            rows.iter().all(|r| r == &stored[0]),
            "{who}: every caller got it"
        );
        let s = &stored[0];
        assert_eq!(s.primary_color.as_deref(), Some("#2563eb"));
        assert_eq!(s.position, Some(WidgetPosition::BottomRight));
        assert_eq!(s.timezone.as_deref(), Some("Africa/Lusaka"));
        assert_eq!(s.business_hours_enabled, Some(false));
    }
}

#[tokio::test]
async fn widget_update_upserts_only_the_patched_columns_for_service_and_alice() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        let before = env.settings_rows(id(SITE_2)).await.remove(0);
        let hours = json!({"saturday": {"enabled": true, "start": "10:00", "end": "14:00"}});
        let updated = chat
            .widget()
            .update(
                id(SITE_2),
                WidgetSettingsPatch::default()
                    .primary_color("#0F766E")
                    .position(WidgetPosition::BottomRight)
                    .company_name(format!("Blog by {who}"))
                    .clear_logo_url()
                    .business_hours_enabled(true)
                    .business_hours(hours.clone())
                    .timezone("Europe/Paris")
                    .allowed_domains(["blog.acme.example", "o'brien.example,(x)"])
                    .allowed_file_types(["image/png"])
                    .blocked_ips(["10.0.0.1"])
                    .max_file_size_mb(25)
                    .whatsapp_business_account_id("waba-1"),
            )
            .await
            .expect("update");
        let stored = env.settings_rows(id(SITE_2)).await;
        assert_eq!(stored, vec![updated.clone()], "{who}");
        assert_eq!(updated.id, before.id, "{who}: the same row");
        assert_eq!(updated.primary_color.as_deref(), Some("#0F766E"));
        assert_eq!(updated.business_hours, Some(hours));
        assert_eq!(
            updated.allowed_domains,
            Some(vec![
                "blog.acme.example".into(),
                "o'brien.example,(x)".into()
            ])
        );
        // Columns not in the patch are unchanged.
        assert_eq!(updated.welcome_message, before.welcome_message);
        assert_eq!(updated.enable_emoji, before.enable_emoji);
        assert_eq!(updated.language, before.language);

        // A site without settings gets a row: the patch plus the defaults.
        let fresh = env.new_site(&format!("Upsert {who}")).await;
        let created = chat
            .widget()
            .update(fresh, WidgetSettingsPatch::default().language("fr"))
            .await
            .expect("upsert");
        assert_eq!(
            env.settings_rows(fresh).await,
            vec![created.clone()],
            "{who}"
        );
        assert_eq!(created.language.as_deref(), Some("fr"));
        assert_eq!(created.primary_color.as_deref(), Some("#2563eb"));
    }
    let e = env
        .service
        .widget()
        .update(
            Uuid::new_v4(),
            WidgetSettingsPatch::default().language("fr"),
        )
        .await
        .expect_err("no such site");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn public_widget_settings_work_with_the_anon_key_and_carry_no_internal_ids() {
    let env = Env::new().await;
    env.exec(&format!(
        "update public.mod_chat_widget_settings set whatsapp_phone_number_id = 'pnid-secret', \
         whatsapp_business_account_id = 'waba-secret', blocked_ips = '{{\"10.9.9.9\"}}' \
         where site_id = '{SITE_1}'"
    ))
    .await;
    let sql = format!(
        "select to_jsonb(p)::text from (select {PUBLIC_COLUMNS} \
         from public.mod_chat_widget_settings where site_id = $1::text::uuid) p"
    );
    for (who, chat) in [
        ("anon", &env.anon),
        ("service", &env.service),
        ("alice", &env.alice),
    ] {
        for site in [SITE_1, SITE_2] {
            let got = chat
                .widget()
                .public(id(site))
                .await
                .expect("public settings");
            let want: Vec<PublicWidgetSettings> = env.json_rows(&sql, &[&site]).await;
            assert_eq!(vec![got.clone()], want, "{who}: {site}");
            let text = serde_json::to_string(&got).expect("json");
            for secret in ["pnid-secret", "waba-secret", "10.9.9.9", SITE_1, "f0000000"] {
                assert!(!text.contains(secret), "{who}: {secret} leaked: {text}");
            }
        }
        // What the server sends, not only what the type keeps, has no ids.
        let raw: serde_json::Value = chat
            .client()
            .rpc(
                "mod_chat_get_public_widget_settings",
                &json!({ "p_site_id": SITE_1 }),
            )
            .call()
            .await
            .expect("raw public settings");
        let keys: Vec<&String> = raw.as_object().expect("an object").keys().collect();
        assert!(
            keys.iter()
                .all(|k| !k.ends_with("id") && !k.contains("blocked")),
            "{who}: {keys:?}"
        );
        let e = chat
            .widget()
            .public(Uuid::new_v4())
            .await
            .expect_err("no such site");
        assert_eq!(ChatError::of(&e), Some(ChatError::SiteNotFound), "{who}");
    }
    // The anon key reaches nothing else of the widget.
    let e = env
        .anon
        .widget()
        .get(id(SITE_1))
        .await
        .expect_err("anon get");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Auth | ErrorKind::NotFound | ErrorKind::Forbidden
        ),
        "{e}"
    );
}

#[tokio::test]
async fn acme_store_business_hours_follow_its_lusaka_weekday_schedule() {
    let env = Env::new().await;
    // Seed: Acme Store, Monday to Friday 09:00-17:00, Africa/Lusaka (UTC+2, no DST).
    for (who, chat) in [
        ("anon", &env.anon),
        ("service", &env.service),
        ("alice", &env.alice),
    ] {
        let w = chat.widget();
        // Monday 2026-11-30 10:00 local.
        let a = w
            .within_business_hours(id(SITE_1))
            .at(utc("2026-11-30T08:00:00Z"))
            .await
            .expect("monday morning");
        assert!(a.open, "{who}");
        assert_eq!(
            a.closes_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-11-30T17:00:00+02:00")
        );
        assert_eq!(a.next_open_at, None);
        // Monday 08:59 local: closed, opens at 09:00 the same day.
        let a = w
            .within_business_hours(id(SITE_1))
            .at(utc("2026-11-30T06:59:00Z"))
            .await
            .expect("monday early");
        assert!(!a.open, "{who}");
        assert_eq!(
            a.next_open_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-11-30T09:00:00+02:00")
        );
        // Friday 17:00 local (closing instant) and Saturday noon: next Monday 09:00.
        for at in ["2026-12-04T15:00:00Z", "2026-12-05T10:00:00Z"] {
            let a = w
                .within_business_hours(id(SITE_1))
                .at(utc(at))
                .await
                .expect("weekend");
            assert!(!a.open, "{who}: {at}");
            assert_eq!(
                a.next_open_at.map(|t| t.to_rfc3339()).as_deref(),
                Some("2026-12-07T09:00:00+02:00"),
                "{who}: {at}"
            );
        }
        // Acme Blog has business hours disabled: always open.
        let a = w.within_business_hours(id(SITE_2)).await.expect("blog");
        assert!(a.open, "{who}");
        // Now, without an instant: consistent either way.
        let a = w.within_business_hours(id(SITE_1)).await.expect("now");
        assert_eq!(a.open, a.next_open_at.is_none(), "{who}: {a:?}");
    }

    // A schedule changed through the library is what the check evaluates.
    env.service
        .widget()
        .update(
            id(SITE_1),
            WidgetSettingsPatch::default()
                .timezone("America/New_York")
                .business_hours(
                    json!({"sunday": {"enabled": true, "start": "22:00", "end": "02:00"}}),
                ),
        )
        .await
        .expect("update schedule");
    // Monday 2026-11-30 01:00 in New York (06:00 UTC): still open from Sunday night.
    let a = env
        .alice
        .widget()
        .within_business_hours(id(SITE_1))
        .at(utc("2026-11-30T06:00:00Z"))
        .await
        .expect("overnight");
    assert!(a.open);
    // No enabled day: closed with no next opening.
    env.service
        .widget()
        .update(
            id(SITE_1),
            WidgetSettingsPatch::default().business_hours(json!({})),
        )
        .await
        .expect("clear schedule");
    let a = env
        .anon
        .widget()
        .within_business_hours(id(SITE_1))
        .await
        .expect("empty");
    assert!(!a.open);
    assert_eq!(a.next_open_at, None);
}

// ---------------------------------------------------------------------------------------------
// Visitors
// ---------------------------------------------------------------------------------------------

const SQL_VISITOR_PAGE: &str = "select to_jsonb(v)::text from public.mod_chat_visitors v \
     where v.site_id = $1::text::uuid \
     order by v.last_seen_at desc nulls last, v.id \
     limit $2::text::bigint offset $3::text::bigint";

#[tokio::test]
async fn visitor_pages_are_ordered_by_last_seen_with_exact_totals_as_sql_counts_them() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        for site in [SITE_1, SITE_2] {
            let total = env
                .scalar_i64(
                    "select count(*) from public.mod_chat_visitors where site_id = $1::text::uuid",
                    &[&site],
                )
                .await;
            for (page, size) in [(1u32, 2u32), (2, 2), (3, 2), (1, 20), (1, 1000), (9, 3)] {
                let got = chat
                    .visitors()
                    .list(id(site))
                    .page(page)
                    .page_size(size)
                    .await
                    .unwrap_or_else(|e| panic!("{who} page {page}/{size}: {e}"));
                let offset = u64::from((page - 1) * size);
                let want: Vec<Visitor> = env
                    .json_rows(
                        SQL_VISITOR_PAGE,
                        &[&site, &size.to_string(), &offset.to_string()],
                    )
                    .await;
                assert_eq!(got.items, want, "{who}: {site} page {page} of {size}");
                assert_eq!(got.total, u64::try_from(total).expect("a count"), "{who}");
                assert_eq!((got.page, got.page_size), (page, size));
            }
        }
        let default = chat
            .visitors()
            .list(id(SITE_1))
            .await
            .expect("default page");
        assert_eq!((default.page, default.page_size, default.total), (1, 20, 4));
        assert!(!default.has_next());
        // Seed: Noah was seen 3 minutes ago, Mia 6: Noah first.
        assert_eq!(default.items[0].name.as_deref(), Some("Noah Banda"));
    }
}

#[tokio::test]
async fn visitor_reads_and_contact_writes_are_what_sql_holds_for_service_and_alice() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        let got = chat.visitors().get(id(VISITOR_MIA)).await.expect("get");
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            env.visitor_rows(id(VISITOR_MIA)).await
        );
        assert_eq!(
            chat.visitors().get(Uuid::new_v4()).await.expect("get"),
            None,
            "{who}"
        );

        let updated = chat
            .visitors()
            .update_info(
                id(VISITOR_MIA),
                VisitorInfoPatch::default()
                    .name(format!("Mia ({who})"))
                    .email("MIA@example.com")
                    .clear_phone()
                    .tags(["vip", "a,b"])
                    .notes("Prefers \"e-mail\"")
                    .custom_data(json!({"plan": "gold", "seen": [1, 2]})),
            )
            .await
            .expect("update info");
        assert_eq!(
            vec![updated.clone()],
            env.visitor_rows(id(VISITOR_MIA)).await,
            "{who}"
        );
        assert_eq!(updated.tags, Some(vec!["vip".into(), "a,b".into()]));
        assert_eq!(
            updated.custom_data,
            Some(json!({"plan": "gold", "seen": [1, 2]}))
        );

        let before = Utc::now() - Duration::seconds(5);
        let tracked = chat
            .visitors()
            .track_page(
                id(VISITOR_MIA),
                "https://acme-store.example/cart?x=1&y=(2)",
                Some("Cart"),
            )
            .await
            .expect("track page");
        assert_eq!(
            vec![tracked.clone()],
            env.visitor_rows(id(VISITOR_MIA)).await,
            "{who}"
        );
        assert_eq!(
            tracked.current_page_url.as_deref(),
            Some("https://acme-store.example/cart?x=1&y=(2)")
        );
        assert!(tracked.last_seen_at.expect("last_seen_at") > before);
        let untitled = chat
            .visitors()
            .track_page(id(VISITOR_MIA), "https://acme-store.example/", None)
            .await
            .expect("track page without a title");
        assert_eq!(untitled.current_page_title, None);

        let contact = Uuid::new_v4();
        let linked = chat
            .visitors()
            .link_crm(id(VISITOR_MIA), contact)
            .await
            .expect("link crm");
        assert_eq!(
            vec![linked.clone()],
            env.visitor_rows(id(VISITOR_MIA)).await,
            "{who}"
        );
        assert_eq!(linked.crm_contact_id, Some(contact));

        let conversations = chat
            .visitors()
            .conversations(id(VISITOR_MIA))
            .await
            .expect("conversations");
        let want: Vec<Conversation> = env
            .json_rows(
                "select to_jsonb(c)::text from public.mod_chat_conversations c \
                 where c.visitor_id = $1::text::uuid order by c.created_at desc, c.id desc",
                &[&VISITOR_MIA],
            )
            .await;
        assert_eq!(conversations, want, "{who}");
        assert_eq!(conversations.len(), 2, "seed: 101 (newer) and 104");
        assert_eq!(
            conversations[0].id,
            id("20000000-0000-4000-8000-000000000101")
        );
        assert!(chat
            .visitors()
            .conversations(Uuid::new_v4())
            .await
            .expect("none")
            .is_empty());

        for e in [
            chat.visitors()
                .update_info(Uuid::new_v4(), VisitorInfoPatch::default().notes("x"))
                .await
                .expect_err("missing visitor"),
            chat.visitors()
                .track_page(Uuid::new_v4(), "https://x.example", None)
                .await
                .expect_err("missing visitor"),
            chat.visitors()
                .link_crm(Uuid::new_v4(), contact)
                .await
                .expect_err("missing visitor"),
        ] {
            assert_eq!(e.kind(), ErrorKind::NotFound, "{who}: {e}");
        }
    }
}

#[tokio::test]
async fn create_or_update_matches_by_email_then_whatsapp_phone_and_creates_otherwise() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        // Same e-mail, other case and spaces: Mia is updated.
        let visits = env.visitor_rows(id(VISITOR_MIA)).await[0].total_visits;
        let mia = chat
            .visitors()
            .create_or_update(
                VisitorInput::new(id(SITE_1), Channel::Widget)
                    .email("  MIA@Example.com ")
                    .browser("Firefox")
                    .ip_address("2001:db8::1".parse().expect("an IP"))
                    .current_page("https://acme-store.example/faq", Some("FAQ")),
            )
            .await
            .expect("update by e-mail");
        assert_eq!(mia.id, id(VISITOR_MIA), "{who}");
        assert_eq!(vec![mia.clone()], env.visitor_rows(mia.id).await, "{who}");
        assert_eq!(mia.total_visits, visits.map(|v| v + 1));
        assert_eq!(mia.browser.as_deref(), Some("Firefox"));
        assert_eq!(
            mia.name.as_deref(),
            Some("Mia Mwale"),
            "unset fields are kept"
        );
        assert_eq!(mia.ip_address.as_deref(), Some("2001:db8::1"));

        // No e-mail, same WhatsApp phone: Peter is updated.
        let peter = chat
            .visitors()
            .create_or_update(
                VisitorInput::new(id(SITE_1), Channel::Whatsapp).whatsapp_phone("+260971234567"),
            )
            .await
            .expect("update by phone");
        assert_eq!(peter.id, id(VISITOR_PETER), "{who}");
        assert_eq!(vec![peter.clone()], env.visitor_rows(peter.id).await);

        // Someone new.
        let email = format!("new-{who}@example.com");
        let new = chat
            .visitors()
            .create_or_update(
                VisitorInput::new(id(SITE_1), Channel::Api)
                    .name("Newcomer")
                    .email(email.clone())
                    .phone("+260970000000")
                    .os("Linux")
                    .device("desktop")
                    .country("Zambia")
                    .city("Lusaka")
                    .referrer_url("https://www.google.com/")
                    .landing_page_url("https://acme-store.example/")
                    .external_id("crm-42"),
            )
            .await
            .expect("create");
        assert_eq!(vec![new.clone()], env.visitor_rows(new.id).await, "{who}");
        assert_eq!(
            (new.total_visits, new.channel),
            (Some(1), Some(Channel::Api))
        );
        let n = env
            .scalar_i64(
                "select count(*) from public.mod_chat_visitors where lower(email) = lower($1)",
                &[&email],
            )
            .await;
        assert_eq!(n, 1);

        // The same e-mail on another site is another visitor.
        let other = chat
            .visitors()
            .create_or_update(VisitorInput::new(id(SITE_2), Channel::Widget).email(email.clone()))
            .await
            .expect("create on site 2");
        assert_ne!(other.id, new.id, "{who}");

        let e = chat
            .visitors()
            .create_or_update(VisitorInput::new(Uuid::new_v4(), Channel::Widget).email("x@y.z"))
            .await
            .expect_err("no such site");
        assert_eq!(
            ChatError::of(&e),
            Some(ChatError::SiteNotFound),
            "{who}: {e}"
        );
    }
}

#[tokio::test]
async fn concurrent_create_or_update_calls_with_one_email_create_one_visitor() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        let email = format!("race-{who}@example.com");
        let calls = (0..12).map(|i| {
            let address = if i % 2 == 0 {
                email.clone()
            } else {
                format!(" {} ", email.to_uppercase())
            };
            chat.visitors()
                .create_or_update(VisitorInput::new(id(SITE_1), Channel::Widget).email(address))
        });
        let results = futures::future::join_all(calls).await;
        let ids: std::collections::BTreeSet<Uuid> = results
            .into_iter()
            .map(|r| r.expect("create or update").id)
            .collect();
        assert_eq!(ids.len(), 1, "{who}: every call got the same visitor");
        let rows: Vec<Visitor> = env
            .json_rows(
                "select to_jsonb(v)::text from public.mod_chat_visitors v \
                 where v.site_id = $1::text::uuid and lower(v.email) = lower($2)",
                &[&SITE_1, &email],
            )
            .await;
        assert_eq!(rows.len(), 1, "{who}: one visitor");
        assert_eq!(rows[0].total_visits, Some(12), "{who}: every visit counted");
    }
}

// ---------------------------------------------------------------------------------------------
// Isolation and validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dave_gets_nothing_of_agency_a_from_any_widget_or_visitor_action() {
    let env = Env::new().await;
    // A site of agency A without settings yet: dave must not create them either.
    let bare = env.new_site("Bare").await;
    let before = env.snapshot().await;
    let dave = &env.dave;
    let site = id(SITE_1);
    let mia = id(VISITOR_MIA);

    for s in [site, bare] {
        let e = dave.widget().get(s).await.expect_err("get");
        assert_eq!(ChatError::of(&e), Some(ChatError::SiteNotFound), "{e}");
        let e = dave
            .widget()
            .update(s, WidgetSettingsPatch::default().primary_color("#000000"))
            .await
            .expect_err("update");
        assert!(
            matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::NotFound),
            "{e}"
        );
    }
    // The public settings are public by design (the anon widget reads them): dave sees exactly
    // what an anonymous visitor sees, nothing more.
    let public = dave.widget().public(site).await.expect("public");
    assert_eq!(
        public,
        env.anon.widget().public(site).await.expect("anon public")
    );
    let hours = dave
        .widget()
        .within_business_hours(site)
        .at(utc("2026-11-30T08:00:00Z"))
        .await
        .expect("hours");
    assert!(hours.open);

    let page = dave.visitors().list(site).await.expect("list");
    assert_eq!((page.items.len(), page.total), (0, 0));
    assert_eq!(dave.visitors().get(mia).await.expect("get"), None);
    let e = dave
        .visitors()
        .create_or_update(VisitorInput::new(site, Channel::Widget).email("mia@example.com"))
        .await
        .expect_err("create or update in agency A");
    assert_eq!(ChatError::of(&e), Some(ChatError::SiteNotFound), "{e}");
    let e = dave
        .visitors()
        .update_info(mia, VisitorInfoPatch::default().notes("hijacked"))
        .await
        .expect_err("update info");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = dave
        .visitors()
        .track_page(mia, "https://evil.example", None)
        .await
        .expect_err("track");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = dave
        .visitors()
        .link_crm(mia, Uuid::new_v4())
        .await
        .expect_err("link");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(dave
        .visitors()
        .conversations(mia)
        .await
        .expect("conversations")
        .is_empty());

    assert_eq!(env.snapshot().await, before, "dave wrote nothing");
}

#[tokio::test]
async fn invalid_widget_and_visitor_input_is_refused_before_any_request() {
    let env = Env::new().await;
    let before = env.snapshot().await;
    for who in ["service", "alice"] {
        let (chat, proxy) = env.proxied(who).await;
        let site = id(SITE_1);
        let w = chat.widget();
        for (what, patch) in [
            ("empty patch", WidgetSettingsPatch::default()),
            (
                "bad colour",
                WidgetSettingsPatch::default().primary_color("blue"),
            ),
            (
                "short colour",
                WidgetSettingsPatch::default().text_color("#12"),
            ),
            (
                "launcher size 0",
                WidgetSettingsPatch::default().launcher_size(0),
            ),
            (
                "negative radius",
                WidgetSettingsPatch::default().border_radius(-2),
            ),
            (
                "negative delay",
                WidgetSettingsPatch::default().auto_open_delay_seconds(-1),
            ),
            (
                "no file size",
                WidgetSettingsPatch::default().max_file_size_mb(0),
            ),
            (
                "unknown zone",
                WidgetSettingsPatch::default().timezone("Mars/Olympus"),
            ),
            ("blank zone", WidgetSettingsPatch::default().timezone(" ")),
            (
                "bad schedule",
                WidgetSettingsPatch::default()
                    .business_hours(json!({"monday": {"enabled": true, "start": "9am"}})),
            ),
            (
                "translations",
                WidgetSettingsPatch::default().custom_translations(json!([])),
            ),
            (
                "blank language",
                WidgetSettingsPatch::default().language(""),
            ),
        ] {
            assert_invalid(w.update(site, patch).await, what);
        }
        let v = chat.visitors();
        for (page, size) in [(0u32, 20u32), (1, 0), (1, 1001)] {
            assert_invalid(
                v.list(site).page(page).page_size(size).await,
                &format!("page {page} of {size}"),
            );
        }
        assert_invalid(
            v.create_or_update(VisitorInput::new(site, Channel::Widget).name("  "))
                .await,
            "blank visitor name",
        );
        assert_invalid(
            v.update_info(id(VISITOR_MIA), VisitorInfoPatch::default())
                .await,
            "empty patch",
        );
        assert_invalid(
            v.update_info(id(VISITOR_MIA), VisitorInfoPatch::default().name(""))
                .await,
            "empty name",
        );
        assert_invalid(
            v.update_info(
                id(VISITOR_MIA),
                VisitorInfoPatch::default().custom_data(json!("not an object")),
            )
            .await,
            "custom data",
        );
        assert_invalid(
            v.track_page(id(VISITOR_MIA), "", Some("t")).await,
            "empty url",
        );
        assert_eq!(
            proxy.requests(),
            Vec::<String>::new(),
            "{who}: nothing was sent"
        );
    }
    assert_eq!(env.snapshot().await, before);
}
