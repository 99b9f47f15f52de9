//! Security of the chat tables against the real stack (PostgreSQL 15 + the PostgREST-compatible
//! API + the Realtime-compatible server), with the seeded data of `supabase/seed.sql`:
//!
//! * visitor tokens (`role: anon` + `visitor_id` + `site_id`, no `sub`; migration
//!   `20260101000500_visitor_access.sql`) read only their own visitor row, conversations and
//!   non-internal messages, write only visitor messages into their own conversations, and get
//!   `postgres_changes` only for those rows;
//! * the plain anon key reads public widget settings and creates visitors and conversations,
//!   and nothing else (no rows, no change events, no message inserts);
//! * agency members (alice of agency A, dave of agency B) get no row, no change event and no
//!   write of the other agency's site, for every chat table;
//! * the migration closes the deployed hole on a database that still has it.
//!
//! Negatives over the WebSocket are proven by a later positive: a change the subscriber must
//! not see is made first, then one it must see, and the first event received has to be the
//! second one (the capture delivers in commit order).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use livechat_stack::jwt::{self, Claims};
use livechat_stack::Stack;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

// Seeded ids (supabase/seed.sql).
const SITE_1: &str = "b0000000-0000-4000-8000-000000000001"; // Acme Store, agency A
const SITE_2: &str = "b0000000-0000-4000-8000-000000000002"; // Acme Blog, agency A
const SITE_3: &str = "b0000000-0000-4000-8000-000000000003"; // Beta Shop, agency B
const ALICE: &str = "c0000000-0000-4000-8000-000000000001"; // agency A owner
const DAVE: &str = "c0000000-0000-4000-8000-000000000004"; // agency B owner
const MIA: &str = "10000000-0000-4000-8000-000000000101"; // site 1: conversations 101, 104
const NOAH: &str = "10000000-0000-4000-8000-000000000102"; // site 1: conversation 102
const RUTH: &str = "10000000-0000-4000-8000-000000000301"; // site 3: conversations 301, 302
const CONV_MIA: &str = "20000000-0000-4000-8000-000000000101";
const CONV_NOAH: &str = "20000000-0000-4000-8000-000000000102";
const CONV_RUTH: &str = "20000000-0000-4000-8000-000000000301";
const NOTE_IN_NOAH: &str = "30000000-0000-4000-8000-000000010204"; // internal note
const AGENT_ALICE_SITE_1: &str = "e0000000-0000-4000-8000-000000000101";

/// Generous deadline for anything that should happen.
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// A visitor token in the documented format (what `livechat::visitor_token` mints; the root
/// crate's tests check that the library produces exactly these claims).
fn visitor_claims(visitor: &str, site: &str, ttl_secs: i64) -> Claims {
    let now = jwt::now_secs();
    let mut c = Claims::new();
    c.insert("role".into(), json!("anon"));
    c.insert("visitor_id".into(), json!(visitor));
    c.insert("site_id".into(), json!(site));
    c.insert("iat".into(), json!(now.min(now + ttl_secs)));
    c.insert("exp".into(), json!(now + ttl_secs));
    c.insert("iss".into(), json!("livechat"));
    c
}

fn visitor_token(stack: &Stack, visitor: &str, site: &str) -> String {
    jwt::sign(&visitor_claims(visitor, site, 600), stack.jwt_secret())
}

// ---------------------------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Resp {
    status: u16,
    body: Value,
}

impl Resp {
    fn rows(&self) -> Vec<Value> {
        assert_eq!(self.status, 200, "expected 200 with rows: {self:?}");
        self.body.as_array().cloned().unwrap_or_default()
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .rows()
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// A row-level security / privilege refusal: 42501, with 401 for anon and 403 otherwise.
    fn assert_refused(&self, status: u16, what: &str) {
        assert_eq!(
            (self.status, self.body["code"].as_str()),
            (status, Some("42501")),
            "{what}: {self:?}"
        );
    }
}

/// Requests as one caller: the anon API key plus an optional bearer token.
struct Rest {
    http: reqwest::Client,
    base: String,
    apikey: String,
    bearer: Option<String>,
}

impl Rest {
    fn new(stack: &Stack, bearer: Option<String>) -> Rest {
        Rest {
            http: reqwest::Client::new(),
            base: format!("{}/rest/v1", stack.url()),
            apikey: stack.anon_key().to_string(),
            bearer,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        prefer: &str,
    ) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}/{path}", self.base))
            .header("apikey", &self.apikey);
        if let Some(b) = &self.bearer {
            req = req.bearer_auth(b);
        }
        if !prefer.is_empty() {
            req = req.header("Prefer", prefer);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the stack");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("response body");
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp { status, body }
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, None, "").await
    }

    async fn insert(&self, table: &str, body: Value, representation: bool) -> Resp {
        let prefer = if representation {
            "return=representation"
        } else {
            "return=minimal"
        };
        self.send(reqwest::Method::POST, table, Some(body), prefer)
            .await
    }

    /// An insert that reads back the named columns (`Prefer: return=representation`).
    async fn insert_select(&self, table: &str, body: Value, columns: &str) -> Resp {
        self.send(
            reqwest::Method::POST,
            &format!("{table}?select={columns}"),
            Some(body),
            "return=representation",
        )
        .await
    }

    async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(
            reqwest::Method::PATCH,
            path,
            Some(body),
            "return=representation",
        )
        .await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.send(reqwest::Method::DELETE, path, None, "return=representation")
            .await
    }

    async fn rpc(&self, function: &str, args: Value) -> Resp {
        self.send(
            reqwest::Method::POST,
            &format!("rpc/{function}"),
            Some(args),
            "",
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Database (superuser: bypasses RLS; for setup and for checking what really happened)
// ---------------------------------------------------------------------------------------------

async fn db(stack: &Stack) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&stack.db_url(), tokio_postgres::NoTls)
        .await
        .expect("db connects");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(&format!("select count(*) from ({sql}) s"), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Row counts of visitors, conversations and messages.
async fn chat_row_counts(c: &tokio_postgres::Client) -> (i64, i64, i64) {
    (
        count(c, "select 1 from public.mod_chat_visitors").await,
        count(c, "select 1 from public.mod_chat_conversations").await,
        count(c, "select 1 from public.mod_chat_messages").await,
    )
}

/// The row as JSON text, to compare before and after an attempted write.
async fn row_json(c: &tokio_postgres::Client, table: &str, id: &str) -> String {
    c.query_one(
        &format!("select coalesce((select to_jsonb(t)::text from public.{table} t where id = $1::text::uuid), 'missing')"),
        &[&id],
    )
    .await
    .unwrap_or_else(|e| panic!("{table} {id}: {e}"))
    .get(0)
}

/// Inserts a message directly (as the platform's backend would) and returns its id.
async fn insert_message(
    c: &tokio_postgres::Client,
    conversation: &str,
    site: &str,
    sender: &str,
    content: &str,
    internal: bool,
) -> String {
    c.query_one(
        "insert into public.mod_chat_messages (conversation_id, site_id, sender_type, content, is_internal_note)
         values ($1::text::uuid, $2::text::uuid, $3, $4, $5) returning id::text",
        &[&conversation, &site, &sender, &content, &internal],
    )
    .await
    .expect("insert message")
    .get(0)
}

/// A published table without RLS that everyone may read: a change there is the "later
/// positive" that proves an earlier change was withheld.
async fn create_marker_table(c: &tokio_postgres::Client) {
    c.batch_execute(
        "create table public.sec_marker (id int primary key, note text);
         grant select on public.sec_marker to anon, authenticated, service_role;
         alter publication supabase_realtime add table public.sec_marker;",
    )
    .await
    .expect("marker table");
}

// ---------------------------------------------------------------------------------------------
// Realtime (vsn 1.0.0: JSON objects)
// ---------------------------------------------------------------------------------------------

struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    n: u64,
}

impl Ws {
    async fn connect(stack: &Stack, apikey: &str) -> Ws {
        let url = format!(
            "ws://127.0.0.1:{}/realtime/v1/websocket?apikey={apikey}&vsn=1.0.0",
            stack.port()
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Ws { ws, n: 0 }
    }

    async fn push(&mut self, topic: &str, event: &str, payload: Value) -> String {
        self.n += 1;
        let r = self.n.to_string();
        let frame =
            json!({"topic": topic, "event": event, "payload": payload, "ref": r, "join_ref": r});
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
        r
    }

    /// The next frame matching `pred` (others are skipped); panics at the deadline.
    async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => panic!("timed out waiting for {what}"),
                Ok(None) | Ok(Some(Err(_))) => panic!("socket closed while waiting for {what}"),
                Ok(Some(Ok(m))) => m,
            };
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                if pred(&v) {
                    return v;
                }
            }
        }
    }

    /// Joins `realtime:<name>` with `postgres_changes` bindings (and the channel access token,
    /// if any) and waits for "Subscribed to PostgreSQL".
    async fn subscribe(&mut self, name: &str, access_token: Option<&str>, bindings: Value) {
        let topic = format!("realtime:{name}");
        let mut payload = json!({"config": {
            "broadcast": {"ack": false, "self": false},
            "presence": {"key": "", "enabled": false},
            "postgres_changes": bindings,
            "private": false
        }});
        if let Some(t) = access_token {
            payload["access_token"] = json!(t);
        }
        let r = self.push(&topic, "phx_join", payload).await;
        let reply = self
            .expect("join reply", |v| {
                v["event"] == "phx_reply" && v["ref"] == json!(r)
            })
            .await;
        assert_eq!(reply["payload"]["status"], "ok", "join reply {reply}");
        let sys = self
            .expect("Subscribed to PostgreSQL", |v| v["event"] == "system")
            .await;
        assert_eq!(
            sys["payload"]["message"], "Subscribed to PostgreSQL",
            "{sys}"
        );
    }

    /// The `data` of the next postgres_changes event.
    async fn next_change(&mut self) -> Value {
        let f = self
            .expect("postgres_changes", |v| v["event"] == "postgres_changes")
            .await;
        f["payload"]["data"].clone()
    }
}

fn all_changes(table: &str) -> Value {
    json!({"event": "*", "schema": "public", "table": table})
}

// ---------------------------------------------------------------------------------------------
// 1. Visitor tokens: REST reads
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn visitor_token_reads_only_its_own_visitor_conversations_and_visible_messages() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let noah = Rest::new(&stack, Some(visitor_token(&stack, NOAH, SITE_1)));

    assert_eq!(
        noah.get("mod_chat_visitors?select=id").await.ids(),
        vec![NOAH]
    );
    assert_eq!(
        noah.get("mod_chat_conversations?select=id").await.ids(),
        vec![CONV_NOAH]
    );
    // Conversation 102 has five messages; the internal note (..010204) is hidden.
    let msgs = noah
        .get("mod_chat_messages?select=id,conversation_id,is_internal_note&order=created_at")
        .await
        .rows();
    let ids: Vec<&str> = msgs.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "30000000-0000-4000-8000-000000010201",
            "30000000-0000-4000-8000-000000010202",
            "30000000-0000-4000-8000-000000010203",
            "30000000-0000-4000-8000-000000010205",
        ]
    );
    assert!(msgs.iter().all(|m| m["conversation_id"] == CONV_NOAH));
    assert!(noah
        .get(&format!("mod_chat_messages?id=eq.{NOTE_IN_NOAH}"))
        .await
        .rows()
        .is_empty());
    // Embedding goes through the same policies: the own visitor and visible messages, no
    // agent (agents are not readable by anon), no internal note.
    let embedded = noah
        .get("mod_chat_conversations?select=id,mod_chat_visitors(id),mod_chat_agents(id),mod_chat_messages(id)")
        .await
        .rows();
    assert_eq!(embedded.len(), 1, "{embedded:?}");
    assert_eq!(embedded[0]["mod_chat_visitors"]["id"], NOAH);
    assert!(embedded[0]["mod_chat_agents"].is_null(), "{embedded:?}");
    let embedded_msgs = embedded[0]["mod_chat_messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(embedded_msgs.len(), 4, "{embedded:?}");
    assert!(embedded_msgs.iter().all(|m| m["id"] != NOTE_IN_NOAH));
    // Another visitor's rows, asked for by id: nothing.
    for path in [
        format!("mod_chat_visitors?select=id&id=eq.{MIA}"),
        format!("mod_chat_conversations?select=id&id=eq.{CONV_MIA}"),
        format!("mod_chat_messages?conversation_id=eq.{CONV_MIA}"),
        format!("mod_chat_conversations?select=id&site_id=eq.{SITE_3}"),
    ] {
        assert!(noah.get(&path).await.rows().is_empty(), "{path}");
    }
    // Tables a visitor has no business reading: empty. Widget settings stay public.
    for table in [
        "mod_chat_departments",
        "mod_chat_agents",
        "mod_chat_canned_responses",
        "mod_chat_knowledge_base",
        "mod_chat_analytics",
    ] {
        assert!(
            noah.get(&format!("{table}?select=id"))
                .await
                .rows()
                .is_empty(),
            "{table}"
        );
    }
    assert_eq!(
        noah.get("mod_chat_widget_settings?select=id")
            .await
            .rows()
            .len(),
        3
    );

    // Ruth (site 3) sees her two conversations only.
    let ruth = Rest::new(&stack, Some(visitor_token(&stack, RUTH, SITE_3)));
    assert_eq!(
        ruth.get("mod_chat_conversations?select=id").await.ids(),
        vec![CONV_RUTH, "20000000-0000-4000-8000-000000000302"]
    );

    // Claims that do not fit together, or are not uuids, match nothing (and are no error).
    let secret = stack.jwt_secret().to_string();
    let mut odd = Vec::new();
    odd.push(visitor_token(&stack, NOAH, SITE_3)); // wrong site for the visitor
    odd.push(visitor_token(&stack, NOAH, SITE_2));
    let mut c = visitor_claims(NOAH, SITE_1, 600);
    c.remove("site_id");
    odd.push(jwt::sign(&c, &secret));
    let mut c = visitor_claims(NOAH, SITE_1, 600);
    c.insert("visitor_id".into(), json!("not-a-uuid"));
    odd.push(jwt::sign(&c, &secret));
    let mut c = visitor_claims(NOAH, SITE_1, 600);
    c.insert("visitor_id".into(), json!({"id": NOAH}));
    odd.push(jwt::sign(&c, &secret));
    let mut c = visitor_claims(NOAH, SITE_1, 600);
    c.insert("visitor_id".into(), json!(format!("{NOAH}' or true --")));
    odd.push(jwt::sign(&c, &secret));
    for (i, token) in odd.into_iter().enumerate() {
        let api = Rest::new(&stack, Some(token));
        for table in [
            "mod_chat_visitors",
            "mod_chat_conversations",
            "mod_chat_messages",
        ] {
            assert!(
                api.get(&format!("{table}?select=id"))
                    .await
                    .rows()
                    .is_empty(),
                "odd token {i} on {table}"
            );
        }
    }
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Visitor tokens: writes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn visitor_token_sends_only_visitor_messages_into_its_own_conversations() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    let noah = Rest::new(&stack, Some(visitor_token(&stack, NOAH, SITE_1)));
    let before = count(&c, "select 1 from public.mod_chat_messages").await;
    let count_before: i32 = c
        .query_one(
            "select message_count from public.mod_chat_conversations where id = $1::text::uuid",
            &[&CONV_NOAH],
        )
        .await
        .expect("conversation")
        .get(0);

    // Allowed: a visitor message into the own conversation, read back (RETURNING is covered
    // by the SELECT policy).
    let ok = noah
        .insert(
            "mod_chat_messages",
            json!({"conversation_id": CONV_NOAH, "site_id": SITE_1, "sender_type": "visitor",
                   "sender_id": NOAH, "sender_name": "Noah Banda", "content": "Any news?"}),
            true,
        )
        .await;
    assert_eq!(ok.status, 201, "{ok:?}");
    assert_eq!(ok.body[0]["content"], "Any news?");
    assert_eq!(
        count(&c, "select 1 from public.mod_chat_messages").await,
        before + 1
    );
    // The counter trigger (SECURITY DEFINER) still ran for the anon insert.
    let count_after: i32 = c
        .query_one(
            "select message_count from public.mod_chat_conversations where id = $1::text::uuid",
            &[&CONV_NOAH],
        )
        .await
        .expect("conversation")
        .get(0);
    assert_eq!(count_after, count_before + 1);

    // Refused: every other sender, notes, system content, spoofed sender ids, other
    // conversations and mismatched sites. Anonymous 42501 is HTTP 401.
    let base = json!({"conversation_id": CONV_NOAH, "site_id": SITE_1, "sender_type": "visitor", "content": "x"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let refused = [
        ("as agent", with("sender_type", json!("agent"))),
        ("as ai", with("sender_type", json!("ai"))),
        ("as system", with("sender_type", json!("system"))),
        ("internal note", with("is_internal_note", json!(true))),
        ("note content type", with("content_type", json!("note"))),
        ("system content type", with("content_type", json!("system"))),
        ("ai generated", with("is_ai_generated", json!(true))),
        (
            "spoofed sender id",
            with("sender_id", json!(AGENT_ALICE_SITE_1)),
        ),
        (
            "another visitor's conversation",
            with("conversation_id", json!(CONV_MIA)),
        ),
        ("another site's conversation", {
            let mut b = with("conversation_id", json!(CONV_RUTH));
            b["site_id"] = json!(SITE_3);
            b
        }),
        (
            "own conversation, wrong site",
            with("site_id", json!(SITE_2)),
        ),
    ];
    for (what, body) in refused {
        for representation in [false, true] {
            noah.insert("mod_chat_messages", body.clone(), representation)
                .await
                .assert_refused(401, what);
        }
    }
    assert_eq!(
        count(&c, "select 1 from public.mod_chat_messages").await,
        before + 1,
        "nothing else was inserted"
    );

    // No UPDATE or DELETE privilege for anon (migration 000700): writes to own rows are
    // refused and change nothing.
    let conv_before = row_json(&c, "mod_chat_conversations", CONV_NOAH).await;
    noah.patch(
        &format!("mod_chat_conversations?id=eq.{CONV_NOAH}"),
        json!({"status": "closed", "rating": 5}),
    )
    .await
    .assert_refused(401, "patch own conversation");
    assert_eq!(
        row_json(&c, "mod_chat_conversations", CONV_NOAH).await,
        conv_before
    );
    let msg = "30000000-0000-4000-8000-000000010205";
    let msg_before = row_json(&c, "mod_chat_messages", msg).await;
    noah.patch(
        &format!("mod_chat_messages?id=eq.{msg}"),
        json!({"content": "edited"}),
    )
    .await
    .assert_refused(401, "patch own message");
    noah.delete(&format!("mod_chat_messages?id=eq.{msg}"))
        .await
        .assert_refused(401, "delete own message");
    assert_eq!(row_json(&c, "mod_chat_messages", msg).await, msg_before);
    let visitor_before = row_json(&c, "mod_chat_visitors", NOAH).await;
    noah.patch(
        &format!("mod_chat_visitors?id=eq.{NOAH}"),
        json!({"notes": "vip"}),
    )
    .await
    .assert_refused(401, "patch own visitor row");
    assert_eq!(
        row_json(&c, "mod_chat_visitors", NOAH).await,
        visitor_before
    );

    // Conversations: a visitor token starts one for itself only, pending and unassigned.
    let own = uuid::Uuid::new_v4().to_string();
    let r = noah
        .insert_select(
            "mod_chat_conversations",
            json!({"id": own, "site_id": SITE_1, "visitor_id": NOAH, "subject": "New question"}),
            "id,status",
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body[0]["status"], "pending");
    for (what, body) in [
        (
            "for another visitor",
            json!({"site_id": SITE_1, "visitor_id": MIA}),
        ),
        (
            "assigned to an agent",
            json!({"site_id": SITE_1, "visitor_id": NOAH, "assigned_agent_id": AGENT_ALICE_SITE_1}),
        ),
        (
            "already active",
            json!({"site_id": SITE_1, "visitor_id": NOAH, "status": "active"}),
        ),
        (
            "in another site",
            json!({"site_id": SITE_3, "visitor_id": NOAH}),
        ),
    ] {
        noah.insert("mod_chat_conversations", body, false)
            .await
            .assert_refused(401, what);
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn expired_and_forged_visitor_tokens_are_refused() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    // Expired beyond PostgREST's 30 s clock skew.
    let mut c = visitor_claims(NOAH, SITE_1, -120);
    c.insert("iat".into(), json!(jwt::now_secs() - 720));
    let expired = Rest::new(&stack, Some(jwt::sign(&c, stack.jwt_secret())));
    let r = expired.get("mod_chat_conversations?select=id").await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.body,
        json!({"code": "PGRST303", "details": null, "hint": null, "message": "JWT expired"})
    );
    let r = expired
        .insert(
            "mod_chat_messages",
            json!({"conversation_id": CONV_NOAH, "site_id": SITE_1, "sender_type": "visitor", "content": "late"}),
            false,
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (401, Some("PGRST303")),
        "{r:?}"
    );

    // Signed with another secret: PGRST301.
    let forged = jwt::sign(
        &visitor_claims(NOAH, SITE_1, 600),
        "some-other-secret-that-is-long-enough-to-sign",
    );
    let r = Rest::new(&stack, Some(forged))
        .get("mod_chat_conversations?select=id")
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (401, Some("PGRST301")),
        "{r:?}"
    );
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. The plain anon key
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn plain_anon_key_reads_settings_and_creates_visitors_and_conversations_only() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    for bearer in [None, Some(stack.anon_key().to_string())] {
        let anon = Rest::new(&stack, bearer);
        for table in [
            "mod_chat_visitors",
            "mod_chat_conversations",
            "mod_chat_messages",
            "mod_chat_departments",
            "mod_chat_agents",
            "mod_chat_canned_responses",
            "mod_chat_knowledge_base",
            "mod_chat_analytics",
        ] {
            assert!(
                anon.get(&format!("{table}?select=id"))
                    .await
                    .rows()
                    .is_empty(),
                "{table}"
            );
        }
        assert_eq!(
            anon.get("mod_chat_widget_settings?select=id,site_id")
                .await
                .rows()
                .len(),
            3
        );
    }
    let anon = Rest::new(&stack, Some(stack.anon_key().to_string()));
    // Widget settings are public, but not their internal columns (migration 000700).
    for column in [
        "blocked_ips",
        "whatsapp_business_account_id",
        "whatsapp_phone_number_id",
        "whatsapp_welcome_template",
        "*",
    ] {
        anon.get(&format!("mod_chat_widget_settings?select={column}"))
            .await
            .assert_refused(401, column);
    }
    assert_eq!(
        anon.get("mod_chat_widget_settings?select=site_id,primary_color,welcome_message")
            .await
            .rows()
            .len(),
        3
    );

    // Create a visitor (client-chosen id, return=minimal: anon cannot read it back) and a
    // conversation for it.
    let visitor = uuid::Uuid::new_v4().to_string();
    let r = anon
        .insert(
            "mod_chat_visitors",
            json!({"id": visitor, "site_id": SITE_1, "name": "Widget Visitor"}),
            false,
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let conv = uuid::Uuid::new_v4().to_string();
    let r = anon
        .insert(
            "mod_chat_conversations",
            json!({"id": conv, "site_id": SITE_1, "visitor_id": visitor, "subject": "Hello"}),
            false,
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        count(
            &c,
            &format!("select 1 from public.mod_chat_conversations where id = '{conv}' and visitor_id = '{visitor}' and status = 'pending'")
        )
        .await,
        1
    );
    // ...but not read it back, nor write a message into it (that needs a visitor token).
    anon.insert(
        "mod_chat_conversations",
        json!({"site_id": SITE_1, "visitor_id": visitor}),
        true,
    )
    .await
    .assert_refused(401, "insert with RETURNING");
    anon.insert(
        "mod_chat_messages",
        json!({"conversation_id": conv, "site_id": SITE_1, "sender_type": "visitor", "content": "hi"}),
        false,
    )
    .await
    .assert_refused(401, "plain anon message insert");
    // A conversation for a visitor of another site, or pre-assigned, is refused.
    anon.insert(
        "mod_chat_conversations",
        json!({"site_id": SITE_3, "visitor_id": visitor}),
        false,
    )
    .await
    .assert_refused(401, "visitor of another site");
    anon.insert(
        "mod_chat_conversations",
        json!({"site_id": SITE_1, "visitor_id": visitor, "assigned_agent_id": AGENT_ALICE_SITE_1}),
        false,
    )
    .await
    .assert_refused(401, "pre-assigned");
    // No writes to anything else.
    anon.insert(
        "mod_chat_canned_responses",
        json!({"site_id": SITE_1, "title": "t", "content": "c"}),
        false,
    )
    .await
    .assert_refused(401, "canned response");
    let conv_before = row_json(&c, "mod_chat_conversations", CONV_NOAH).await;
    anon.patch(
        &format!("mod_chat_conversations?id=eq.{CONV_NOAH}"),
        json!({"status": "closed"}),
    )
    .await
    .assert_refused(401, "plain anon patch");
    assert_eq!(
        row_json(&c, "mod_chat_conversations", CONV_NOAH).await,
        conv_before
    );

    // The two widget functions still work; the rest of the RPC surface does not.
    let r = anon
        .rpc(
            "mod_chat_get_public_widget_settings",
            json!({"p_site_id": SITE_1}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = anon
        .rpc(
            "mod_chat_widget_identify_visitor",
            json!({"p_site_id": SITE_1, "p_email": "widget-visitor@example.com"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.as_str().is_some_and(|s| s.len() == 36), "{r:?}");
    anon.rpc(
        "mod_chat_send_message",
        json!({"p_conversation_id": CONV_NOAH, "p_sender_type": "agent", "p_content": "x"}),
    )
    .await
    .assert_refused(401, "rpc send_message");
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Agency isolation (REST), every chat table
// ---------------------------------------------------------------------------------------------

/// For each chat table: a seeded row of site 3 (agency B), a harmless patch, and a minimal
/// insert body for site 3.
fn agency_b_rows() -> Vec<(&'static str, &'static str, Value, Value)> {
    vec![
        (
            "mod_chat_departments",
            "d0000000-0000-4000-8000-000000000301",
            json!({"description": "hijacked"}),
            json!({"site_id": SITE_3, "name": "Intruders"}),
        ),
        (
            "mod_chat_agents",
            "e0000000-0000-4000-8000-000000000301",
            json!({"display_name": "hijacked"}),
            json!({"site_id": SITE_3, "user_id": ALICE, "display_name": "Alice"}),
        ),
        (
            "mod_chat_widget_settings",
            "f0000000-0000-4000-8000-000000000003",
            json!({"primary_color": "#000000"}),
            json!({"site_id": SITE_3}),
        ),
        (
            "mod_chat_visitors",
            RUTH,
            json!({"notes": "hijacked"}),
            json!({"site_id": SITE_3, "name": "x"}),
        ),
        (
            "mod_chat_conversations",
            CONV_RUTH,
            json!({"subject": "hijacked"}),
            json!({"site_id": SITE_3, "visitor_id": RUTH}),
        ),
        (
            "mod_chat_messages",
            "30000000-0000-4000-8000-000000030101",
            json!({"content": "hijacked"}),
            json!({"conversation_id": CONV_RUTH, "site_id": SITE_3, "sender_type": "agent", "content": "x"}),
        ),
        (
            "mod_chat_canned_responses",
            "40000000-0000-4000-8000-000000000301",
            json!({"content": "hijacked"}),
            json!({"site_id": SITE_3, "title": "t", "content": "c"}),
        ),
        (
            "mod_chat_knowledge_base",
            "50000000-0000-4000-8000-000000000301",
            json!({"content": "hijacked"}),
            json!({"site_id": SITE_3, "title": "t", "content": "c"}),
        ),
        (
            "mod_chat_analytics",
            "60000000-0000-4000-8000-000000000301",
            json!({"total_messages": 999}),
            json!({"site_id": SITE_3, "date": "2020-01-01"}),
        ),
    ]
}

#[tokio::test]
async fn agency_members_get_no_row_and_no_write_of_another_agency_on_every_chat_table() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    let alice = Rest::new(
        &stack,
        Some(stack.user_token(ALICE, Some("alice@acme.test"))),
    );
    let dave = Rest::new(&stack, Some(stack.user_token(DAVE, Some("dave@beta.test"))));

    for (table, b_row, patch, insert) in agency_b_rows() {
        // Reads: nothing of site 3 for alice; dave (agency B) sees it, and only site 3.
        assert!(
            alice
                .get(&format!("{table}?site_id=eq.{SITE_3}&select=id"))
                .await
                .rows()
                .is_empty(),
            "{table}"
        );
        assert!(
            alice
                .get(&format!("{table}?id=eq.{b_row}"))
                .await
                .rows()
                .is_empty(),
            "{table}"
        );
        let all_alice = alice.get(&format!("{table}?select=site_id")).await.rows();
        assert!(
            all_alice
                .iter()
                .all(|r| r["site_id"] == SITE_1 || r["site_id"] == SITE_2),
            "{table}: {all_alice:?}"
        );
        assert_eq!(
            dave.get(&format!("{table}?id=eq.{b_row}&select=id"))
                .await
                .rows()
                .len(),
            1,
            "{table}"
        );
        let all_dave = dave.get(&format!("{table}?select=site_id")).await.rows();
        assert!(
            all_dave.iter().all(|r| r["site_id"] == SITE_3),
            "{table}: {all_dave:?}"
        );

        // Writes: update and delete match no row; insert is a 403 RLS violation.
        let before = row_json(&c, table, b_row).await;
        let r = alice.patch(&format!("{table}?id=eq.{b_row}"), patch).await;
        assert_eq!((r.status, r.body.clone()), (200, json!([])), "{table}");
        let r = alice.delete(&format!("{table}?id=eq.{b_row}")).await;
        assert_eq!((r.status, r.body.clone()), (200, json!([])), "{table}");
        assert_eq!(row_json(&c, table, b_row).await, before, "{table}");
        alice
            .insert(table, insert, false)
            .await
            .assert_refused(403, table);
    }

    // Moving an own row into the other agency's site is refused by WITH CHECK.
    alice
        .patch(
            "mod_chat_canned_responses?id=eq.40000000-0000-4000-8000-000000000101",
            json!({"site_id": SITE_3}),
        )
        .await
        .assert_refused(403, "move canned response to site 3");
    alice
        .patch(
            &format!("mod_chat_conversations?id=eq.{CONV_NOAH}"),
            json!({"site_id": SITE_3}),
        )
        .await
        .assert_refused(403, "move conversation to site 3");

    // The RPC surface: the other agency's conversation is "not found", its lists are empty.
    let r = alice
        .rpc(
            "mod_chat_send_message",
            json!({"p_conversation_id": CONV_RUTH, "p_sender_type": "agent", "p_content": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["hint"].as_str()),
        (404, Some("livechat:conversation_not_found")),
        "{r:?}"
    );
    let r = alice
        .rpc("mod_chat_list_conversations", json!({"p_site_id": SITE_3}))
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!([])), "{r:?}");
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Realtime postgres_changes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn visitor_receives_changes_of_its_own_conversation_only() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    let token = visitor_token(&stack, NOAH, SITE_1);

    // Messages: the channel token is the visitor token (the socket connects with the anon
    // key), and a second socket connects with the visitor token itself.
    let mut by_join = Ws::connect(&stack, stack.anon_key()).await;
    by_join
        .subscribe(
            "visitor-messages",
            Some(&token),
            json!([all_changes("mod_chat_messages")]),
        )
        .await;
    let mut by_connect = Ws::connect(&stack, &token).await;
    by_connect
        .subscribe(
            "visitor-messages",
            None,
            json!([all_changes("mod_chat_messages")]),
        )
        .await;

    insert_message(&c, CONV_MIA, SITE_1, "agent", "for mia", false).await;
    insert_message(&c, CONV_RUTH, SITE_3, "agent", "for ruth", false).await;
    insert_message(&c, CONV_NOAH, SITE_1, "agent", "secret note", true).await;
    c.execute(
        "insert into public.mod_chat_messages (conversation_id, site_id, sender_type, content, content_type)
         values ($1::text::uuid, $2::text::uuid, 'agent', 'note by content type', 'note')",
        &[&CONV_NOAH, &SITE_1],
    )
    .await
    .expect("note");
    let visible = insert_message(&c, CONV_NOAH, SITE_1, "agent", "for noah", false).await;
    for ws in [&mut by_join, &mut by_connect] {
        let d = ws.next_change().await;
        assert_eq!(d["type"], "INSERT", "{d}");
        assert_eq!(d["record"]["id"], json!(visible), "{d}");
        assert_eq!(d["record"]["content"], "for noah");
    }
    // An UPDATE of someone else's message, then of Noah's: only the latter arrives.
    c.execute(
        "update public.mod_chat_messages set status = 'read' where conversation_id = $1::text::uuid",
        &[&CONV_MIA],
    )
    .await
    .expect("update");
    c.execute(
        "update public.mod_chat_messages set status = 'read' where id = $1::text::uuid",
        &[&visible],
    )
    .await
    .expect("update");
    for ws in [&mut by_join, &mut by_connect] {
        let d = ws.next_change().await;
        assert_eq!(
            (d["type"].as_str(), &d["record"]["id"]),
            (Some("UPDATE"), &json!(visible)),
            "{d}"
        );
    }

    // Conversations: another visitor's update is withheld, the own one arrives.
    let mut convs = Ws::connect(&stack, stack.anon_key()).await;
    convs
        .subscribe(
            "visitor-conversations",
            Some(&token),
            json!([all_changes("mod_chat_conversations")]),
        )
        .await;
    for conv in [CONV_MIA, CONV_RUTH, CONV_NOAH] {
        c.execute(
            "update public.mod_chat_conversations set priority = 'high' where id = $1::text::uuid",
            &[&conv],
        )
        .await
        .expect("update");
    }
    let d = convs.next_change().await;
    assert_eq!(
        (d["type"].as_str(), &d["record"]["id"]),
        (Some("UPDATE"), &json!(CONV_NOAH)),
        "{d}"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn plain_anon_key_receives_no_chat_changes() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    create_marker_table(&c).await;
    let mut anon = Ws::connect(&stack, stack.anon_key()).await;
    anon.subscribe(
        "widget",
        None,
        json!([
            all_changes("mod_chat_messages"),
            all_changes("mod_chat_conversations"),
            {"event": "INSERT", "schema": "public", "table": "sec_marker"}
        ]),
    )
    .await;
    insert_message(&c, CONV_NOAH, SITE_1, "agent", "not for anon", false).await;
    c.execute(
        "update public.mod_chat_conversations set priority = 'low' where id = $1::text::uuid",
        &[&CONV_NOAH],
    )
    .await
    .expect("update");
    c.execute("insert into public.sec_marker values (1, 'after')", &[])
        .await
        .expect("marker");
    let d = anon.next_change().await;
    assert_eq!(
        (d["table"].as_str(), d["record"]["id"].as_i64()),
        (Some("sec_marker"), Some(1)),
        "the first event the anon key gets is the marker: {d}"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn agency_member_receives_no_changes_of_another_agency() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    create_marker_table(&c).await;
    let alice = stack.user_token(ALICE, Some("alice@acme.test"));
    let dave = stack.user_token(DAVE, Some("dave@beta.test"));
    let bindings = json!([
        all_changes("mod_chat_messages"),
        all_changes("mod_chat_conversations"),
        {"event": "INSERT", "schema": "public", "table": "sec_marker"}
    ]);
    let mut wa = Ws::connect(&stack, stack.anon_key()).await;
    wa.subscribe("dashboard", Some(&alice), bindings.clone())
        .await;
    let mut wd = Ws::connect(&stack, stack.anon_key()).await;
    wd.subscribe("dashboard", Some(&dave), bindings).await;

    // Agency B's changes (message insert + the trigger's conversation update, a direct
    // conversation update), then agency A's.
    insert_message(&c, CONV_RUTH, SITE_3, "agent", "beta only", false).await;
    c.execute(
        "update public.mod_chat_conversations set priority = 'low' where id = $1::text::uuid",
        &[&CONV_RUTH],
    )
    .await
    .expect("update");
    let a_msg = insert_message(&c, CONV_NOAH, SITE_1, "agent", "acme only", false).await;
    c.execute("insert into public.sec_marker values (1, 'end')", &[])
        .await
        .expect("marker");

    // Alice: A's message, A's conversation update, then the marker; nothing of site 3.
    let mut seen = Vec::new();
    loop {
        let d = wa.next_change().await;
        if d["table"] == "sec_marker" {
            break;
        }
        assert_ne!(
            d["record"]["site_id"], SITE_3,
            "alice got agency B's row: {d}"
        );
        seen.push((
            d["table"].as_str().unwrap_or_default().to_string(),
            d["record"]["id"].clone(),
        ));
    }
    assert_eq!(
        seen,
        vec![
            ("mod_chat_messages".to_string(), json!(a_msg)),
            ("mod_chat_conversations".to_string(), json!(CONV_NOAH)),
        ]
    );
    // Dave, symmetrically: only site 3.
    let mut seen = Vec::new();
    loop {
        let d = wd.next_change().await;
        if d["table"] == "sec_marker" {
            break;
        }
        assert_eq!(
            d["record"]["site_id"], SITE_3,
            "dave got agency A's row: {d}"
        );
        seen.push(d["table"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(
        seen,
        vec![
            "mod_chat_messages",
            "mod_chat_conversations",
            "mod_chat_conversations"
        ]
    );

    // DELETEs are not RLS-checked (as in Supabase Realtime), but on these RLS tables they
    // carry only the primary key: no content of the other agency leaks.
    c.execute(
        "delete from public.mod_chat_messages where content = 'beta only'",
        &[],
    )
    .await
    .expect("delete");
    let d = wa.next_change().await;
    assert_eq!(d["type"], "DELETE", "{d}");
    let keys: Vec<&String> = d["old_record"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, vec!["id"], "DELETE carries the primary key only: {d}");
    assert!(d.get("record").is_none() || d["record"].is_null(), "{d}");
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Migrating a platform database that still has the deployed hole
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn migration_drops_the_deployed_broad_anon_policies_whatever_their_names() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    // The deployed platform: broad anon reads (added for realtime) and anon message inserts.
    c.batch_execute(
        "create policy \"Anyone can view conversations\" on public.mod_chat_conversations
           for select to anon using (true);
         create policy \"Public read messages\" on public.mod_chat_messages
           for select using (true);
         create policy \"Widget can insert messages\" on public.mod_chat_messages
           for insert to anon with check (true);
         create policy \"Anyone can read visitors\" on public.mod_chat_visitors
           for all to anon using (true) with check (true);
         create policy \"Widget rates conversations\" on public.mod_chat_conversations
           for update to anon using (true);
         grant all on public.mod_chat_visitors, public.mod_chat_conversations,
           public.mod_chat_messages to anon;",
    )
    .await
    .expect("deployed policies");
    let anon = Rest::new(&stack, None);
    assert!(
        !anon
            .get("mod_chat_conversations?select=id")
            .await
            .rows()
            .is_empty(),
        "precondition: the hole is open"
    );

    // Run the two security migrations again, twice, as `supabase db push` would on the
    // platform database (which also has Supabase's default `grant all ... to anon`).
    let dir = livechat_stack::db::default_supabase_dir().join("migrations");
    for _ in 0..2 {
        for file in [
            "20260101000500_visitor_access.sql",
            "20260101000700_visitor_columns.sql",
        ] {
            let sql = std::fs::read_to_string(dir.join(file)).expect("migration file");
            c.batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{file} re-runs: {e}"));
        }
    }
    // Columns are closed again: a visitor token reads its conversation's id, not its notes.
    let noah = Rest::new(&stack, Some(visitor_token(&stack, NOAH, SITE_1)));
    assert_eq!(
        noah.get("mod_chat_conversations?select=id").await.ids(),
        vec![CONV_NOAH]
    );
    noah.get("mod_chat_conversations?select=id,internal_notes")
        .await
        .assert_refused(401, "internal_notes after the re-run");
    // Re-running the first file alone does not widen them either.
    let sql = std::fs::read_to_string(dir.join("20260101000500_visitor_access.sql"))
        .expect("migration file");
    c.batch_execute(&sql).await.expect("000500 re-runs");
    noah.get("mod_chat_conversations?select=id,internal_notes")
        .await
        .assert_refused(401, "internal_notes after re-running 000500");

    for table in [
        "mod_chat_visitors",
        "mod_chat_conversations",
        "mod_chat_messages",
    ] {
        assert!(
            anon.get(&format!("{table}?select=id"))
                .await
                .rows()
                .is_empty(),
            "{table}"
        );
    }
    anon.insert(
        "mod_chat_messages",
        json!({"conversation_id": CONV_NOAH, "site_id": SITE_1, "sender_type": "agent", "content": "x"}),
        false,
    )
    .await
    .assert_refused(401, "anon message insert after migration");
    let left: Vec<String> = c
        .query(
            "select tablename || ': ' || policyname from pg_policies
             where schemaname = 'public' and tablename like 'mod_chat_%'
               and roles && array['anon', 'public']::name[] order by 1",
            &[],
        )
        .await
        .expect("policies")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        left,
        vec![
            "mod_chat_conversations: visitor reads own conversations",
            "mod_chat_conversations: widget creates conversations",
            "mod_chat_messages: visitor reads own messages",
            "mod_chat_messages: visitor sends messages",
            "mod_chat_visitors: visitor reads own row",
            "mod_chat_visitors: widget public insert",
            "mod_chat_widget_settings: widget public read",
        ]
    );
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Columns (migration 20260101000700_visitor_columns.sql): what agents write about a visitor
//    stays hidden inside the rows a visitor token may see
// ---------------------------------------------------------------------------------------------

/// Columns of the own conversation a visitor reads, as the widget names them.
const VISIBLE_CONVERSATION: &str =
    "id,status,subject,last_message_text,last_message_by,message_count,unread_visitor_count,metadata";

#[tokio::test]
async fn visitor_never_sees_internal_notes_or_agent_tags_through_its_rows() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    let noah = Rest::new(&stack, Some(visitor_token(&stack, NOAH, SITE_1)));
    let path = format!("mod_chat_conversations?id=eq.{CONV_NOAH}&select={VISIBLE_CONVERSATION}");
    let before = noah.get(&path).await.rows();
    assert_eq!(before.len(), 1, "{before:?}");

    // Realtime: the visitor follows its conversation row.
    let token = visitor_token(&stack, NOAH, SITE_1);
    let mut ws = Ws::connect(&stack, stack.anon_key()).await;
    ws.subscribe(
        "visitor-own-conversation",
        Some(&token),
        json!([{"event": "*", "schema": "public", "table": "mod_chat_conversations",
                "filter": format!("id=eq.{CONV_NOAH}")}]),
    )
    .await;

    // Agents write notes (both spellings), internal notes and tags about Noah.
    insert_message(
        &c,
        CONV_NOAH,
        SITE_1,
        "agent",
        "customer is difficult",
        true,
    )
    .await;
    c.execute(
        "insert into public.mod_chat_messages (conversation_id, site_id, sender_type, content, content_type)
         values ($1::text::uuid, $2::text::uuid, 'system', 'refund refused by finance', 'note')",
        &[&CONV_NOAH, &SITE_1],
    )
    .await
    .expect("note by content type");
    // A note leaves the conversation row as it was: not even an UPDATE event tells the
    // visitor that an agent wrote one.
    assert_eq!(noah.get(&path).await.rows(), before);
    c.execute(
        "update public.mod_chat_conversations set internal_notes = 'chargeback risk', tags = '{angry}' \
         where id = $1::text::uuid",
        &[&CONV_NOAH],
    )
    .await
    .expect("agent notes");
    c.execute(
        "update public.mod_chat_visitors set notes = 'blocked card', tags = '{fraud}', \
         crm_contact_id = gen_random_uuid() where id = $1::text::uuid",
        &[&NOAH],
    )
    .await
    .expect("visitor notes");
    // Then a visible change. Events arrive in commit order: the first is the agents' update
    // of internal_notes/tags (the row changed; the notes before it caused no event, else the
    // first record would show a new preview or count), the second the subject change; no
    // record carries a hidden column.
    c.execute(
        "update public.mod_chat_conversations set subject = 'Order 1234' where id = $1::text::uuid",
        &[&CONV_NOAH],
    )
    .await
    .expect("subject");
    let first = ws.next_change().await;
    assert_eq!(first["type"], "UPDATE", "{first}");
    for key in [
        "subject",
        "last_message_text",
        "message_count",
        "unread_visitor_count",
    ] {
        assert_eq!(first["record"][key], before[0][key], "{key}: {first}");
    }
    let second = ws.next_change().await;
    assert_eq!(second["record"]["subject"], "Order 1234", "{second}");
    for d in [&first, &second] {
        let record = d["record"].as_object().cloned().unwrap_or_default();
        assert!(record.contains_key("last_message_text"), "{d}");
        for hidden in ["internal_notes", "tags"] {
            assert!(!record.contains_key(hidden), "{hidden} in {d}");
            assert!(
                d["columns"]
                    .as_array()
                    .is_some_and(|cols| cols.iter().all(|c| c["name"] != hidden)),
                "{hidden} in columns of {d}"
            );
        }
    }
    let text = format!("{first}{second}");
    for secret in ["difficult", "refund", "chargeback", "angry"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    // REST: the visible columns say nothing of the notes...
    let now = noah.get(&path).await.rows();
    let mut expected = before[0].clone();
    expected["subject"] = json!("Order 1234");
    assert_eq!(now, vec![expected]);
    // ...and the hidden ones are refused however they are asked for: selected, filtered on
    // (which would be an oracle: `internal_notes=like.a*`, `like.b*`, ...), ordered by,
    // embedded, or through `*`.
    for path in [
        format!("mod_chat_conversations?id=eq.{CONV_NOAH}&select=internal_notes"),
        format!("mod_chat_conversations?id=eq.{CONV_NOAH}&select=id,tags"),
        format!("mod_chat_conversations?id=eq.{CONV_NOAH}&select=*"),
        format!("mod_chat_conversations?id=eq.{CONV_NOAH}"),
        "mod_chat_conversations?select=id&internal_notes=like.c*".to_string(),
        "mod_chat_conversations?select=id&tags=cs.{angry}".to_string(),
        "mod_chat_conversations?select=id&order=internal_notes".to_string(),
        format!("mod_chat_visitors?id=eq.{NOAH}&select=notes"),
        format!("mod_chat_visitors?id=eq.{NOAH}&select=id,tags"),
        format!("mod_chat_visitors?id=eq.{NOAH}&select=crm_contact_id"),
        "mod_chat_visitors?select=id&notes=like.b*".to_string(),
        "mod_chat_visitors?select=id,mod_chat_conversations(internal_notes)".to_string(),
        "mod_chat_messages?select=id,mod_chat_conversations(id,tags)".to_string(),
    ] {
        noah.get(&path).await.assert_refused(401, &path);
    }
    // The visitor row reads fine without them.
    let me = noah
        .get(&format!(
            "mod_chat_visitors?id=eq.{NOAH}&select=id,name,email,custom_data"
        ))
        .await
        .rows();
    assert_eq!(me.len(), 1, "{me:?}");
    assert!(!me[0].to_string().contains("blocked card"));

    // An agent's visible message still updates the preview and the visitor's unread count.
    let unread_before = before[0]["unread_visitor_count"].as_i64().unwrap_or(0);
    insert_message(&c, CONV_NOAH, SITE_1, "agent", "It ships today", false).await;
    let after = noah.get(&path).await.rows();
    assert_eq!(after[0]["last_message_text"], "It ships today");
    assert_eq!(after[0]["unread_visitor_count"], json!(unread_before + 1));
    assert_eq!(
        after[0]["message_count"],
        json!(before[0]["message_count"].as_i64().unwrap_or(0) + 1)
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn the_widget_cannot_plant_agent_fields_in_what_it_creates() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    let noah = Rest::new(&stack, Some(visitor_token(&stack, NOAH, SITE_1)));
    let anon = Rest::new(&stack, Some(stack.anon_key().to_string()));
    let before = chat_row_counts(&c).await;
    let conv = json!({"site_id": SITE_1, "visitor_id": NOAH, "subject": "Hi"});
    let msg = json!({"conversation_id": CONV_NOAH, "site_id": SITE_1, "sender_type": "visitor",
                     "sender_id": NOAH, "content": "hello"});
    let visitor = json!({"site_id": SITE_1, "name": "Eve"});
    let with = |base: &Value, k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let planted = [
        (
            "mod_chat_conversations",
            with(&conv, "internal_notes", json!("VIP: refund anything")),
        ),
        (
            "mod_chat_conversations",
            with(&conv, "tags", json!(["vip"])),
        ),
        (
            "mod_chat_conversations",
            with(&conv, "priority", json!("urgent")),
        ),
        ("mod_chat_conversations", with(&conv, "rating", json!(5))),
        (
            "mod_chat_conversations",
            with(&conv, "message_count", json!(99)),
        ),
        (
            "mod_chat_conversations",
            with(&conv, "created_at", json!("2020-01-01T00:00:00Z")),
        ),
        (
            "mod_chat_messages",
            with(&msg, "created_at", json!("2020-01-01T00:00:00Z")),
        ),
        ("mod_chat_messages", with(&msg, "status", json!("read"))),
        (
            "mod_chat_messages",
            with(&msg, "whatsapp_message_id", json!("wamid.x")),
        ),
        (
            "mod_chat_visitors",
            with(&visitor, "notes", json!("trusted customer")),
        ),
        ("mod_chat_visitors", with(&visitor, "tags", json!(["vip"]))),
        (
            "mod_chat_visitors",
            with(
                &visitor,
                "crm_contact_id",
                json!(uuid::Uuid::new_v4().to_string()),
            ),
        ),
        (
            "mod_chat_visitors",
            with(&visitor, "total_conversations", json!(50)),
        ),
    ];
    for (table, body) in planted {
        for api in [&noah, &anon] {
            if table == "mod_chat_messages" && std::ptr::eq(api, &anon) {
                continue; // the plain anon key sends no messages at all (tested above)
            }
            api.insert(table, body.clone(), false)
                .await
                .assert_refused(401, &format!("{table} {body}"));
        }
    }
    assert_eq!(chat_row_counts(&c).await, before, "nothing was inserted");

    // What the widget supplies still goes in, and reads back through named columns.
    let r = noah
        .insert_select(
            "mod_chat_conversations",
            conv.clone(),
            "id,status,subject,priority",
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body[0]["status"], "pending");
    assert_eq!(r.body[0]["priority"], "normal");
    let r = noah
        .insert_select("mod_chat_messages", msg.clone(), "id,content,status")
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body[0]["status"], "sent");
    let r = anon
        .insert(
            "mod_chat_visitors",
            json!({"site_id": SITE_1, "name": "Eve", "email": "eve@example.com",
                   "current_page_url": "https://acme.example/cart", "custom_data": {"plan": "free"}}),
            false,
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 8. References stay inside one site (migration 20260101000900_same_site_references.sql)
// ---------------------------------------------------------------------------------------------

const AGENT_DAVE_SITE_3: &str = "e0000000-0000-4000-8000-000000000301";
const DEPT_SITE_3: &str = "d0000000-0000-4000-8000-000000000301";

/// A visitor row as JSON (superuser).
async fn visitor_row(c: &tokio_postgres::Client, id: &str) -> Value {
    c.query_one(
        "select to_jsonb(v) from public.mod_chat_visitors v where id = $1::text::uuid",
        &[&id],
    )
    .await
    .expect("visitor")
    .get(0)
}

/// `mod_chat_can_access_site(site)` as `api`.
async fn ask(api: &Rest, site: &str) -> Resp {
    api.rpc("mod_chat_can_access_site", json!({ "p_site_id": site }))
        .await
}

/// The error body with the referenced id replaced, to compare "another site's row" with
/// "no such row".
fn without_id(body: &Value, id: &str) -> String {
    body.to_string().replace(id, "<id>")
}

#[tokio::test]
async fn references_to_another_agencys_rows_look_absent_and_write_nothing_there() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    let alice = Rest::new(
        &stack,
        Some(stack.user_token(ALICE, Some("alice@acme.test"))),
    );
    let b_conversation = row_json(&c, "mod_chat_conversations", CONV_RUTH).await;
    let b_visitor = row_json(&c, "mod_chat_visitors", RUTH).await;
    let b_agent = row_json(&c, "mod_chat_agents", AGENT_DAVE_SITE_3).await;
    let missing = uuid::Uuid::new_v4().to_string();

    // Each attempt with agency B's id, then with an id that exists nowhere: the same 409 23503.
    // (what, B's id, path, insert (else patch), body, the column that gets the id)
    let own_conversation = format!("mod_chat_conversations?id=eq.{CONV_NOAH}");
    let own_agent = format!("mod_chat_agents?id=eq.{AGENT_ALICE_SITE_1}");
    let attempts = [
        (
            "message of site 1 into B's conversation",
            CONV_RUTH,
            "mod_chat_messages",
            true,
            json!({"site_id": SITE_1, "sender_type": "agent", "content": "hello B"}),
            "conversation_id",
        ),
        (
            "conversation of site 1 for B's visitor",
            RUTH,
            "mod_chat_conversations",
            true,
            json!({"site_id": SITE_1}),
            "visitor_id",
        ),
        (
            "own conversation assigned to B's agent",
            AGENT_DAVE_SITE_3,
            own_conversation.as_str(),
            false,
            json!({}),
            "assigned_agent_id",
        ),
        (
            "own conversation in B's department",
            DEPT_SITE_3,
            own_conversation.as_str(),
            false,
            json!({}),
            "department_id",
        ),
        (
            "own agent in B's department",
            DEPT_SITE_3,
            own_agent.as_str(),
            false,
            json!({}),
            "department_id",
        ),
        (
            "analytics row of site 1 for B's agent",
            AGENT_DAVE_SITE_3,
            "mod_chat_analytics",
            true,
            json!({"site_id": SITE_1, "date": "2020-01-02"}),
            "agent_id",
        ),
    ];
    for (what, b_id, path, insert, base, column) in &attempts {
        let mut bodies = Vec::new();
        for id in [*b_id, missing.as_str()] {
            let mut body = base.clone();
            body[*column] = json!(id);
            let r = if *insert {
                alice.insert(path, body, false).await
            } else {
                alice.patch(path, body).await
            };
            assert_eq!(
                (r.status, r.body["code"].as_str()),
                (409, Some("23503")),
                "{what} ({id}): {r:?}"
            );
            bodies.push(without_id(&r.body, id));
        }
        assert_eq!(bodies[0], bodies[1], "{what}: B's row must look absent");
    }
    // Nothing of agency B changed (the message trigger did not touch B's conversation, the
    // conversation trigger did not count for B's visitor), and nothing was written in A.
    assert_eq!(
        row_json(&c, "mod_chat_conversations", CONV_RUTH).await,
        b_conversation
    );
    assert_eq!(row_json(&c, "mod_chat_visitors", RUTH).await, b_visitor);
    assert_eq!(
        row_json(&c, "mod_chat_agents", AGENT_DAVE_SITE_3).await,
        b_agent
    );
    assert_eq!(
        count(
            &c,
            "select 1 from public.mod_chat_messages where content = 'hello B'"
        )
        .await,
        0
    );
    // The service role is held to the same rule.
    let service = Rest::new(&stack, Some(stack.service_role_key().to_string()));
    let r = service
        .insert(
            "mod_chat_messages",
            json!({"conversation_id": CONV_RUTH, "site_id": SITE_1, "sender_type": "agent", "content": "x"}),
            false,
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (409, Some("23503")),
        "{r:?}"
    );
    let absent = service
        .insert(
            "mod_chat_messages",
            json!({"conversation_id": missing, "site_id": SITE_1, "sender_type": "agent", "content": "x"}),
            false,
        )
        .await;
    assert!(
        r.body["details"]
            .as_str()
            .is_some_and(|d| d.contains(CONV_RUTH)),
        "a role that bypasses RLS sees the key, as PostgreSQL shows it: {r:?}"
    );
    assert_eq!(
        without_id(&r.body, CONV_RUTH),
        without_id(&absent.body, &missing)
    );
    // Same-site references still work.
    let r = alice
        .patch(
            &format!("mod_chat_conversations?id=eq.{CONV_NOAH}"),
            json!({"assigned_agent_id": AGENT_ALICE_SITE_1}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Private site channels follow agency membership, not the platform's policies on `sites`
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn site_channels_follow_membership_even_when_the_platform_publishes_its_sites() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    // A CMS may let every signed-in user read its (published) sites.
    c.batch_execute(
        "create policy \"published sites\" on public.sites for select to authenticated using (true);",
    )
    .await
    .expect("broad sites policy");
    let alice_token = stack.user_token(ALICE, Some("alice@acme.test"));
    let dave_token = stack.user_token(DAVE, Some("dave@beta.test"));
    let dave = Rest::new(&stack, Some(dave_token.clone()));
    assert_eq!(
        dave.get(&format!("sites?select=id&id=eq.{SITE_1}"))
            .await
            .rows()
            .len(),
        1,
        "precondition: dave reads agency A's site row"
    );
    // The membership question the library's feeds ask before joining.
    assert_eq!(ask(&dave, SITE_1).await.body, json!(false));
    assert_eq!(ask(&dave, SITE_3).await.body, json!(true));
    let alice = Rest::new(&stack, Some(alice_token.clone()));
    assert_eq!(ask(&alice, SITE_1).await.body, json!(true));
    let service = Rest::new(&stack, Some(stack.service_role_key().to_string()));
    assert_eq!(ask(&service, SITE_3).await.body, json!(true));
    assert_eq!(
        ask(&service, "b0000000-0000-4000-8000-0000000000ff")
            .await
            .body,
        json!(false)
    );
    ask(&Rest::new(&stack, None), SITE_1)
        .await
        .assert_refused(401, "anon asks");

    // The realtime server: dave is refused agency A's private site channels, alice is not.
    let mut ws = Ws::connect(&stack, stack.anon_key()).await;
    for topic in [
        format!("realtime:presence:chat:{SITE_1}"),
        format!("realtime:conversations:{SITE_1}"),
    ] {
        for (token, ok) in [(&dave_token, false), (&alice_token, true)] {
            let r = ws
                .push(
                    &topic,
                    "phx_join",
                    json!({"config": {"private": true, "broadcast": {"ack": false, "self": false},
                                      "presence": {"key": "", "enabled": true},
                                      "postgres_changes": []},
                           "access_token": token}),
                )
                .await;
            let reply = ws
                .expect("join reply", |v| {
                    v["event"] == "phx_reply" && v["ref"] == json!(r)
                })
                .await;
            if ok {
                assert_eq!(reply["payload"]["status"], "ok", "{topic}: {reply}");
                ws.push(&topic, "phx_leave", json!({})).await;
                ws.expect("leave reply", |v| {
                    v["event"] == "phx_reply" && v["topic"] == json!(topic)
                })
                .await;
            } else {
                assert_eq!(reply["payload"]["status"], "error", "{topic}: {reply}");
                assert!(
                    reply["payload"]["response"]["reason"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("Unauthorized")),
                    "{topic}: {reply}"
                );
            }
        }
    }
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 10. The anonymous widget records visits but cannot rewrite who a visitor is
//     (migration 20260101001000_widget_identify_fills_only.sql)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_widget_identify_call_fills_but_never_overwrites_a_visitors_identity() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = db(&stack).await;
    let anon = Rest::new(&stack, None);
    // Mia has a name and an e-mail; give her no phone so that one can be filled.
    c.execute(
        "update public.mod_chat_visitors set phone = null, whatsapp_phone = '+260970000001', \
         external_id = 'crm-mia' where id = $1::text::uuid",
        &[&MIA],
    )
    .await
    .expect("setup");
    let before = visitor_row(&c, MIA).await;
    let r = anon
        .rpc(
            "mod_chat_widget_identify_visitor",
            json!({"p_site_id": SITE_1, "p_email": before["email"], "p_name": "Hijacked",
                   "p_phone": "+260970000999", "p_whatsapp_phone": "+260979999999",
                   "p_external_id": "evil", "p_current_page_url": "https://acme-store.example/cart"}),
        )
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!(MIA)), "{r:?}");
    let after = visitor_row(&c, MIA).await;
    for kept in ["name", "email", "whatsapp_phone", "external_id"] {
        assert_eq!(after[kept], before[kept], "{kept} was overwritten");
    }
    assert_eq!(after["phone"], "+260970000999", "an empty field is filled");
    assert_eq!(after["current_page_url"], "https://acme-store.example/cart");
    assert_eq!(
        after["total_visits"].as_i64(),
        before["total_visits"].as_i64().map(|n| n + 1)
    );
    // Matched by WhatsApp phone: the e-mail it has stays.
    let r = anon
        .rpc(
            "mod_chat_widget_identify_visitor",
            json!({"p_site_id": SITE_1, "p_whatsapp_phone": "+260970000001",
                   "p_email": "attacker@example.com"}),
        )
        .await;
    assert_eq!(r.body, json!(MIA), "{r:?}");
    assert_eq!(visitor_row(&c, MIA).await["email"], before["email"]);
    // A new visitor gets everything given.
    let r = anon
        .rpc(
            "mod_chat_widget_identify_visitor",
            json!({"p_site_id": SITE_1, "p_email": "new-visitor@example.com", "p_name": "Nia",
                   "p_phone": "+260970000123"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.body.as_str().expect("an id").to_string();
    let new = visitor_row(&c, &id).await;
    assert_eq!(
        (new["name"].clone(), new["phone"].clone()),
        (json!("Nia"), json!("+260970000123"))
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_widget_identify_fills_but_never_overwrites_the_identity_just_created() {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let (first, second, watcher) = (db(&stack).await, db(&stack).await, db(&stack).await);
    let identify = "select public.mod_chat_widget_identify_visitor(p_site_id => $1::text::uuid, \
                    p_email => 'race@example.com', p_name => $2, p_phone => $3)::text";
    // The first widget call creates the visitor and has not committed yet.
    first
        .batch_execute("begin; set local role anon")
        .await
        .expect("begin");
    let created: String = first
        .query_one(identify, &[&SITE_1, &"First", &None::<&str>])
        .await
        .expect("first identify")
        .get(0);
    // A second one for the same e-mail waits for it (the call serialises on the e-mail)...
    let second_pid: i32 = second
        .query_one("select pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let racing = tokio::spawn(async move {
        second
            .batch_execute("begin; set local role anon")
            .await
            .expect("begin");
        let id: String = second
            .query_one(identify, &[&SITE_1, &"Second", &Some("+260970000777")])
            .await
            .expect("second identify")
            .get(0);
        second.batch_execute("commit").await.expect("commit");
        id
    });
    tokio::time::timeout(
        DEADLINE,
        crate::sql_functions::blocked_on_lock(&watcher, second_pid),
    )
    .await
    .expect("the second call waits for the first");
    first.batch_execute("commit").await.expect("commit");
    // ...then matches the visitor the first created and only fills what it left empty.
    let matched = tokio::time::timeout(DEADLINE, racing)
        .await
        .expect("the second call finishes")
        .expect("the second call");
    assert_eq!(matched, created);
    let row = visitor_row(&watcher, &created).await;
    assert_eq!(
        (row["name"].clone(), row["phone"].clone()),
        (json!("First"), json!("+260970000777"))
    );
    stack.shutdown().await;
}
