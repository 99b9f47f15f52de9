//! Setup shared by `chat_conversations.rs` and `chat_concurrency.rs` (included with
//! `#[path]`): a fresh seeded local stack per test, a superuser SQL connection to compare
//! against, chat handles for the service role and the seeded users, the agent-count invariant,
//! a snapshot of the chat tables, and a tiny HTTP proxy that counts the requests going through.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use livechat::chat::Chat;
use livechat::{Client, Config};
use livechat_stack::Stack;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// Acme Store (agency A).
pub const SITE_1: &str = "b0000000-0000-4000-8000-000000000001";
/// Acme Blog (agency A).
pub const SITE_2: &str = "b0000000-0000-4000-8000-000000000002";
/// Beta Shop (agency B).
pub const SITE_3: &str = "b0000000-0000-4000-8000-000000000003";
pub const ALICE: (&str, &str) = ("c0000000-0000-4000-8000-000000000001", "alice@acme.test");
pub const DAVE: (&str, &str) = ("c0000000-0000-4000-8000-000000000004", "dave@beta.test");

/// Acme Store agents: alice (online, max 5, load 1), bob (online, max 3, load 1), carol (away,
/// max 4, load 0).
pub const AGENT_ALICE_1: &str = "e0000000-0000-4000-8000-000000000101";
pub const AGENT_BOB_1: &str = "e0000000-0000-4000-8000-000000000102";
pub const AGENT_CAROL_1: &str = "e0000000-0000-4000-8000-000000000103";
/// Acme Blog carol (online, max 2, load 1), department Editorial (no auto-assign).
pub const AGENT_CAROL_2: &str = "e0000000-0000-4000-8000-000000000203";
/// Beta Shop dave.
pub const AGENT_DAVE_3: &str = "e0000000-0000-4000-8000-000000000301";

pub const DEPT_SALES_1: &str = "d0000000-0000-4000-8000-000000000101";
pub const DEPT_SUPPORT_1: &str = "d0000000-0000-4000-8000-000000000102";
pub const DEPT_EDITORIAL_2: &str = "d0000000-0000-4000-8000-000000000202";

pub const VISITOR_MIA_1: &str = "10000000-0000-4000-8000-000000000101";
pub const VISITOR_NOAH_1: &str = "10000000-0000-4000-8000-000000000102";
pub const VISITOR_QUINN_2: &str = "10000000-0000-4000-8000-000000000201";
pub const VISITOR_RUTH_3: &str = "10000000-0000-4000-8000-000000000301";

/// Acme Store conversations: pending unassigned, active (alice), resolved (bob), closed (alice),
/// waiting (bob, WhatsApp), missed.
pub const CONV_PENDING_101: &str = "20000000-0000-4000-8000-000000000101";
pub const CONV_ACTIVE_102: &str = "20000000-0000-4000-8000-000000000102";
pub const CONV_RESOLVED_103: &str = "20000000-0000-4000-8000-000000000103";
pub const CONV_CLOSED_104: &str = "20000000-0000-4000-8000-000000000104";
pub const CONV_WAITING_105: &str = "20000000-0000-4000-8000-000000000105";
pub const CONV_MISSED_106: &str = "20000000-0000-4000-8000-000000000106";
/// Beta Shop, active, dave.
pub const CONV_BETA_301: &str = "20000000-0000-4000-8000-000000000301";

/// A message of conversation 102 (visitor, status delivered).
pub const MSG_102_LAST: &str = "30000000-0000-4000-8000-000000010205";
/// The image message of conversation 105.
pub const MSG_105_IMAGE: &str = "30000000-0000-4000-8000-000000010502";

pub fn id(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The service-role key (bypasses RLS).
    Service,
    /// alice, owner of agency A (sites 1 and 2).
    Alice,
    /// dave, owner of agency B (site 3).
    Dave,
}

/// The two callers every action is checked with.
pub const CALLERS: [Who; 2] = [Who::Service, Who::Alice];

pub struct Env {
    pub stack: Stack,
    pub db: tokio_postgres::Client,
    pub service: Client,
    pub anon: Client,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub async fn seeded() -> Env {
    init_tracing();
    let stack = Stack::for_tests_seeded()
        .await
        .expect("starting a seeded test stack");
    let (db, conn) = tokio_postgres::connect(&stack.db_url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to the test database");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let service = Client::new(Config::new(stack.url(), stack.service_role_key()).unwrap()).unwrap();
    let anon = Client::new(Config::new(stack.url(), stack.anon_key()).unwrap()).unwrap();
    Env {
        stack,
        db,
        service,
        anon,
    }
}

impl Env {
    /// A client for `who` on the stack's own URL.
    pub fn client(&self, who: Who) -> Client {
        match who {
            Who::Service => self.service.clone(),
            Who::Alice => self
                .anon
                .with_access_token(self.stack.user_token(ALICE.0, Some(ALICE.1))),
            Who::Dave => self
                .anon
                .with_access_token(self.stack.user_token(DAVE.0, Some(DAVE.1))),
        }
    }

    /// A client for `who` that talks to `base_url` (e.g. a [`CountingProxy`]).
    pub fn client_via(&self, who: Who, base_url: &str) -> Client {
        let key = match who {
            Who::Service => self.stack.service_role_key(),
            Who::Alice | Who::Dave => self.stack.anon_key(),
        };
        let c = Client::new(Config::new(base_url, key).unwrap()).unwrap();
        match who {
            Who::Service => c,
            Who::Alice => c.with_access_token(self.stack.user_token(ALICE.0, Some(ALICE.1))),
            Who::Dave => c.with_access_token(self.stack.user_token(DAVE.0, Some(DAVE.1))),
        }
    }

    pub fn chat(&self, who: Who) -> Chat {
        Chat::new(self.client(who))
    }

    /// Runs SQL whose single column is JSON text (`to_jsonb(x)::text`) and decodes every row.
    pub async fn json_rows<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Vec<T> {
        self.db
            .query(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| {
                let text: String = r.get(0);
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{sql}: {e}: {text}"))
            })
            .collect()
    }

    /// Like [`Env::json_rows`], for exactly one row.
    pub async fn json_row<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> T {
        let mut rows = self.json_rows(sql, params).await;
        assert_eq!(rows.len(), 1, "{sql}: expected one row");
        rows.remove(0)
    }

    /// The first column (text) of every row.
    pub async fn texts(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<String> {
        self.db
            .query(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    }

    /// A single bigint.
    pub async fn int(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> i64 {
        self.db
            .query_one(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<_, i64>(0)
    }

    pub async fn exec(&self, sql: &str) {
        self.db
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A conversation row as SQL sees it.
    pub async fn conversation<T: DeserializeOwned>(&self, conversation_id: &str) -> T {
        self.json_row(
            "select to_jsonb(c)::text from mod_chat_conversations c where c.id = $1::text::uuid",
            &[&conversation_id],
        )
        .await
    }

    /// A message row as SQL sees it.
    pub async fn message<T: DeserializeOwned>(&self, message_id: &str) -> T {
        self.json_row(
            "select to_jsonb(m)::text from mod_chat_messages m where m.id = $1::text::uuid",
            &[&message_id],
        )
        .await
    }

    /// An agent's `current_chat_count`.
    pub async fn load(&self, agent_id: &str) -> i64 {
        self.int(
            "select coalesce(current_chat_count, 0)::bigint from mod_chat_agents \
             where id = $1::text::uuid",
            &[&agent_id],
        )
        .await
    }

    /// Checks the invariant on every agent: `current_chat_count` equals its pending, active and
    /// waiting conversations, and lies within `0..=max_concurrent_chats`.
    pub async fn assert_agent_counts(&self) {
        let rows = self
            .db
            .query(
                "select a.id::text, a.display_name, coalesce(a.current_chat_count, 0)::bigint,
                        coalesce(a.max_concurrent_chats, 5)::bigint,
                        (select count(*) from mod_chat_conversations c
                          where c.assigned_agent_id = a.id
                            and c.status in ('pending', 'active', 'waiting'))::bigint
                 from mod_chat_agents a order by a.id",
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            let (agent, name, count, max, open): (String, String, i64, i64, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            assert_eq!(
                count, open,
                "agent {name} {agent}: current_chat_count {count} but {open} open conversations"
            );
            assert!(
                (0..=max).contains(&count),
                "agent {name} {agent}: count {count} outside 0..={max}"
            );
        }
    }

    /// A fingerprint of every chat table's content (changes with any write).
    pub async fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in [
            "mod_chat_conversations",
            "mod_chat_messages",
            "mod_chat_agents",
            "mod_chat_visitors",
        ] {
            let sql = format!(
                "select '{t}:' || count(*) || ':' || \
                 coalesce(md5(string_agg(x::text, '|' order by x.id)), '') from {t} x"
            );
            out.extend(self.texts(&sql, &[]).await);
        }
        out
    }
}

/// A TCP proxy in front of the stack that parses the HTTP/1.1 requests going through and
/// records their request lines (`POST /rest/v1/rpc/… HTTP/1.1`).
pub struct CountingProxy {
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl CountingProxy {
    pub async fn start(upstream_port: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await {
                        relay(client, server, seen).await;
                    }
                });
            }
        });
        CountingProxy {
            url,
            requests,
            accept,
        }
    }

    /// The request lines seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn relay(client: TcpStream, server: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
        let _ = client_wr.shutdown().await;
    });
    // Client to server: forward everything, and parse it as a sequence of requests with a
    // Content-Length body (what reqwest sends for JSON bodies).
    let mut pending: Vec<u8> = Vec::new();
    let mut body_left: usize = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if server_wr.write_all(&buf[..n]).await.is_err() {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        loop {
            if body_left > 0 {
                let take = body_left.min(pending.len());
                pending.drain(..take);
                body_left -= take;
                if body_left > 0 {
                    break;
                }
            }
            let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let request_line = lines.next().unwrap_or_default().to_string();
            let mut length = 0usize;
            for l in lines {
                let lower = l.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                assert!(
                    !lower.starts_with("transfer-encoding:"),
                    "the counting proxy handles Content-Length bodies only: {l}"
                );
            }
            seen.lock().unwrap().push(request_line);
            body_left = length;
        }
    }
    let _ = server_wr.shutdown().await;
    let _ = down.await;
}
