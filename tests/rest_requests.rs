//! The requests the REST layer sends, checked against a tiny recording HTTP server (no
//! database): headers, combined `Prefer`, paging parameters, value encoding, and how transport
//! failures, timeouts and error responses are classified.

use std::collections::HashMap;
use std::time::Duration;

use livechat::rest::Condition;
use livechat::{BoxError, Client, Config, Count, ErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request as the server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: HashMap<String, Vec<String>>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
    fn header_count(&self, name: &str) -> usize {
        self.headers.get(name).map_or(0, Vec::len)
    }
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A canned answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Never answer (to provoke timeouts).
    hang: bool,
}

impl Reply {
    fn json(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", "application/json; charset=utf-8".into())],
            body: body.into(),
            hang: false,
        }
    }
    fn with(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// Serves `reply` to every connection and reports each request.
async fn server(reply: Reply) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_string();
                let mut headers: HashMap<String, Vec<String>> = HashMap::new();
                for l in lines.filter(|l| !l.is_empty()) {
                    if let Some((k, v)) = l.split_once(':') {
                        headers
                            .entry(k.trim().to_ascii_lowercase())
                            .or_default()
                            .push(v.trim().to_string());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.first())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                let mut parts = request_line.split(' ');
                let method = parts.next().unwrap_or_default().to_string();
                let target = parts.next().unwrap_or_default().to_string();
                let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
                let query = url::form_urlencoded::parse(qs.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let _ = tx.send(Seen {
                    method,
                    path: path.to_string(),
                    query,
                    headers,
                    body,
                });
                if reply.hang {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let mut out = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reply.status,
                    reply.body.len()
                );
                for (k, v) in &reply.headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&reply.body);
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, rx)
}

fn client(url: &str) -> Client {
    Client::new(Config::new(url, "the-api-key").unwrap()).unwrap()
}

#[tokio::test]
async fn every_request_carries_the_api_key_and_a_bearer_token() {
    let (url, mut rx) = server(Reply::json(200, "[]")).await;
    let c = client(&url);

    let _: Vec<serde_json::Value> = c.from("t").fetch().await.unwrap();
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/rest/v1/t");
    assert_eq!(seen.header("apikey"), Some("the-api-key"));
    assert_eq!(seen.header("authorization"), Some("Bearer the-api-key"));
    assert_eq!(seen.header("accept"), Some("application/json"));

    let user = c.with_access_token("user.jwt.token");
    let _: Vec<serde_json::Value> = user.from("t").fetch().await.unwrap();
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.header("apikey"), Some("the-api-key"));
    assert_eq!(seen.header("authorization"), Some("Bearer user.jwt.token"));
    assert_eq!(seen.header_count("authorization"), 1);

    // The original handle is unchanged.
    let _: Vec<serde_json::Value> = c.from("t").fetch().await.unwrap();
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.header("authorization"), Some("Bearer the-api-key"));
}

#[tokio::test]
async fn an_access_token_provider_is_asked_before_each_request() {
    let (url, mut rx) = server(Reply::json(200, "[]")).await;
    let c = client(&url);
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let provider = {
        let counter = counter.clone();
        move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, BoxError>(Some(format!("token-{n}"))) }
        }
    };
    let user = c.with_access_token_provider(provider);
    for expected in ["Bearer token-0", "Bearer token-1"] {
        let _: Vec<serde_json::Value> = user.from("t").fetch().await.unwrap();
        let seen = rx.recv().await.unwrap();
        assert_eq!(seen.header("authorization"), Some(expected));
    }

    // No user: the API key is the bearer.
    let signed_out = c.with_access_token_provider(|| async { Ok::<_, BoxError>(None) });
    let _: Vec<serde_json::Value> = signed_out.from("t").fetch().await.unwrap();
    assert_eq!(
        rx.recv().await.unwrap().header("authorization"),
        Some("Bearer the-api-key")
    );

    // A failing provider fails the request before anything is sent.
    let broken = c.with_access_token_provider(|| async {
        Err::<Option<String>, BoxError>("session store down".into())
    });
    let err = broken
        .from("t")
        .fetch::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn prefer_values_are_combined_into_one_header() {
    let (url, mut rx) = server(Reply::json(201, "[]")).await;
    let c = client(&url);

    let _: Vec<serde_json::Value> = c
        .from("t")
        .insert(&serde_json::json!({"a": 1}))
        .count(Count::Exact)
        .fetch()
        .await
        .unwrap();
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.header_count("prefer"), 1);
    assert_eq!(
        seen.header("prefer"),
        Some("return=representation,count=exact")
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.body, r#"{"a":1}"#);
    assert!(seen.header("range").is_none());

    c.from("t")
        .upsert(&[serde_json::json!({"a": 1})])
        .ignore_duplicates()
        .on_conflict("a")
        .missing_default("a,b")
        .prefer("tx=rollback")
        .execute()
        .await
        .unwrap();
    let seen = rx.recv().await.unwrap();
    assert_eq!(
        seen.header("prefer"),
        Some("return=minimal,resolution=ignore-duplicates,missing=default,tx=rollback")
    );
    assert_eq!(seen.param("on_conflict"), Some("a"));
    assert_eq!(seen.param("columns"), Some("a,b"));

    // A plain read sends no Prefer at all.
    let _: Vec<serde_json::Value> = c.from("t").fetch().await.unwrap();
    assert!(rx.recv().await.unwrap().header("prefer").is_none());
}

#[tokio::test]
async fn limit_and_offset_are_query_parameters_for_every_method() {
    let (url, mut rx) = server(Reply::json(200, "[]")).await;
    let c = client(&url);

    let _: Vec<serde_json::Value> = c.from("t").limit(0).fetch().await.unwrap();
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.param("limit"), Some("0"));
    assert!(seen.header("range").is_none());

    let _: Vec<serde_json::Value> = c
        .from("t")
        .range(10, 19)
        .order_desc("created_at")
        .order_asc("id")
        .fetch()
        .await
        .unwrap();
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.param("offset"), Some("10"));
    assert_eq!(seen.param("limit"), Some("10"));
    assert_eq!(seen.param("order"), Some("created_at.desc,id.asc"));
    assert_eq!(seen.query.iter().filter(|(k, _)| k == "order").count(), 1);

    let _: Vec<serde_json::Value> = c
        .from("t")
        .update(&serde_json::json!({"a": 2}))
        .eq("b", 3)
        .order_asc("id")
        .limit(5)
        .fetch()
        .await
        .unwrap();
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.method, "PATCH");
    assert_eq!(seen.param("limit"), Some("5"));
    assert_eq!(seen.param("b"), Some("eq.3"));
}

#[tokio::test]
async fn user_values_are_encoded_for_where_they_go() {
    let (url, mut rx) = server(Reply::json(200, "[]")).await;
    let c = client(&url);
    let nasty = r#"a,b.c:(d) "e" \f *%_ & = + # é"#;
    let _: Vec<serde_json::Value> = c
        .from("t")
        .select("id,name")
        .eq("name", nasty)
        .in_("status", ["x,y", "(z)", "\"q\""])
        .not_in("kind", [" lead", "NULL"])
        .array_contains("tags", ["{a}", "b,c"])
        .text_contains("title", "50%*")
        .or([
            Condition::eq("a", "1,2)"),
            Condition::is_null("b"),
            Condition::in_("c", ["x"]).not(),
        ])
        .fetch()
        .await
        .unwrap();
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.param("select"), Some("id,name"));
    assert_eq!(seen.param("name"), Some(format!("eq.{nasty}").as_str()));
    assert_eq!(seen.param("status"), Some(r#"in.("x,y","(z)","\"q\"")"#));
    assert_eq!(seen.param("kind"), Some(r#"not.in.(" lead","NULL")"#));
    assert_eq!(seen.param("tags"), Some(r#"cs.{"{a}","b,c"}"#));
    assert_eq!(seen.param("title"), Some("match.***=50%*"));
    assert_eq!(
        seen.param("or"),
        Some(r#"(a.eq."1,2)",b.is.null,c.not.in.("x"))"#)
    );
}

#[tokio::test]
async fn like_patterns_escape_wildcards_and_refuse_asterisks() {
    let (url, mut rx) = server(Reply::json(200, "[]")).await;
    let c = client(&url);
    let _: Vec<serde_json::Value> = c
        .from("t")
        .ilike_contains("title", r"100%_\")
        .fetch()
        .await
        .unwrap();
    let seen = rx.recv().await.unwrap();
    // The postgrest crate rewrites `%` to `*`; PostgREST turns `*` back into `%`.
    assert_eq!(seen.param("title"), Some(r"ilike.*100\*\_\\*"));

    let err = c
        .from("t")
        .ilike_contains("title", "a*b")
        .fetch::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(rx.try_recv().is_err(), "nothing is sent");
}

#[tokio::test]
async fn single_asks_for_one_object_and_schema_headers_follow_the_method() {
    let (url, mut rx) = server(Reply::json(200, r#"{"id":1}"#)).await;
    let c = client(&url).schema("chat");
    let row: serde_json::Value = c.from("t").eq("id", 1).single().await.unwrap();
    assert_eq!(row["id"], 1);
    let seen = rx.recv().await.unwrap();
    assert_eq!(
        seen.header("accept"),
        Some("application/vnd.pgrst.object+json")
    );
    assert_eq!(seen.header("accept-profile"), Some("chat"));

    let _: serde_json::Value = c
        .from("t")
        .insert(&serde_json::json!({"id": 1}))
        .single()
        .await
        .unwrap();
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.header("content-profile"), Some("chat"));
    assert_eq!(seen.header("prefer"), Some("return=representation"));
}

#[tokio::test]
async fn totals_come_from_content_range() {
    let (url, mut rx) =
        server(Reply::json(206, r#"[{"id":3},{"id":4}]"#).with("Content-Range", "2-3/10")).await;
    let c = client(&url);
    let page = c
        .from("t")
        .range(2, 3)
        .fetch_page::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 2);
    assert_eq!(page.total, Some(10));
    assert_eq!(page.offset, 2);
    assert!(page.has_more());
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.header("prefer"), Some("count=exact"));

    let n = c.from("t").count_rows().await.unwrap();
    assert_eq!(n, 10);
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.method, "HEAD");
}

#[tokio::test]
async fn rpc_sends_typed_arguments_and_decodes_any_result() {
    #[derive(serde::Serialize)]
    struct Args<'a> {
        site: &'a str,
        n: i32,
    }
    let (url, mut rx) = server(Reply::json(200, "42")).await;
    let c = client(&url);
    let n: i64 = c
        .rpc("count_open", &Args { site: "s", n: 2 })
        .call()
        .await
        .unwrap();
    assert_eq!(n, 42);
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/rest/v1/rpc/count_open");
    assert_eq!(seen.body, r#"{"site":"s","n":2}"#);

    let (url, _rx) = server(Reply {
        status: 204,
        headers: vec![],
        body: String::new(),
        hang: false,
    })
    .await;
    let c = client(&url);
    let (): () = c.rpc("touch", &serde_json::json!({})).call().await.unwrap();
    let out = c
        .rpc("touch", &serde_json::json!({}))
        .execute()
        .await
        .unwrap();
    assert_eq!(out.status, 204);
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_transport_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client(&format!("http://127.0.0.1:{port}"));
    let err = c
        .from("t")
        .insert(&serde_json::json!({}))
        .execute()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
    assert!(err.is_retryable(), "nothing reached the server");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (url, _rx) = server(Reply {
        hang: true,
        ..Reply::json(200, "[]")
    })
    .await;
    let c = Client::new(
        Config::new(&url, "k")
            .unwrap()
            .with_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let err = c.from("t").fetch::<serde_json::Value>().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.is_timeout());
    assert!(err.is_retryable(), "a GET may be repeated");

    let err = c
        .from("t")
        .insert(&serde_json::json!({}))
        .timeout(Duration::from_millis(200))
        .execute()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(!err.is_retryable(), "a POST may have been applied");
}

#[tokio::test]
async fn server_errors_say_whether_to_retry() {
    let (url, _rx) = server(
        Reply::json(
            503,
            r#"{"code":"PGRST000","message":"Database connection error.","details":null,"hint":null}"#,
        )
        .with("Retry-After", "2"),
    )
    .await;
    let err = client(&url)
        .from("t")
        .insert(&serde_json::json!({}))
        .execute()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert!(err.is_retryable());
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.code(), Some("PGRST000"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));

    let (url, _rx) = server(Reply::json(
        500,
        r#"{"code":"XX000","message":"internal","details":null,"hint":null}"#,
    ))
    .await;
    let err = client(&url)
        .from("t")
        .fetch::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert!(!err.is_retryable());

    let (url, _rx) = server(Reply {
        status: 502,
        headers: vec![("Content-Type", "text/html".into())],
        body: "<html>Bad Gateway</html>".into(),
        hang: false,
    })
    .await;
    let err = client(&url)
        .from("t")
        .fetch::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert!(err.postgrest().is_none());
    assert_eq!(err.body(), Some("<html>Bad Gateway</html>"));
}

#[tokio::test]
async fn rows_of_the_wrong_shape_are_decode_errors() {
    #[derive(Debug, serde::Deserialize)]
    struct Row {
        #[allow(dead_code)]
        id: i64,
    }
    let (url, _rx) = server(Reply::json(200, r#"[{"id":"not a number"}]"#)).await;
    let err = client(&url).from("t").fetch::<Row>().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(!err.is_retryable());
}

#[test]
fn handles_errors_and_request_futures_are_send() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Client>();
    send_sync::<Config>();
    send_sync::<livechat::Error>();
    let c = client("http://127.0.0.1:9");
    let q = c.from("t").eq("a", 1);
    send(&q);
    let fut = q.fetch::<serde_json::Value>();
    send(&fut);
    let fut = c.rpc("f", &serde_json::json!({})).call::<i32>();
    send(&fut);
}
