//! Integration tests of the realtime server (`/realtime/v1`) with a WebSocket client
//! (tokio-tungstenite), against a real stack (PostgreSQL + HTTP server on a free port).

use futures::{SinkExt, StreamExt};
use livechat_stack::{jwt, Stack, StackOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous deadline for anything that should happen.
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
struct Frame {
    join_ref: Value,
    msg_ref: Value,
    topic: String,
    event: String,
    payload: Value,
    binary: bool,
}

enum Recv {
    Frame(Frame),
    Closed(Option<u16>),
    Timeout,
}

struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    v2: bool,
    n: u64,
}

fn ws_url(stack: &Stack, query: &str) -> String {
    format!(
        "ws://127.0.0.1:{}/realtime/v1/websocket?{query}",
        stack.port()
    )
}

fn decode_kind4(b: &[u8]) -> Option<Frame> {
    if b.len() < 5 || b[0] != 4 {
        return None;
    }
    let (tl, el, ml, enc) = (b[1] as usize, b[2] as usize, b[3] as usize, b[4]);
    let mut off = 5;
    let topic = String::from_utf8(b.get(off..off + tl)?.to_vec()).ok()?;
    off += tl;
    let event = String::from_utf8(b.get(off..off + el)?.to_vec()).ok()?;
    off += el;
    let meta = b.get(off..off + ml)?;
    off += ml;
    let body = b.get(off..)?;
    let payload = if enc == 1 {
        serde_json::from_slice(body).ok()?
    } else {
        json!({"binary": body.to_vec()})
    };
    let mut p = json!({"type": "broadcast", "event": event, "payload": payload});
    if ml > 0 {
        p["meta"] = serde_json::from_slice(meta).ok()?;
    }
    Some(Frame {
        join_ref: Value::Null,
        msg_ref: Value::Null,
        topic,
        event: "broadcast".into(),
        payload: p,
        binary: true,
    })
}

fn kind3(join_ref: &str, r: &str, topic: &str, event: &str, json: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![
        3,
        join_ref.len() as u8,
        r.len() as u8,
        topic.len() as u8,
        event.len() as u8,
        0,
        u8::from(json),
    ];
    for s in [join_ref, r, topic, event] {
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(payload);
    out
}

impl Ws {
    async fn connect(stack: &Stack, key: &str, vsn: &str) -> Ws {
        let url = ws_url(stack, &format!("apikey={key}&vsn={vsn}"));
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Ws {
            ws,
            v2: vsn.starts_with('2'),
            n: 0,
        }
    }

    fn next_ref(&mut self) -> String {
        self.n += 1;
        self.n.to_string()
    }

    async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    async fn push(
        &mut self,
        join_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> String {
        let r = self.next_ref();
        let text = if self.v2 {
            json!([join_ref, r, topic, event, payload]).to_string()
        } else {
            let mut o = json!({"topic": topic, "event": event, "payload": payload, "ref": r});
            if let Some(j) = join_ref {
                o["join_ref"] = json!(j);
            }
            o.to_string()
        };
        self.send_raw(Message::Text(text.into())).await;
        r
    }

    async fn recv_until(&mut self, deadline: Instant) -> Recv {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return Recv::Timeout,
                Ok(None) => return Recv::Closed(None),
                Ok(Some(Err(_))) => return Recv::Closed(None),
                Ok(Some(Ok(m))) => m,
            };
            match m {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                    let f = if self.v2 {
                        let a = v.as_array().expect("V2 frames are arrays");
                        assert_eq!(a.len(), 5, "V2 frame {v}");
                        Frame {
                            join_ref: a[0].clone(),
                            msg_ref: a[1].clone(),
                            topic: a[2].as_str().unwrap_or_default().into(),
                            event: a[3].as_str().unwrap_or_default().into(),
                            payload: a[4].clone(),
                            binary: false,
                        }
                    } else {
                        let o = v.as_object().expect("V1 frames are objects");
                        assert!(
                            !o.contains_key("join_ref"),
                            "V1 output has no join_ref: {v}"
                        );
                        Frame {
                            join_ref: Value::Null,
                            msg_ref: v["ref"].clone(),
                            topic: v["topic"].as_str().unwrap_or_default().into(),
                            event: v["event"].as_str().unwrap_or_default().into(),
                            payload: v["payload"].clone(),
                            binary: false,
                        }
                    };
                    return Recv::Frame(f);
                }
                Message::Binary(b) => {
                    assert!(self.v2, "binary frame sent to a V1 socket");
                    return Recv::Frame(decode_kind4(&b).expect("valid kind 4 frame"));
                }
                Message::Close(c) => return Recv::Closed(c.map(|c| u16::from(c.code))),
                _ => {}
            }
        }
    }

    /// Waits for a frame matching `pred`, skipping others.
    async fn expect(&mut self, what: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.recv_until(deadline).await {
                Recv::Frame(f) if pred(&f) => return f,
                Recv::Frame(_) => {}
                Recv::Closed(c) => panic!("socket closed ({c:?}) while waiting for {what}"),
                Recv::Timeout => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// The next frame that is not a presence or system push.
    async fn next_relevant(&mut self, what: &str) -> Frame {
        self.expect(what, |f| {
            !matches!(
                f.event.as_str(),
                "presence_state" | "presence_diff" | "system"
            )
        })
        .await
    }

    async fn reply_to(&mut self, r: &str) -> Frame {
        let r = r.to_string();
        self.expect(&format!("reply to ref {r}"), move |f| {
            f.event == "phx_reply" && f.msg_ref == json!(r)
        })
        .await
    }

    async fn join(&mut self, topic: &str, payload: Value) -> (String, Frame) {
        let r = self.n + 1;
        let r = r.to_string();
        let sent = self.push(Some(&r), topic, "phx_join", payload).await;
        assert_eq!(sent, r);
        let reply = self.reply_to(&r).await;
        (r, reply)
    }

    async fn join_ok(&mut self, topic: &str, config: Value) -> String {
        let (jr, reply) = self.join(topic, json!({ "config": config })).await;
        assert_eq!(
            reply.payload["status"], "ok",
            "join reply {:?}",
            reply.payload
        );
        jr
    }

    async fn heartbeat_roundtrip(&mut self) {
        let r = self.push(None, "phoenix", "heartbeat", json!({})).await;
        let f = self.reply_to(&r).await;
        assert_eq!(f.payload, json!({"status": "ok", "response": {}}));
    }

    async fn expect_closed(&mut self) -> Option<u16> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.recv_until(deadline).await {
                Recv::Frame(_) => {}
                Recv::Closed(c) => return c,
                Recv::Timeout => panic!("socket was not closed"),
            }
        }
    }
}

fn config(extra: Value) -> Value {
    let mut c = json!({
        "broadcast": {"ack": false, "self": false},
        "presence": {"key": "", "enabled": false},
        "postgres_changes": [],
        "private": false
    });
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    c
}

/// Joins and asserts an ok reply; returns the join ref.
async fn join_ok_with(ws: &mut Ws, topic: &str, payload: Value) -> String {
    let (jr, reply) = ws.join(topic, payload).await;
    assert_eq!(reply.payload["status"], "ok", "join {topic}: {reply:?}");
    jr
}

/// Raw HTTP request (the tests need no HTTP client library): returns status and body.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    // Chunked bodies: keep the JSON part.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if b >= a => body[a..=b].to_string(),
        _ => body,
    };
    (status, body)
}

async fn db(stack: &Stack) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&stack.db_url(), tokio_postgres::NoTls)
        .await
        .expect("db connects");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// Test tables: `rt_items` (RLS: authenticated users see their own rows) and `rt_open` (no RLS).
async fn setup_tables(stack: &Stack) -> tokio_postgres::Client {
    let c = db(stack).await;
    c.batch_execute(
        "create table public.rt_items (
             id bigint generated by default as identity primary key,
             owner uuid, body text, n int, tags text[], meta jsonb,
             at timestamptz not null default now());
         alter table public.rt_items replica identity full;
         alter table public.rt_items enable row level security;
         create policy own on public.rt_items for select to authenticated using (owner = auth.uid());
         grant select, insert, update, delete on public.rt_items to anon, authenticated, service_role;
         create table public.rt_open (id int primary key, v text, flag boolean, price numeric);
         alter table public.rt_open replica identity full;
         grant select on public.rt_open to anon, authenticated, service_role;
         grant insert on public.rt_open to service_role;
         create table public.rt_unpublished (id int primary key);
         alter publication supabase_realtime add table public.rt_items, public.rt_open;",
    )
    .await
    .expect("test tables");
    c
}

fn pg_config(list: Value) -> Value {
    config(json!({ "postgres_changes": list }))
}

async fn subscribed(ws: &mut Ws) {
    let f = ws.expect("system message", |f| f.event == "system").await;
    assert_eq!(
        f.payload["message"], "Subscribed to PostgreSQL",
        "system payload {:?}",
        f.payload
    );
    assert_eq!(f.payload["status"], "ok");
    assert_eq!(f.payload["extension"], "postgres_changes");
}

async fn next_change(ws: &mut Ws) -> Frame {
    ws.expect("postgres_changes", |f| f.event == "postgres_changes")
        .await
}

// ---------------------------------------------------------------------------------------------
// 1. Socket, auth, heartbeat, join/leave, broadcast

#[tokio::test]
async fn connect_errors_use_the_http_forms() {
    let stack = Stack::for_tests().await.expect("stack");
    let secret = stack.jwt_secret().to_string();
    let expired = jwt::sign_role("anon", -600, jwt::Claims::new(), &secret);
    let mut no_role = jwt::Claims::new();
    no_role.insert("exp".into(), json!(jwt::now_secs() + 600));
    let no_role = jwt::sign(&no_role, &secret);
    let wrong = jwt::anon_key("some-other-secret-some-other-secret");
    let cases = [
        ("vsn=1.0.0".to_string(), 401, "API key is missing"),
        (
            format!("apikey={wrong}&vsn=1.0.0"),
            401,
            "Failed to validate JWT signature",
        ),
        (
            format!("apikey={expired}&vsn=2.0.0"),
            401,
            "Token has expired",
        ),
        (
            format!("apikey={no_role}&vsn=2.0.0"),
            401,
            "Fields `role` and `exp` are required in JWT",
        ),
        (
            "apikey=garbage&vsn=2.0.0".to_string(),
            401,
            "The token provided is not a valid JWT",
        ),
    ];
    for (q, status, msg) in cases {
        match tokio_tungstenite::connect_async(ws_url(&stack, &q)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), status, "{q}");
                let body: Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                        .expect("json body");
                assert_eq!(body, json!({"error": msg}), "{q}");
            }
            other => panic!("expected HTTP error for {q}, got {:?}", other.map(|_| ())),
        }
    }
    let q = format!("apikey={}&vsn=3.0.0", stack.anon_key());
    match tokio_tungstenite::connect_async(ws_url(&stack, &q)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 403)
        }
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn heartbeat_both_serializers_and_header_auth() {
    let stack = Stack::for_tests().await.expect("stack");
    for vsn in ["1.0.0", "2.0.0"] {
        let mut ws = Ws::connect(&stack, stack.anon_key(), vsn).await;
        ws.heartbeat_roundtrip().await;
        let r = ws.push(None, "phoenix", "heartbeat", json!({})).await;
        let f = ws.reply_to(&r).await;
        assert_eq!(f.topic, "phoenix");
        assert_eq!(f.join_ref, Value::Null);
    }
    // Missing vsn means 1.0.0; the key may come in `x-api-key`.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = ws_url(&stack, "").into_client_request().expect("request");
    req.headers_mut()
        .insert("x-api-key", stack.anon_key().parse().expect("header value"));
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("header auth");
    let mut ws = Ws {
        ws,
        v2: false,
        n: 0,
    };
    ws.heartbeat_roundtrip().await;
    stack.shutdown().await;
}

#[tokio::test]
async fn join_reply_leave_close_unmatched_and_duplicate_join() {
    let stack = Stack::for_tests().await.expect("stack");
    let mut ws = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let (jr, reply) = ws
        .join("realtime:room1", json!({"config": config(json!({}))}))
        .await;
    assert_eq!(reply.join_ref, json!(jr));
    assert_eq!(reply.topic, "realtime:room1");
    assert_eq!(
        reply.payload,
        json!({"status": "ok", "response": {"postgres_changes": []}})
    );
    // Unmatched topic.
    let r = ws
        .push(
            Some("99"),
            "realtime:other",
            "broadcast",
            json!({"type":"broadcast","event":"e","payload":{}}),
        )
        .await;
    let f = ws.reply_to(&r).await;
    assert_eq!(
        f.payload,
        json!({"status":"error","response":{"reason":"unmatched topic"}})
    );
    // Leave of a topic that was never joined: plain ok.
    let r = ws
        .push(Some("98"), "realtime:never", "phx_leave", json!({}))
        .await;
    assert_eq!(ws.reply_to(&r).await.payload["status"], "ok");
    // Second join on the same topic closes the first.
    let (jr2, reply2) = ws
        .join("realtime:room1", json!({"config": config(json!({}))}))
        .await;
    assert_eq!(reply2.payload["status"], "ok");
    // (phx_close of the first join was sent before the new reply)
    // Leave: ok reply then phx_close with the join ref.
    let r = ws
        .push(Some(&jr2), "realtime:room1", "phx_leave", json!({}))
        .await;
    let f = ws.reply_to(&r).await;
    assert_eq!(f.payload["status"], "ok");
    let close = ws.expect("phx_close", |f| f.event == "phx_close").await;
    assert_eq!(close.join_ref, json!(jr2));
    assert_eq!(close.msg_ref, json!(jr2));
    assert_eq!(close.payload, json!({}));
    // After leaving, the topic is unmatched again.
    let r = ws
        .push(
            Some(&jr2),
            "realtime:room1",
            "presence",
            json!({"type":"presence","event":"untrack"}),
        )
        .await;
    assert_eq!(
        ws.reply_to(&r).await.payload["response"]["reason"],
        "unmatched topic"
    );

    // The duplicate join's phx_close: checked on a V1 socket, in order.
    let mut v1 = Ws::connect(&stack, stack.anon_key(), "1.0.0").await;
    let (first, _) = v1
        .join("realtime:dup", json!({"config": config(json!({}))}))
        .await;
    let r = v1
        .push(
            Some("50"),
            "realtime:dup",
            "phx_join",
            json!({"config": config(json!({}))}),
        )
        .await;
    let close = v1.expect("phx_close", |f| f.event == "phx_close").await;
    assert_eq!(
        close.msg_ref,
        json!(first),
        "phx_close carries the old join ref"
    );
    let reply = v1.reply_to(&r).await;
    assert_eq!(reply.payload["status"], "ok");
    let _ = jr;
    stack.shutdown().await;
}

#[tokio::test]
async fn join_errors_and_defaults() {
    let stack = Stack::for_tests().await.expect("stack");
    let secret = stack.jwt_secret().to_string();
    let mut ws = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let (_, f) = ws
        .join("realtime:", json!({"config": config(json!({}))}))
        .await;
    assert_eq!(
        f.payload,
        json!({"status":"error","response":{"reason":"TopicNameRequired: You must provide a topic name"}})
    );
    let expired = jwt::sign_role("authenticated", -100, jwt::Claims::new(), &secret);
    let (_, f) = ws
        .join(
            "realtime:x",
            json!({"config": config(json!({})), "access_token": expired}),
        )
        .await;
    let reason = f.payload["response"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.starts_with("InvalidJWTToken: Token has expired "),
        "{reason}"
    );
    let (_, f) = ws
        .join(
            "realtime:x",
            json!({"config": config(json!({})), "access_token": "nope"}),
        )
        .await;
    assert_eq!(
        f.payload["response"]["reason"],
        "MalformedJWT: The token provided is not a valid JWT"
    );
    // A join without config still works (broadcast); `sb_` tokens fall back to the connect key.
    let (_, f) = ws
        .join("realtime:y", json!({"access_token": "sb_publishable_x"}))
        .await;
    assert_eq!(f.payload["status"], "ok");
    // Non-realtime topics are unmatched.
    let (_, f) = ws.join("room:z", json!({})).await;
    assert_eq!(f.payload["response"]["reason"], "unmatched topic");
    stack.shutdown().await;
}

#[tokio::test]
async fn broadcast_text_self_ack_and_sender_exclusion() {
    let stack = Stack::for_tests().await.expect("stack");
    for (va, vb) in [("2.0.0", "1.0.0"), ("1.0.0", "2.0.0")] {
        let mut a = Ws::connect(&stack, stack.anon_key(), va).await;
        let mut b = Ws::connect(&stack, stack.anon_key(), vb).await;
        let topic = format!("realtime:bc-{va}");
        let ja = a
            .join_ok(
                &topic,
                config(json!({"broadcast": {"ack": true, "self": false}})),
            )
            .await;
        let jb = b
            .join_ok(
                &topic,
                config(json!({"broadcast": {"ack": false, "self": true}})),
            )
            .await;
        let payload =
            json!({"type": "broadcast", "event": "cursor", "payload": {"x": 1, "s": "é"}});
        let r = a
            .push(Some(&ja), &topic, "broadcast", payload.clone())
            .await;
        let ack = a.reply_to(&r).await;
        assert_eq!(ack.payload, json!({"status":"ok","response":{}}));
        let got = b.next_relevant("broadcast at b").await;
        assert_eq!(got.event, "broadcast");
        assert_eq!(got.payload, payload, "relayed unchanged");
        assert_eq!(
            (got.join_ref.clone(), got.msg_ref.clone()),
            (Value::Null, Value::Null)
        );
        assert!(!got.binary);
        // b has self: it gets its own broadcast; no ack reply (ack off).
        let p2 = json!({"type": "broadcast", "event": "second", "payload": {"n": 2}});
        b.push(Some(&jb), &topic, "broadcast", p2.clone()).await;
        let own = b.next_relevant("own broadcast at b").await;
        assert_eq!(own.payload, p2);
        // a gets b's broadcast, and never its own (it would have come first).
        let at_a = a.next_relevant("b's broadcast at a").await;
        assert_eq!(at_a.payload, p2);
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn binary_user_broadcast_kind3_to_kind4_and_v1_conversion() {
    let stack = Stack::for_tests().await.expect("stack");
    let topic = "realtime:bin";
    let mut sender = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let mut v2 = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let mut v1 = Ws::connect(&stack, stack.anon_key(), "1.0.0").await;
    let js = sender
        .join_ok(
            topic,
            config(json!({"broadcast": {"ack": true, "self": false}})),
        )
        .await;
    v2.join_ok(topic, config(json!({}))).await;
    v1.join_ok(topic, config(json!({}))).await;
    let r = sender.next_ref();
    sender
        .send_raw(Message::Binary(
            kind3(
                &js,
                &r,
                topic,
                "typing",
                true,
                br#"{"who":"ann","n":[1,2]}"#,
            )
            .into(),
        ))
        .await;
    let ack = sender.reply_to(&r).await;
    assert_eq!(ack.payload["status"], "ok");
    assert_eq!(ack.join_ref, json!(js));
    let f = v2.next_relevant("kind 4 at v2").await;
    assert!(f.binary, "V2 receivers get kind 4");
    assert_eq!(f.topic, topic);
    assert_eq!(
        f.payload,
        json!({"type":"broadcast","event":"typing","payload":{"who":"ann","n":[1,2]}})
    );
    let f = v1.next_relevant("converted broadcast at v1").await;
    assert_eq!(
        f.payload,
        json!({"type":"broadcast","event":"typing","payload":{"who":"ann","n":[1,2]}})
    );
    // Raw binary payloads reach V2 only.
    let r = sender.next_ref();
    sender
        .send_raw(Message::Binary(
            kind3(&js, &r, topic, "blob", false, &[0, 1, 2, 255]).into(),
        ))
        .await;
    sender.reply_to(&r).await;
    let f = v2.next_relevant("raw kind 4").await;
    assert_eq!(f.payload["payload"], json!({"binary": [0, 1, 2, 255]}));
    // Then a JSON text broadcast: V1 must get it next (the raw one was dropped for it).
    let p = json!({"type":"broadcast","event":"after","payload":{}});
    sender.push(Some(&js), topic, "broadcast", p.clone()).await;
    let f = v1.next_relevant("text broadcast at v1").await;
    assert_eq!(f.payload, p);
    let f = v2.next_relevant("text broadcast at v2").await;
    assert!(!f.binary);
    assert_eq!(f.payload, p);
    stack.shutdown().await;
}

#[tokio::test]
async fn rest_broadcast_batch_and_single() {
    let stack = Stack::for_tests().await.expect("stack");
    let mut v2 = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let mut v1 = Ws::connect(&stack, stack.anon_key(), "1.0.0").await;
    v2.join_ok("realtime:news", config(json!({}))).await;
    v1.join_ok("realtime:news", config(json!({}))).await;
    let key = stack.anon_key().to_string();
    let body = json!({"messages": [
        {"topic": "news", "event": "flash", "payload": {"a": 1}},
        {"topic": "news", "event": "flash2", "payload": {"b": 2}, "id": "m-1"}
    ]})
    .to_string();
    let (status, _) = http(
        stack.port(),
        "POST",
        "/realtime/v1/api/broadcast",
        &[("apikey", &key), ("content-type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 202);
    for ws in [&mut v2, &mut v1] {
        let f = ws.next_relevant("rest broadcast").await;
        assert_eq!(
            f.payload,
            json!({"type":"broadcast","event":"flash","payload":{"a":1}})
        );
        let f = ws.next_relevant("rest broadcast 2").await;
        assert_eq!(
            f.payload,
            json!({"type":"broadcast","event":"flash2","payload":{"b":2},"meta":{"id":"m-1"}})
        );
    }
    let (status, body) = http(
        stack.port(),
        "POST",
        "/realtime/v1/api/broadcast",
        &[("apikey", "bad"), ("content-type", "application/json")],
        b"{\"messages\":[]}",
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"message":"Unauthorized"}"#)
    );
    // Single-message endpoint: kind 4 for V2, JSON for V1.
    let (status, _) = http(
        stack.port(),
        "POST",
        "/realtime/v1/api/broadcast/news/events/one",
        &[
            ("authorization", &format!("Bearer {key}")),
            ("content-type", "application/json"),
        ],
        br#"{"c":3}"#,
    )
    .await;
    assert_eq!(status, 202);
    let f = v2.next_relevant("single at v2").await;
    assert!(f.binary);
    assert_eq!(
        f.payload,
        json!({"type":"broadcast","event":"one","payload":{"c":3}})
    );
    let f = v1.next_relevant("single at v1").await;
    assert_eq!(
        f.payload,
        json!({"type":"broadcast","event":"one","payload":{"c":3}})
    );
    let (status, _) = http(
        stack.port(),
        "POST",
        "/realtime/v1/api/broadcast/news/events/one",
        &[("apikey", &key), ("content-type", "text/plain")],
        b"x",
    )
    .await;
    assert_eq!(status, 415);
    stack.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_are_ignored_and_other_sockets_unaffected() {
    let stack = Stack::for_tests().await.expect("stack");
    let mut other = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    for vsn in ["1.0.0", "2.0.0"] {
        let mut ws = Ws::connect(&stack, stack.anon_key(), vsn).await;
        for bad in [
            "not json",
            "{\"topic\":\"phoenix\"}",
            "[1,2,3]",
            "42",
            "[null,\"1\",7,\"heartbeat\",{}]",
            "{\"topic\":5,\"event\":\"x\",\"payload\":{},\"ref\":null}",
        ] {
            ws.send_raw(Message::Text(bad.into())).await;
        }
        for bad in [
            vec![],
            vec![9, 9, 9],
            vec![3, 200, 0, 0, 0, 0, 1],
            vec![3, 0, 0, 1, 0, 0, 5, b'x'],
            vec![0, 1, 1, 1, 1],
        ] {
            ws.send_raw(Message::Binary(bad.into())).await;
        }
        ws.heartbeat_roundtrip().await;
    }
    // An oversized frame closes that socket only.
    let mut big = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let huge = format!(
        "[null,\"1\",\"phoenix\",\"heartbeat\",\"{}\"]",
        "x".repeat(5_100_000)
    );
    let _ = big.ws.send(Message::Text(huge.into())).await;
    let _ = big.expect_closed().await;
    other.heartbeat_roundtrip().await;
    let mut fresh = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    fresh.heartbeat_roundtrip().await;
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. postgres_changes

#[tokio::test]
async fn postgres_changes_shapes_events_and_filters() {
    let stack = Stack::for_tests().await.expect("stack");
    let c = setup_tables(&stack).await;
    let mut ws = Ws::connect(&stack, stack.service_role_key(), "2.0.0").await;
    let list = json!([
        {"event": "*", "schema": "public", "table": "rt_open"},
        {"event": "INSERT", "schema": "public", "table": "rt_open", "filter": "id=in.(1,3)"},
        {"event": "UPDATE", "schema": "public", "table": "rt_open", "filter": "v=eq.hello"},
        {"event": "DELETE", "schema": "public", "table": "rt_open", "filter": "id=gte.2"}
    ]);
    let (_, reply) = ws
        .join("realtime:pg", json!({"config": pg_config(list.clone())}))
        .await;
    let echoed = reply.payload["response"]["postgres_changes"]
        .as_array()
        .expect("echo")
        .clone();
    assert_eq!(echoed.len(), 4);
    for (e, sent) in echoed.iter().zip(list.as_array().expect("list")) {
        let mut without = e.clone();
        let id = without
            .as_object_mut()
            .and_then(|o| o.remove("id"))
            .expect("id");
        assert!(id.as_u64().is_some_and(|i| i < (1 << 27)), "id {id}");
        assert_eq!(&without, sent, "entry echoed unchanged");
    }
    let ids: Vec<Value> = echoed.iter().map(|e| e["id"].clone()).collect();
    subscribed(&mut ws).await;

    c.batch_execute("insert into rt_open values (1, 'hello', true, 12.50)")
        .await
        .expect("insert");
    let f = next_change(&mut ws).await;
    assert_eq!(
        (f.join_ref.clone(), f.msg_ref.clone()),
        (Value::Null, Value::Null)
    );
    let mut got_ids: Vec<Value> = f.payload["ids"].as_array().expect("ids").clone();
    got_ids.sort_by_key(|v| v.as_u64());
    let mut want = vec![ids[0].clone(), ids[1].clone()];
    want.sort_by_key(|v| v.as_u64());
    assert_eq!(got_ids, want);
    let d = &f.payload["data"];
    assert_eq!(d["type"], "INSERT");
    assert_eq!(d["schema"], "public");
    assert_eq!(d["table"], "rt_open");
    assert_eq!(d["errors"], Value::Null);
    assert_eq!(
        d["record"],
        json!({"id": 1, "v": "hello", "flag": true, "price": 12.50})
    );
    assert!(d.get("old_record").is_none());
    assert_eq!(
        d["columns"],
        json!([{"name":"id","type":"int4"},{"name":"v","type":"text"},{"name":"flag","type":"bool"},{"name":"price","type":"numeric"}])
    );
    let ts = d["commit_timestamp"].as_str().expect("timestamp");
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");

    c.batch_execute("insert into rt_open values (2, 'x', null, null)")
        .await
        .expect("insert");
    let f = next_change(&mut ws).await;
    assert_eq!(f.payload["ids"], json!([ids[0]]));
    assert_eq!(f.payload["data"]["record"]["flag"], Value::Null);

    c.batch_execute("update rt_open set v = 'hello' where id = 2")
        .await
        .expect("update");
    let f = next_change(&mut ws).await;
    let d = &f.payload["data"];
    assert_eq!(d["type"], "UPDATE");
    let mut got: Vec<u64> = f.payload["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    got.sort();
    let mut want: Vec<u64> = vec![ids[0].as_u64().unwrap_or(0), ids[2].as_u64().unwrap_or(0)];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        d["old_record"],
        json!({"id": 2, "v": "x", "flag": null, "price": null})
    );
    assert_eq!(d["record"]["v"], "hello");

    c.batch_execute("delete from rt_open where id = 1")
        .await
        .expect("delete");
    let f = next_change(&mut ws).await;
    assert_eq!(f.payload["ids"], json!([ids[0]]));
    let d = &f.payload["data"];
    assert_eq!(d["type"], "DELETE");
    assert!(d.get("record").is_none());
    assert_eq!(d["old_record"]["v"], "hello");
    c.batch_execute("delete from rt_open where id = 2")
        .await
        .expect("delete");
    let f = next_change(&mut ws).await;
    let mut got: Vec<u64> = f.payload["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    got.sort();
    let mut want: Vec<u64> = vec![ids[0].as_u64().unwrap_or(0), ids[3].as_u64().unwrap_or(0)];
    want.sort();
    assert_eq!(got, want);
    // Unpublished tables produce nothing: the next event is the one on rt_open.
    c.batch_execute(
        "insert into rt_unpublished values (1); insert into rt_open values (3, 'z', false, 1)",
    )
    .await
    .expect("inserts");
    let f = next_change(&mut ws).await;
    assert_eq!(f.payload["data"]["table"], "rt_open");
    assert_eq!(f.payload["data"]["record"]["id"], 3);
    stack.shutdown().await;
}

#[tokio::test]
async fn postgres_changes_v1_and_bad_subscriptions() {
    let stack = Stack::for_tests().await.expect("stack");
    let c = setup_tables(&stack).await;
    let mut ws = Ws::connect(&stack, stack.service_role_key(), "1.0.0").await;
    ws.join_ok(
        "realtime:a",
        pg_config(
            json!([{"event":"INSERT","schema":"public","table":"rt_open","filter":"id=like.1"}]),
        ),
    )
    .await;
    let f = ws.expect("system", |f| f.event == "system").await;
    assert_eq!(f.payload["status"], "error");
    assert!(
        f.payload["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Error parsing `filter` params"),
        "{:?}",
        f.payload
    );
    ws.join_ok(
        "realtime:b",
        pg_config(json!([{"event":"INSERT","schema":"public","table":"rt_unpublished"}])),
    )
    .await;
    let f = ws.expect("system", |f| f.event == "system").await;
    assert_eq!(f.payload["status"], "error");
    assert!(f.payload["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Unable to subscribe to changes with given parameters."));
    ws.join_ok(
        "realtime:c",
        pg_config(
            json!([{"event":"INSERT","schema":"public","table":"rt_open","filter":"nope=eq.1"}]),
        ),
    )
    .await;
    let f = ws.expect("system", |f| f.event == "system").await;
    assert!(
        f.payload["message"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid column for filter nope"),
        "{:?}",
        f.payload
    );
    ws.join_ok(
        "realtime:d",
        pg_config(
            json!([{"event":"INSERT","schema":"public","table":"rt_open","filter":"id=eq.abc"}]),
        ),
    )
    .await;
    let f = ws.expect("system", |f| f.event == "system").await;
    assert_eq!(f.payload["status"], "error");
    // The channel stays joined and a valid subscription on V1 works.
    ws.join_ok(
        "realtime:e",
        pg_config(json!([{"event":"INSERT","schema":"public"}])),
    )
    .await;
    subscribed(&mut ws).await;
    c.batch_execute("insert into rt_open values (7, 'v1', true, 1)")
        .await
        .expect("insert");
    let f = next_change(&mut ws).await;
    assert_eq!(f.topic, "realtime:e");
    assert_eq!(f.payload["data"]["record"]["v"], "v1");
    stack.shutdown().await;
}

#[tokio::test]
async fn postgres_changes_respect_rls() {
    let stack = Stack::for_tests().await.expect("stack");
    let c = setup_tables(&stack).await;
    let alice = "11111111-1111-1111-1111-111111111111";
    let bob = "22222222-2222-2222-2222-222222222222";
    let sub = json!([{"event": "*", "schema": "public", "table": "rt_items"}]);
    let mut wa = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let (_, r) = wa
        .join("realtime:items", json!({"config": pg_config(sub.clone()), "access_token": stack.user_token(alice, None)}))
        .await;
    assert_eq!(r.payload["status"], "ok");
    subscribed(&mut wa).await;
    let mut wanon = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    wanon
        .join_ok("realtime:items", pg_config(sub.clone()))
        .await;
    subscribed(&mut wanon).await;
    let mut wsvc = Ws::connect(&stack, stack.service_role_key(), "1.0.0").await;
    wsvc.join_ok("realtime:items", pg_config(sub.clone())).await;
    subscribed(&mut wsvc).await;

    c.execute("insert into rt_items (owner, body, tags, meta) values ($1::text::uuid, 'for bob', '{a,b}', '{\"k\": [1]}')", &[&bob]).await.expect("insert");
    c.execute(
        "insert into rt_items (owner, body, n) values ($1::text::uuid, 'for alice', 5)",
        &[&alice],
    )
    .await
    .expect("insert");
    // Alice's first event is her own row (bob's was withheld).
    let f = next_change(&mut wa).await;
    assert_eq!(f.payload["data"]["record"]["body"], "for alice");
    assert_eq!(f.payload["data"]["record"]["owner"], alice);
    // service_role (BYPASSRLS) sees both, in order; values are to_jsonb-typed.
    let f = next_change(&mut wsvc).await;
    let rec = &f.payload["data"]["record"];
    assert_eq!(rec["body"], "for bob");
    assert_eq!(rec["tags"], json!(["a", "b"]));
    assert_eq!(rec["meta"], json!({"k": [1]}));
    assert!(
        rec["at"].as_str().unwrap_or_default().contains('T'),
        "timestamptz as ISO: {rec}"
    );
    let f = next_change(&mut wsvc).await;
    assert_eq!(f.payload["data"]["record"]["body"], "for alice");
    // Updates are RLS-checked too; deletes are not but carry only the primary key.
    c.execute(
        "update rt_items set n = 6 where owner = $1::text::uuid",
        &[&alice],
    )
    .await
    .expect("update");
    let f = next_change(&mut wa).await;
    assert_eq!(f.payload["data"]["type"], "UPDATE");
    assert_eq!(f.payload["data"]["old_record"]["n"], 5);
    assert_eq!(f.payload["data"]["record"]["n"], 6);
    c.execute("delete from rt_items where owner = $1::text::uuid", &[&bob])
        .await
        .expect("delete");
    let f = next_change(&mut wa).await;
    assert_eq!(f.payload["data"]["type"], "DELETE");
    let old = f.payload["data"]["old_record"]
        .as_object()
        .expect("old")
        .clone();
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        vec!["id"],
        "RLS table: DELETE old_record is PK only"
    );
    // anon can select no rows: its first event is the DELETE.
    let f = next_change(&mut wanon).await;
    assert_eq!(f.payload["data"]["type"], "DELETE");
    stack.shutdown().await;
}

#[tokio::test]
async fn postgres_changes_latency_median_is_small() {
    let stack = Stack::for_tests().await.expect("stack");
    let c = setup_tables(&stack).await;
    let mut ws = Ws::connect(&stack, stack.service_role_key(), "2.0.0").await;
    ws.join_ok(
        "realtime:lat",
        pg_config(json!([{"event":"INSERT","schema":"public","table":"rt_open"}])),
    )
    .await;
    subscribed(&mut ws).await;
    let mut lat = Vec::new();
    for i in 0..40 {
        let t0 = Instant::now();
        c.execute(
            "insert into rt_open values ($1, 'l', true, 1)",
            &[&(100 + i)],
        )
        .await
        .expect("insert");
        let f = next_change(&mut ws).await;
        lat.push(t0.elapsed());
        assert_eq!(f.payload["data"]["record"]["id"], 100 + i);
    }
    lat.sort();
    let median = lat[lat.len() / 2];
    eprintln!(
        "postgres_changes latency: median {median:?}, max {:?}",
        lat[lat.len() - 1]
    );
    assert!(
        median < Duration::from_millis(100),
        "median latency {median:?}"
    );
    // Through the REST API (what the chat client does): request sent to event received.
    let key = stack.service_role_key().to_string();
    let auth = format!("Bearer {key}");
    let mut lat = Vec::new();
    for i in 0..20 {
        let body = json!({"id": 500 + i, "v": "rest", "flag": true, "price": 1}).to_string();
        let t0 = Instant::now();
        let (status, resp) = http(
            stack.port(),
            "POST",
            "/rest/v1/rt_open",
            &[
                ("apikey", &key),
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await;
        assert_eq!(status, 201, "REST insert: {resp}");
        let f = next_change(&mut ws).await;
        lat.push(t0.elapsed());
        assert_eq!(f.payload["data"]["record"]["id"], 500 + i);
    }
    lat.sort();
    let median = lat[lat.len() / 2];
    eprintln!("REST insert to event: median {median:?}");
    assert!(
        median < Duration::from_millis(100),
        "median latency {median:?}"
    );
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Presence

#[tokio::test]
async fn presence_state_diffs_and_leaves() {
    let stack = Stack::for_tests().await.expect("stack");
    let topic = "realtime:lobby";
    let mut a = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let ja = a
        .join_ok(
            topic,
            config(json!({"presence": {"key": "alice", "enabled": true}})),
        )
        .await;
    let st = a
        .expect("presence_state", |f| f.event == "presence_state")
        .await;
    assert_eq!(st.payload, json!({}));
    assert_eq!(st.join_ref, json!(ja));
    let r = a
        .push(
            Some(&ja),
            topic,
            "presence",
            json!({"type":"presence","event":"track","payload":{"status":"online"}}),
        )
        .await;
    assert_eq!(
        a.reply_to(&r).await.payload,
        json!({"status":"ok","response":{}})
    );
    let d = a.expect("own diff", |f| f.event == "presence_diff").await;
    let ref1 = d.payload["joins"]["alice"]["metas"][0]["phx_ref"].clone();
    assert!(ref1.is_string());
    assert_eq!(d.payload["joins"]["alice"]["metas"][0]["status"], "online");
    assert_eq!(d.payload["leaves"], json!({}));

    let mut b = Ws::connect(&stack, stack.anon_key(), "1.0.0").await;
    let jb = b
        .join_ok(
            topic,
            config(json!({"presence": {"key": "", "enabled": true}})),
        )
        .await;
    let st = b
        .expect("presence_state", |f| f.event == "presence_state")
        .await;
    assert_eq!(st.payload["alice"]["metas"][0]["phx_ref"], ref1);
    // Update: leave of the old meta + join with phx_ref_prev.
    let r = a
        .push(
            Some(&ja),
            topic,
            "presence",
            json!({"type":"presence","event":"TRACK","payload":{"status":"away"}}),
        )
        .await;
    a.reply_to(&r).await;
    let d = b
        .expect("update diff", |f| f.event == "presence_diff")
        .await;
    assert_eq!(d.payload["leaves"]["alice"]["metas"][0]["phx_ref"], ref1);
    assert_eq!(
        d.payload["joins"]["alice"]["metas"][0]["phx_ref_prev"],
        ref1
    );
    assert_eq!(d.payload["joins"]["alice"]["metas"][0]["status"], "away");
    // b tracks with a generated key.
    let r = b
        .push(
            Some(&jb),
            topic,
            "presence",
            json!({"type":"presence","event":"track","payload":{"n":1}}),
        )
        .await;
    b.reply_to(&r).await;
    let d = a
        .expect("b joins", |f| {
            f.event == "presence_diff"
                && f.payload["joins"]
                    .as_object()
                    .is_some_and(|o| !o.contains_key("alice"))
        })
        .await;
    let bkey = d.payload["joins"]
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .expect("key");
    assert!(!bkey.is_empty());
    // Bad track payload.
    let r = b
        .push(
            Some(&jb),
            topic,
            "presence",
            json!({"type":"presence","event":"track","payload":"x"}),
        )
        .await;
    assert_eq!(
        b.reply_to(&r).await.payload["response"]["reason"],
        "Presence track payload must be a map"
    );
    // Untrack: a leave diff.
    let r = b
        .push(
            Some(&jb),
            topic,
            "presence",
            json!({"type":"presence","event":"untrack"}),
        )
        .await;
    b.reply_to(&r).await;
    let d = a
        .expect("b leaves", |f| {
            f.event == "presence_diff" && f.payload["leaves"].get(&bkey).is_some()
        })
        .await;
    assert_eq!(d.payload["joins"], json!({}));
    // Socket close: everyone else gets alice's leave.
    drop(a);
    let d = b
        .expect("alice leaves", |f| {
            f.event == "presence_diff" && f.payload["leaves"].get("alice").is_some()
        })
        .await;
    assert_eq!(d.payload["leaves"]["alice"]["metas"][0]["status"], "away");
    // Channel leave does the same.
    let mut c = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let jc = c
        .join_ok(
            topic,
            config(json!({"presence": {"key": "carol", "enabled": true}})),
        )
        .await;
    let r = c
        .push(
            Some(&jc),
            topic,
            "presence",
            json!({"type":"presence","event":"track","payload":{}}),
        )
        .await;
    c.reply_to(&r).await;
    b.expect("carol joins", |f| {
        f.event == "presence_diff" && f.payload["joins"].get("carol").is_some()
    })
    .await;
    c.push(Some(&jc), topic, "phx_leave", json!({})).await;
    b.expect("carol leaves", |f| {
        f.event == "presence_diff" && f.payload["leaves"].get("carol").is_some()
    })
    .await;
    stack.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. access_token, fault switches, restart survival, idle close

#[tokio::test]
async fn access_token_refresh_and_invalid_token_close_the_channel() {
    let stack = Stack::for_tests().await.expect("stack");
    let c = setup_tables(&stack).await;
    let alice = "11111111-1111-1111-1111-111111111111";
    let mut ws = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let topic = "realtime:tok";
    let (jr, r) = ws
        .join(topic, json!({"config": pg_config(json!([{"event":"INSERT","schema":"public","table":"rt_items"}]))}))
        .await;
    assert_eq!(r.payload["status"], "ok");
    subscribed(&mut ws).await;
    // As anon, alice's rows are invisible; after the token refresh they arrive. No reply.
    let r = ws
        .push(
            Some(&jr),
            topic,
            "access_token",
            json!({"access_token": stack.user_token(alice, None)}),
        )
        .await;
    subscribed(&mut ws).await;
    c.execute(
        "insert into rt_items (owner, body) values ($1::text::uuid, 'now visible')",
        &[&alice],
    )
    .await
    .expect("insert");
    let f = ws
        .expect("change", |f| {
            f.event == "postgres_changes" || (f.event == "phx_reply" && f.msg_ref == json!(r))
        })
        .await;
    assert_eq!(f.event, "postgres_changes", "access_token gets no reply");
    assert_eq!(f.payload["data"]["record"]["body"], "now visible");
    // An invalid token closes the channel with a system error; the socket stays.
    ws.push(
        Some(&jr),
        topic,
        "access_token",
        json!({"access_token": "garbage"}),
    )
    .await;
    let f = ws.expect("system error", |f| f.event == "system").await;
    assert_eq!(
        f.payload,
        json!({"extension":"system","status":"error","message":"The token provided is not a valid JWT","channel":"tok"})
    );
    let f = ws.expect("phx_close", |f| f.event == "phx_close").await;
    assert_eq!(f.join_ref, json!(jr));
    ws.heartbeat_roundtrip().await;
    // Expired token on refresh.
    let jr = ws.join_ok(topic, config(json!({}))).await;
    let expired = jwt::sign_role("authenticated", -10, jwt::Claims::new(), stack.jwt_secret());
    ws.push(
        Some(&jr),
        topic,
        "access_token",
        json!({"access_token": expired}),
    )
    .await;
    let f = ws.expect("system error", |f| f.event == "system").await;
    assert!(f.payload["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Token has expired "));
    ws.expect("phx_close", |f| f.event == "phx_close").await;
    stack.shutdown().await;
}

#[tokio::test]
async fn channel_closes_when_its_token_expires() {
    let stack = Stack::for_tests().await.expect("stack");
    let short = jwt::sign_role("authenticated", 2, jwt::Claims::new(), stack.jwt_secret());
    let mut ws = Ws::connect(&stack, stack.anon_key(), "1.0.0").await;
    let (jr, r) = ws
        .join(
            "realtime:exp",
            json!({"config": config(json!({})), "access_token": short}),
        )
        .await;
    assert_eq!(r.payload["status"], "ok");
    let f = ws.expect("system error", |f| f.event == "system").await;
    assert_eq!(f.payload["status"], "error");
    assert!(
        f.payload["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Token has expired "),
        "{:?}",
        f.payload
    );
    let f = ws.expect("phx_close", |f| f.event == "phx_close").await;
    assert_eq!(f.msg_ref, json!(jr));
    ws.heartbeat_roundtrip().await;
    stack.shutdown().await;
}

#[tokio::test]
async fn fault_switches_drop_and_refuse_connections() {
    let stack = Stack::for_tests().await.expect("stack");
    let handle = stack.realtime().expect("realtime handle").clone();
    let mut a = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let mut b = Ws::connect(&stack, stack.anon_key(), "1.0.0").await;
    a.heartbeat_roundtrip().await;
    b.heartbeat_roundtrip().await;
    handle.drop_all_connections();
    assert_eq!(a.expect_closed().await, None, "no close frame");
    assert_eq!(b.expect_closed().await, None, "no close frame");
    handle.refuse_connections_for(Duration::from_secs(2));
    let q = format!("apikey={}&vsn=2.0.0", stack.anon_key());
    match tokio_tungstenite::connect_async(ws_url(&stack, &q)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        other => panic!("expected refusal, got {:?}", other.map(|_| ())),
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        match tokio_tungstenite::connect_async(ws_url(&stack, &q)).await {
            Ok((ws, _)) => {
                let mut ws = Ws { ws, v2: true, n: 0 };
                ws.heartbeat_roundtrip().await;
                break;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("connections still refused: {e}"),
        }
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn idle_sockets_are_closed() {
    let stack = Stack::for_tests().await.expect("stack");
    let handle = stack.realtime().expect("realtime handle").clone();
    handle.set_idle_timeout(Duration::from_millis(700));
    let mut ws = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    ws.heartbeat_roundtrip().await;
    let t0 = Instant::now();
    ws.expect_closed().await;
    assert!(t0.elapsed() >= Duration::from_millis(500));
    stack.shutdown().await;
}

#[tokio::test]
async fn capture_survives_a_postgres_restart_and_slot_is_dropped() {
    let stack = Stack::start(StackOptions::ephemeral())
        .await
        .expect("own stack");
    let c = setup_tables(&stack).await;
    let slot = stack.realtime().and_then(|h| h.slot_name()).expect("slot");
    let mut ws = Ws::connect(&stack, stack.service_role_key(), "2.0.0").await;
    let jr = ws
        .join_ok(
            "realtime:r",
            pg_config(json!([{"event":"INSERT","schema":"public","table":"rt_open"}])),
        )
        .await;
    subscribed(&mut ws).await;
    c.batch_execute("insert into rt_open values (1, 'before', true, 1)")
        .await
        .expect("insert");
    assert_eq!(
        next_change(&mut ws).await.payload["data"]["record"]["v"],
        "before"
    );
    drop(c);
    stack.restart_postgres().await.expect("restart");
    let c = db(&stack).await;
    c.batch_execute("insert into rt_open values (2, 'after', true, 1)")
        .await
        .expect("insert");
    let f = next_change(&mut ws).await;
    assert_eq!(f.payload["data"]["record"]["v"], "after");
    let _ = jr;
    let n: i64 = c
        .query_one(
            "select count(*) from pg_replication_slots where slot_name = $1",
            &[&slot],
        )
        .await
        .expect("slots")
        .get(0);
    assert_eq!(n, 1, "the slot is kept across the restart");
    stack.realtime().expect("handle").shutdown().await;
    let n: i64 = c
        .query_one(
            "select count(*) from pg_replication_slots where slot_name = $1",
            &[&slot],
        )
        .await
        .expect("slots")
        .get(0);
    assert_eq!(n, 0, "shutdown drops the slot");
    stack.shutdown().await;
}

#[tokio::test]
async fn databases_do_not_leak_into_each_other() {
    let s1 = Stack::for_tests().await.expect("stack 1");
    let s2 = Stack::for_tests().await.expect("stack 2");
    let c1 = setup_tables(&s1).await;
    let c2 = setup_tables(&s2).await;
    let slot1 = s1.realtime().and_then(|h| h.slot_name()).expect("slot");
    let slot2 = s2.realtime().and_then(|h| h.slot_name()).expect("slot");
    assert_ne!(slot1, slot2);
    let mut w2 = Ws::connect(&s2, s2.service_role_key(), "2.0.0").await;
    w2.join_ok(
        "realtime:same",
        pg_config(json!([{"event":"*","schema":"public","table":"rt_open"}])),
    )
    .await;
    subscribed(&mut w2).await;
    let mut w1 = Ws::connect(&s1, s1.anon_key(), "2.0.0").await;
    w1.join_ok("realtime:same", config(json!({}))).await;
    // Same topic name on another server: broadcasts stay there.
    let key = s1.anon_key().to_string();
    let body = json!({"messages":[{"topic":"same","event":"e","payload":{"from":1}}]}).to_string();
    http(
        s1.port(),
        "POST",
        "/realtime/v1/api/broadcast",
        &[("apikey", &key), ("content-type", "application/json")],
        body.as_bytes(),
    )
    .await;
    w1.next_relevant("broadcast on s1").await;
    c1.batch_execute("insert into rt_open values (1, 'db1', true, 1)")
        .await
        .expect("insert");
    c2.batch_execute("insert into rt_open values (2, 'db2', true, 1)")
        .await
        .expect("insert");
    let f = w2.next_relevant("change on s2").await;
    assert_eq!(
        f.event, "postgres_changes",
        "the broadcast of s1 did not reach s2"
    );
    assert_eq!(
        f.payload["data"]["record"]["v"], "db2",
        "s1's change did not reach s2"
    );
    s1.shutdown().await;
    let n: i64 = c2
        .query_one(
            "select count(*) from pg_replication_slots where slot_name = $1",
            &[&slot1],
        )
        .await
        .expect("slots")
        .get(0);
    assert_eq!(n, 0);
    s2.shutdown().await;
}

#[tokio::test]
async fn a_private_channel_that_cannot_be_checked_is_refused() {
    let stack = Stack::for_tests().await.expect("stack");
    // Policies that would let everyone in, then no table to check them on.
    db(&stack)
        .await
        .batch_execute(
            "create policy rt_all on realtime.messages for select using (true);
             drop table realtime.messages;",
        )
        .await
        .expect("dropping realtime.messages");
    let user = stack.user_token("c0000000-0000-4000-8000-0000000000aa", None);
    let mut ws = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let mut c = config(json!({}));
    c["private"] = json!(true);
    let (_, f) = ws
        .join("realtime:any", json!({"config": c, "access_token": user}))
        .await;
    assert_eq!(f.payload["status"], "error", "{f:?}");
    let reason = f.payload["response"]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("Unauthorized"), "{reason}");
    // A public channel does not need the table.
    let (_, f) = ws
        .join("realtime:open", json!({"config": config(json!({}))}))
        .await;
    assert_eq!(f.payload["status"], "ok", "{f:?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn private_channels_check_the_write_policy_for_broadcasts_and_tracks() {
    let stack = Stack::for_tests().await.expect("stack");
    db(&stack)
        .await
        .batch_execute(
            "create policy rt_read on realtime.messages for select to authenticated
               using (realtime.topic() in ('ro', 'rw', 'po'));
             create policy rt_write on realtime.messages for insert to authenticated
               with check (realtime.topic() = 'rw');
             create policy rt_track on realtime.messages for insert to authenticated
               with check (realtime.topic() = 'po' and extension = 'presence');",
        )
        .await
        .expect("policies");
    let user = stack.user_token("c0000000-0000-4000-8000-0000000000aa", None);
    let private = |extra: Value| {
        let mut c = config(extra);
        c["private"] = json!(true);
        json!({"config": c, "access_token": user})
    };
    let mut reader = Ws::connect(&stack, stack.anon_key(), "2.0.0").await;
    let mut listener = Ws::connect(&stack, stack.anon_key(), "1.0.0").await;
    let mut service = Ws::connect(&stack, stack.service_role_key(), "1.0.0").await;
    let ack = json!({"broadcast": {"ack": true, "self": false}});
    let jr = join_ok_with(&mut reader, "realtime:ro", private(ack.clone())).await;
    join_ok_with(&mut listener, "realtime:ro", private(json!({}))).await;
    let mut c = config(ack.clone());
    c["private"] = json!(true);
    let js = join_ok_with(&mut service, "realtime:ro", json!({ "config": c })).await;

    // Read but no write: a text and a binary broadcast are dropped without a reply, even with
    // ack on (the heartbeat's reply comes first), and reach nobody (the service role's later
    // broadcast is the first the listener gets).
    let dropped = reader
        .push(
            Some(&jr),
            "realtime:ro",
            "broadcast",
            json!({"type": "broadcast", "event": "typing", "payload": {"n": 1}}),
        )
        .await;
    let r = reader.next_ref();
    reader
        .send_raw(Message::Binary(
            kind3(&jr, &r, "realtime:ro", "typing", true, br#"{"n":2}"#).into(),
        ))
        .await;
    let hb = reader.push(None, "phoenix", "heartbeat", json!({})).await;
    let first_reply = reader.expect("a reply", |f| f.event == "phx_reply").await;
    assert_eq!(
        first_reply.msg_ref,
        json!(hb),
        "no reply to the dropped broadcasts ({dropped}, {r})"
    );
    let allowed = json!({"type": "broadcast", "event": "typing", "payload": {"n": 3}});
    let r = service
        .push(Some(&js), "realtime:ro", "broadcast", allowed.clone())
        .await;
    service.reply_to(&r).await;
    let got = listener.next_relevant("the service role's broadcast").await;
    assert_eq!(got.payload, allowed);
    // Tracking presence needs write too: an error reply with an empty response.
    let r = reader
        .push(
            Some(&jr),
            "realtime:ro",
            "presence",
            json!({"type": "presence", "event": "track", "payload": {"a": 1}}),
        )
        .await;
    let f = reader.reply_to(&r).await;
    assert_eq!(f.payload, json!({"status": "error", "response": {}}));

    // Read and write: broadcasts are acknowledged and relayed, tracking works.
    let jw = join_ok_with(&mut reader, "realtime:rw", private(ack)).await;
    join_ok_with(&mut listener, "realtime:rw", private(json!({}))).await;
    let p = json!({"type": "broadcast", "event": "typing", "payload": {"n": 4}});
    let r = reader
        .push(Some(&jw), "realtime:rw", "broadcast", p.clone())
        .await;
    assert_eq!(reader.reply_to(&r).await.payload["status"], "ok");
    assert_eq!(listener.next_relevant("allowed broadcast").await.payload, p);
    let r = reader
        .push(
            Some(&jw),
            "realtime:rw",
            "presence",
            json!({"type": "presence", "event": "track", "payload": {"a": 1}}),
        )
        .await;
    assert_eq!(
        reader.reply_to(&r).await.payload,
        json!({"status": "ok", "response": {}})
    );

    // Write checks are per extension: presence may be written on 'po', broadcasts may not.
    let jp = join_ok_with(
        &mut reader,
        "realtime:po",
        private(json!({"broadcast": {"ack": true, "self": false}})),
    )
    .await;
    let r = reader
        .push(
            Some(&jp),
            "realtime:po",
            "presence",
            json!({"type": "presence", "event": "track", "payload": {"a": 2}}),
        )
        .await;
    assert_eq!(
        reader.reply_to(&r).await.payload,
        json!({"status": "ok", "response": {}})
    );
    let dropped = reader
        .push(
            Some(&jp),
            "realtime:po",
            "broadcast",
            json!({"type": "broadcast", "event": "typing", "payload": {}}),
        )
        .await;
    let hb = reader.push(None, "phoenix", "heartbeat", json!({})).await;
    let first = reader.expect("a reply", |f| f.event == "phx_reply").await;
    assert_eq!(first.msg_ref, json!(hb), "no reply to {dropped}");

    // A token refresh is authorized again: the anon key may not read 'rw', so the channel is
    // closed with a system error (the socket stays up).
    reader
        .push(
            Some(&jw),
            "realtime:rw",
            "access_token",
            json!({"access_token": stack.anon_key()}),
        )
        .await;
    let sys = reader
        .expect("system error on rw", |f| {
            f.event == "system" && f.topic == "realtime:rw"
        })
        .await;
    assert_eq!(sys.payload["status"], "error", "{sys:?}");
    assert!(
        sys.payload["message"]
            .as_str()
            .is_some_and(|m| m.contains("Unauthorized")),
        "{sys:?}"
    );
    reader
        .expect("phx_close of rw", |f| {
            f.event == "phx_close" && f.topic == "realtime:rw"
        })
        .await;
    // The socket stays up.
    reader.heartbeat_roundtrip().await;
    stack.shutdown().await;
}
