//! Helpers shared by the entity test files (agents/departments, canned/knowledge base,
//! widget/visitors) and the tenant-isolation sweep: a seeded stack with a superuser database
//! connection, a client from URL and key, a counting HTTP proxy that proves how many requests
//! an action takes, and the invalid-input assertion.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use livechat::{Client, Config, ErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Test logging (`RUST_LOG`, default `warn`), a seeded stack (a database of its own) and a
/// superuser connection to that database (it bypasses row-level security).
pub async fn seeded_stack_and_db() -> (livechat_stack::Stack, tokio_postgres::Client) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let stack = livechat_stack::Stack::for_tests_seeded()
        .await
        .expect("a seeded stack");
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

/// A TCP proxy in front of the stack that records the request line of every HTTP request
/// passing through it (requests on kept-alive connections included).
pub struct CountingProxy {
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl CountingProxy {
    pub async fn start(upstream_port: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a proxy port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
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
        CountingProxy { url, requests }
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
