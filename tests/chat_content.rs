//! Canned responses and the knowledge base against the real local stack: every action with the
//! service-role key and with a dashboard user's JWT (alice, agency A), compared with direct SQL
//! over the same data; hostile search text matches literally; a user of another agency (dave)
//! gets nothing of agency A and writes nothing; invalid input never leaves the process.

use livechat::chat::canned::CannedResponsePatch;
use livechat::chat::knowledge_base::ArticlePatch;
use livechat::chat::models::{CannedResponse, KnowledgeBaseArticle};
use livechat::chat::ChatError;
use livechat::ErrorKind;
use uuid::Uuid;

use crate::entity;
use entity::{assert_invalid, id, Env, ALICE, SITE_1, SITE_2};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const CANNED_GREETING_1: &str = "40000000-0000-4000-8000-000000000101";
const ARTICLE_SHIPPING_1: &str = "50000000-0000-4000-8000-000000000101";

/// Search needles that break naive PostgREST filter strings or LIKE patterns.
const HOSTILE: [&str; 14] = [
    ",",
    "(",
    ")",
    ".",
    "*",
    "%",
    "_",
    "\"",
    "\\",
    "'",
    "a,b)",
    "or=(id.neq.0)",
    "%_*",
    "Ünï 🚀",
];

impl Env {
    async fn canned_row(&self, row_id: Uuid) -> Vec<CannedResponse> {
        self.json_rows(
            "select to_jsonb(r)::text from public.mod_chat_canned_responses r where r.id = $1::text::uuid",
            &[&row_id.to_string()],
        )
        .await
    }

    async fn article_row(&self, row_id: Uuid) -> Vec<KnowledgeBaseArticle> {
        self.json_rows(
            "select to_jsonb(k)::text from public.mod_chat_knowledge_base k where k.id = $1::text::uuid",
            &[&row_id.to_string()],
        )
        .await
    }
}

/// 10 000 characters of every hostile character, unicode included.
fn long_hostile_text() -> String {
    let unit = ",()._*%\"\\'Ü🚀 ";
    unit.chars().cycle().take(10_000).collect()
}

const SQL_CANNED_LIST: &str = "select to_jsonb(r)::text from public.mod_chat_canned_responses r \
     where r.site_id = $1::text::uuid and r.is_active is true \
       and ($2::text is null or r.category = $2) \
     order by r.usage_count desc nulls last, r.id";
const SQL_CANNED_SEARCH: &str = "select to_jsonb(r)::text from public.mod_chat_canned_responses r \
     where r.site_id = $1::text::uuid and r.is_active is true \
       and (position(lower($2) in lower(r.title)) > 0 \
            or position(lower($2) in lower(r.content)) > 0 \
            or position(lower($2) in lower(coalesce(r.shortcut, ''))) > 0) \
     order by r.usage_count desc nulls last, r.id";
const SQL_ARTICLE_LIST: &str = "select to_jsonb(k)::text from public.mod_chat_knowledge_base k \
     where k.site_id = $1::text::uuid and k.is_active is true \
       and ($2::text is null or k.category = $2) \
     order by k.usage_count desc nulls last, k.id";
const SQL_ARTICLE_SEARCH: &str = "select to_jsonb(k)::text from public.mod_chat_knowledge_base k \
     where k.site_id = $1::text::uuid and k.is_active is true \
       and (position(lower($2) in lower(k.title)) > 0 \
            or position(lower($2) in lower(k.content)) > 0) \
     order by k.usage_count desc nulls last, k.id";

// ---------------------------------------------------------------------------------------------
// Canned responses
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn canned_lists_hold_the_active_responses_by_usage_as_sql_finds_them() {
    let env = Env::new().await;
    env.db
        .batch_execute(
            "update public.mod_chat_canned_responses set is_active = false \
             where id = '40000000-0000-4000-8000-000000000103'",
        )
        .await
        .expect("deactivating one");
    for (who, chat) in env.members() {
        for site in [SITE_1, SITE_2] {
            let want: Vec<CannedResponse> = env
                .json_rows(SQL_CANNED_LIST, &[&site, &None::<String>])
                .await;
            let got = chat.canned_responses().list(id(site)).await.expect("list");
            assert_eq!(got, want, "{who}: {site}");
            assert!(!got.is_empty());
            for category in ["General", "Shipping", "Billing", "none such"] {
                let want: Vec<CannedResponse> = env
                    .json_rows(SQL_CANNED_LIST, &[&site, &Some(category)])
                    .await;
                let got = chat
                    .canned_responses()
                    .list(id(site))
                    .category(category)
                    .await
                    .expect("list by category");
                assert_eq!(got, want, "{who}: {site} {category}");
            }
        }
    }
    let site_1 = env
        .service
        .canned_responses()
        .list(id(SITE_1))
        .await
        .expect("list");
    let usage: Vec<_> = site_1.iter().map(|r| r.usage_count).collect();
    assert_eq!(
        usage,
        vec![Some(42), Some(17)],
        "most used first; the inactive one is left out"
    );
}

#[tokio::test]
async fn canned_writes_are_what_sql_reads_back_for_the_service_role_and_for_alice() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        let created = chat
            .canned_responses()
            .create(
                id(SITE_1),
                "Opening hours",
                "We're open 09:00-17:00, Mon (to) Fri.",
            )
            .shortcut("/hours")
            .category("General")
            .tags(["hours", "info"])
            .created_by(id(ALICE.0))
            .shared(false)
            .active(true)
            .await
            .expect("create");
        assert_eq!(
            env.canned_row(created.id).await,
            vec![created.clone()],
            "{who}"
        );
        assert_eq!(created.tags, Some(vec!["hours".into(), "info".into()]));
        assert_eq!(
            (created.is_shared, created.usage_count),
            (Some(false), Some(0))
        );

        let updated = chat
            .canned_responses()
            .update(
                created.id,
                CannedResponsePatch::default()
                    .title("Hours")
                    .content("Open 9 to 5")
                    .clear_shortcut()
                    .category("Info")
                    .tags(["hours"])
                    .is_shared(true)
                    .is_active(true),
            )
            .await
            .expect("update");
        assert_eq!(
            env.canned_row(created.id).await,
            vec![updated.clone()],
            "{who}"
        );
        assert_eq!(updated.shortcut, None);
        assert_eq!(updated.category.as_deref(), Some("Info"));

        let used = chat
            .canned_responses()
            .increment_usage(created.id)
            .await
            .expect("increment");
        assert_eq!(
            env.canned_row(created.id).await,
            vec![used.clone()],
            "{who}"
        );
        assert_eq!(used.usage_count, Some(1));
        assert!(used.last_used_at.is_some());

        chat.canned_responses()
            .delete(created.id)
            .await
            .expect("delete");
        assert!(
            env.canned_row(created.id).await.is_empty(),
            "{who}: hard delete"
        );

        let e = chat
            .canned_responses()
            .delete(created.id)
            .await
            .expect_err("twice");
        assert_eq!(e.kind(), ErrorKind::NotFound, "{who}");
        let e = chat
            .canned_responses()
            .update(created.id, CannedResponsePatch::default().title("x"))
            .await
            .expect_err("update a deleted one");
        assert_eq!(e.kind(), ErrorKind::NotFound, "{who}");
        let e = chat
            .canned_responses()
            .increment_usage(created.id)
            .await
            .expect_err("increment a deleted one");
        assert_eq!(
            ChatError::of(&e),
            Some(ChatError::CannedResponseNotFound),
            "{who}"
        );
    }
}

#[tokio::test]
async fn concurrent_usage_increments_are_all_counted() {
    let env = Env::new().await;
    let chat = &env.alice;
    let results = futures::future::join_all((0..20).map(|_| {
        chat.canned_responses()
            .increment_usage(id(CANNED_GREETING_1))
    }))
    .await;
    for r in results {
        r.expect("increment");
    }
    let row = env.canned_row(id(CANNED_GREETING_1)).await;
    assert_eq!(row[0].usage_count, Some(42 + 20));
}

#[tokio::test]
async fn hostile_search_text_matches_canned_responses_and_articles_literally() {
    let env = Env::new().await;
    let long = long_hostile_text();
    // One response and one article per needle, holding it in the title; plus the long text.
    let mut canned_ids = Vec::new();
    let mut article_ids = Vec::new();
    for (i, needle) in HOSTILE.iter().enumerate() {
        let title = format!("Needle {i} [{needle}]");
        canned_ids.push(
            env.service
                .canned_responses()
                .create(id(SITE_1), title.clone(), format!("Body {i}"))
                .await
                .expect("create")
                .id,
        );
        article_ids.push(
            env.service
                .knowledge_base()
                .create(id(SITE_1), title, format!("Body {i}"))
                .await
                .expect("create")
                .id,
        );
    }
    let long_canned = env
        .service
        .canned_responses()
        .create(id(SITE_1), "Long one", long.clone())
        .await
        .expect("create long");
    let long_article = env
        .service
        .knowledge_base()
        .create(id(SITE_1), "Long one", long.clone())
        .await
        .expect("create long");

    // A category made of hostile characters is compared exactly too.
    let odd_category = "a,b(c).*%_\"\\'Ü";
    let odd_canned = env
        .service
        .canned_responses()
        .create(id(SITE_1), "Odd", "Odd category")
        .category(odd_category)
        .await
        .expect("create odd");
    let odd_article = env
        .service
        .knowledge_base()
        .create(id(SITE_1), "Odd", "Odd category")
        .category(odd_category)
        .await
        .expect("create odd");

    for (who, chat) in env.members() {
        for (i, needle) in HOSTILE.iter().enumerate() {
            let want: Vec<CannedResponse> =
                env.json_rows(SQL_CANNED_SEARCH, &[&SITE_1, needle]).await;
            let got = chat
                .canned_responses()
                .search(id(SITE_1), needle)
                .await
                .expect("search canned");
            assert_eq!(got, want, "{who}: canned {needle:?}");
            assert!(
                got.iter().any(|r| r.id == canned_ids[i]),
                "{who}: {needle:?}"
            );
            assert!(
                got.iter().all(|r| r.title.contains(needle)
                    || r.content.contains(needle)
                    || r.shortcut.as_deref().unwrap_or("").contains(needle)
                    || r.title.to_lowercase().contains(&needle.to_lowercase())
                    || r.content.to_lowercase().contains(&needle.to_lowercase())),
                "{who}: every hit holds {needle:?}"
            );

            let want: Vec<KnowledgeBaseArticle> =
                env.json_rows(SQL_ARTICLE_SEARCH, &[&SITE_1, needle]).await;
            let got = chat
                .knowledge_base()
                .search(id(SITE_1), needle)
                .await
                .expect("search articles");
            assert_eq!(got, want, "{who}: articles {needle:?}");
            assert!(
                got.iter().any(|a| a.id == article_ids[i]),
                "{who}: {needle:?}"
            );
        }
        // The 10 000-character needle finds exactly the long rows.
        let got = chat
            .canned_responses()
            .search(id(SITE_1), &long)
            .await
            .expect("long search");
        assert_eq!(
            got.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![long_canned.id]
        );
        let got = chat
            .knowledge_base()
            .search(id(SITE_1), &long)
            .await
            .expect("long search");
        assert_eq!(
            got.iter().map(|a| a.id).collect::<Vec<_>>(),
            vec![long_article.id]
        );

        // Case does not matter; a needle found nowhere finds nothing.
        let got = chat
            .canned_responses()
            .search(id(SITE_1), "NEEDLE 3 [.]")
            .await
            .expect("search");
        assert_eq!(
            got.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![canned_ids[3]]
        );
        let got = chat
            .canned_responses()
            .search(id(SITE_1), "%%nothing%%")
            .await
            .expect("search");
        assert!(got.is_empty(), "{who}");
        // The seeded "100%" title matches literally, not as a pattern.
        let got = chat
            .canned_responses()
            .search(id(SITE_1), "100%")
            .await
            .expect("search");
        assert_eq!(
            got.iter().map(|r| r.id.to_string()).collect::<Vec<_>>(),
            vec!["40000000-0000-4000-8000-000000000103".to_string()]
        );
        let got = chat
            .canned_responses()
            .list(id(SITE_1))
            .category(odd_category)
            .await
            .expect("list by an odd category");
        assert_eq!(
            got.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![odd_canned.id],
            "{who}"
        );
        let got = chat
            .knowledge_base()
            .list(id(SITE_1))
            .category(odd_category)
            .await
            .expect("list by an odd category");
        assert_eq!(
            got.iter().map(|a| a.id).collect::<Vec<_>>(),
            vec![odd_article.id],
            "{who}"
        );
        // Only the site asked for.
        let got = chat
            .canned_responses()
            .search(id(SITE_2), "Needle")
            .await
            .expect("search");
        assert!(got.is_empty(), "{who}");
    }
}

// ---------------------------------------------------------------------------------------------
// Knowledge base
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn article_lists_hold_the_active_articles_by_usage_as_sql_finds_them() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        for site in [SITE_1, SITE_2] {
            let want: Vec<KnowledgeBaseArticle> = env
                .json_rows(SQL_ARTICLE_LIST, &[&site, &None::<String>])
                .await;
            let got = chat.knowledge_base().list(id(site)).await.expect("list");
            assert_eq!(got, want, "{who}: {site}");
            assert!(!got.is_empty());
            for category in ["Shipping", "Billing", "Editorial", "none such"] {
                let want: Vec<KnowledgeBaseArticle> = env
                    .json_rows(SQL_ARTICLE_LIST, &[&site, &Some(category)])
                    .await;
                let got = chat
                    .knowledge_base()
                    .list(id(site))
                    .category(category)
                    .await
                    .expect("list by category");
                assert_eq!(got, want, "{who}: {site} {category}");
            }
        }
        // Seed: "Order tracking" (Shipping) is inactive, so Shipping has one article.
        let shipping = chat
            .knowledge_base()
            .list(id(SITE_1))
            .category("Shipping")
            .await
            .expect("list");
        assert_eq!(
            shipping.iter().map(|a| a.id).collect::<Vec<_>>(),
            vec![id(ARTICLE_SHIPPING_1)],
            "{who}"
        );
    }
}

#[tokio::test]
async fn article_writes_and_search_are_what_sql_reads_back_for_the_service_role_and_for_alice() {
    let env = Env::new().await;
    for (who, chat) in env.members() {
        let created = chat
            .knowledge_base()
            .create(
                id(SITE_1),
                "Gift cards",
                "Gift cards are valid for 12 months.",
            )
            .category("Billing")
            .tags(["gift"])
            .created_by(id(ALICE.0))
            .active(true)
            .await
            .expect("create");
        assert_eq!(
            env.article_row(created.id).await,
            vec![created.clone()],
            "{who}"
        );

        let updated = chat
            .knowledge_base()
            .update(
                created.id,
                ArticlePatch::default()
                    .title("Gift cards & vouchers")
                    .content("Valid 12 months; 50% top-ups allowed.")
                    .clear_category()
                    .tags(["gift", "voucher"])
                    .is_active(true),
            )
            .await
            .expect("update");
        assert_eq!(
            env.article_row(created.id).await,
            vec![updated.clone()],
            "{who}"
        );
        assert_eq!(updated.category, None);

        let hits = chat
            .knowledge_base()
            .search(id(SITE_1), "50% TOP")
            .await
            .expect("search");
        let want: Vec<KnowledgeBaseArticle> = env
            .json_rows(SQL_ARTICLE_SEARCH, &[&SITE_1, &"50% TOP"])
            .await;
        assert_eq!(hits, want, "{who}");
        assert_eq!(
            hits.iter().map(|a| a.id).collect::<Vec<_>>(),
            vec![created.id]
        );

        // Deactivated articles leave lists and searches.
        chat.knowledge_base()
            .update(created.id, ArticlePatch::default().is_active(false))
            .await
            .expect("deactivate");
        let hits = chat
            .knowledge_base()
            .search(id(SITE_1), "voucher")
            .await
            .expect("search");
        assert!(hits.is_empty(), "{who}");

        chat.knowledge_base()
            .delete(created.id)
            .await
            .expect("delete");
        assert!(
            env.article_row(created.id).await.is_empty(),
            "{who}: hard delete"
        );
        let e = chat
            .knowledge_base()
            .delete(created.id)
            .await
            .expect_err("twice");
        assert_eq!(e.kind(), ErrorKind::NotFound, "{who}");
        let e = chat
            .knowledge_base()
            .update(created.id, ArticlePatch::default().title("x"))
            .await
            .expect_err("update a deleted one");
        assert_eq!(e.kind(), ErrorKind::NotFound, "{who}");
    }
}

// ---------------------------------------------------------------------------------------------
// Isolation and validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dave_gets_nothing_of_agency_a_from_any_canned_or_article_action() {
    let env = Env::new().await;
    let before = env.snapshot().await;
    let dave = &env.dave;
    let site = id(SITE_1);
    let canned = id(CANNED_GREETING_1);
    let article = id(ARTICLE_SHIPPING_1);

    assert!(dave
        .canned_responses()
        .list(site)
        .await
        .expect("list")
        .is_empty());
    assert!(dave
        .canned_responses()
        .list(site)
        .category("General")
        .await
        .expect("list")
        .is_empty());
    let e = dave
        .canned_responses()
        .create(site, "Mine", "In your site")
        .await
        .expect_err("create in agency A");
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    let e = dave
        .canned_responses()
        .update(canned, CannedResponsePatch::default().title("Hijacked"))
        .await
        .expect_err("update");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = dave
        .canned_responses()
        .delete(canned)
        .await
        .expect_err("delete");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = dave
        .canned_responses()
        .increment_usage(canned)
        .await
        .expect_err("increment");
    assert_eq!(ChatError::of(&e), Some(ChatError::CannedResponseNotFound));
    assert!(dave
        .canned_responses()
        .search(site, "")
        .await
        .expect("search")
        .is_empty());
    assert!(dave
        .canned_responses()
        .search(site, "Greeting")
        .await
        .expect("search")
        .is_empty());

    assert!(dave
        .knowledge_base()
        .list(site)
        .await
        .expect("list")
        .is_empty());
    let e = dave
        .knowledge_base()
        .create(site, "Mine", "In your site")
        .await
        .expect_err("create in agency A");
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    let e = dave
        .knowledge_base()
        .update(article, ArticlePatch::default().title("Hijacked"))
        .await
        .expect_err("update");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = dave
        .knowledge_base()
        .delete(article)
        .await
        .expect_err("delete");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(dave
        .knowledge_base()
        .search(site, "")
        .await
        .expect("search")
        .is_empty());
    assert!(dave
        .knowledge_base()
        .search(site, "Shipping")
        .await
        .expect("search")
        .is_empty());

    assert_eq!(env.snapshot().await, before, "dave wrote nothing");
}

#[tokio::test]
async fn invalid_canned_and_article_input_is_refused_before_any_request() {
    let env = Env::new().await;
    let before = env.snapshot().await;
    for who in ["service", "alice"] {
        let (chat, proxy) = env.proxied(who).await;
        let site = id(SITE_1);
        let canned = chat.canned_responses();
        assert_invalid(canned.create(site, "", "content").await, "empty title");
        assert_invalid(canned.create(site, "title", " ").await, "blank content");
        assert_invalid(
            canned
                .update(id(CANNED_GREETING_1), CannedResponsePatch::default())
                .await,
            "empty patch",
        );
        assert_invalid(
            canned
                .update(
                    id(CANNED_GREETING_1),
                    CannedResponsePatch::default().content(""),
                )
                .await,
            "empty content",
        );
        let kb = chat.knowledge_base();
        assert_invalid(kb.create(site, "\t", "content").await, "blank title");
        assert_invalid(kb.create(site, "title", "").await, "empty content");
        assert_invalid(
            kb.update(id(ARTICLE_SHIPPING_1), ArticlePatch::default())
                .await,
            "empty patch",
        );
        assert_invalid(
            kb.update(id(ARTICLE_SHIPPING_1), ArticlePatch::default().title(""))
                .await,
            "empty title",
        );
        assert_eq!(
            proxy.requests(),
            Vec::<String>::new(),
            "{who}: nothing was sent"
        );
    }
    assert_eq!(env.snapshot().await, before);
}
