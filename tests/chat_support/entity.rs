//! Helpers shared by the entity test files (agents/departments, canned/knowledge base,
//! widget/visitors), the conversation test files and the tenant-isolation sweep: the seeded
//! ids, a seeded stack with a superuser database connection and the callers' chat handles
//! ([`Env`]), a client from URL and key, a counting HTTP proxy that proves how many requests an
//! action takes, and the invalid-input assertion.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use livechat::chat::Chat;
use livechat::{Client, Config, ErrorKind};
use livechat_stack::Stack;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// Agency A (alice's).
pub const AGENCY_A: &str = "a0000000-0000-4000-8000-000000000001";
/// Acme Store (agency A).
pub const SITE_1: &str = "b0000000-0000-4000-8000-000000000001";
/// Acme Blog (agency A).
pub const SITE_2: &str = "b0000000-0000-4000-8000-000000000002";
/// alice (user id, e-mail), owner of agency A.
pub const ALICE: (&str, &str) = ("c0000000-0000-4000-8000-000000000001", "alice@acme.test");
/// dave (user id, e-mail), owner of agency B.
pub const DAVE: (&str, &str) = ("c0000000-0000-4000-8000-000000000004", "dave@beta.test");
/// Every chat table, for [`Env::snapshot`].
pub const CHAT_TABLES: [&str; 9] = [
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

/// A literal uuid of the seed.
pub fn id(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A seeded stack, a superuser connection and the entity tests' callers.
pub struct Env {
    pub stack: Stack,
    pub db: tokio_postgres::Client,
    pub service: Chat,
    pub alice: Chat,
    pub dave: Chat,
    /// The plain anon key, no user.
    pub anon: Chat,
}

impl Env {
    pub async fn new() -> Env {
        let (stack, db) = seeded_stack_and_db().await;
        let service = Chat::new(client(&stack.url(), stack.service_role_key()));
        let anon = client(&stack.url(), stack.anon_key());
        let alice = Chat::new(anon.with_access_token(stack.user_token(ALICE.0, Some(ALICE.1))));
        let dave = Chat::new(anon.with_access_token(stack.user_token(DAVE.0, Some(DAVE.1))));
        Env {
            stack,
            db,
            service,
            alice,
            dave,
            anon: Chat::new(anon),
        }
    }

    /// The service role and alice, each acting through the library.
    pub fn members(&self) -> [(&'static str, &Chat); 2] {
        [("service", &self.service), ("alice", &self.alice)]
    }

    /// The chat handle of `who` (`"service"`, `"alice"` or `"dave"`) whose requests go through
    /// a counting proxy.
    pub async fn proxied(&self, who: &str) -> (Chat, CountingProxy) {
        let proxy = CountingProxy::start(self.stack.port()).await;
        let user = |(sub, email): (&str, &str)| {
            client(&proxy.url, self.stack.anon_key())
                .with_access_token(self.stack.user_token(sub, Some(email)))
        };
        let chat = Chat::new(match who {
            "service" => client(&proxy.url, self.stack.service_role_key()),
            "alice" => user(ALICE),
            "dave" => user(DAVE),
            other => panic!("no caller named {other}"),
        });
        (chat, proxy)
    }

    /// Rows of a query whose single column is a JSON text, decoded as `T`.
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

    /// The single `bigint` a query returns.
    pub async fn scalar_i64(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> i64 {
        self.db
            .query_one(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// The single text a query returns.
    pub async fn text(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> String {
        self.db
            .query_one(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Runs SQL as the superuser.
    pub async fn exec(&self, sql: &str) {
        self.db
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A digest of every chat table's content, to prove that nothing was written.
    pub async fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in CHAT_TABLES {
            out.push(
                self.text(
                    &format!(
                        "select coalesce(md5(string_agg(to_jsonb(t)::text, ',' order by t.id)), '') \
                         from public.{t} t"
                    ),
                    &[],
                )
                .await,
            );
        }
        out
    }

    /// A new site of agency A with no chat rows.
    pub async fn new_site(&self, name: &str) -> Uuid {
        let site = Uuid::new_v4();
        self.db
            .execute(
                "insert into public.sites (id, agency_id, name) values ($1::text::uuid, $2::text::uuid, $3)",
                &[&site.to_string(), &AGENCY_A, &name],
            )
            .await
            .expect("inserting a site");
        site
    }
}

/// Test logging to the test's output (`RUST_LOG`, default `warn`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Test logging ([`init_tracing`]), a seeded stack (a database of its own) and a
/// superuser connection to that database (it bypasses row-level security).
pub async fn seeded_stack_and_db() -> (Stack, tokio_postgres::Client) {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("a seeded stack");
    let (db, conn) = tokio_postgres::connect(&stack.db_url(), tokio_postgres::NoTls)
        .await
        .expect("a superuser database connection");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    (stack, db)
}

pub fn client(url: &str, key: &str) -> Client {
    Client::new(Config::new(url, key).expect("a config")).expect("a client")
}

/// A TCP proxy in front of the stack that records the request line (`METHOD target`) of every
/// HTTP request passing through it (requests on kept-alive connections included).
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
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a proxy port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_server, mut to_server) = outbound.into_split();
                    let upstream = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut pending: Vec<u8> = Vec::new();
                        loop {
                            let n = match from_client.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            pending.extend_from_slice(&buf[..n]);
                            record_request_lines(&mut pending, &seen);
                            if to_server.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_server.shutdown().await;
                    };
                    let downstream = async move {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        CountingProxy {
            url,
            requests,
            accept,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("the proxy log").clone()
    }
}

/// Moves every complete request (head and `Content-Length` body) out of `pending`, recording its
/// request line (`METHOD target`) in `seen`.
fn record_request_lines(pending: &mut Vec<u8>, seen: &Mutex<Vec<String>>) {
    while let Some(head_end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
        let body_len: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        let total = head_end + 4 + body_len;
        if pending.len() < total {
            return;
        }
        let line = head.lines().next().unwrap_or("");
        let line = line.strip_suffix(" HTTP/1.1").unwrap_or(line).to_string();
        seen.lock().expect("the proxy log").push(line);
        pending.drain(..total);
    }
}

pub fn assert_invalid(result: livechat::Result<impl std::fmt::Debug>, what: &str) {
    match result {
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}"),
        Ok(v) => panic!("{what}: accepted, got {v:?}"),
    }
}
