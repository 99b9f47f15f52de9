//! Acting with a user's JWT honours row-level security: a member of agency A sees and changes
//! none of agency B's rows, and the reverse. Run against the real local stack.

use crate::rest_support;

use std::collections::BTreeSet;

use livechat::{BoxError, ErrorKind};
use rest_support::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Row {
    id: String,
    site_id: String,
}

const CHAT_TABLES: [&str; 9] = [
    "mod_chat_departments",
    "mod_chat_agents",
    "mod_chat_widget_settings",
    "mod_chat_visitors",
    "mod_chat_conversations",
    "mod_chat_messages",
    "mod_chat_canned_responses",
    "mod_chat_knowledge_base",
    "mod_chat_analytics",
];

async fn sites_of_agency(env: &Env, agency: &str) -> BTreeSet<String> {
    env.texts(
        "select id::text from sites where agency_id = $1::text::uuid",
        &[&agency],
    )
    .await
    .into_iter()
    .collect()
}

#[tokio::test]
async fn a_member_of_agency_a_sees_only_agency_a_rows_in_every_chat_table() {
    let env = seeded().await;
    let a_sites = sites_of_agency(&env, AGENCY_A).await;
    let b_sites = sites_of_agency(&env, AGENCY_B).await;
    let alice = env.user(ALICE);
    let dave = env.user(DAVE);

    for table in CHAT_TABLES {
        for (who, client, own, other) in [
            ("alice", &alice, &a_sites, &b_sites),
            ("dave", &dave, &b_sites, &a_sites),
        ] {
            let rows: Vec<Row> = client
                .from(table)
                .select("id,site_id")
                .fetch()
                .await
                .unwrap_or_else(|e| panic!("{who} reading {table}: {e}"));
            assert!(
                rows.iter().all(|r| own.contains(&r.site_id)),
                "{who} sees a row of another agency in {table}"
            );
            let want = env
                .count(
                    &format!("select count(*) from public.{table} where site_id::text = any($1)"),
                    &[&own.iter().cloned().collect::<Vec<_>>()],
                )
                .await;
            assert_eq!(
                rows.len() as i64,
                want,
                "{who} sees all own rows of {table}"
            );

            // Asking for the other agency's rows explicitly gives nothing.
            let theirs: Vec<Row> = client
                .from(table)
                .select("id,site_id")
                .in_("site_id", other.iter())
                .fetch()
                .await
                .unwrap();
            assert!(theirs.is_empty(), "{who} reads {table} of another agency");
        }
    }
}

#[tokio::test]
async fn embedded_rows_are_filtered_by_the_same_policies() {
    #[derive(Debug, Deserialize)]
    struct Site {
        id: String,
        mod_chat_conversations: Vec<Row>,
    }
    let env = seeded().await;
    let alice = env.user(ALICE);
    let sites: Vec<Site> = alice
        .from("sites")
        .select("id,mod_chat_conversations(id,site_id)")
        .fetch()
        .await
        .unwrap();
    let ids: BTreeSet<String> = sites.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, sites_of_agency(&env, AGENCY_A).await);
    for s in &sites {
        assert!(s.mod_chat_conversations.iter().all(|c| c.site_id == s.id));
    }
}

#[tokio::test]
async fn a_member_cannot_change_another_agencys_rows() {
    let env = seeded().await;
    let alice = env.user(ALICE);

    let single = alice
        .from("mod_chat_canned_responses")
        .eq("id", CANNED_GREETING_3)
        .single::<Row>()
        .await
        .unwrap_err();
    assert_eq!(single.kind(), ErrorKind::NotFound);

    let updated: Vec<Row> = alice
        .from("mod_chat_canned_responses")
        .update(&serde_json::json!({"title": "hijacked"}))
        .eq("id", CANNED_GREETING_3)
        .fetch()
        .await
        .unwrap();
    assert!(updated.is_empty());

    let deleted: Vec<Row> = alice
        .from("mod_chat_canned_responses")
        .delete()
        .eq("site_id", SITE_3)
        .fetch()
        .await
        .unwrap();
    assert!(deleted.is_empty());

    let e = alice
        .from("mod_chat_canned_responses")
        .insert(&serde_json::json!({"site_id": SITE_3, "title": "t", "content": "c"}))
        .execute()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");

    let untouched = env
        .texts(
            "select title from mod_chat_canned_responses where id = $1::text::uuid",
            &[&CANNED_GREETING_3],
        )
        .await;
    assert_eq!(untouched, vec!["Greeting".to_string()]);
    assert_eq!(
        env.count(
            "select count(*) from mod_chat_canned_responses where site_id = $1::text::uuid",
            &[&SITE_3]
        )
        .await,
        2
    );

    // Her own agency's rows she can change.
    let mine: Vec<Row> = alice
        .from("mod_chat_canned_responses")
        .update(&serde_json::json!({"title": "Hello"}))
        .eq("id", CANNED_GREETING_1)
        .fetch()
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, CANNED_GREETING_1);
}

#[tokio::test]
async fn anon_sees_no_conversations_and_a_token_provider_acts_as_its_user() {
    let env = seeded().await;
    let rows: Vec<Row> = env
        .anon
        .from("mod_chat_conversations")
        .select("id,site_id")
        .fetch()
        .await
        .unwrap();
    assert!(rows.is_empty(), "no anon SELECT policy on conversations");

    let token = env.stack.user_token(DAVE.0, Some(DAVE.1));
    let dave = env.anon.with_access_token_provider(move || {
        let t = token.clone();
        async move { Ok::<_, BoxError>(Some(t)) }
    });
    let rows: Vec<Row> = dave
        .from("mod_chat_conversations")
        .select("id,site_id")
        .fetch()
        .await
        .unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.site_id == SITE_3));
    assert!(dave.access_token().await.unwrap().is_some());
}
