//! The REST layer against the real local stack (seeded): reads with embeds, counts,
//! pagination, single / maybe-single, insert, upsert, update, delete and RPC. Expected results
//! are computed with direct SQL on the same database.

use crate::rest_support;

use livechat::rest::{Condition, Is};
use livechat::{Count, ErrorKind};
use rest_support::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct Named {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AgentName {
    display_name: String,
}

#[derive(Debug, Deserialize)]
struct MessageRef {
    id: String,
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConversationView {
    id: String,
    status: String,
    visitor: Option<Named>,
    agent: Option<AgentName>,
    mod_chat_messages: Vec<MessageRef>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
struct Canned {
    id: String,
    site_id: String,
    title: String,
    content: String,
    category: Option<String>,
    tags: Vec<String>,
    usage_count: Option<i32>,
    is_active: Option<bool>,
}

#[derive(Serialize)]
struct NewCanned<'a> {
    site_id: &'a str,
    title: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
}

#[tokio::test]
async fn reads_decode_rows_with_embedded_resources() {
    let env = seeded().await;
    let conv: ConversationView = env
        .service
        .from("mod_chat_conversations")
        .select(
            "id,status,visitor:mod_chat_visitors(name),agent:mod_chat_agents(display_name),\
             mod_chat_messages(id,content)",
        )
        .eq("id", CONVERSATION_102)
        .single()
        .await
        .unwrap();
    assert_eq!(conv.id, CONVERSATION_102);
    let sql_status = env
        .texts(
            "select status from mod_chat_conversations where id = $1::text::uuid",
            &[&CONVERSATION_102],
        )
        .await;
    assert_eq!(vec![conv.status.clone()], sql_status);
    let visitor = env
        .texts(
            "select v.name from mod_chat_conversations c join mod_chat_visitors v on v.id = c.visitor_id \
             where c.id = $1::text::uuid",
            &[&CONVERSATION_102],
        )
        .await;
    assert_eq!(conv.visitor.and_then(|v| v.name), visitor.first().cloned());
    let agent = env
        .texts(
            "select a.display_name from mod_chat_conversations c join mod_chat_agents a \
             on a.id = c.assigned_agent_id where c.id = $1::text::uuid",
            &[&CONVERSATION_102],
        )
        .await;
    assert_eq!(conv.agent.map(|a| a.display_name), agent.first().cloned());
    let mut ids: Vec<String> = conv
        .mod_chat_messages
        .iter()
        .map(|m| m.id.clone())
        .collect();
    ids.sort();
    let sql_ids = env
        .texts(
            "select id::text from mod_chat_messages where conversation_id = $1::text::uuid order by id",
            &[&CONVERSATION_102],
        )
        .await;
    assert!(!sql_ids.is_empty());
    assert_eq!(ids, sql_ids);

    // Embedded ordering and limit.
    let conv: ConversationView = env
        .service
        .from("mod_chat_conversations")
        .select("id,status,visitor:mod_chat_visitors(name),agent:mod_chat_agents(display_name),mod_chat_messages(id,content)")
        .eq("id", CONVERSATION_102)
        .order_in("mod_chat_messages", "created_at", true)
        .limit_in("mod_chat_messages", 2)
        .single()
        .await
        .unwrap();
    let first_two = env
        .texts(
            "select content from mod_chat_messages where conversation_id = $1::text::uuid \
             order by created_at limit 2",
            &[&CONVERSATION_102],
        )
        .await;
    let got: Vec<String> = conv
        .mod_chat_messages
        .into_iter()
        .filter_map(|m| m.content)
        .collect();
    assert_eq!(got, first_two);
}

#[tokio::test]
async fn an_inner_embed_with_a_filter_restricts_the_parents() {
    #[derive(Debug, Deserialize)]
    struct Row {
        id: String,
    }
    let env = seeded().await;
    let rows: Vec<Row> = env
        .service
        .from("mod_chat_conversations")
        .select("id,mod_chat_messages!inner(id)")
        .eq("site_id", SITE_1)
        .filter_in("mod_chat_messages", Condition::eq("sender_type", "agent"))
        .order_asc("id")
        .fetch()
        .await
        .unwrap();
    let got: Vec<String> = rows.into_iter().map(|r| r.id).collect();
    let want = env
        .texts(
            "select distinct conversation_id::text from mod_chat_messages \
             where sender_type = 'agent' and site_id = $1::text::uuid order by 1",
            &[&SITE_1],
        )
        .await;
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

#[tokio::test]
async fn counts_and_pages_cover_every_row_once() {
    #[derive(Debug, Deserialize)]
    struct Row {
        id: String,
    }
    let env = seeded().await;
    let total = env
        .count(
            "select count(*) from mod_chat_messages where site_id = $1::text::uuid",
            &[&SITE_1],
        )
        .await as u64;
    assert!(total > 3, "the seed has a few messages on site 1");
    let want = env
        .texts(
            "select id::text from mod_chat_messages where site_id = $1::text::uuid order by id",
            &[&SITE_1],
        )
        .await;

    let mut got = Vec::new();
    let mut offset = 0;
    loop {
        let page = env
            .service
            .from("mod_chat_messages")
            .select("id")
            .eq("site_id", SITE_1)
            .order_asc("id")
            .range(offset, offset + 2)
            .fetch_page::<Row>()
            .await
            .unwrap();
        assert_eq!(page.total, Some(total));
        assert_eq!(page.offset, offset);
        assert!(page.rows.len() <= 3);
        got.extend(page.rows.iter().map(|r| r.id.clone()));
        offset += 3;
        if !page.has_more() {
            break;
        }
    }
    assert_eq!(got, want);

    let n = env
        .service
        .from("mod_chat_messages")
        .eq("site_id", SITE_1)
        .count_rows()
        .await
        .unwrap();
    assert_eq!(n, total);

    // limit=0 gives no rows but still the total.
    let page = env
        .service
        .from("mod_chat_messages")
        .eq("site_id", SITE_1)
        .limit(0)
        .fetch_page::<serde_json::Value>()
        .await
        .unwrap();
    assert!(page.rows.is_empty());
    assert_eq!(page.total, Some(total));

    // An offset past the total is 416 PGRST103.
    let e = env
        .service
        .from("mod_chat_messages")
        .eq("site_id", SITE_1)
        .range(total + 5, total + 10)
        .fetch_page::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(e.status(), Some(416));
    assert_eq!(e.code(), Some("PGRST103"));

    // A planned count is some number.
    let page = env
        .service
        .from("mod_chat_messages")
        .limit(1)
        .count(Count::Planned)
        .fetch_page::<serde_json::Value>()
        .await
        .unwrap();
    assert!(page.total.is_some());
}

#[tokio::test]
async fn single_and_maybe_single_distinguish_zero_one_and_many_rows() {
    let env = seeded().await;
    let missing = "40000000-0000-4000-8000-00000000ffff";
    let greeting: Canned = env
        .service
        .from("mod_chat_canned_responses")
        .eq("id", CANNED_GREETING_1)
        .single()
        .await
        .unwrap();
    assert_eq!(greeting.id, CANNED_GREETING_1);
    assert_eq!(greeting.site_id, SITE_1);

    let err = env
        .service
        .from("mod_chat_canned_responses")
        .eq("id", missing)
        .single::<Canned>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(err.code(), Some("PGRST116"));
    assert_eq!(err.status(), Some(406));
    assert_eq!(err.row_count(), Some(0));

    let on_site_1 = env
        .count(
            "select count(*) from mod_chat_canned_responses where site_id = $1::text::uuid",
            &[&SITE_1],
        )
        .await as u64;
    let err = env
        .service
        .from("mod_chat_canned_responses")
        .eq("site_id", SITE_1)
        .single::<Canned>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MultipleRows, "{err}");
    assert_eq!(err.row_count(), Some(on_site_1));

    let none: Option<Canned> = env
        .service
        .from("mod_chat_canned_responses")
        .eq("id", missing)
        .maybe_single()
        .await
        .unwrap();
    assert!(none.is_none());
    let some: Option<Canned> = env
        .service
        .from("mod_chat_canned_responses")
        .eq("id", CANNED_GREETING_1)
        .maybe_single()
        .await
        .unwrap();
    assert_eq!(some.map(|c| c.id).as_deref(), Some(CANNED_GREETING_1));
    let err = env
        .service
        .from("mod_chat_canned_responses")
        .eq("site_id", SITE_1)
        .maybe_single::<Canned>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MultipleRows);
}

#[tokio::test]
async fn insert_returns_the_rows_with_their_defaults() {
    let env = seeded().await;
    let created: Canned = env
        .service
        .from("mod_chat_canned_responses")
        .insert(&NewCanned {
            site_id: SITE_2,
            title: "Quotes \"and\" commas, (parens)",
            content: "Ünïcödé ✓",
            category: None,
        })
        .single()
        .await
        .unwrap();
    assert_eq!(created.title, "Quotes \"and\" commas, (parens)");
    assert_eq!(created.content, "Ünïcödé ✓");
    assert_eq!(created.usage_count, Some(0), "column default applied");
    assert!(created.tags.is_empty());
    let stored = env
        .texts(
            "select title from mod_chat_canned_responses where id = $1::text::uuid",
            &[&created.id],
        )
        .await;
    assert_eq!(stored, vec![created.title.clone()]);

    let rows: Vec<Canned> = env
        .service
        .from("mod_chat_canned_responses")
        .insert(&[
            NewCanned {
                site_id: SITE_2,
                title: "one",
                content: "1",
                category: Some("batch"),
            },
            NewCanned {
                site_id: SITE_2,
                title: "two",
                content: "2",
                category: Some("batch"),
            },
        ])
        .select("id,site_id,title,content,category,tags,usage_count,is_active")
        .fetch()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        env.count(
            "select count(*) from mod_chat_canned_responses where category = 'batch'",
            &[]
        )
        .await,
        2
    );

    // Rows with different keys: the missing column takes its default (usage_count 0), not NULL.
    let rows: Vec<Canned> = env
        .service
        .from("mod_chat_canned_responses")
        .insert(&serde_json::json!([
            {"site_id": SITE_2, "title": "with count", "content": "c", "usage_count": 7},
            {"site_id": SITE_2, "title": "without count", "content": "c"},
        ]))
        .missing_default("site_id,title,content,usage_count")
        .order_asc("title")
        .fetch()
        .await
        .unwrap();
    let counts: Vec<(String, Option<i32>)> =
        rows.into_iter().map(|r| (r.title, r.usage_count)).collect();
    assert_eq!(
        counts,
        vec![
            ("with count".to_string(), Some(7)),
            ("without count".to_string(), Some(0))
        ]
    );

    let out = env
        .service
        .from("mod_chat_canned_responses")
        .insert(&[NewCanned {
            site_id: SITE_2,
            title: "three",
            content: "3",
            category: Some("batch"),
        }])
        .count(Count::Exact)
        .execute()
        .await
        .unwrap();
    assert_eq!(out.status, 201);
    assert_eq!(out.count, Some(1));

    let out = env
        .service
        .from("mod_chat_canned_responses")
        .insert(&NewCanned {
            site_id: SITE_2,
            title: "four",
            content: "4",
            category: Some("batch"),
        })
        .execute()
        .await
        .unwrap();
    assert_eq!(out.status, 201);
    assert_eq!(out.count, None);
}

#[tokio::test]
async fn upsert_merges_or_ignores_duplicates() {
    #[derive(Serialize)]
    struct Upsert<'a> {
        id: &'a str,
        site_id: &'a str,
        title: &'a str,
        content: &'a str,
    }
    let env = seeded().await;
    let merged: Vec<Canned> = env
        .service
        .from("mod_chat_canned_responses")
        .upsert(&[Upsert {
            id: CANNED_GREETING_1,
            site_id: SITE_1,
            title: "Greeting (merged)",
            content: "Hello again",
        }])
        .fetch()
        .await
        .unwrap();
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].title, "Greeting (merged)");
    assert_eq!(
        env.texts(
            "select title from mod_chat_canned_responses where id = $1::text::uuid",
            &[&CANNED_GREETING_1]
        )
        .await,
        vec!["Greeting (merged)".to_string()]
    );

    let ignored: Vec<Canned> = env
        .service
        .from("mod_chat_canned_responses")
        .upsert(&[Upsert {
            id: CANNED_GREETING_1,
            site_id: SITE_1,
            title: "ignored",
            content: "ignored",
        }])
        .ignore_duplicates()
        .fetch()
        .await
        .unwrap();
    assert!(ignored.is_empty(), "{ignored:?}");
    assert_eq!(
        env.texts(
            "select title from mod_chat_canned_responses where id = $1::text::uuid",
            &[&CANNED_GREETING_1]
        )
        .await,
        vec!["Greeting (merged)".to_string()]
    );

    // Only conflicts: 200; at least one new row: 201.
    let out = env
        .service
        .from("mod_chat_canned_responses")
        .upsert(&Upsert {
            id: CANNED_GREETING_1,
            site_id: SITE_1,
            title: "Greeting (merged)",
            content: "Hello again",
        })
        .execute()
        .await
        .unwrap();
    assert_eq!(out.status, 200);
    let out = env
        .service
        .from("mod_chat_canned_responses")
        .upsert(&Upsert {
            id: "40000000-0000-4000-8000-00000000bbbb",
            site_id: SITE_1,
            title: "new",
            content: "new",
        })
        .execute()
        .await
        .unwrap();
    assert_eq!(out.status, 201);

    // A new id is inserted.
    let fresh = "40000000-0000-4000-8000-00000000aaaa";
    let inserted: Canned = env
        .service
        .from("mod_chat_canned_responses")
        .upsert(&Upsert {
            id: fresh,
            site_id: SITE_1,
            title: "fresh",
            content: "fresh",
        })
        .single()
        .await
        .unwrap();
    assert_eq!(inserted.id, fresh);

    // On another unique key: agents are unique per (site_id, user_id).
    #[derive(Serialize)]
    struct AgentUpsert<'a> {
        site_id: &'a str,
        user_id: &'a str,
        display_name: &'a str,
    }
    #[derive(Deserialize)]
    struct Agent {
        id: String,
        display_name: String,
    }
    let before = env
        .texts(
            "select id::text from mod_chat_agents where site_id = $1::text::uuid and user_id = $2::text::uuid",
            &[&SITE_1, &ALICE.0],
        )
        .await;
    let agent: Agent = env
        .service
        .from("mod_chat_agents")
        .upsert(&AgentUpsert {
            site_id: SITE_1,
            user_id: ALICE.0,
            display_name: "Alice A.",
        })
        .on_conflict("site_id,user_id")
        .single()
        .await
        .unwrap();
    assert_eq!(agent.display_name, "Alice A.");
    assert_eq!(vec![agent.id], before, "the existing agent row was updated");
}

#[tokio::test]
async fn update_changes_only_the_matching_rows() {
    #[derive(Serialize)]
    struct Active {
        is_active: bool,
    }
    let env = seeded().await;
    let want = env
        .texts(
            "select id::text from mod_chat_canned_responses where site_id = $1::text::uuid \
             and category = 'Billing' order by id",
            &[&SITE_1],
        )
        .await;
    assert!(!want.is_empty());
    let updated: Vec<Canned> = env
        .service
        .from("mod_chat_canned_responses")
        .update(&Active { is_active: false })
        .eq("site_id", SITE_1)
        .eq("category", "Billing")
        .order_asc("id")
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        updated.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        want
    );
    assert!(updated.iter().all(|c| c.is_active == Some(false)));
    assert_eq!(
        env.count(
            "select count(*) from mod_chat_canned_responses where is_active = false and site_id = $1::text::uuid",
            &[&SITE_1]
        )
        .await,
        want.len() as i64
    );

    let out = env
        .service
        .from("mod_chat_canned_responses")
        .update(&Active { is_active: true })
        .eq("site_id", SITE_1)
        .count(Count::Exact)
        .execute()
        .await
        .unwrap();
    let on_site_1 = env
        .count(
            "select count(*) from mod_chat_canned_responses where site_id = $1::text::uuid",
            &[&SITE_1],
        )
        .await;
    assert_eq!(out.status, 204);
    assert_eq!(out.count, Some(on_site_1 as u64));

    // A single-row update that matches several rows changes nothing.
    let err = env
        .service
        .from("mod_chat_canned_responses")
        .update(&Active { is_active: false })
        .eq("site_id", SITE_1)
        .single::<Canned>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MultipleRows);
    assert_eq!(
        env.count(
            "select count(*) from mod_chat_canned_responses where is_active = false and site_id = $1::text::uuid",
            &[&SITE_1]
        )
        .await,
        0,
        "rolled back"
    );
}

#[tokio::test]
async fn delete_removes_the_matching_rows() {
    #[derive(Debug, Deserialize)]
    struct Row {
        id: String,
    }
    let env = seeded().await;
    let deleted: Vec<Row> = env
        .service
        .from("mod_chat_canned_responses")
        .delete()
        .eq("id", CANNED_GREETING_1)
        .select("id")
        .fetch()
        .await
        .unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].id, CANNED_GREETING_1);
    assert_eq!(
        env.count(
            "select count(*) from mod_chat_canned_responses where id = $1::text::uuid",
            &[&CANNED_GREETING_1]
        )
        .await,
        0
    );

    let out = env
        .service
        .from("mod_chat_canned_responses")
        .delete()
        .eq("id", CANNED_GREETING_1)
        .count(Count::Exact)
        .execute()
        .await
        .unwrap();
    assert_eq!(out.count, Some(0));
    assert_eq!(out.status, 204);
}

async fn create_test_functions(env: &Env) {
    env.db
        .batch_execute(
            r#"
            create function public.lc_test_add(a integer, b integer) returns integer
              language sql immutable as $$ select a + b $$;
            create function public.lc_test_echo(t text) returns text
              language sql immutable as $$ select t $$;
            create function public.lc_test_canned(site uuid, q text)
              returns setof public.mod_chat_canned_responses
              language sql stable as $$
                select * from public.mod_chat_canned_responses
                where site_id = site and strpos(title, q) > 0
              $$;
            create function public.lc_test_agent(agent uuid) returns public.mod_chat_agents
              language sql stable as $$ select * from public.mod_chat_agents where id = agent $$;
            create function public.lc_test_touch(canned uuid) returns void
              language sql as $$
                update public.mod_chat_canned_responses set usage_count = usage_count + 1
                where id = canned
              $$;
            notify pgrst, 'reload schema';
            "#,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn rpc_calls_functions_with_typed_arguments_and_results() {
    #[derive(Serialize)]
    struct Add {
        a: i32,
        b: i32,
    }
    #[derive(Serialize)]
    struct Search<'a> {
        site: &'a str,
        q: &'a str,
    }
    let env = seeded().await;
    create_test_functions(&env).await;

    let sum: i32 = env
        .service
        .rpc("lc_test_add", &Add { a: 2, b: 3 })
        .call()
        .await
        .unwrap();
    assert_eq!(sum, 5);

    let odd = "quote \" backslash \\ comma , paren ) star * percent % unicode 🎉";
    let echoed: String = env
        .service
        .rpc("lc_test_echo", &serde_json::json!({ "t": odd }))
        .call()
        .await
        .unwrap();
    assert_eq!(echoed, odd);

    // Set-returning: filters, order and limit apply to the result.
    let rows: Vec<Canned> = env
        .service
        .rpc(
            "lc_test_canned",
            &Search {
                site: SITE_1,
                q: "e",
            },
        )
        .eq("is_active", true)
        .order_asc("title")
        .limit(2)
        .fetch()
        .await
        .unwrap();
    let want = env
        .texts(
            "select title from mod_chat_canned_responses where site_id = $1::text::uuid \
             and strpos(title, 'e') > 0 and is_active order by title limit 2",
            &[&SITE_1],
        )
        .await;
    assert_eq!(
        rows.iter().map(|r| r.title.clone()).collect::<Vec<_>>(),
        want
    );

    let one: Canned = env
        .service
        .rpc(
            "lc_test_canned",
            &Search {
                site: SITE_1,
                q: "Greeting",
            },
        )
        .single()
        .await
        .unwrap();
    assert_eq!(one.id, CANNED_GREETING_1);

    // A composite result is one object.
    #[derive(Deserialize)]
    struct Agent {
        id: String,
        display_name: String,
    }
    let agent: Agent = env
        .service
        .rpc(
            "lc_test_agent",
            &serde_json::json!({"agent": "e0000000-0000-4000-8000-000000000101"}),
        )
        .call()
        .await
        .unwrap();
    assert_eq!(agent.id, "e0000000-0000-4000-8000-000000000101");
    assert!(!agent.display_name.is_empty());

    // void: 204 and no body.
    let before = env
        .count(
            "select usage_count::bigint from mod_chat_canned_responses where id = $1::text::uuid",
            &[&CANNED_GREETING_1],
        )
        .await;
    let out = env
        .service
        .rpc(
            "lc_test_touch",
            &serde_json::json!({"canned": CANNED_GREETING_1}),
        )
        .execute()
        .await
        .unwrap();
    assert_eq!(out.status, 204);
    let (): () = env
        .service
        .rpc(
            "lc_test_touch",
            &serde_json::json!({"canned": CANNED_GREETING_1}),
        )
        .call()
        .await
        .unwrap();
    let after = env
        .count(
            "select usage_count::bigint from mod_chat_canned_responses where id = $1::text::uuid",
            &[&CANNED_GREETING_1],
        )
        .await;
    assert_eq!(after, before + 2);
}

#[tokio::test]
async fn literal_text_filters_find_seeded_titles() {
    #[derive(Debug, Deserialize)]
    struct Row {
        id: String,
    }
    let env = seeded().await;
    let refund = env
        .texts(
            "select id::text from mod_chat_canned_responses where title = 'Refund policy (100% guaranteed)'",
            &[],
        )
        .await;
    assert_eq!(refund.len(), 1, "seeded title");
    let canned = || env.service.from("mod_chat_canned_responses").select("id");

    let rows: Vec<Row> = canned()
        .text_istarts_with("title", "refund POLICY (100%")
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        refund
    );

    let rows: Vec<Row> = canned()
        .filter(Condition::text_iequals(
            "title",
            "REFUND policy (100% GUARANTEED)",
        ))
        .fetch()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);

    let rows: Vec<Row> = canned()
        .text_contains("title", "(100% g")
        .fetch()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let rows: Vec<Row> = canned()
        .text_contains("title", "(100%_g")
        .fetch()
        .await
        .unwrap();
    assert!(rows.is_empty(), "`_` is not a wildcard");
    let rows: Vec<Row> = canned()
        .like_contains("title", "100%")
        .fetch()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let rows: Vec<Row> = canned()
        .ilike_contains("title", "0%_G")
        .fetch()
        .await
        .unwrap();
    assert!(rows.is_empty(), "`%` and `_` are literal");

    let inactive = env
        .count(
            "select count(*) from mod_chat_canned_responses where is_active is false",
            &[],
        )
        .await;
    let rows: Vec<Row> = canned().is("is_active", Is::False).fetch().await.unwrap();
    assert_eq!(rows.len() as i64, inactive);
}
