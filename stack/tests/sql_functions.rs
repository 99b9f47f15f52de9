//! The atomic actions of `supabase/migrations/20260101000400_chat_functions.sql`, on a real
//! PostgreSQL: every function called as `service_role` and as an agency member (RLS applies),
//! results compared with direct SQL, cross-tenant calls answered with "not found", concurrent
//! calls keeping `current_chat_count` exact, and user text matched literally in every search.
//!
//! A call runs the way PostgREST runs it: one transaction, `SET LOCAL ROLE <role>` and the JWT
//! claims in `request.jwt.claims`. Direct SQL (for setup and checks) uses the superuser.

use livechat_stack::Stack;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Barrier;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Seed ids (supabase/seed.sql)
// ---------------------------------------------------------------------------------------------
const AGENCY_A: &str = "a0000000-0000-4000-8000-000000000001";
const SITE1: &str = "b0000000-0000-4000-8000-000000000001";
const SITE2: &str = "b0000000-0000-4000-8000-000000000002";
const SITE3: &str = "b0000000-0000-4000-8000-000000000003";
const ALICE_USER: &str = "c0000000-0000-4000-8000-000000000001";
const DAVE_USER: &str = "c0000000-0000-4000-8000-000000000004";
const DEPT_SALES: &str = "d0000000-0000-4000-8000-000000000101";
const DEPT_SUPPORT: &str = "d0000000-0000-4000-8000-000000000102";
const DEPT_EDITORIAL: &str = "d0000000-0000-4000-8000-000000000202";
const DEPT_BETA_SUPPORT: &str = "d0000000-0000-4000-8000-000000000301";
const AGENT_ALICE: &str = "e0000000-0000-4000-8000-000000000101";
const AGENT_BOB: &str = "e0000000-0000-4000-8000-000000000102";
const AGENT_CAROL: &str = "e0000000-0000-4000-8000-000000000103";
const AGENT_DAVE: &str = "e0000000-0000-4000-8000-000000000301";
const VISITOR_MIA: &str = "10000000-0000-4000-8000-000000000101";
const VISITOR_PETER: &str = "10000000-0000-4000-8000-000000000104";
const VISITOR_QUINN: &str = "10000000-0000-4000-8000-000000000201";
const CONV_PENDING: &str = "20000000-0000-4000-8000-000000000101";
const CONV_ACTIVE: &str = "20000000-0000-4000-8000-000000000102";
const CONV_RESOLVED: &str = "20000000-0000-4000-8000-000000000103";
const CONV_CLOSED: &str = "20000000-0000-4000-8000-000000000104";
const CONV_WAITING: &str = "20000000-0000-4000-8000-000000000105";
const CONV_MISSED: &str = "20000000-0000-4000-8000-000000000106";
const CONV_BETA_ACTIVE: &str = "20000000-0000-4000-8000-000000000301";
const CANNED_GREETING: &str = "40000000-0000-4000-8000-000000000101";

fn u(s: &str) -> Uuid {
    Uuid::parse_str(s).expect("a valid uuid literal")
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Who makes a call: the three API roles, a user being an `authenticated` JWT with that `sub`.
#[derive(Clone, Copy, Debug)]
enum Who {
    Service,
    Anon,
    User(&'static str),
}

const ALICE: Who = Who::User(ALICE_USER);
const DAVE: Who = Who::User(DAVE_USER);
/// Every action is exercised by both.
const CALLERS: [Who; 2] = [Who::Service, ALICE];

async fn connect(stack: &Stack) -> Client {
    let (client, conn) = tokio_postgres::connect(&stack.db_url(), NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Runs `sql` the way PostgREST runs an RPC: one transaction as `who`, with its JWT claims.
async fn call(
    client: &mut Client,
    who: Who,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let (role, claims) = match who {
        Who::Service => ("service_role", json!({ "role": "service_role" })),
        Who::Anon => ("anon", json!({ "role": "anon" })),
        Who::User(sub) => (
            "authenticated",
            json!({ "sub": sub, "role": "authenticated" }),
        ),
    };
    tx.batch_execute(&format!("SET LOCAL ROLE {role}")).await?;
    tx.execute(
        "SELECT set_config('request.jwt.claims', $1, true)",
        &[&claims.to_string()],
    )
    .await?;
    match tx.query(sql, params).await {
        Ok(rows) => {
            tx.commit().await?;
            Ok(rows)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// The first column of the only row, as JSON (queries select `to_jsonb(r)`).
async fn one(
    client: &mut Client,
    who: Who,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Value, tokio_postgres::Error> {
    let rows = call(client, who, sql, params).await?;
    assert_eq!(rows.len(), 1, "expected one row from {sql}");
    Ok(rows[0].get(0))
}

/// The first column of every row, as JSON.
async fn all(
    client: &mut Client,
    who: Who,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Value>, tokio_postgres::Error> {
    let rows = call(client, who, sql, params).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Asserts a database error with this SQLSTATE and HINT; returns its message.
#[track_caller]
fn assert_error<T: std::fmt::Debug>(
    result: Result<T, tokio_postgres::Error>,
    code: &str,
    hint: &str,
) -> String {
    let err = result.expect_err(&format!("expected error {code} {hint}"));
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a database error: {err:?}"));
    assert_eq!(db.code().code(), code, "SQLSTATE of {:?}", db.message());
    assert_eq!(db.hint(), Some(hint), "HINT of {:?}", db.message());
    db.message().to_string()
}

#[track_caller]
fn assert_sqlstate<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>, code: &str) {
    let err = result.expect_err(&format!("expected error {code}"));
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a database error: {err:?}"));
    assert_eq!(db.code().code(), code, "SQLSTATE of {:?}", db.message());
}

/// Parameters of one call in a table of calls.
type Params = Vec<Box<dyn ToSql + Sync>>;

/// A boxed parameter, for tables of calls.
fn p<T: ToSql + Sync + 'static>(v: T) -> Box<dyn ToSql + Sync> {
    Box::new(v)
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v[key].as_str()
}

fn i(v: &Value, key: &str) -> i64 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{key} is not an integer in {v}"))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

async fn row_json(db: &Client, table: &str, id: Uuid) -> Value {
    db.query_one(
        &format!("select to_jsonb(t) from public.{table} t where t.id = $1"),
        &[&id],
    )
    .await
    .expect("row exists")
    .get(0)
}

async fn agent(db: &Client, id: &str) -> Value {
    row_json(db, "mod_chat_agents", u(id)).await
}

async fn conversation(db: &Client, id: Uuid) -> Value {
    row_json(db, "mod_chat_conversations", id).await
}

async fn message_count(db: &Client, conv: Uuid) -> i64 {
    db.query_one(
        "select count(*) from public.mod_chat_messages where conversation_id = $1",
        &[&conv],
    )
    .await
    .unwrap()
    .get(0)
}

async fn last_message(db: &Client, conv: Uuid, offset: i64) -> Value {
    db.query_one(
        "select to_jsonb(m) from public.mod_chat_messages m where m.conversation_id = $1 \
         order by m.created_at desc, m.id desc offset $2 limit 1",
        &[&conv, &offset],
    )
    .await
    .unwrap()
    .get(0)
}

/// A new conversation inserted directly (no function), `age_minutes` old.
async fn new_conversation(
    db: &Client,
    site: &str,
    visitor: &str,
    status: &str,
    agent: Option<&str>,
    age_minutes: i32,
) -> Uuid {
    db.query_one(
        "insert into public.mod_chat_conversations (site_id, visitor_id, status, assigned_agent_id, created_at) \
         values ($1, $2, $3, $4, now() - make_interval(mins => $5)) returning id",
        &[&u(site), &u(visitor), &status, &agent.map(u), &age_minutes],
    )
    .await
    .unwrap()
    .get(0)
}

/// A new site of agency A (alice's), with nothing in it.
async fn new_site(db: &Client, name: &str) -> Uuid {
    db.query_one(
        "insert into public.sites (agency_id, name) values ($1, $2) returning id",
        &[&u(AGENCY_A), &name],
    )
    .await
    .unwrap()
    .get(0)
}

/// Every agent's current_chat_count equals its open conversations, is never negative and never
/// above its maximum. One statement, so one snapshot: it holds at every commit.
async fn invariant_violations(db: &Client) -> Vec<String> {
    db.query(
        "select a.id::text, coalesce(a.current_chat_count, 0), coalesce(a.max_concurrent_chats, 5), \
                (select count(*)::int from public.mod_chat_conversations c \
                 where c.assigned_agent_id = a.id and c.status in ('pending', 'active', 'waiting')) \
         from public.mod_chat_agents a",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .filter_map(|r| {
        let (id, count, max, open): (String, i32, i32, i32) = (r.get(0), r.get(1), r.get(2), r.get(3));
        (count != open || count < 0 || count > max)
            .then(|| format!("agent {id}: count {count}, open {open}, max {max}"))
    })
    .collect()
}

async fn assert_invariant(db: &Client) {
    let v = invariant_violations(db).await;
    assert!(v.is_empty(), "invariant broken: {v:?}");
}

/// A fingerprint of everything in the chat tables, to prove a refused call changed nothing.
async fn fingerprint(db: &Client) -> String {
    let mut out = String::new();
    for t in [
        "mod_chat_departments",
        "mod_chat_agents",
        "mod_chat_widget_settings",
        "mod_chat_visitors",
        "mod_chat_conversations",
        "mod_chat_messages",
        "mod_chat_canned_responses",
        "mod_chat_knowledge_base",
    ] {
        let h: String = db
            .query_one(
                &format!(
                    "select coalesce(md5(string_agg(to_jsonb(t)::text, ',' order by t.id)), '') \
                     from public.{t} t"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        out.push_str(&h);
    }
    out
}

const ASSIGN: &str = "select to_jsonb(r) from public.mod_chat_assign_conversation($1, $2) r";
const TRANSFER: &str =
    "select to_jsonb(r) from public.mod_chat_transfer_conversation(p_conversation_id => $1, p_to_agent_id => $2, p_note => $3) r";
const RESOLVE: &str = "select to_jsonb(r) from public.mod_chat_resolve_conversation($1) r";
const CLOSE: &str = "select to_jsonb(r) from public.mod_chat_close_conversation($1) r";
const REOPEN: &str = "select to_jsonb(r) from public.mod_chat_reopen_conversation($1) r";
const DELETE_AGENT: &str = "select to_jsonb(r) from public.mod_chat_delete_agent($1) r";
const SEND: &str = "select to_jsonb(r) from public.mod_chat_send_message(p_conversation_id => $1, \
     p_sender_type => $2, p_content => $3, p_content_type => $4) r";
const CREATE_CONV: &str =
    "select to_jsonb(r) from public.mod_chat_create_conversation(p_site_id => $1, \
     p_visitor_id => $2, p_department_id => $3) r";
const UPSERT_VISITOR: &str = "select to_jsonb(r) from public.mod_chat_create_or_update_visitor(\
     p_site_id => $1, p_email => $2, p_whatsapp_phone => $3, p_name => $4) r";
const LIST: &str = "select to_jsonb(r) from public.mod_chat_list_conversations(p_site_id => $1, \
     p_status => $2, p_channel => $3, p_assigned_agent_id => $4, p_department_id => $5, \
     p_priority => $6, p_search => $7, p_date_from => $8, p_date_to => $9, p_limit => $10, \
     p_offset => $11) r";
const SEARCH_CANNED: &str =
    "select to_jsonb(r) from public.mod_chat_search_canned_responses($1, $2) r";
const SEARCH_KB: &str = "select to_jsonb(r) from public.mod_chat_search_knowledge_base($1, $2) r";

// ---------------------------------------------------------------------------------------------
// Assign
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn assigning_activates_a_pending_conversation_and_moves_the_slot() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;

    for who in CALLERS {
        let conv = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, 10).await;
        let carol_before = i(&agent(&db, AGENT_CAROL).await, "current_chat_count");
        let bob_before = i(&agent(&db, AGENT_BOB).await, "current_chat_count");

        let row = one(&mut c, who, ASSIGN, &[&conv, &u(AGENT_CAROL)])
            .await
            .unwrap();
        assert_eq!(
            row,
            conversation(&db, conv).await,
            "{who:?}: the result is the stored row"
        );
        assert_eq!(s(&row, "status"), Some("active"));
        assert_eq!(s(&row, "assigned_agent_id"), Some(AGENT_CAROL));
        let wait = i(&row, "wait_time_seconds");
        assert!(
            (600..700).contains(&wait),
            "wait_time_seconds = now - created_at, got {wait}"
        );
        assert_eq!(
            i(&agent(&db, AGENT_CAROL).await, "current_chat_count"),
            carol_before + 1
        );

        // Reassigning: the previous agent frees the slot; the status and wait time stay.
        let row = one(&mut c, who, ASSIGN, &[&conv, &u(AGENT_BOB)])
            .await
            .unwrap();
        assert_eq!(s(&row, "status"), Some("active"));
        assert_eq!(s(&row, "assigned_agent_id"), Some(AGENT_BOB));
        assert_eq!(i(&row, "wait_time_seconds"), wait);
        assert_eq!(
            i(&agent(&db, AGENT_CAROL).await, "current_chat_count"),
            carol_before
        );
        assert_eq!(
            i(&agent(&db, AGENT_BOB).await, "current_chat_count"),
            bob_before + 1
        );

        // Assigning the current agent again changes no counter.
        one(&mut c, who, ASSIGN, &[&conv, &u(AGENT_BOB)])
            .await
            .unwrap();
        assert_eq!(
            i(&agent(&db, AGENT_BOB).await, "current_chat_count"),
            bob_before + 1
        );
        assert_invariant(&db).await;
    }
}

#[tokio::test]
async fn assigning_above_capacity_or_to_an_unusable_agent_is_refused() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;

    // Bob: max 3, one open conversation in the seed.
    let a = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, 1).await;
    let b = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, 1).await;
    let full = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, 1).await;
    one(&mut c, Who::Service, ASSIGN, &[&a, &u(AGENT_BOB)])
        .await
        .unwrap();
    one(&mut c, ALICE, ASSIGN, &[&b, &u(AGENT_BOB)])
        .await
        .unwrap();
    for who in CALLERS {
        let before = fingerprint(&db).await;
        let msg = assert_error(
            one(&mut c, who, ASSIGN, &[&full, &u(AGENT_BOB)]).await,
            "PT409",
            "livechat:agent_at_capacity",
        );
        assert_eq!(msg, "agent at capacity");
        assert_eq!(
            fingerprint(&db).await,
            before,
            "a refused assignment changes nothing"
        );
    }
    assert_eq!(i(&agent(&db, AGENT_BOB).await, "current_chat_count"), 3);
    assert_eq!(s(&conversation(&db, full).await, "status"), Some("pending"));

    for who in CALLERS {
        // Not an open conversation.
        assert_error(
            one(&mut c, who, ASSIGN, &[&u(CONV_RESOLVED), &u(AGENT_CAROL)]).await,
            "PT409",
            "livechat:invalid_state",
        );
        // An agent of another site is no agent of this conversation.
        assert_error(
            one(&mut c, who, ASSIGN, &[&full, &u(AGENT_DAVE)]).await,
            "PT404",
            "livechat:agent_not_found",
        );
        assert_error(
            one(&mut c, who, ASSIGN, &[&Uuid::new_v4(), &u(AGENT_CAROL)]).await,
            "PT404",
            "livechat:conversation_not_found",
        );
    }
    // A deleted agent takes no conversation.
    one(&mut c, Who::Service, DELETE_AGENT, &[&u(AGENT_CAROL)])
        .await
        .unwrap();
    for who in CALLERS {
        assert_error(
            one(&mut c, who, ASSIGN, &[&full, &u(AGENT_CAROL)]).await,
            "PT409",
            "livechat:agent_inactive",
        );
    }
    assert_invariant(&db).await;
}

// ---------------------------------------------------------------------------------------------
// Transfer
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn transferring_moves_the_slot_and_leaves_a_system_message_and_the_note() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;
    let conv = u(CONV_ACTIVE); // alice's

    let msgs = message_count(&db, conv).await;
    let row = one(
        &mut c,
        ALICE,
        TRANSFER,
        &[&conv, &u(AGENT_CAROL), &Some("VIP, be quick")],
    )
    .await
    .unwrap();
    assert_eq!(row, conversation(&db, conv).await);
    assert_eq!(s(&row, "assigned_agent_id"), Some(AGENT_CAROL));
    assert_eq!(s(&row, "status"), Some("active"));
    assert_eq!(i(&agent(&db, AGENT_ALICE).await, "current_chat_count"), 0);
    assert_eq!(i(&agent(&db, AGENT_CAROL).await, "current_chat_count"), 1);
    assert_eq!(message_count(&db, conv).await, msgs + 2);
    let system = last_message(&db, conv, 1).await;
    assert_eq!(s(&system, "sender_type"), Some("system"));
    assert_eq!(
        s(&system, "content"),
        Some("Conversation transferred to Carol Chen")
    );
    assert_eq!(system["is_internal_note"], json!(false));
    let note = last_message(&db, conv, 0).await;
    assert_eq!(s(&note, "content"), Some("VIP, be quick"));
    assert_eq!(s(&note, "content_type"), Some("note"));
    assert_eq!(note["is_internal_note"], json!(true));

    // As service_role, without a note: one message only.
    let msgs = message_count(&db, conv).await;
    one(
        &mut c,
        Who::Service,
        TRANSFER,
        &[&conv, &u(AGENT_BOB), &None::<&str>],
    )
    .await
    .unwrap();
    assert_eq!(message_count(&db, conv).await, msgs + 1);
    assert_eq!(
        s(&last_message(&db, conv, 0).await, "content"),
        Some("Conversation transferred to Bob Brown")
    );
    assert_eq!(i(&agent(&db, AGENT_CAROL).await, "current_chat_count"), 0);
    assert_eq!(i(&agent(&db, AGENT_BOB).await, "current_chat_count"), 2);

    for who in CALLERS {
        assert_error(
            one(
                &mut c,
                who,
                TRANSFER,
                &[&conv, &u(AGENT_BOB), &None::<&str>],
            )
            .await,
            "PT409",
            "livechat:already_assigned",
        );
        assert_error(
            one(
                &mut c,
                who,
                TRANSFER,
                &[&u(CONV_CLOSED), &u(AGENT_BOB), &None::<&str>],
            )
            .await,
            "PT409",
            "livechat:invalid_state",
        );
    }

    // An unassigned pending conversation: transfer is an assignment (becomes active).
    let pending = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, 3).await;
    let row = one(
        &mut c,
        Who::Service,
        TRANSFER,
        &[&pending, &u(AGENT_CAROL), &None::<&str>],
    )
    .await
    .unwrap();
    assert_eq!(s(&row, "status"), Some("active"));
    assert!(i(&row, "wait_time_seconds") >= 180);
    assert_invariant(&db).await;

    // Never below zero, even on a count that was already wrong.
    db.execute(
        "update public.mod_chat_agents set current_chat_count = 0 where id = $1",
        &[&u(AGENT_CAROL)],
    )
    .await
    .unwrap();
    one(
        &mut c,
        ALICE,
        TRANSFER,
        &[&pending, &u(AGENT_ALICE), &Some("  ")],
    )
    .await
    .unwrap();
    assert_eq!(i(&agent(&db, AGENT_CAROL).await, "current_chat_count"), 0);
    assert_eq!(
        s(&last_message(&db, pending, 0).await, "content_type"),
        Some("system"),
        "a blank note is no note"
    );
    assert_invariant(&db).await;
}

// ---------------------------------------------------------------------------------------------
// Resolve, close, reopen
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn resolving_frees_the_slot_counts_the_chat_and_is_idempotent() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;

    for (who, conv, agent_id) in [
        (ALICE, CONV_ACTIVE, AGENT_ALICE),
        (Who::Service, CONV_WAITING, AGENT_BOB),
    ] {
        let conv = u(conv);
        let before = agent(&db, agent_id).await;
        let row = one(&mut c, who, RESOLVE, &[&conv]).await.unwrap();
        assert_eq!(row, conversation(&db, conv).await);
        assert_eq!(s(&row, "status"), Some("resolved"));
        assert!(row["resolved_at"].is_string());
        let created: f64 = db
            .query_one(
                "select extract(epoch from now() - created_at)::float8 from public.mod_chat_conversations where id = $1",
                &[&conv],
            )
            .await
            .unwrap()
            .get(0);
        assert!((i(&row, "resolution_time_seconds") as f64 - created).abs() <= 2.0);
        let after = agent(&db, agent_id).await;
        assert_eq!(
            i(&after, "current_chat_count"),
            i(&before, "current_chat_count") - 1
        );
        assert_eq!(
            i(&after, "total_chats_handled"),
            i(&before, "total_chats_handled") + 1
        );
        let msg = last_message(&db, conv, 0).await;
        assert_eq!(
            (s(&msg, "sender_type"), s(&msg, "content")),
            (Some("system"), Some("Conversation resolved"))
        );

        // Again: unchanged, no second message, no second count.
        let msgs = message_count(&db, conv).await;
        let again = one(&mut c, who, RESOLVE, &[&conv]).await.unwrap();
        assert_eq!(again, row);
        assert_eq!(message_count(&db, conv).await, msgs);
        assert_eq!(agent(&db, agent_id).await, after);

        assert_error(
            one(&mut c, who, RESOLVE, &[&u(CONV_CLOSED)]).await,
            "PT409",
            "livechat:invalid_state",
        );
        assert_error(
            one(&mut c, who, RESOLVE, &[&Uuid::new_v4()]).await,
            "PT404",
            "livechat:conversation_not_found",
        );
    }
    // A missed, unassigned conversation can be resolved too; no agent changes.
    let agents_before: Vec<Value> =
        vec![agent(&db, AGENT_ALICE).await, agent(&db, AGENT_BOB).await];
    let row = one(&mut c, ALICE, RESOLVE, &[&u(CONV_MISSED)])
        .await
        .unwrap();
    assert_eq!(s(&row, "status"), Some("resolved"));
    assert_eq!(
        agents_before,
        vec![agent(&db, AGENT_ALICE).await, agent(&db, AGENT_BOB).await]
    );
    assert_invariant(&db).await;
}

#[tokio::test]
async fn closing_frees_a_slot_only_when_the_conversation_held_one() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;

    // Active (holds alice's slot) → closed.
    let row = one(&mut c, ALICE, CLOSE, &[&u(CONV_ACTIVE)]).await.unwrap();
    assert_eq!(row, conversation(&db, u(CONV_ACTIVE)).await);
    assert_eq!(s(&row, "status"), Some("closed"));
    assert!(row["closed_at"].is_string() && row["resolved_at"].is_string());
    assert_eq!(s(&row, "closed_at"), s(&row, "resolved_at"));
    assert_eq!(i(&agent(&db, AGENT_ALICE).await, "current_chat_count"), 0);

    // Resolved (holds no slot) → closed: bob's count stays, resolved_at is kept.
    let before = conversation(&db, u(CONV_RESOLVED)).await;
    let bob = i(&agent(&db, AGENT_BOB).await, "current_chat_count");
    let row = one(&mut c, Who::Service, CLOSE, &[&u(CONV_RESOLVED)])
        .await
        .unwrap();
    assert_eq!(s(&row, "status"), Some("closed"));
    assert_eq!(row["resolved_at"], before["resolved_at"]);
    assert_eq!(
        row["resolution_time_seconds"],
        before["resolution_time_seconds"]
    );
    assert_eq!(i(&agent(&db, AGENT_BOB).await, "current_chat_count"), bob);

    // Closing a closed conversation returns it unchanged.
    for who in CALLERS {
        let again = one(&mut c, who, CLOSE, &[&u(CONV_RESOLVED)]).await.unwrap();
        assert_eq!(again, row);
        assert_error(
            one(&mut c, who, CLOSE, &[&Uuid::new_v4()]).await,
            "PT404",
            "livechat:conversation_not_found",
        );
    }
    // Pending and unassigned → closed.
    let row = one(&mut c, ALICE, CLOSE, &[&u(CONV_PENDING)])
        .await
        .unwrap();
    assert_eq!(s(&row, "status"), Some("closed"));
    assert_invariant(&db).await;
}

#[tokio::test]
async fn reopening_takes_the_slot_again_and_is_refused_at_capacity() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;

    // Resolved, bob (1 of 3) → active, bob 2.
    let row = one(&mut c, ALICE, REOPEN, &[&u(CONV_RESOLVED)])
        .await
        .unwrap();
    assert_eq!(row, conversation(&db, u(CONV_RESOLVED)).await);
    assert_eq!(s(&row, "status"), Some("active"));
    assert_eq!(s(&row, "assigned_agent_id"), Some(AGENT_BOB));
    assert!(row["resolved_at"].is_null() && row["closed_at"].is_null());
    assert_eq!(i(&agent(&db, AGENT_BOB).await, "current_chat_count"), 2);

    // Closed, alice → active, alice 2.
    let row = one(&mut c, Who::Service, REOPEN, &[&u(CONV_CLOSED)])
        .await
        .unwrap();
    assert_eq!(s(&row, "status"), Some("active"));
    assert_eq!(i(&agent(&db, AGENT_ALICE).await, "current_chat_count"), 2);

    for who in CALLERS {
        assert_error(
            one(&mut c, who, REOPEN, &[&u(CONV_WAITING)]).await,
            "PT409",
            "livechat:invalid_state",
        );
    }

    // Bob full: resolve one of his, give him another, then reopening the resolved one is refused.
    one(&mut c, ALICE, RESOLVE, &[&u(CONV_RESOLVED)])
        .await
        .unwrap();
    db.execute(
        "update public.mod_chat_agents set max_concurrent_chats = 2 where id = $1",
        &[&u(AGENT_BOB)],
    )
    .await
    .unwrap();
    let extra = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, 1).await;
    one(&mut c, ALICE, ASSIGN, &[&extra, &u(AGENT_BOB)])
        .await
        .unwrap();
    for who in CALLERS {
        let before = fingerprint(&db).await;
        assert_error(
            one(&mut c, who, REOPEN, &[&u(CONV_RESOLVED)]).await,
            "PT409",
            "livechat:agent_at_capacity",
        );
        assert_eq!(fingerprint(&db).await, before);
    }

    // Without an active agent the conversation goes back to the queue: pending, unassigned.
    let conv = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, 1).await;
    one(&mut c, ALICE, ASSIGN, &[&conv, &u(AGENT_CAROL)])
        .await
        .unwrap();
    one(&mut c, ALICE, RESOLVE, &[&conv]).await.unwrap();
    one(&mut c, ALICE, DELETE_AGENT, &[&u(AGENT_CAROL)])
        .await
        .unwrap();
    let row = one(&mut c, ALICE, REOPEN, &[&conv]).await.unwrap();
    assert_eq!(s(&row, "status"), Some("pending"));
    assert!(row["assigned_agent_id"].is_null());
    assert_eq!(i(&agent(&db, AGENT_CAROL).await, "current_chat_count"), 0);
    assert_invariant(&db).await;
}

// ---------------------------------------------------------------------------------------------
// Delete agent
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn deleting_an_agent_requeues_its_open_conversations() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;

    for (who, agent_id, kept_closed) in [
        (ALICE, AGENT_ALICE, CONV_CLOSED),
        (Who::Service, AGENT_BOB, CONV_RESOLVED),
    ] {
        let extra = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, 1).await;
        one(&mut c, who, ASSIGN, &[&extra, &u(agent_id)])
            .await
            .unwrap();
        let open: Vec<Uuid> = db
            .query(
                "select id from public.mod_chat_conversations where assigned_agent_id = $1 \
                 and status in ('pending', 'active', 'waiting')",
                &[&u(agent_id)],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(open.len(), 2);

        let row = one(&mut c, who, DELETE_AGENT, &[&u(agent_id)])
            .await
            .unwrap();
        assert_eq!(row, agent(&db, agent_id).await);
        assert_eq!(row["is_active"], json!(false));
        assert_eq!(s(&row, "status"), Some("offline"));
        assert_eq!(i(&row, "current_chat_count"), 0);
        for conv in open {
            let conv = conversation(&db, conv).await;
            assert_eq!(s(&conv, "status"), Some("pending"));
            assert!(conv["assigned_agent_id"].is_null());
        }
        // History stays with the agent.
        assert_eq!(
            s(
                &conversation(&db, u(kept_closed)).await,
                "assigned_agent_id"
            ),
            Some(agent_id)
        );
        // Deleting again is harmless.
        let again = one(&mut c, who, DELETE_AGENT, &[&u(agent_id)])
            .await
            .unwrap();
        assert_eq!(
            (again["is_active"].clone(), i(&again, "current_chat_count")),
            (json!(false), 0)
        );
        assert_error(
            one(&mut c, who, ASSIGN, &[&extra, &u(agent_id)]).await,
            "PT409",
            "livechat:agent_inactive",
        );
        assert_error(
            one(&mut c, who, DELETE_AGENT, &[&Uuid::new_v4()]).await,
            "PT404",
            "livechat:agent_not_found",
        );
        assert_invariant(&db).await;
    }
}

/// Waits until the backend `pid` is blocked on a lock (polling pg_stat_activity, no sleeps).
pub(crate) async fn blocked_on_lock(db: &Client, pid: i32) {
    loop {
        let waiting: bool = db
            .query_one(
                "select coalesce(wait_event_type = 'Lock', false) from pg_stat_activity where pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if waiting {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_agent_never_holds_the_agent_while_waiting_and_catches_late_assignments() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let db = connect(&stack).await;
    let late = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, 1).await;

    // Someone holds alice's open conversation (as assign/transfer/resolve would, first).
    let mut holder = connect(&stack).await;
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        "select 1 from public.mod_chat_conversations where id = $1 for update",
        &[&u(CONV_ACTIVE)],
    )
    .await
    .unwrap();

    let mut deleter = connect(&stack).await;
    let pid: i32 = deleter
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let delete = tokio::spawn(async move {
        one(&mut deleter, Who::Service, DELETE_AGENT, &[&u(AGENT_ALICE)]).await
    });
    blocked_on_lock(&db, pid).await;

    // The waiting delete does not hold the agent: it can be locked by others (no deadlock).
    let mut probe = connect(&stack).await;
    let tx = probe.transaction().await.unwrap();
    tx.execute(
        "select 1 from public.mod_chat_agents where id = $1 for update nowait",
        &[&u(AGENT_ALICE)],
    )
    .await
    .expect("the agent is free while delete waits for a conversation");
    tx.rollback().await.unwrap();

    // Meanwhile another conversation is assigned to alice and committed: the delete must
    // notice it (retry) and requeue it too.
    hold.execute(
        "update public.mod_chat_conversations set assigned_agent_id = $1, status = 'active' where id = $2",
        &[&u(AGENT_ALICE), &late],
    )
    .await
    .unwrap();
    hold.execute(
        "update public.mod_chat_agents set current_chat_count = current_chat_count + 1 where id = $1",
        &[&u(AGENT_ALICE)],
    )
    .await
    .unwrap();
    hold.commit().await.unwrap();

    let row = delete.await.unwrap().unwrap();
    assert_eq!(row["is_active"], json!(false));
    assert_eq!(i(&row, "current_chat_count"), 0);
    for conv in [u(CONV_ACTIVE), late] {
        let conv = conversation(&db, conv).await;
        assert_eq!(s(&conv, "status"), Some("pending"));
        assert!(conv["assigned_agent_id"].is_null());
    }
    assert_invariant(&db).await;
}

// ---------------------------------------------------------------------------------------------
// Departments
// ---------------------------------------------------------------------------------------------

const CREATE_DEPT: &str =
    "select to_jsonb(r) from public.mod_chat_create_department(p_site_id => $1, p_name => $2) r";
const DELETE_DEPT: &str = "select public.mod_chat_delete_department($1)";
const SET_DEFAULT: &str =
    "select to_jsonb(r) from public.mod_chat_set_default_department($1, $2) r";

async fn defaults_of(db: &Client, site: Uuid) -> Vec<Uuid> {
    db.query(
        "select id from public.mod_chat_departments where site_id = $1 and is_default order by id",
        &[&site],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn departments_keep_exactly_one_default_and_move_agents_on_delete() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;

    for who in CALLERS {
        let site = new_site(&db, &format!("Departments {who:?}")).await;
        let first = one(&mut c, who, CREATE_DEPT, &[&site, &"First"])
            .await
            .unwrap();
        assert_eq!(
            first["is_default"],
            json!(true),
            "the site's first department is the default"
        );
        assert_eq!(i(&first, "sort_order"), 0);
        let second = one(&mut c, who, CREATE_DEPT, &[&site, &"Second"])
            .await
            .unwrap();
        assert_eq!(second["is_default"], json!(false));
        assert_eq!(i(&second, "sort_order"), 1);
        let first_id = u(s(&first, "id").unwrap());
        let second_id = u(s(&second, "id").unwrap());
        assert_eq!(first, row_json(&db, "mod_chat_departments", first_id).await);

        // Agents of the department that goes are moved to the default one.
        let agent_id: Uuid = db
            .query_one(
                "insert into public.mod_chat_agents (site_id, user_id, display_name, department_id) \
                 values ($1, gen_random_uuid(), 'Zoe', $2) returning id",
                &[&site, &second_id],
            )
            .await
            .unwrap()
            .get(0);
        assert_error(
            call(&mut c, who, DELETE_DEPT, &[&first_id]).await,
            "PT409",
            "livechat:default_department",
        );
        call(&mut c, who, DELETE_DEPT, &[&second_id]).await.unwrap();
        let zoe = row_json(&db, "mod_chat_agents", agent_id).await;
        assert_eq!(
            s(&zoe, "department_id"),
            Some(first_id.to_string().as_str())
        );
        assert_error(
            call(&mut c, who, DELETE_DEPT, &[&second_id]).await,
            "PT404",
            "livechat:department_not_found",
        );

        // Set default: exactly one afterwards.
        let third = one(&mut c, who, CREATE_DEPT, &[&site, &"Third"])
            .await
            .unwrap();
        let third_id = u(s(&third, "id").unwrap());
        let row = one(&mut c, who, SET_DEFAULT, &[&site, &third_id])
            .await
            .unwrap();
        assert_eq!(row["is_default"], json!(true));
        assert_eq!(defaults_of(&db, site).await, vec![third_id]);
        one(&mut c, who, SET_DEFAULT, &[&site, &third_id])
            .await
            .unwrap();
        assert_eq!(defaults_of(&db, site).await, vec![third_id]);
        // Now the first one can go.
        call(&mut c, who, DELETE_DEPT, &[&first_id]).await.unwrap();
        let zoe = row_json(&db, "mod_chat_agents", agent_id).await;
        assert_eq!(
            s(&zoe, "department_id"),
            Some(third_id.to_string().as_str())
        );

        // A department of another site is not found through this site.
        assert_error(
            one(&mut c, who, SET_DEFAULT, &[&site, &u(DEPT_SUPPORT)]).await,
            "PT404",
            "livechat:department_not_found",
        );
        assert_error(
            one(&mut c, who, CREATE_DEPT, &[&site, &"   "]).await,
            "22023",
            "livechat:invalid_input",
        );
        assert_error(
            one(&mut c, who, CREATE_DEPT, &[&Uuid::new_v4(), &"Nowhere"]).await,
            "PT404",
            "livechat:site_not_found",
        );
    }
    // The seed's sites still have their single default.
    assert_eq!(defaults_of(&db, u(SITE1)).await, vec![u(DEPT_SALES)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_departments_make_one_default() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let db = connect(&stack).await;
    let site = new_site(&db, "Race").await;
    const N: usize = 8;
    let barrier = Arc::new(Barrier::new(N));
    let mut tasks = Vec::new();
    for n in 0..N {
        let mut c = connect(&stack).await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let who = CALLERS[n % 2];
            one(&mut c, who, CREATE_DEPT, &[&site, &format!("Dept {n}")])
                .await
                .unwrap()
        }));
    }
    let mut defaults = 0;
    for t in tasks {
        if t.await.unwrap()["is_default"] == json!(true) {
            defaults += 1;
        }
    }
    assert_eq!(defaults, 1);
    assert_eq!(defaults_of(&db, site).await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Visitors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn visitors_are_matched_by_email_then_whatsapp_phone() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;

    for who in CALLERS {
        let email = format!("New.Person.{}@Example.com", Uuid::new_v4().simple());
        let first = one(
            &mut c,
            who,
            UPSERT_VISITOR,
            &[&u(SITE1), &email, &None::<&str>, &None::<&str>],
        )
        .await
        .unwrap();
        let id = u(s(&first, "id").unwrap());
        assert_eq!(first, row_json(&db, "mod_chat_visitors", id).await);
        assert_eq!(i(&first, "total_visits"), 1);
        assert_eq!(s(&first, "channel"), Some("widget"));

        let second = one(
            &mut c,
            who,
            UPSERT_VISITOR,
            &[
                &u(SITE1),
                &email.to_lowercase(),
                &None::<&str>,
                &Some("New Person"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            s(&second, "id"),
            Some(id.to_string().as_str()),
            "same e-mail, any case"
        );
        assert_eq!(i(&second, "total_visits"), 2);
        assert_eq!(s(&second, "name"), Some("New Person"));
        assert!(s(&second, "last_seen_at") >= s(&first, "last_seen_at"));

        // The same e-mail on another site is another visitor.
        let other = one(
            &mut c,
            who,
            UPSERT_VISITOR,
            &[&u(SITE2), &email, &None::<&str>, &None::<&str>],
        )
        .await
        .unwrap();
        assert_ne!(s(&other, "id"), Some(id.to_string().as_str()));
    }

    // WhatsApp phone when no e-mail matches: Peter Zulu.
    let peter_before = row_json(&db, "mod_chat_visitors", u(VISITOR_PETER)).await;
    let row = one(
        &mut c,
        ALICE,
        UPSERT_VISITOR,
        &[
            &u(SITE1),
            &None::<&str>,
            &Some("+260971234567"),
            &None::<&str>,
        ],
    )
    .await
    .unwrap();
    assert_eq!(s(&row, "id"), Some(VISITOR_PETER));
    assert_eq!(
        i(&row, "total_visits"),
        i(&peter_before, "total_visits") + 1
    );
    assert_eq!(
        s(&row, "name"),
        Some("Peter Zulu"),
        "fields not given are kept"
    );

    // Neither: always a new visitor.
    let a = one(
        &mut c,
        Who::Service,
        UPSERT_VISITOR,
        &[&u(SITE1), &None::<&str>, &None::<&str>, &None::<&str>],
    )
    .await
    .unwrap();
    let b = one(
        &mut c,
        Who::Service,
        UPSERT_VISITOR,
        &[&u(SITE1), &None::<&str>, &None::<&str>, &None::<&str>],
    )
    .await
    .unwrap();
    assert_ne!(a["id"], b["id"]);

    assert_error(
        one(
            &mut c,
            ALICE,
            "select to_jsonb(r) from public.mod_chat_create_or_update_visitor(p_site_id => $1, p_channel => 'fax') r",
            &[&u(SITE1)],
        )
        .await,
        "22023",
        "livechat:invalid_input",
    );
    assert_error(
        one(
            &mut c,
            Who::Service,
            UPSERT_VISITOR,
            &[
                &Uuid::new_v4(),
                &Some("x@example.com"),
                &None::<&str>,
                &None::<&str>,
            ],
        )
        .await,
        "PT404",
        "livechat:site_not_found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_visitor_upserts_with_one_email_create_one_visitor() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let db = connect(&stack).await;
    const N: usize = 12;
    let barrier = Arc::new(Barrier::new(N));
    let mut tasks = Vec::new();
    for n in 0..N {
        let mut c = connect(&stack).await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let email = if n % 2 == 0 { "race@example.com" } else { "RACE@Example.com" };
            barrier.wait().await;
            match n % 3 {
                // The widget's path: anon, id only.
                0 => call(
                    &mut c,
                    Who::Anon,
                    "select public.mod_chat_widget_identify_visitor(p_site_id => $1, p_email => $2)::text",
                    &[&u(SITE1), &email],
                )
                .await
                .unwrap()[0]
                    .get::<_, String>(0),
                k => {
                    let who = CALLERS[k - 1];
                    let v = one(&mut c, who, UPSERT_VISITOR, &[&u(SITE1), &email, &None::<&str>, &None::<&str>])
                        .await
                        .unwrap();
                    s(&v, "id").unwrap().to_string()
                }
            }
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 1, "every call got the same visitor");
    let rows = db
        .query(
            "select id::text, total_visits from public.mod_chat_visitors \
             where site_id = $1 and lower(email) = 'race@example.com'",
            &[&u(SITE1)],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one visitor, not {}", rows.len());
    assert!(ids.contains(&rows[0].get::<_, String>(0)));
    assert_eq!(rows[0].get::<_, i32>(1), N as i32, "one visit per call");
}

// ---------------------------------------------------------------------------------------------
// Widget settings
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_widget_settings_calls_create_one_row() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let db = connect(&stack).await;
    let site = new_site(&db, "Fresh").await;
    const N: usize = 10;
    let barrier = Arc::new(Barrier::new(N));
    let mut tasks = Vec::new();
    for n in 0..N {
        let mut c = connect(&stack).await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            one(
                &mut c,
                CALLERS[n % 2],
                "select to_jsonb(r) from public.mod_chat_get_widget_settings($1) r",
                &[&site],
            )
            .await
            .unwrap()
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        let row = t.await.unwrap();
        assert_eq!(
            s(&row, "primary_color"),
            Some("#2563eb"),
            "created with the defaults"
        );
        ids.insert(row["id"].clone());
    }
    assert_eq!(ids.len(), 1);
    let n: i64 = db
        .query_one(
            "select count(*) from public.mod_chat_widget_settings where site_id = $1",
            &[&site],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn public_widget_settings_expose_only_public_fields_to_anon() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;
    const PUBLIC: &str = "select to_jsonb(r) from public.mod_chat_get_public_widget_settings($1) r";

    // Give site 3's row every private field, to see that none leaks.
    db.execute(
        "update public.mod_chat_widget_settings set whatsapp_phone_number_id = 'PNID', \
         whatsapp_business_account_id = 'WABA', whatsapp_welcome_template = 'tpl', \
         blocked_ips = '{10.0.0.1}' where site_id = $1",
        &[&u(SITE3)],
    )
    .await
    .unwrap();
    let stored = db
        .query_one(
            "select to_jsonb(w) from public.mod_chat_widget_settings w where w.site_id = $1",
            &[&u(SITE3)],
        )
        .await
        .unwrap()
        .get::<_, Value>(0);
    for who in [Who::Anon, Who::Service, ALICE, DAVE] {
        let row = one(&mut c, who, PUBLIC, &[&u(SITE3)]).await.unwrap();
        let obj = row.as_object().unwrap();
        for private in [
            "id",
            "site_id",
            "whatsapp_phone_number_id",
            "whatsapp_business_account_id",
            "whatsapp_welcome_template",
            "blocked_ips",
            "created_at",
            "updated_at",
        ] {
            assert!(!obj.contains_key(private), "{private} must not be public");
        }
        assert_eq!(obj.len(), 37);
        for (k, v) in obj {
            assert_eq!(&stored[k], v, "{k} as stored");
        }
        assert_eq!(s(&row, "whatsapp_phone_number"), Some("+260970000003"));
    }
    // A site without settings gets its default row (created once).
    let site = new_site(&db, "No settings yet").await;
    let row = one(&mut c, Who::Anon, PUBLIC, &[&site]).await.unwrap();
    assert_eq!(s(&row, "timezone"), Some("Africa/Lusaka"));
    assert_eq!(
        s(&row, "welcome_message"),
        Some("Hi there! How can we help you today?")
    );
    assert_error(
        one(&mut c, Who::Anon, PUBLIC, &[&Uuid::new_v4()]).await,
        "PT404",
        "livechat:site_not_found",
    );
    // The full settings are not for anon, nor for another agency.
    assert_sqlstate(
        one(
            &mut c,
            Who::Anon,
            "select to_jsonb(r) from public.mod_chat_get_widget_settings($1) r",
            &[&u(SITE1)],
        )
        .await,
        "42501",
    );
    assert_error(
        one(
            &mut c,
            DAVE,
            "select to_jsonb(r) from public.mod_chat_get_widget_settings($1) r",
            &[&u(SITE1)],
        )
        .await,
        "PT404",
        "livechat:site_not_found",
    );
    let own = one(
        &mut c,
        ALICE,
        "select to_jsonb(r) from public.mod_chat_get_widget_settings($1) r",
        &[&u(SITE1)],
    )
    .await
    .unwrap();
    assert_eq!(s(&own, "id"), Some("f0000000-0000-4000-8000-000000000001"));
}

// ---------------------------------------------------------------------------------------------
// Messages and read state
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sending_messages_sets_first_response_and_activates_pending_conversations() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;

    for who in CALLERS {
        let conv = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, 2).await;
        let m = one(
            &mut c,
            who,
            SEND,
            &[&conv, &"visitor", &Some("Hello?"), &None::<&str>],
        )
        .await
        .unwrap();
        assert_eq!(
            m,
            row_json(&db, "mod_chat_messages", u(s(&m, "id").unwrap())).await
        );
        let row = conversation(&db, conv).await;
        assert_eq!(
            (s(&row, "status"), i(&row, "unread_agent_count")),
            (Some("pending"), 1)
        );
        assert!(row["first_response_time_seconds"].is_null());

        // A note (content_type note) is internal and no response.
        let note = one(
            &mut c,
            who,
            SEND,
            &[&conv, &"agent", &Some("check order"), &Some("note")],
        )
        .await
        .unwrap();
        assert_eq!(note["is_internal_note"], json!(true));
        let row = conversation(&db, conv).await;
        assert_eq!(s(&row, "status"), Some("pending"));
        assert!(row["first_response_time_seconds"].is_null());

        // An AI answer is a first response but does not take the conversation.
        let conv_ai = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, 5).await;
        one(
            &mut c,
            who,
            SEND,
            &[&conv_ai, &"ai", &Some("Auto answer"), &None::<&str>],
        )
        .await
        .unwrap();
        let row = conversation(&db, conv_ai).await;
        assert_eq!(s(&row, "status"), Some("pending"));
        assert!((300..360).contains(&i(&row, "first_response_time_seconds")));

        // The agent's reply: first response, active, wait time; no assignment.
        one(
            &mut c,
            who,
            SEND,
            &[&conv, &"agent", &Some("Hi, how can I help?"), &None::<&str>],
        )
        .await
        .unwrap();
        let row = conversation(&db, conv).await;
        assert_eq!(s(&row, "status"), Some("active"));
        assert!(row["assigned_agent_id"].is_null());
        let first = i(&row, "first_response_time_seconds");
        assert!((120..180).contains(&first), "first response {first}");
        assert!((120..180).contains(&i(&row, "wait_time_seconds")));
        one(
            &mut c,
            who,
            SEND,
            &[&conv, &"agent", &Some("Anything else?"), &None::<&str>],
        )
        .await
        .unwrap();
        assert_eq!(
            i(
                &conversation(&db, conv).await,
                "first_response_time_seconds"
            ),
            first
        );

        // Invalid input changes nothing.
        let before = fingerprint(&db).await;
        for (sender, content, ctype) in [
            ("agent", Some("   "), None),
            ("agent", None, Some("text")),
            ("visitor", Some(""), None),
            ("robot", Some("hi"), None),
            ("agent", Some("hi"), Some("hologram")),
            ("agent", None, Some("image")),
        ] {
            assert_error(
                one(&mut c, who, SEND, &[&conv, &sender, &content, &ctype]).await,
                "22023",
                "livechat:invalid_input",
            );
        }
        assert_error(
            one(
                &mut c,
                who,
                SEND,
                &[&Uuid::new_v4(), &"agent", &Some("hi"), &None::<&str>],
            )
            .await,
            "PT404",
            "livechat:conversation_not_found",
        );
        assert_error(
            one(
                &mut c,
                who,
                "select to_jsonb(r) from public.mod_chat_send_message(p_conversation_id => $1, \
                 p_sender_type => 'agent', p_content => 'hi', p_site_id => $2) r",
                &[&conv, &u(SITE2)],
            )
            .await,
            "PT404",
            "livechat:conversation_not_found",
        );
        assert_eq!(fingerprint(&db).await, before);

        // A file message carries its file fields.
        let file = one(
            &mut c,
            who,
            "select to_jsonb(r) from public.mod_chat_send_message(p_conversation_id => $1, \
             p_sender_type => 'visitor', p_content_type => 'image', p_file_url => 'https://x.test/a.png', \
             p_file_name => 'a.png', p_file_size => 1234, p_file_mime_type => 'image/png') r",
            &[&conv],
        )
        .await
        .unwrap();
        assert_eq!(
            (
                s(&file, "file_name"),
                i(&file, "file_size"),
                s(&file, "content_type")
            ),
            (Some("a.png"), 1234, Some("image"))
        );
    }
    assert_invariant(&db).await;
}

#[tokio::test]
async fn marking_read_clears_one_side() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;
    const READ: &str = "select to_jsonb(r) from public.mod_chat_mark_conversation_read($1, $2) r";
    let conv = u(CONV_ACTIVE);
    let statuses = |sender: &'static str| {
        let db = &db;
        async move {
            db.query(
                "select status, is_internal_note from public.mod_chat_messages \
                 where conversation_id = $1 and sender_type = $2 order by id",
                &[&conv, &sender],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1)))
            .collect::<Vec<_>>()
        }
    };
    let before = conversation(&db, conv).await;
    assert!(i(&before, "unread_agent_count") > 0 && i(&before, "unread_visitor_count") > 0);
    let agent_msgs = statuses("agent").await;

    let row = one(&mut c, ALICE, READ, &[&conv, &"agent"]).await.unwrap();
    assert_eq!(row, conversation(&db, conv).await);
    assert_eq!(i(&row, "unread_agent_count"), 0);
    assert_eq!(
        i(&row, "unread_visitor_count"),
        i(&before, "unread_visitor_count")
    );
    assert!(statuses("visitor").await.iter().all(|(st, _)| st == "read"));
    assert_eq!(
        statuses("agent").await,
        agent_msgs,
        "the agent's own messages are untouched"
    );

    let row = one(&mut c, Who::Service, READ, &[&conv, &"visitor"])
        .await
        .unwrap();
    assert_eq!(i(&row, "unread_visitor_count"), 0);
    for (st, note) in statuses("agent").await {
        if note {
            assert_eq!(st, "sent", "internal notes are never shown to the visitor");
        } else {
            assert_eq!(st, "read");
        }
    }
    for who in CALLERS {
        assert_error(
            one(&mut c, who, READ, &[&conv, &"admin"]).await,
            "22023",
            "livechat:invalid_input",
        );
        assert_error(
            one(&mut c, who, READ, &[&Uuid::new_v4(), &"agent"]).await,
            "PT404",
            "livechat:conversation_not_found",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Create conversation, automatic assignment, available agent
// ---------------------------------------------------------------------------------------------

/// The routing rule, computed here from the agents' rows.
async fn expected_agent(db: &Client, site: &str, dept: Option<&str>) -> Option<String> {
    let rows = db
        .query(
            "select id::text, coalesce(current_chat_count, 0), coalesce(max_concurrent_chats, 5), \
                    status, is_active, department_id::text from public.mod_chat_agents where site_id = $1",
            &[&u(site)],
        )
        .await
        .unwrap();
    let mut free: Vec<(i32, String)> = rows
        .iter()
        .filter(|r| {
            r.get::<_, String>(3) == "online"
                && r.get::<_, Option<bool>>(4) == Some(true)
                && r.get::<_, i32>(1) < r.get::<_, i32>(2)
                && dept.is_none_or(|d| r.get::<_, Option<String>>(5).as_deref() == Some(d))
        })
        .map(|r| (r.get(1), r.get(0)))
        .collect();
    free.sort();
    free.into_iter().next().map(|(_, id)| id)
}

#[tokio::test]
async fn creating_a_conversation_routes_it_to_the_least_loaded_free_agent() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;
    // Carol (Sales, load 0) comes online.
    db.execute(
        "update public.mod_chat_agents set status = 'online' where id = $1",
        &[&u(AGENT_CAROL)],
    )
    .await
    .unwrap();

    let mut rounds = 0;
    for who in CALLERS {
        for dept in [
            Some(DEPT_SALES),
            None,
            Some(DEPT_SALES),
            None,
            Some(DEPT_SUPPORT),
        ] {
            let expected = expected_agent(&db, SITE1, dept).await;
            let visitors_before = i(
                &row_json(&db, "mod_chat_visitors", u(VISITOR_MIA)).await,
                "total_conversations",
            );
            let row = one(
                &mut c,
                who,
                CREATE_CONV,
                &[&u(SITE1), &u(VISITOR_MIA), &dept.map(u)],
            )
            .await
            .unwrap();
            assert_eq!(row, conversation(&db, u(s(&row, "id").unwrap())).await);
            assert_eq!(
                s(&row, "assigned_agent_id").map(str::to_string),
                expected,
                "{who:?} {dept:?}"
            );
            assert_eq!(
                s(&row, "status"),
                Some(if expected.is_some() {
                    "active"
                } else {
                    "pending"
                })
            );
            assert_eq!(s(&row, "priority"), Some("normal"));
            assert_eq!(
                i(
                    &row_json(&db, "mod_chat_visitors", u(VISITOR_MIA)).await,
                    "total_conversations"
                ),
                visitors_before + 1
            );
            assert_invariant(&db).await;
            rounds += 1;
        }
    }
    assert_eq!(rounds, 10);
    // Ties go to the lowest id; Carol started with the least load, so she was chosen first.
    let carol = agent(&db, AGENT_CAROL).await;
    assert!(i(&carol, "current_chat_count") >= 2);

    // Editorial (site 2) does not auto-assign; p_auto_assign false never does.
    let row = one(
        &mut c,
        ALICE,
        CREATE_CONV,
        &[&u(SITE2), &u(VISITOR_QUINN), &Some(u(DEPT_EDITORIAL))],
    )
    .await
    .unwrap();
    assert_eq!(
        (s(&row, "status"), row["assigned_agent_id"].is_null()),
        (Some("pending"), true)
    );
    let row = one(
        &mut c,
        ALICE,
        "select to_jsonb(r) from public.mod_chat_create_conversation(p_site_id => $1, p_visitor_id => $2, \
         p_auto_assign => false, p_channel => 'api', p_subject => 'Hi') r",
        &[&u(SITE1), &u(VISITOR_MIA)],
    )
    .await
    .unwrap();
    assert_eq!(
        (s(&row, "status"), s(&row, "channel"), s(&row, "subject")),
        (Some("pending"), Some("api"), Some("Hi"))
    );

    // Nobody free: it waits, pending.
    db.execute(
        "update public.mod_chat_agents set status = 'offline' where site_id = $1",
        &[&u(SITE1)],
    )
    .await
    .unwrap();
    let row = one(
        &mut c,
        Who::Service,
        CREATE_CONV,
        &[&u(SITE1), &u(VISITOR_MIA), &None::<Uuid>],
    )
    .await
    .unwrap();
    assert_eq!(s(&row, "status"), Some("pending"));

    for who in CALLERS {
        assert_error(
            one(
                &mut c,
                who,
                CREATE_CONV,
                &[&u(SITE1), &u(VISITOR_QUINN), &None::<Uuid>],
            )
            .await,
            "PT404",
            "livechat:visitor_not_found",
        );
        assert_error(
            one(
                &mut c,
                who,
                CREATE_CONV,
                &[&u(SITE1), &u(VISITOR_MIA), &Some(u(DEPT_EDITORIAL))],
            )
            .await,
            "PT404",
            "livechat:department_not_found",
        );
        assert_error(
            one(
                &mut c,
                who,
                "select to_jsonb(r) from public.mod_chat_create_conversation(p_site_id => $1, p_visitor_id => $2, p_channel => 'sms') r",
                &[&u(SITE1), &u(VISITOR_MIA)],
            )
            .await,
            "22023",
            "livechat:invalid_input",
        );
    }
    assert_invariant(&db).await;
}

#[tokio::test]
async fn the_available_agent_is_the_least_loaded_free_one() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;
    const AVAILABLE: &str =
        "select to_jsonb(r) from public.mod_chat_get_available_agent(p_site_id => $1, p_department_id => $2) r";
    for who in CALLERS {
        for (site, dept) in [
            (SITE1, None),
            (SITE1, Some(DEPT_SALES)),
            (SITE1, Some(DEPT_SUPPORT)),
            (SITE2, None),
            (SITE2, Some(DEPT_EDITORIAL)),
        ] {
            let expected = expected_agent(&db, site, dept).await;
            let rows = all(&mut c, who, AVAILABLE, &[&u(site), &dept.map(u)])
                .await
                .unwrap();
            assert_eq!(
                rows.first().and_then(|r| s(r, "id")).map(str::to_string),
                expected,
                "{who:?} {site} {dept:?}"
            );
            assert!(rows.len() <= 1);
        }
    }
    // Bob full: alice (load 1) is the only free one in the site.
    db.execute(
        "update public.mod_chat_agents set max_concurrent_chats = 1 where id = $1",
        &[&u(AGENT_BOB)],
    )
    .await
    .unwrap();
    let rows = all(&mut c, ALICE, AVAILABLE, &[&u(SITE1), &None::<Uuid>])
        .await
        .unwrap();
    assert_eq!(s(&rows[0], "id"), Some(AGENT_ALICE));
    db.execute(
        "update public.mod_chat_agents set status = 'away' where site_id = $1",
        &[&u(SITE1)],
    )
    .await
    .unwrap();
    assert!(all(&mut c, ALICE, AVAILABLE, &[&u(SITE1), &None::<Uuid>])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_auto_assign_workers_never_double_assign_nor_overfill() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let db = connect(&stack).await;
    let site = new_site(&db, "Workers").await;
    let visitor: Uuid = db
        .query_one(
            "insert into public.mod_chat_visitors (site_id, name) values ($1, 'W') returning id",
            &[&site],
        )
        .await
        .unwrap()
        .get(0);
    db.execute(
        "insert into public.mod_chat_agents (site_id, user_id, display_name, status, max_concurrent_chats) \
         select $1, gen_random_uuid(), 'Agent ' || n, 'online', 3 from generate_series(1, 3) n",
        &[&site],
    )
    .await
    .unwrap();
    db.execute(
        "insert into public.mod_chat_conversations (site_id, visitor_id, created_at) \
         select $1, $2, now() - make_interval(secs => n) from generate_series(1, 20) n",
        &[&site, &visitor],
    )
    .await
    .unwrap();

    const SWEEP: &str = "select r.id::text from public.mod_chat_auto_assign_pending(p_site_id => $1, p_limit => 2) r";
    let mut tasks = Vec::new();
    for n in 0..4 {
        let mut c = connect(&stack).await;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let rows = call(&mut c, CALLERS[n % 2], SWEEP, &[&site]).await.unwrap();
                if rows.is_empty() {
                    return mine;
                }
                mine.extend(rows.iter().map(|r| r.get::<_, String>(0)));
            }
        }));
    }
    let mut assigned = Vec::new();
    for t in tasks {
        assigned.extend(t.await.unwrap());
    }
    // Whatever a worker skipped while another held a row, a last sweep alone finds.
    let mut c = connect(&stack).await;
    let rows = call(&mut c, Who::Service, SWEEP, &[&site]).await.unwrap();
    assigned.extend(rows.iter().map(|r| r.get::<_, String>(0)));

    let unique: HashSet<_> = assigned.iter().collect();
    assert_eq!(
        unique.len(),
        assigned.len(),
        "a conversation was assigned twice"
    );
    assert_eq!(assigned.len(), 9, "three agents with three slots each");
    let full: i64 = db
        .query_one(
            "select count(*) from public.mod_chat_agents where site_id = $1 and current_chat_count = 3",
            &[&site],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(full, 3);
    assert_invariant(&db).await;
}

// ---------------------------------------------------------------------------------------------
// Canned responses
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_response_usage_increments_atomically() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let db = connect(&stack).await;
    const INC: &str =
        "select to_jsonb(r) from public.mod_chat_increment_canned_response_usage($1) r";
    let before = i(
        &row_json(&db, "mod_chat_canned_responses", u(CANNED_GREETING)).await,
        "usage_count",
    );
    const N: usize = 10;
    let barrier = Arc::new(Barrier::new(N));
    let mut tasks = Vec::new();
    for n in 0..N {
        let mut c = connect(&stack).await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            one(&mut c, CALLERS[n % 2], INC, &[&u(CANNED_GREETING)])
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = row_json(&db, "mod_chat_canned_responses", u(CANNED_GREETING)).await;
    assert_eq!(i(&after, "usage_count"), before + N as i64);
    assert!(after["last_used_at"].is_string());
    let mut c = connect(&stack).await;
    assert_error(
        one(&mut c, ALICE, INC, &[&Uuid::new_v4()]).await,
        "PT404",
        "livechat:canned_response_not_found",
    );
}

// ---------------------------------------------------------------------------------------------
// Conversation list, stats, agent performance: compared with direct SQL
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct ConvRow {
    id: Uuid,
    status: String,
    channel: String,
    agent: Option<Uuid>,
    department: Option<Uuid>,
    priority: Option<String>,
    created: f64,
    last_at: Option<f64>,
    texts: [Option<String>; 3],
}

async fn conv_rows(db: &Client, site: &str) -> Vec<ConvRow> {
    db.query(
        "select c.id, c.status, c.channel, c.assigned_agent_id, c.department_id, c.priority, \
                extract(epoch from c.created_at)::float8, extract(epoch from c.last_message_at)::float8, \
                c.last_message_text, v.name, v.email \
         from public.mod_chat_conversations c left join public.mod_chat_visitors v on v.id = c.visitor_id \
         where c.site_id = $1",
        &[&u(site)],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| ConvRow {
        id: r.get(0),
        status: r.get(1),
        channel: r.get(2),
        agent: r.get(3),
        department: r.get(4),
        priority: r.get(5),
        created: r.get(6),
        last_at: r.get(7),
        texts: [r.get(8), r.get(9), r.get(10)],
    })
    .collect()
}

#[derive(Clone, Debug, Default)]
struct Filter {
    status: Option<&'static str>,
    channel: Option<&'static str>,
    agent: Option<String>,
    department: Option<Uuid>,
    priority: Option<&'static str>,
    search: Option<String>,
    from: Option<SystemTime>,
    to: Option<SystemTime>,
    limit: i32,
    offset: i32,
}

fn contains_literally(hay: &Option<String>, needle: &str) -> bool {
    hay.as_deref()
        .is_some_and(|h| h.to_lowercase().contains(&needle.to_lowercase()))
}

/// getConversations computed here: (ids of the page, total).
fn expected_list(rows: &[ConvRow], f: &Filter) -> (Vec<Uuid>, usize) {
    fn all_or(v: Option<&str>) -> Option<&str> {
        v.filter(|v| *v != "all" && !v.is_empty())
    }
    let mut hits: Vec<&ConvRow> = rows
        .iter()
        .filter(|r| all_or(f.status).is_none_or(|s| r.status == s))
        .filter(|r| all_or(f.channel).is_none_or(|s| r.channel == s))
        .filter(|r| all_or(f.priority).is_none_or(|s| r.priority.as_deref() == Some(s)))
        .filter(|r| match all_or(f.agent.as_deref()) {
            None => true,
            Some("unassigned") => r.agent.is_none(),
            Some(id) => r.agent == Some(u(id)),
        })
        .filter(|r| f.department.is_none_or(|d| r.department == Some(d)))
        .filter(|r| f.from.is_none_or(|t| r.created >= epoch(t)))
        .filter(|r| f.to.is_none_or(|t| r.created <= epoch(t)))
        .filter(|r| match f.search.as_deref().filter(|s| !s.is_empty()) {
            None => true,
            Some(q) => r.texts.iter().any(|t| contains_literally(t, q)),
        })
        .collect();
    hits.sort_by(|a, b| match (a.last_at, b.last_at) {
        (Some(x), Some(y)) => y.partial_cmp(&x).unwrap().then(a.id.cmp(&b.id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.id.cmp(&b.id),
    });
    let total = hits.len();
    let page = hits
        .into_iter()
        .skip(f.offset as usize)
        .take(f.limit as usize)
        .map(|r| r.id)
        .collect();
    (page, total)
}

async fn list(
    client: &mut Client,
    who: Who,
    site: &str,
    f: &Filter,
) -> Result<Vec<Value>, tokio_postgres::Error> {
    all(
        client,
        who,
        LIST,
        &[
            &u(site),
            &f.status,
            &f.channel,
            &f.agent,
            &f.department,
            &f.priority,
            &f.search,
            &f.from,
            &f.to,
            &f.limit,
            &f.offset,
        ],
    )
    .await
}

async fn assert_list_matches(
    c: &mut Client,
    db: &Client,
    who: Who,
    site: &'static str,
    f: &Filter,
) {
    let rows = conv_rows(db, site).await;
    let (page, total) = expected_list(&rows, f);
    let got = list(c, who, site, f).await.unwrap();
    let got_ids: Vec<Uuid> = got.iter().map(|r| u(s(r, "id").unwrap())).collect();
    assert_eq!(got_ids, page, "{who:?} {f:?}");
    for r in &got {
        assert_eq!(i(r, "total_count") as usize, total, "{f:?}");
    }
}

#[tokio::test]
async fn the_conversation_list_filters_sorts_and_pages_like_direct_sql() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;
    // More rows: some without messages (last_message_at null), an old one.
    for age in [1, 90, 3000] {
        new_conversation(&db, SITE1, VISITOR_PETER, "pending", None, age).await;
    }

    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    let filters = vec![
        Filter {
            limit: 100,
            ..Filter::default()
        },
        Filter {
            status: Some("all"),
            channel: Some("all"),
            priority: Some("all"),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            status: Some("active"),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            status: Some("pending"),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            channel: Some("whatsapp"),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            agent: Some("unassigned".into()),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            agent: Some(AGENT_ALICE.into()),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            department: Some(u(DEPT_SUPPORT)),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            priority: Some("high"),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            search: Some("NOAH".into()),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            search: Some("example.com".into()),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            search: Some("shipping".into()),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            search: Some("".into()),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            from: Some(day_ago),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            to: Some(day_ago),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            from: Some(day_ago),
            status: Some("pending"),
            agent: Some("unassigned".into()),
            limit: 100,
            ..Filter::default()
        },
        Filter {
            limit: 3,
            offset: 0,
            ..Filter::default()
        },
        Filter {
            limit: 3,
            offset: 3,
            ..Filter::default()
        },
        Filter {
            limit: 3,
            offset: 6,
            ..Filter::default()
        },
        Filter {
            limit: 0,
            ..Filter::default()
        },
    ];
    for who in CALLERS {
        for f in &filters {
            assert_list_matches(&mut c, &db, who, SITE1, f).await;
        }
    }
    // The pages together are the whole list, in order.
    let mut paged = Vec::new();
    for offset in (0..12).step_by(4) {
        let page = list(
            &mut c,
            ALICE,
            SITE1,
            &Filter {
                limit: 4,
                offset,
                ..Filter::default()
            },
        )
        .await
        .unwrap();
        paged.extend(page.iter().map(|r| r["id"].clone()));
    }
    let whole = list(
        &mut c,
        ALICE,
        SITE1,
        &Filter {
            limit: 100,
            ..Filter::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        paged,
        whole.iter().map(|r| r["id"].clone()).collect::<Vec<_>>()
    );

    // The joined fields.
    let row = whole
        .iter()
        .find(|r| s(r, "id") == Some(CONV_ACTIVE))
        .unwrap();
    assert_eq!(
        (
            s(row, "visitor_name"),
            s(row, "visitor_email"),
            s(row, "agent_display_name"),
            s(row, "department_name")
        ),
        (
            Some("Noah Banda"),
            Some("noah@example.com"),
            Some("Alice Anderson"),
            Some("Sales")
        )
    );
    let stored = conversation(&db, u(CONV_ACTIVE)).await;
    for (k, v) in stored.as_object().unwrap() {
        assert_eq!(&row[k], v, "{k} as stored");
    }

    for bad in [
        Filter {
            status: Some("open"),
            limit: 10,
            ..Filter::default()
        },
        Filter {
            channel: Some("sms"),
            limit: 10,
            ..Filter::default()
        },
        Filter {
            priority: Some("asap"),
            limit: 10,
            ..Filter::default()
        },
        Filter {
            agent: Some("nobody".into()),
            limit: 10,
            ..Filter::default()
        },
        Filter {
            limit: -1,
            ..Filter::default()
        },
    ] {
        assert_error(
            list(&mut c, ALICE, SITE1, &bad).await,
            "22023",
            "livechat:invalid_input",
        );
    }
}

#[tokio::test]
async fn stats_are_one_call_and_count_today_in_the_callers_time_zone() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;
    // Spread over three days, with ratings, first responses, a missed one and resolutions.
    for (hours, status, rating, first, resolved_hours) in [
        (2, "resolved", Some(5), Some(30), Some(1)),
        (9, "missed", None, None, None),
        (13, "closed", Some(3), Some(61), Some(12)),
        (20, "active", None, Some(45), None),
        (30, "resolved", Some(4), Some(100), Some(26)),
        (47, "pending", None, None, None),
    ] {
        db.execute(
            "insert into public.mod_chat_conversations (site_id, visitor_id, status, rating, \
             first_response_time_seconds, created_at, resolved_at) values ($1, $2, $3, $4, $5, \
             now() - make_interval(hours => $6), now() - make_interval(hours => $7))",
            &[
                &u(SITE1),
                &u(VISITOR_MIA),
                &status,
                &rating,
                &first,
                &hours,
                &resolved_hours,
            ],
        )
        .await
        .unwrap();
    }
    let rows = db
        .query(
            "select status, extract(epoch from created_at)::float8, extract(epoch from resolved_at)::float8, \
                    first_response_time_seconds, rating from public.mod_chat_conversations where site_id = $1",
            &[&u(SITE1)],
        )
        .await
        .unwrap();
    let online: i64 = db
        .query_one(
            "select count(*) from public.mod_chat_agents where site_id = $1 and is_active \
             and status in ('online', 'away', 'busy')",
            &[&u(SITE1)],
        )
        .await
        .unwrap()
        .get(0);

    for who in CALLERS {
        for tz in [
            "UTC",
            "Africa/Lusaka",
            "Pacific/Kiritimati",
            "America/Los_Angeles",
            "Asia/Kathmandu",
        ] {
            let r = call(
                &mut c,
                who,
                "select to_jsonb(s), extract(epoch from s.today_start)::float8, extract(epoch from s.today_end)::float8, \
                        to_char(s.today_start at time zone $2, 'HH24:MI:SS'), extract(epoch from now())::float8 \
                 from public.mod_chat_conversation_stats($1, $2) s",
                &[&u(SITE1), &tz],
            )
            .await
            .unwrap();
            let (stats, start, end, local, now): (Value, f64, f64, String, f64) = (
                r[0].get(0),
                r[0].get(1),
                r[0].get(2),
                r[0].get(3),
                r[0].get(4),
            );
            assert_eq!(local, "00:00:00", "{tz}: today starts at local midnight");
            assert!(start <= now && now < end, "{tz}: now is today");
            assert!([23.0, 24.0, 25.0].contains(&((end - start) / 3600.0)));

            let today = |t: f64| t >= start && t < end;
            let count = |p: &dyn Fn(&Row) -> bool| rows.iter().filter(|r| p(r)).count() as i64;
            let todays: Vec<&Row> = rows.iter().filter(|r| today(r.get(1))).collect();
            let firsts: Vec<f64> = todays
                .iter()
                .filter_map(|r| r.get::<_, Option<i32>>(3))
                .map(f64::from)
                .collect();
            let ratings: Vec<f64> = todays
                .iter()
                .filter_map(|r| r.get::<_, Option<i32>>(4))
                .map(f64::from)
                .collect();
            let avg = |v: &[f64]| {
                if v.is_empty() {
                    0.0
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                }
            };

            assert_eq!(
                i(&stats, "active_conversations"),
                count(&|r: &Row| r.get::<_, String>(0) == "active"),
                "{tz}"
            );
            assert_eq!(
                i(&stats, "pending_conversations"),
                count(&|r: &Row| r.get::<_, String>(0) == "pending")
            );
            assert_eq!(i(&stats, "online_agents"), online);
            assert_eq!(
                i(&stats, "today_conversations"),
                todays.len() as i64,
                "{tz}"
            );
            assert_eq!(
                i(&stats, "today_resolved"),
                count(&|r: &Row| r.get::<_, Option<f64>>(2).is_some_and(today)),
                "{tz}"
            );
            assert_eq!(
                i(&stats, "today_missed"),
                count(&|r: &Row| r.get::<_, String>(0) == "missed" && today(r.get(1))),
                "{tz}"
            );
            assert_eq!(
                i(&stats, "avg_first_response_seconds"),
                avg(&firsts).round() as i64,
                "{tz}"
            );
            assert!(
                (f(&stats, "satisfaction_score") - avg(&ratings) * 20.0).abs() < 0.01,
                "{tz}"
            );
        }
    }
    assert_error(
        call(
            &mut c,
            ALICE,
            "select * from public.mod_chat_conversation_stats($1, 'Mars/Olympus')",
            &[&u(SITE1)],
        )
        .await,
        "22023",
        "livechat:invalid_input",
    );
    let default_utc = one(
        &mut c,
        ALICE,
        "select to_jsonb(s) from public.mod_chat_conversation_stats($1) s",
        &[&u(SITE1)],
    )
    .await
    .unwrap();
    let utc = one(
        &mut c,
        ALICE,
        "select to_jsonb(s) from public.mod_chat_conversation_stats($1, 'UTC') s",
        &[&u(SITE1)],
    )
    .await
    .unwrap();
    assert_eq!(default_utc, utc);
}

#[tokio::test]
async fn agent_performance_is_one_call_and_matches_direct_sql() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;
    // An inactive agent is not reported.
    db.execute(
        "insert into public.mod_chat_agents (site_id, user_id, display_name, is_active) values ($1, gen_random_uuid(), 'Gone', false)",
        &[&u(SITE1)],
    )
    .await
    .unwrap();
    for (agent_id, hours, status, rating, first) in [
        (AGENT_CAROL, 1, "resolved", Some(2), Some(10)),
        (AGENT_CAROL, 5, "closed", Some(5), Some(21)),
        (AGENT_CAROL, 50, "resolved", Some(1), Some(500)),
        (AGENT_ALICE, 3, "missed", None, None),
    ] {
        db.execute(
            "insert into public.mod_chat_conversations (site_id, visitor_id, assigned_agent_id, status, rating, \
             first_response_time_seconds, created_at) values ($1, $2, $3, $4, $5, $6, now() - make_interval(hours => $7))",
            &[&u(SITE1), &u(VISITOR_MIA), &u(agent_id), &status, &rating, &first, &hours],
        )
        .await
        .unwrap();
    }
    const PERF: &str = "select to_jsonb(r) from public.mod_chat_agent_performance(p_site_id => $1, p_date_from => $2, p_date_to => $3) r";
    let agents = db
        .query(
            "select id, display_name, coalesce(current_chat_count, 0), coalesce(max_concurrent_chats, 5) \
             from public.mod_chat_agents where site_id = $1 and is_active order by display_name, id",
            &[&u(SITE1)],
        )
        .await
        .unwrap();
    let convs = db
        .query(
            "select assigned_agent_id, status, extract(epoch from created_at)::float8, first_response_time_seconds, rating \
             from public.mod_chat_conversations where site_id = $1 and assigned_agent_id is not null",
            &[&u(SITE1)],
        )
        .await
        .unwrap();
    let now = SystemTime::now();
    for who in CALLERS {
        for (from, to) in [
            (None, None),
            (Some(now - Duration::from_secs(86_400)), None),
            (
                Some(now - Duration::from_secs(4 * 86_400)),
                Some(now - Duration::from_secs(3 * 3600)),
            ),
        ] {
            let got = all(&mut c, who, PERF, &[&u(SITE1), &from, &to])
                .await
                .unwrap();
            assert_eq!(got.len(), agents.len());
            for (row, a) in got.iter().zip(&agents) {
                let id: Uuid = a.get(0);
                assert_eq!(s(row, "agent_id"), Some(id.to_string().as_str()));
                assert_eq!(s(row, "display_name"), Some(a.get::<_, String>(1).as_str()));
                let mine: Vec<&Row> = convs
                    .iter()
                    .filter(|r| r.get::<_, Uuid>(0) == id)
                    .filter(|r| from.is_none_or(|t| r.get::<_, f64>(2) >= epoch(t)))
                    .filter(|r| to.is_none_or(|t| r.get::<_, f64>(2) <= epoch(t)))
                    .collect();
                let firsts: Vec<f64> = mine
                    .iter()
                    .filter_map(|r| r.get::<_, Option<i32>>(3))
                    .map(f64::from)
                    .collect();
                let ratings: Vec<f64> = mine
                    .iter()
                    .filter_map(|r| r.get::<_, Option<i32>>(4))
                    .map(f64::from)
                    .collect();
                let avg = |v: &[f64]| {
                    if v.is_empty() {
                        0.0
                    } else {
                        v.iter().sum::<f64>() / v.len() as f64
                    }
                };
                assert_eq!(i(row, "total_chats"), mine.len() as i64, "{row}");
                assert_eq!(
                    i(row, "resolved_chats"),
                    mine.iter()
                        .filter(|r| ["resolved", "closed"].contains(&r.get::<_, &str>(1)))
                        .count() as i64
                );
                assert_eq!(
                    i(row, "avg_first_response_seconds"),
                    avg(&firsts).round() as i64
                );
                assert!(
                    (f(row, "avg_rating") - avg(&ratings)).abs() < 0.006,
                    "{row}"
                );
                assert_eq!(i(row, "rating_count"), ratings.len() as i64);
                assert_eq!(i(row, "current_load"), i64::from(a.get::<_, i32>(2)));
                assert_eq!(i(row, "max_load"), i64::from(a.get::<_, i32>(3)));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Literal search
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_search_text_matches_literally_everywhere() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;

    let specials = r#"a,b(c)d.e*f%g_h"i\j'k"#;
    let unicode = "Zürich ÄÖÜ Ärger 日本語 🚀 Ωmega";
    let long: String = format!("{specials}{unicode}")
        .chars()
        .cycle()
        .take(10_000)
        .collect();
    let texts = [
        specials.to_string(),
        unicode.to_string(),
        long.clone(),
        "100% sure_thing".to_string(),
    ];

    // A visitor named with each text, a conversation whose last message is each text, a canned
    // response and an article containing each.
    for (n, t) in texts.iter().enumerate() {
        let visitor: Uuid = db
            .query_one(
                "insert into public.mod_chat_visitors (site_id, name, email) values ($1, $2, $3) returning id",
                &[&u(SITE1), t, &format!("v{n}@example.com")],
            )
            .await
            .unwrap()
            .get(0);
        new_conversation(&db, SITE1, &visitor.to_string(), "pending", None, n as i32).await;
        let conv = new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, n as i32).await;
        db.execute(
            "insert into public.mod_chat_messages (conversation_id, site_id, sender_type, content) values ($1, $2, 'visitor', $3)",
            &[&conv, &u(SITE1), &format!("before {t} after")],
        )
        .await
        .unwrap();
        db.execute(
            "insert into public.mod_chat_canned_responses (site_id, title, content, shortcut) values ($1, $2, 'x', $3)",
            &[&u(SITE1), &format!("Canned {n}"), &format!("/{t}")],
        )
        .await
        .unwrap();
        db.execute(
            "insert into public.mod_chat_knowledge_base (site_id, title, content) values ($1, $2, $3)",
            &[&u(SITE1), &format!("Article {n}"), &format!("About {t}.")],
        )
        .await
        .unwrap();
    }

    let canned = db
        .query(
            "select id, title, content, shortcut from public.mod_chat_canned_responses where site_id = $1 and is_active",
            &[&u(SITE1)],
        )
        .await
        .unwrap();
    let kb = db
        .query(
            "select id, title, content from public.mod_chat_knowledge_base where site_id = $1 and is_active",
            &[&u(SITE1)],
        )
        .await
        .unwrap();

    let mut queries: Vec<String> = [
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
        "%%",
        "_%",
        "or=(",
        "a,b(c)d",
        "ÄRGER",
        "zürich",
        "日本",
        "🚀",
        "ωMEGA",
        "100%",
        "e*f%g_h\"i\\j'k",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    queries.extend(texts.iter().cloned());
    queries.push(long.to_uppercase());
    queries.push("x".repeat(10_000));

    let rows = conv_rows(&db, SITE1).await;
    for who in CALLERS {
        for q in &queries {
            // Conversations.
            assert_list_matches(
                &mut c,
                &db,
                who,
                SITE1,
                &Filter {
                    search: Some(q.clone()),
                    limit: 1000,
                    ..Filter::default()
                },
            )
            .await;
            // Canned responses.
            let got: HashSet<String> = all(&mut c, who, SEARCH_CANNED, &[&u(SITE1), q])
                .await
                .unwrap()
                .iter()
                .map(|r| s(r, "id").unwrap().to_string())
                .collect();
            let expected: HashSet<String> = canned
                .iter()
                .filter(|r| (1..4).any(|k| contains_literally(&r.get(k), q)))
                .map(|r| r.get::<_, Uuid>(0).to_string())
                .collect();
            assert_eq!(got, expected, "canned {q:.40}");
            // Knowledge base.
            let got: HashSet<String> = all(&mut c, who, SEARCH_KB, &[&u(SITE1), q])
                .await
                .unwrap()
                .iter()
                .map(|r| s(r, "id").unwrap().to_string())
                .collect();
            let expected: HashSet<String> = kb
                .iter()
                .filter(|r| (1..3).any(|k| contains_literally(&r.get(k), q)))
                .map(|r| r.get::<_, Uuid>(0).to_string())
                .collect();
            assert_eq!(got, expected, "kb {q:.40}");
        }
    }
    // Spot checks that the searches really find the hostile rows (not just agree on nothing).
    let (page, _) = expected_list(
        &rows,
        &Filter {
            search: Some(specials.into()),
            limit: 1000,
            ..Filter::default()
        },
    );
    assert!(
        page.len() >= 4,
        "visitor names and last messages with the text: {}",
        page.len()
    );
    let (page, _) = expected_list(
        &rows,
        &Filter {
            search: Some("%".into()),
            limit: 1000,
            ..Filter::default()
        },
    );
    let (all_rows, _) = expected_list(
        &rows,
        &Filter {
            limit: 1000,
            ..Filter::default()
        },
    );
    assert!(
        !page.is_empty() && page.len() < all_rows.len(),
        "% is not a wildcard"
    );
    let long_hits = all(&mut c, ALICE, SEARCH_KB, &[&u(SITE1), &long])
        .await
        .unwrap();
    assert_eq!(long_hits.len(), 1);
    let percent = all(&mut c, ALICE, SEARCH_CANNED, &[&u(SITE1), &"100%"])
        .await
        .unwrap();
    assert_eq!(
        percent.len(),
        2,
        "the seed's '100% guaranteed' and '100% sure_thing'"
    );
    // An empty query lists every active row, by usage.
    let every = all(&mut c, ALICE, SEARCH_CANNED, &[&u(SITE1), &""])
        .await
        .unwrap();
    assert_eq!(every.len(), canned.len());
    let usage: Vec<i64> = every.iter().map(|r| i(r, "usage_count")).collect();
    assert!(usage.windows(2).all(|w| w[0] >= w[1]));
}

// ---------------------------------------------------------------------------------------------
// Tenancy and grants
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn another_agencys_member_gets_not_found_and_sees_nothing() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;
    let before = fingerprint(&db).await;
    let none = None::<&str>;

    let cases: Vec<(&str, Params, &str)> = vec![
        (
            ASSIGN,
            vec![p(u(CONV_ACTIVE)), p(u(AGENT_DAVE))],
            "livechat:conversation_not_found",
        ),
        (
            ASSIGN,
            vec![p(u(CONV_BETA_ACTIVE)), p(u(AGENT_ALICE))],
            "livechat:agent_not_found",
        ),
        (
            TRANSFER,
            vec![p(u(CONV_ACTIVE)), p(u(AGENT_DAVE)), p(none)],
            "livechat:conversation_not_found",
        ),
        (
            RESOLVE,
            vec![p(u(CONV_ACTIVE))],
            "livechat:conversation_not_found",
        ),
        (
            CLOSE,
            vec![p(u(CONV_ACTIVE))],
            "livechat:conversation_not_found",
        ),
        (
            REOPEN,
            vec![p(u(CONV_RESOLVED))],
            "livechat:conversation_not_found",
        ),
        (
            "select to_jsonb(r) from public.mod_chat_mark_conversation_read($1, 'agent') r",
            vec![p(u(CONV_ACTIVE))],
            "livechat:conversation_not_found",
        ),
        (
            "select to_jsonb(r) from public.mod_chat_auto_assign_conversation($1) r",
            vec![p(u(CONV_PENDING))],
            "livechat:conversation_not_found",
        ),
        (
            SEND,
            vec![p(u(CONV_ACTIVE)), p("agent"), p(Some("hi")), p(none)],
            "livechat:conversation_not_found",
        ),
        (
            DELETE_AGENT,
            vec![p(u(AGENT_ALICE))],
            "livechat:agent_not_found",
        ),
        (
            CREATE_CONV,
            vec![p(u(SITE1)), p(u(VISITOR_MIA)), p(None::<Uuid>)],
            "livechat:visitor_not_found",
        ),
        (
            CREATE_DEPT,
            vec![p(u(SITE1)), p("Sneaky")],
            "livechat:site_not_found",
        ),
        (
            DELETE_DEPT,
            vec![p(u(DEPT_SUPPORT))],
            "livechat:department_not_found",
        ),
        (
            SET_DEFAULT,
            vec![p(u(SITE1)), p(u(DEPT_SUPPORT))],
            "livechat:department_not_found",
        ),
        (
            "select to_jsonb(r) from public.mod_chat_increment_canned_response_usage($1) r",
            vec![p(u(CANNED_GREETING))],
            "livechat:canned_response_not_found",
        ),
        (
            "select to_jsonb(r) from public.mod_chat_get_widget_settings($1) r",
            vec![p(u(SITE1))],
            "livechat:site_not_found",
        ),
        (
            UPSERT_VISITOR,
            vec![
                p(u(SITE1)),
                p(Some("mia@example.com")),
                p(none),
                p(Some("Hijack")),
            ],
            "livechat:site_not_found",
        ),
    ];
    for (sql, params, hint) in &cases {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| b.as_ref()).collect();
        assert_error(call(&mut c, DAVE, sql, &params).await, "PT404", hint);
    }
    // Reads: nothing of agency A.
    assert!(list(
        &mut c,
        DAVE,
        SITE1,
        &Filter {
            limit: 100,
            ..Filter::default()
        }
    )
    .await
    .unwrap()
    .is_empty());
    let stats = one(
        &mut c,
        DAVE,
        "select to_jsonb(s) from public.mod_chat_conversation_stats($1) s",
        &[&u(SITE1)],
    )
    .await
    .unwrap();
    for k in [
        "active_conversations",
        "pending_conversations",
        "online_agents",
        "today_conversations",
    ] {
        assert_eq!(i(&stats, k), 0, "{k}");
    }
    for sql in [
        "select to_jsonb(r) from public.mod_chat_agent_performance($1) r",
        "select to_jsonb(r) from public.mod_chat_get_available_agent($1) r",
        "select to_jsonb(r) from public.mod_chat_search_canned_responses($1, '') r",
        "select to_jsonb(r) from public.mod_chat_search_knowledge_base($1, '') r",
        "select to_jsonb(r) from public.mod_chat_auto_assign_pending($1) r",
    ] {
        assert!(
            all(&mut c, DAVE, sql, &[&u(SITE1)])
                .await
                .unwrap()
                .is_empty(),
            "{sql}"
        );
    }
    assert_eq!(
        fingerprint(&db).await,
        before,
        "agency A's data is untouched"
    );

    // And the other way round: alice cannot touch Beta Shop.
    assert_error(
        one(&mut c, ALICE, RESOLVE, &[&u(CONV_BETA_ACTIVE)]).await,
        "PT404",
        "livechat:conversation_not_found",
    );
    assert_error(
        call(&mut c, ALICE, DELETE_DEPT, &[&u(DEPT_BETA_SUPPORT)]).await,
        "PT404",
        "livechat:department_not_found",
    );
    // Dave on his own site works.
    let row = one(&mut c, DAVE, RESOLVE, &[&u(CONV_BETA_ACTIVE)])
        .await
        .unwrap();
    assert_eq!(s(&row, "status"), Some("resolved"));
    assert_invariant(&db).await;
}

#[tokio::test]
async fn only_the_widget_functions_are_open_to_anon_and_only_they_are_security_definer() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let mut c = connect(&stack).await;
    let db = connect(&stack).await;
    let rows = db
        .query(
            "select p.proname::text, p.prosecdef, \
                    has_function_privilege('anon', p.oid, 'execute'), \
                    has_function_privilege('authenticated', p.oid, 'execute'), \
                    has_function_privilege('service_role', p.oid, 'execute'), \
                    coalesce(array_to_string(p.proconfig, ','), ''), \
                    coalesce(array_to_string(p.proacl, ','), '') \
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
             where n.nspname = 'public' and p.proname like 'mod_chat%' and p.prorettype <> 'trigger'::regtype",
            &[],
        )
        .await
        .unwrap();
    let widget = [
        "mod_chat_get_public_widget_settings",
        "mod_chat_widget_identify_visitor",
    ];
    assert!(rows.len() >= 25, "all functions present: {}", rows.len());
    for r in &rows {
        let name: String = r.get(0);
        let is_widget = widget.contains(&name.as_str());
        assert_eq!(
            r.get::<_, bool>(1),
            is_widget,
            "{name}: SECURITY DEFINER only for the widget"
        );
        assert_eq!(r.get::<_, bool>(2), is_widget, "{name}: anon EXECUTE");
        assert!(
            r.get::<_, bool>(3) && r.get::<_, bool>(4),
            "{name}: authenticated and service_role"
        );
        assert_eq!(
            r.get::<_, String>(5),
            "search_path=\"\"",
            "{name}: fixed search_path"
        );
        assert!(
            !r.get::<_, String>(6)
                .split(',')
                .any(|e| e.starts_with("=X")),
            "{name}: no PUBLIC EXECUTE"
        );
    }
    assert_sqlstate(
        one(&mut c, Who::Anon, RESOLVE, &[&u(CONV_ACTIVE)]).await,
        "42501",
    );
    assert_sqlstate(
        one(
            &mut c,
            Who::Anon,
            UPSERT_VISITOR,
            &[
                &u(SITE1),
                &Some("mia@example.com"),
                &None::<&str>,
                &None::<&str>,
            ],
        )
        .await,
        "42501",
    );
    // The widget's visitor call returns an id and nothing else.
    let rows = call(
        &mut c,
        Who::Anon,
        "select to_jsonb(public.mod_chat_widget_identify_visitor(p_site_id => $1, p_email => 'MIA@example.com', p_current_page_url => 'https://acme-store.example/cart'))",
        &[&u(SITE1)],
    )
    .await
    .unwrap();
    assert_eq!(rows[0].get::<_, Value>(0), json!(VISITOR_MIA));
    let mia = row_json(&db, "mod_chat_visitors", u(VISITOR_MIA)).await;
    assert_eq!(
        s(&mia, "current_page_url"),
        Some("https://acme-store.example/cart")
    );
    assert_eq!(i(&mia, "total_visits"), 5);
    assert_error(
        call(
            &mut c,
            Who::Anon,
            "select public.mod_chat_widget_identify_visitor(p_site_id => $1)",
            &[&Uuid::new_v4()],
        )
        .await,
        "PT404",
        "livechat:site_not_found",
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency: the invariant under random concurrent actions
// ---------------------------------------------------------------------------------------------

/// xorshift64*: a small deterministic generator per task.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_actions_keep_every_agent_count_exact() {
    let stack = Stack::for_tests_seeded().await.unwrap();
    let db = connect(&stack).await;
    db.execute(
        "update public.mod_chat_agents set status = 'online', max_concurrent_chats = 4 where site_id = $1",
        &[&u(SITE1)],
    )
    .await
    .unwrap();
    for n in 0..30 {
        new_conversation(&db, SITE1, VISITOR_MIA, "pending", None, n).await;
    }
    let convs: Arc<Vec<Uuid>> = Arc::new(
        db.query(
            "select id from public.mod_chat_conversations where site_id = $1 order by id",
            &[&u(SITE1)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect(),
    );
    assert!(convs.len() >= 30);
    let agents = [u(AGENT_ALICE), u(AGENT_BOB), u(AGENT_CAROL)];

    // A checker reads the invariant while the workers run: every commit must keep it.
    let done = Arc::new(AtomicBool::new(false));
    let checker = {
        let done = done.clone();
        let checker_db = connect(&stack).await;
        tokio::spawn(async move {
            let mut checks = 0u32;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let v = invariant_violations(&checker_db).await;
                assert!(v.is_empty(), "invariant broken mid-run: {v:?}");
                checks += 1;
                if finished {
                    return checks;
                }
            }
        })
    };

    const WORKERS: u64 = 10;
    const OPS: usize = 60;
    let ok = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let mut c = connect(&stack).await;
        let convs = convs.clone();
        let (ok, refused) = (ok.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
            for _ in 0..OPS {
                let conv = convs[rng.below(convs.len())];
                let agent = agents[rng.below(agents.len())];
                let who = CALLERS[rng.below(2)];
                let note = (rng.below(2) == 0).then_some("handover");
                let result = match rng.below(100) {
                    0..=29 => call(&mut c, who, ASSIGN, &[&conv, &agent]).await,
                    30..=49 => call(&mut c, who, TRANSFER, &[&conv, &agent, &note]).await,
                    50..=64 => call(&mut c, who, RESOLVE, &[&conv]).await,
                    65..=74 => call(&mut c, who, CLOSE, &[&conv]).await,
                    75..=87 => call(&mut c, who, REOPEN, &[&conv]).await,
                    88..=92 => call(&mut c, who, DELETE_AGENT, &[&agent]).await,
                    _ => {
                        call(
                            &mut c,
                            who,
                            "update public.mod_chat_agents set is_active = true, status = 'online' where id = $1",
                            &[&agent],
                        )
                        .await
                    }
                };
                match result {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let db = e.as_db_error().unwrap_or_else(|| panic!("transport error: {e:?}"));
                        // Refusals are expected; deadlocks, serialization failures or anything
                        // else are not.
                        assert_eq!(db.code().code(), "PT409", "unexpected error: {} {:?}", db.message(), db.hint());
                        assert!(
                            matches!(
                                db.hint(),
                                Some("livechat:agent_at_capacity")
                                    | Some("livechat:agent_inactive")
                                    | Some("livechat:invalid_state")
                                    | Some("livechat:already_assigned")
                            ),
                            "unexpected refusal {:?}",
                            db.hint()
                        );
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let checks = checker.await.unwrap();
    assert!(checks >= 1);

    let ok = ok.load(Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    assert_eq!(ok + refused, WORKERS as usize * OPS);
    assert!(
        ok >= 50,
        "enough actions succeeded to mean something: {ok} ok, {refused} refused"
    );
    assert_invariant(&db).await;
    // Every open conversation belongs to an active agent or to none.
    let orphans: i64 = db
        .query_one(
            "select count(*) from public.mod_chat_conversations c join public.mod_chat_agents a on a.id = c.assigned_agent_id \
             where c.status in ('pending', 'active', 'waiting') and not a.is_active",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0);
}
