//! Deterministic tests of the realtime client against an in-process fake server, with paused
//! time: heartbeats, reconnects, close codes, join errors, stale refs, token rotation, slow
//! consumers, presence sequences, malformed input.

use crate::realtime_support;

use bytes::Bytes;
use futures::StreamExt;
use livechat::realtime::serializer::{Frame, FramePayload};
use livechat::realtime::{
    Broadcast, BroadcastPayload, Channel, ChannelConfig, ChannelEvent, ChannelStatus,
    ConnectionState, DisconnectReason, ErrorClass, ErrorKind, EventFilter, HeartbeatEvent,
    PostgresChangeEvent, PostgresChangesFilter, PresenceEvent, Protocol, RealtimeClient,
};
use realtime_support::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const BOTH: [Protocol; 2] = [Protocol::V1, Protocol::V2];

/// Subscribes `ch` on `conn`: accepts the join (and confirms postgres_changes if asked for)
/// and returns the join frame.
async fn join(conn: &mut Conn, ch: &Channel) -> Frame {
    let c = ch.clone();
    let task = tokio::spawn(async move { c.subscribe().await });
    let join = conn.recv_event("phx_join").await;
    assert_eq!(join.topic, ch.topic());
    conn.accept_join(&join);
    if payload(&join)["config"]["postgres_changes"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        conn.system(&join, "postgres_changes", "ok", "Subscribed to PostgreSQL");
    }
    task.await.unwrap().unwrap();
    assert_eq!(ch.status(), ChannelStatus::Subscribed);
    join
}

/// A token callback whose answer the test changes, counting its calls.
fn token_source(initial: &str) -> (Arc<Mutex<String>>, Arc<AtomicUsize>) {
    (
        Arc::new(Mutex::new(initial.to_string())),
        Arc::new(AtomicUsize::new(0)),
    )
}

fn with_tokens(
    server: &FakeServer,
    token: &Arc<Mutex<String>>,
    calls: &Arc<AtomicUsize>,
) -> RealtimeClient {
    let (t, c) = (token.clone(), calls.clone());
    server
        .options()
        .access_token(move || {
            let t = t.lock().unwrap().clone();
            c.fetch_add(1, Ordering::SeqCst);
            async move { Some(t) }
        })
        .build()
        .unwrap()
}

fn pg_config() -> ChannelConfig {
    ChannelConfig::new().postgres_changes(
        PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public")
            .table("messages")
            .filter("conversation_id=eq.1"),
    )
}

fn broadcast_frame(join_ref: Option<&str>, topic: &str, event: &str, n: u64) -> Frame {
    Frame {
        join_ref: join_ref.map(str::to_string),
        msg_ref: None,
        topic: topic.into(),
        event: "broadcast".into(),
        payload: FramePayload::Json(
            json!({"type": "broadcast", "event": event, "payload": {"n": n}}),
        ),
    }
}

fn broadcast_n(ev: &ChannelEvent) -> Option<u64> {
    match ev {
        ChannelEvent::Broadcast(Broadcast {
            payload: BroadcastPayload::Json(v),
            ..
        }) => v["n"].as_u64(),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn subscribed_only_after_join_reply_and_postgres_confirmation() {
    init_tracing();
    for protocol in BOTH {
        let mut server = FakeServer::start(protocol).await;
        let (token, calls) = token_source("tok-1");
        let client = with_tokens(&server, &token, &calls);
        let config = pg_config()
            .presence_key("me")
            .broadcast_self(true)
            .private(true);
        let ch = client.channel("room", config).await.unwrap();
        let c = ch.clone();
        let sub = tokio::spawn(async move { c.subscribe().await });
        let mut conn = server.accept().await;
        assert!(
            conn.uri.starts_with("/realtime/v1/websocket?"),
            "{}",
            conn.uri
        );
        assert!(conn.uri.contains("apikey=anon-key"));
        assert!(conn.uri.contains(&format!("vsn={}", protocol.vsn())));
        let j = conn.recv_event("phx_join").await;
        assert_eq!(j.topic, "realtime:room");
        assert!(j.join_ref.is_some());
        assert_eq!(j.join_ref, j.msg_ref);
        assert_eq!(
            payload(&j),
            &json!({
                "config": {
                    "broadcast": {"ack": false, "self": true},
                    "presence": {"key": "me", "enabled": true},
                    "postgres_changes": [{"event": "INSERT", "schema": "public", "table": "messages", "filter": "conversation_id=eq.1"}],
                    "private": true
                },
                "access_token": "tok-1"
            })
        );
        conn.accept_join(&j);
        wait_status(&ch, |s| *s == ChannelStatus::Joined).await;
        tokio::task::yield_now().await;
        assert!(
            !sub.is_finished(),
            "subscribed before the postgres confirmation"
        );
        conn.system(&j, "postgres_changes", "ok", "Subscribed to PostgreSQL");
        sub.await.unwrap().unwrap();
        assert_eq!(ch.status(), ChannelStatus::Subscribed);
        assert!(
            calls.load(Ordering::SeqCst) >= 1,
            "token callback not consulted before the join"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn missing_postgres_confirmation_times_out_and_rejoins() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let client = server.options().build().unwrap();
    let ch = client.channel("room", pg_config()).await.unwrap();
    let c = ch.clone();
    let sub = tokio::spawn(async move { c.subscribe().await });
    let mut conn = server.accept().await;
    let j1 = conn.recv_event("phx_join").await;
    conn.accept_join(&j1);
    let err = sub.await.unwrap().unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retry);
    let leave = conn.recv().await;
    assert_eq!(leave.event, "phx_leave");
    assert_eq!(leave.join_ref, j1.join_ref);
    let j2 = conn.recv_event("phx_join").await;
    assert_ne!(j2.join_ref, j1.join_ref);
    assert_eq!(payload(&j2), payload(&j1));
    let c = ch.clone();
    let sub = tokio::spawn(async move { c.subscribe().await });
    conn.accept_join(&j2);
    conn.system(&j2, "postgres_changes", "ok", "Subscribed to PostgreSQL");
    sub.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn missing_heartbeat_reply_replaces_the_connection_and_rejoins() {
    init_tracing();
    for protocol in BOTH {
        let mut server = FakeServer::start(protocol).await;
        let (token, calls) = token_source("tok-1");
        let client = with_tokens(&server, &token, &calls);
        let mut heartbeats = client.heartbeats().await.unwrap();
        let config = pg_config().presence_key("me");
        let ch = client.channel("room", config).await.unwrap();
        let mut events = ch.on(EventFilter::broadcast("*")).await.unwrap();
        let c = ch.clone();
        tokio::spawn(async move { c.subscribe().await });
        let mut conn1 = server.accept().await;
        let j1 = conn1.recv_event("phx_join").await;
        conn1.accept_join(&j1);
        conn1.system(&j1, "postgres_changes", "ok", "Subscribed to PostgreSQL");
        wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
        assert_eq!(heartbeats.next().await, Some(HeartbeatEvent::Sent));
        assert!(matches!(
            heartbeats.next().await,
            Some(HeartbeatEvent::Ok { .. })
        ));

        conn1.answer_heartbeats(false);
        *token.lock().unwrap() = "tok-2".into();
        let state = wait_state(&client, |s| {
            matches!(s, ConnectionState::Reconnecting { .. })
        })
        .await;
        assert_eq!(
            state,
            ConnectionState::Reconnecting {
                attempt: 1,
                reason: DisconnectReason::HeartbeatTimeout
            }
        );
        assert_eq!(heartbeats.next().await, Some(HeartbeatEvent::Sent));
        assert_eq!(heartbeats.next().await, Some(HeartbeatEvent::Timeout));
        conn1.closed().await;

        let mut conn2 = server.accept().await;
        let j2 = conn2.recv_event("phx_join").await;
        assert_ne!(j2.join_ref, j1.join_ref);
        let mut expected = payload(&j1).clone();
        expected["access_token"] = json!("tok-2");
        assert_eq!(
            payload(&j2),
            &expected,
            "rejoin without the full payload and latest token"
        );
        conn2.accept_join(&j2);
        wait_status(&ch, |s| *s == ChannelStatus::Joined).await;
        conn2.system(&j2, "postgres_changes", "ok", "Subscribed to PostgreSQL");
        wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
        assert_eq!(client.connection_state(), ConnectionState::Connected);
        conn2.send(broadcast_frame(
            j2.join_ref.as_deref(),
            &j2.topic,
            "after",
            7,
        ));
        let ev = next_event(&mut events, |e| broadcast_n(e).is_some()).await;
        assert_eq!(broadcast_n(&ev), Some(7));
    }
}

#[tokio::test(start_paused = true)]
async fn retryable_close_codes_reconnect_and_rejoin() {
    init_tracing();
    for code in [1000u16, 1001, 1011, 1012, 1013, 4000] {
        let mut server = FakeServer::start(Protocol::V2).await;
        let client = server.options().build().unwrap();
        let ch = client.channel("room", ChannelConfig::new()).await.unwrap();
        let c = ch.clone();
        tokio::spawn(async move { c.subscribe().await });
        let mut conn = server.accept().await;
        let j1 = conn.recv_event("phx_join").await;
        conn.accept_join(&j1);
        wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
        conn.close(code, "bye");
        let st = wait_state(&client, |s| {
            matches!(s, ConnectionState::Reconnecting { .. })
        })
        .await;
        match st {
            ConnectionState::Reconnecting {
                attempt: 1,
                reason: DisconnectReason::Closed { code: c, reason },
            } => {
                assert_eq!(c, code);
                assert_eq!(reason, "bye");
            }
            other => panic!("{code}: {other:?}"),
        }
        assert!(matches!(ch.status(), ChannelStatus::Errored { .. }));
        let mut conn2 = server.accept().await;
        let j2 = conn2.recv_event("phx_join").await;
        conn2.accept_join(&j2);
        wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
        assert_eq!(client.connection_state(), ConnectionState::Connected);
    }
}

#[tokio::test(start_paused = true)]
async fn policy_violation_close_consults_the_token_callback_before_rejoining() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let (token, calls) = token_source("tok-1");
    let client = with_tokens(&server, &token, &calls);
    let ch = client.channel("room", ChannelConfig::new()).await.unwrap();
    let mut conn = server.accept_after_subscribe(&ch).await;
    let j1 = conn.recv_event("phx_join").await;
    conn.accept_join(&j1);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
    let before = calls.load(Ordering::SeqCst);
    *token.lock().unwrap() = "tok-fresh".into();
    conn.close(1008, "policy");
    let st = wait_state(&client, |s| {
        matches!(s, ConnectionState::Reconnecting { .. })
    })
    .await;
    assert!(matches!(
        st,
        ConnectionState::Reconnecting {
            reason: DisconnectReason::Closed { code: 1008, .. },
            ..
        }
    ));
    let mut conn2 = server.accept().await;
    let j2 = conn2.recv_event("phx_join").await;
    assert!(calls.load(Ordering::SeqCst) > before);
    assert_eq!(payload(&j2)["access_token"], json!("tok-fresh"));
}

impl FakeServer {
    async fn accept_after_subscribe(&mut self, ch: &Channel) -> Conn {
        let c = ch.clone();
        tokio::spawn(async move { c.subscribe().await });
        self.accept().await
    }
}

#[tokio::test(start_paused = true)]
async fn fatal_close_codes_and_refusals_stop_reconnecting() {
    init_tracing();
    // Protocol error close: fatal.
    let mut server = FakeServer::start(Protocol::V2).await;
    let client = server.options().build().unwrap();
    client.connect_in_background();
    let conn = server.accept().await;
    wait_state(&client, |s| *s == ConnectionState::Connected).await;
    conn.close(1002, "protocol error");
    let st = wait_state(&client, |s| matches!(s, ConnectionState::Failed { .. })).await;
    assert!(matches!(
        st,
        ConnectionState::Failed {
            reason: DisconnectReason::Closed { code: 1002, .. }
        }
    ));
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        1,
        "reconnected after a fatal close"
    );
    // An explicit connect starts again.
    client.connect_in_background();
    let _conn2 = server.accept().await;
    wait_state(&client, |s| *s == ConnectionState::Connected).await;

    // Upgrade refused with 403: fatal, and connect() says so.
    let server = FakeServer::start(Protocol::V2).await;
    server.refuse_next(403);
    let client = server.options().build().unwrap();
    let err = client.connect().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert!(matches!(
        client.connection_state(),
        ConnectionState::Failed {
            reason: DisconnectReason::Refused { status: 403, .. }
        }
    ));
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);

    // Upgrade refused with 503: retried with backoff until it works.
    let mut server = FakeServer::start(Protocol::V2).await;
    server.refuse_next(503);
    server.refuse_next(503);
    let client = server.options().build().unwrap();
    client.connect_in_background();
    let st = wait_state(&client, |s| {
        matches!(s, ConnectionState::Reconnecting { attempt: 2, .. })
    })
    .await;
    assert!(matches!(
        st,
        ConnectionState::Reconnecting {
            reason: DisconnectReason::Refused { status: 503, .. },
            ..
        }
    ));
    let _conn = server.accept().await;
    wait_state(&client, |s| *s == ConnectionState::Connected).await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
}

trait ConnectInBackground {
    fn connect_in_background(&self);
}

impl ConnectInBackground for RealtimeClient {
    fn connect_in_background(&self) {
        let c = self.clone();
        tokio::spawn(async move {
            let _ = c.connect().await;
        });
    }
}

#[tokio::test(start_paused = true)]
async fn abrupt_disconnect_is_reported_and_repaired() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V1).await;
    let client = server.options().build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut states = client.connection_states();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Some(st) = states.next().await {
            s.lock().unwrap().push(st);
        }
    });
    let ch = client.channel("room", ChannelConfig::new()).await.unwrap();
    let mut conn = server.accept_after_subscribe(&ch).await;
    let j = conn.recv_event("phx_join").await;
    conn.accept_join(&j);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
    conn.drop_connection();
    let mut conn2 = server.accept().await;
    let j2 = conn2.recv_event("phx_join").await;
    conn2.accept_join(&j2);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let seen = seen.lock().unwrap().clone();
    // The stream tells the truth, in order (it may skip values a reader was too slow for,
    // never invent or reorder them).
    let lost = seen
        .iter()
        .position(|s| {
            matches!(
                s,
                ConnectionState::Reconnecting {
                    attempt: 1,
                    reason: DisconnectReason::ConnectionLost(_)
                }
            )
        })
        .unwrap_or_else(|| panic!("no Reconnecting in {seen:?}"));
    assert_eq!(seen.last(), Some(&ConnectionState::Connected));
    assert!(
        seen[..lost].contains(&ConnectionState::Connected),
        "{seen:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn join_errors_are_classified() {
    init_tracing();
    for protocol in BOTH {
        let mut server = FakeServer::start(protocol).await;
        let (token, calls) = token_source("tok-1");
        let client = with_tokens(&server, &token, &calls);

        // Transient: rejoined after the backoff.
        let ch = client
            .channel("transient", ChannelConfig::new())
            .await
            .unwrap();
        let c = ch.clone();
        let sub = tokio::spawn(async move { c.subscribe().await });
        let mut conn = server.accept().await;
        let j1 = conn.recv_event("phx_join").await;
        conn.reply(
            &j1,
            "error",
            json!({"reason": "RealtimeRestarting: Realtime is restarting, please standby"}),
        );
        let err = sub.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::JoinRejected);
        assert_eq!(err.class(), ErrorClass::Retry);
        assert!(matches!(
            ch.status(),
            ChannelStatus::Errored {
                class: ErrorClass::Retry,
                attempt: 1,
                ..
            }
        ));
        let j2 = conn.recv_event("phx_join").await;
        assert_ne!(j1.join_ref, j2.join_ref);
        conn.accept_join(&j2);
        wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;

        // Token rejected, with a callback: the callback is asked again and its new token used.
        let ch = client.channel("token", ChannelConfig::new()).await.unwrap();
        let c = ch.clone();
        let sub = tokio::spawn(async move { c.subscribe().await });
        let j1 = conn.recv_event("phx_join").await;
        *token.lock().unwrap() = "tok-2".into();
        conn.reply(
            &j1,
            "error",
            json!({"reason": "InvalidJWTToken: Token has expired 3 seconds ago"}),
        );
        assert_eq!(
            sub.await.unwrap().unwrap_err().class(),
            ErrorClass::RefreshToken
        );
        let j2 = conn.recv_event("phx_join").await;
        assert_eq!(j2.topic, "realtime:token");
        assert_eq!(payload(&j2)["access_token"], json!("tok-2"));
        conn.accept_join(&j2);
        wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;

        // Fatal: not retried.
        let ch = client
            .channel("fatal", ChannelConfig::new().private(true))
            .await
            .unwrap();
        let c = ch.clone();
        let sub = tokio::spawn(async move { c.subscribe().await });
        let j = conn.recv_event("phx_join").await;
        conn.reply(
            &j,
            "error",
            json!({"reason": "Unauthorized: You do not have permissions to read from this Channel topic: fatal"}),
        );
        let err = sub.await.unwrap().unwrap_err();
        assert_eq!(err.class(), ErrorClass::Fatal);
        assert!(matches!(ch.status(), ChannelStatus::Failed { .. }));
        tokio::time::sleep(Duration::from_secs(120)).await;
        while let Some(f) = conn.try_recv() {
            assert_ne!(f.topic, "realtime:fatal", "fatal join retried: {f:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn rejected_token_without_callback_waits_for_set_auth() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let client = server.options().build().unwrap();
    client.set_auth(Some("old".into())).await.unwrap();
    let ch = client.channel("room", ChannelConfig::new()).await.unwrap();
    let mut conn = server.accept_after_subscribe(&ch).await;
    let j = conn.recv_event("phx_join").await;
    assert_eq!(payload(&j)["access_token"], json!("old"));
    conn.reply(
        &j,
        "error",
        json!({"reason": "MalformedJWT: The token provided is not a valid JWT"}),
    );
    wait_status(&ch, |s| {
        matches!(
            s,
            ChannelStatus::Errored {
                class: ErrorClass::RefreshToken,
                ..
            }
        )
    })
    .await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        conn.try_recv().is_none(),
        "retried with the same rejected token"
    );
    client.set_auth(Some("new".into())).await.unwrap();
    let j2 = conn.recv_event("phx_join").await;
    assert_eq!(payload(&j2)["access_token"], json!("new"));
    conn.accept_join(&j2);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
}

#[tokio::test(start_paused = true)]
async fn late_replies_and_messages_of_earlier_joins_are_ignored() {
    init_tracing();
    for protocol in BOTH {
        let mut server = FakeServer::start(protocol).await;
        let client = server.options().build().unwrap();
        let ch = client
            .channel("room", ChannelConfig::new().broadcast_ack(true))
            .await
            .unwrap();
        let mut events = ch.events().await.unwrap();
        let mut conn = server.accept_after_subscribe(&ch).await;
        let j1 = conn.recv_event("phx_join").await;
        // No reply within the timeout: the join is abandoned and retried with a new ref.
        let leave = conn.recv().await;
        assert_eq!(
            (leave.event.as_str(), &leave.join_ref),
            ("phx_leave", &j1.join_ref)
        );
        let j2 = conn.recv_event("phx_join").await;
        assert_ne!(j2.msg_ref, j1.msg_ref);
        // The late reply to the first join changes nothing.
        conn.accept_join(&j1);
        conn.reply(
            &Frame {
                msg_ref: Some("999".into()),
                ..j1.clone()
            },
            "ok",
            json!({}),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(ch.status(), ChannelStatus::Joining);
        conn.accept_join(&j2);
        wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
        // The close of the first join (sent by the server after our leave) is ignored.
        conn.close_channel(&j1);
        if protocol == Protocol::V2 {
            // V1 servers never send join_ref, so only V2 can tell earlier joins' messages apart.
            conn.send(broadcast_frame(j1.join_ref.as_deref(), &j1.topic, "x", 1));
        }
        conn.send(broadcast_frame(j2.join_ref.as_deref(), &j2.topic, "x", 2));
        conn.send(broadcast_frame(None, &j2.topic, "x", 3));
        let ev = next_event(&mut events, |e| broadcast_n(e).is_some()).await;
        assert_eq!(broadcast_n(&ev), Some(2));
        let ev = next_event(&mut events, |e| broadcast_n(e).is_some()).await;
        assert_eq!(broadcast_n(&ev), Some(3));
        assert_eq!(ch.status(), ChannelStatus::Subscribed);
        // An acked broadcast: a reply with another ref does not resolve it, its own does.
        let c = ch.clone();
        let send = tokio::spawn(async move { c.send("e", json!({"a": 1})).await });
        let push = conn.recv_event("broadcast").await;
        conn.reply(
            &Frame {
                msg_ref: Some("12345".into()),
                ..push.clone()
            },
            "ok",
            json!({}),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!send.is_finished());
        conn.reply(&push, "ok", json!({}));
        send.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn token_rotation_is_pushed_to_joined_channels_before_the_heartbeat() {
    init_tracing();
    for protocol in BOTH {
        let mut server = FakeServer::start(protocol).await;
        let (token, calls) = token_source("tok-1");
        let client = with_tokens(&server, &token, &calls);
        let a = client.channel("a", ChannelConfig::new()).await.unwrap();
        let b = client.channel("b", ChannelConfig::new()).await.unwrap();
        let mut conn = server.accept_after_subscribe(&a).await;
        let ja = join(&mut conn, &a).await;
        let jb = join(&mut conn, &b).await;
        assert_eq!(payload(&ja)["access_token"], json!("tok-1"));
        let before = calls.load(Ordering::SeqCst);
        *token.lock().unwrap() = "tok-2".into();
        // At the next heartbeat the callback is asked, and the new token pushed on every
        // joined channel before the heartbeat goes out.
        let mut pushed = Vec::new();
        loop {
            let f = conn.next_frame().await;
            if f.event == "heartbeat" {
                break;
            }
            assert_eq!(f.event, "access_token");
            assert_eq!(payload(&f), &json!({"access_token": "tok-2"}));
            let joined = if f.topic == ja.topic { &ja } else { &jb };
            assert_eq!(f.join_ref, joined.join_ref);
            pushed.push(f.topic);
        }
        pushed.sort();
        assert_eq!(pushed, ["realtime:a", "realtime:b"]);
        assert_eq!(calls.load(Ordering::SeqCst), before + 1);
        // An unchanged token is not pushed again.
        let f = conn.next_frame().await;
        assert_eq!(f.event, "heartbeat", "{f:?}");
        // A reconnect rejoins with it.
        conn.drop_connection();
        let mut conn2 = server.accept().await;
        let j = conn2.recv_event("phx_join").await;
        assert_eq!(payload(&j)["access_token"], json!("tok-2"));
    }
}

#[tokio::test(start_paused = true)]
async fn set_auth_pushes_the_token_at_once() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let client = server.options().build().unwrap();
    let ch = client.channel("room", ChannelConfig::new()).await.unwrap();
    let mut conn = server.accept_after_subscribe(&ch).await;
    let j = conn.recv_event("phx_join").await;
    assert!(payload(&j).get("access_token").is_none());
    conn.accept_join(&j);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
    client.set_auth(Some("jwt-3".into())).await.unwrap();
    let f = conn.recv().await;
    assert_eq!(
        (f.event.as_str(), payload(&f)),
        ("access_token", &json!({"access_token": "jwt-3"}))
    );
    client.set_auth(Some("jwt-3".into())).await.unwrap();
    conn.close(1012, "restart");
    let mut conn2 = server.accept().await;
    let j2 = conn2.recv_event("phx_join").await;
    assert_eq!(payload(&j2)["access_token"], json!("jwt-3"));
    assert!(conn.try_recv().is_none(), "same token pushed twice");
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_stops_reading_loses_events_and_is_told() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let client = server.options().event_buffer(4).build().unwrap();
    let ch = client.channel("room", ChannelConfig::new()).await.unwrap();
    let mut slow = ch.on(EventFilter::broadcast("tick")).await.unwrap();
    let mut fast = ch.on(EventFilter::broadcast("tick")).await.unwrap();
    let mut conn = server.accept_after_subscribe(&ch).await;
    let j = conn.recv_event("phx_join").await;
    conn.accept_join(&j);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
    // One consumer keeps up, the other does not read at all.
    for n in 0..20 {
        conn.send(broadcast_frame(j.join_ref.as_deref(), &j.topic, "tick", n));
        assert_eq!(broadcast_n(&next_event(&mut fast, |_| true).await), Some(n));
    }
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(broadcast_n(&slow.next().await.unwrap()).unwrap());
    }
    assert_eq!(first, [0, 1, 2, 3]);
    // The loss is reported at the latest with the next heartbeat, even with no new event.
    assert_eq!(
        next_event(&mut slow, |_| true).await,
        ChannelEvent::Lagged { missed: 16 }
    );
    conn.send(broadcast_frame(j.join_ref.as_deref(), &j.topic, "tick", 20));
    assert_eq!(
        broadcast_n(&next_event(&mut slow, |_| true).await),
        Some(20)
    );
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(client.connection_state(), ConnectionState::Connected);
}

fn metas(ch: &Channel, key: &str) -> Vec<(String, Value)> {
    ch.presence_state()
        .get(key)
        .map(|ps| {
            ps.iter()
                .map(|p| (p.presence_ref.clone(), Value::Object(p.meta.clone())))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn presence_follows_the_phoenix_sync_algorithm() {
    init_tracing();
    for protocol in BOTH {
        let mut server = FakeServer::start(protocol).await;
        let client = server.options().build().unwrap();
        let ch = client
            .channel("lobby", ChannelConfig::new().presence_key("u1"))
            .await
            .unwrap();
        let mut pres = ch.on(EventFilter::Presence).await.unwrap();
        let mut conn = server.accept_after_subscribe(&ch).await;
        let j = conn.recv_event("phx_join").await;
        assert_eq!(
            payload(&j)["config"]["presence"],
            json!({"key": "u1", "enabled": true})
        );
        conn.accept_join(&j);
        wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
        let jr = j.join_ref.as_deref();

        // Track: sent as a presence push, acknowledged by the server.
        let c = ch.clone();
        let track = tokio::spawn(async move { c.track(json!({"status": "away"})).await });
        let t = conn.recv_event("presence").await;
        assert_eq!(
            payload(&t),
            &json!({"type": "presence", "event": "track", "payload": {"status": "away"}})
        );
        conn.reply(&t, "ok", json!({}));
        track.await.unwrap().unwrap();

        // A diff before the first state waits for it.
        conn.push(
            jr,
            &j.topic,
            "presence_diff",
            json!({"joins": {"a": {"metas": [{"phx_ref": "a1"}]}}, "leaves": {}}),
        );
        conn.push(
            jr,
            &j.topic,
            "presence_state",
            json!({"u1": {"metas": [{"phx_ref": "u1-1", "status": "away"}]}}),
        );
        // The state is applied first, then the diff that was held back, then one sync.
        let u1_join = ChannelEvent::Presence(PresenceEvent::Join {
            key: "u1".into(),
            current: vec![],
            joined: ch_presences(&[("u1-1", json!({"status": "away"}))]),
        });
        let a_join = ChannelEvent::Presence(PresenceEvent::Join {
            key: "a".into(),
            current: vec![],
            joined: ch_presences(&[("a1", json!({}))]),
        });
        assert_eq!(next_event(&mut pres, |_| true).await, u1_join);
        assert_eq!(next_event(&mut pres, |_| true).await, a_join);
        next_event(&mut pres, |e| {
            *e == ChannelEvent::Presence(PresenceEvent::Sync)
        })
        .await;
        assert_eq!(
            metas(&ch, "u1"),
            vec![("u1-1".to_string(), json!({"status": "away"}))]
        );
        assert_eq!(metas(&ch, "a").len(), 1);

        // An update: leave of the old meta, join of the new one.
        conn.push(jr, &j.topic, "presence_diff", json!({
            "joins": {"u1": {"metas": [{"phx_ref": "u1-2", "phx_ref_prev": "u1-1", "status": "online"}]}},
            "leaves": {"u1": {"metas": [{"phx_ref": "u1-1", "status": "away"}]}}
        }));
        next_event(&mut pres, |e| {
            *e == ChannelEvent::Presence(PresenceEvent::Sync)
        })
        .await;
        assert_eq!(
            metas(&ch, "u1"),
            vec![("u1-2".to_string(), json!({"status": "online"}))]
        );

        // A second device under the same key.
        conn.push(jr, &j.topic, "presence_diff", json!({"joins": {"u1": {"metas": [{"phx_ref": "u1-3", "status": "mobile"}]}}, "leaves": {}}));
        let ev = next_event(&mut pres, |e| {
            matches!(e, ChannelEvent::Presence(PresenceEvent::Join { .. }))
        })
        .await;
        let ChannelEvent::Presence(PresenceEvent::Join {
            current, joined, ..
        }) = ev
        else {
            unreachable!()
        };
        assert_eq!((current.len(), joined.len()), (1, 1));
        next_event(&mut pres, |e| {
            *e == ChannelEvent::Presence(PresenceEvent::Sync)
        })
        .await;
        assert_eq!(metas(&ch, "u1").len(), 2);

        // Reconnect: the old state stays visible, diffs wait for the new state, which
        // replaces what went stale; the tracked presence is sent again.
        conn.drop_connection();
        let mut conn2 = server.accept().await;
        let j2 = conn2.recv_event("phx_join").await;
        conn2.accept_join(&j2);
        let t2 = conn2.recv_event("presence").await;
        assert_eq!(payload(&t2)["payload"], json!({"status": "away"}));
        conn2.reply(&t2, "ok", json!({}));
        wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
        let jr2 = j2.join_ref.as_deref();
        conn2.push(
            jr2,
            &j2.topic,
            "presence_diff",
            json!({"joins": {"late": {"metas": [{"phx_ref": "l1"}]}}, "leaves": {}}),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(metas(&ch, "late").is_empty());
        assert_eq!(metas(&ch, "u1").len(), 2);
        conn2.push(
            jr2,
            &j2.topic,
            "presence_state",
            json!({"u1": {"metas": [{"phx_ref": "u1-9", "status": "away"}]}}),
        );
        let mut changes = ch.presence_changes();
        tokio::time::timeout(PATIENCE, async {
            while let Some(s) = changes.next().await {
                if s.contains_key("late") {
                    break;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(
            metas(&ch, "u1"),
            vec![("u1-9".to_string(), json!({"status": "away"}))]
        );
        assert!(metas(&ch, "a").is_empty());
        assert_eq!(metas(&ch, "late").len(), 1);

        // Untrack.
        let c = ch.clone();
        let untrack = tokio::spawn(async move { c.untrack().await });
        let u = conn2.recv_event("presence").await;
        assert_eq!(
            payload(&u),
            &json!({"type": "presence", "event": "untrack"})
        );
        conn2.reply(&u, "ok", json!({}));
        untrack.await.unwrap().unwrap();
    }
}

fn ch_presences(list: &[(&str, Value)]) -> Vec<livechat::realtime::Presence> {
    list.iter()
        .map(|(r, m)| livechat::realtime::Presence {
            presence_ref: r.to_string(),
            meta: m.as_object().cloned().unwrap_or_default(),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_leaves_and_the_socket_closes_later() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let client = server
        .options()
        .disconnect_when_empty(Some(Duration::from_secs(5)))
        .build()
        .unwrap();
    let ch = client.channel("room", ChannelConfig::new()).await.unwrap();
    let sub = ch.events().await.unwrap();
    let mut conn = server.accept_after_subscribe(&ch).await;
    let j = conn.recv_event("phx_join").await;
    conn.accept_join(&j);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
    drop(ch);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        conn.try_recv().is_none(),
        "left while a subscription was alive"
    );
    assert_eq!(client.channels().await.unwrap().len(), 1);
    drop(sub);
    let leave = conn.recv().await;
    assert_eq!(
        (leave.event.as_str(), &leave.join_ref),
        ("phx_leave", &j.join_ref)
    );
    conn.reply(&leave, "ok", json!({}));
    conn.closed().await;
    assert_eq!(client.connection_state(), ConnectionState::Disconnected);
    assert!(client.channels().await.unwrap().is_empty());
    // A new channel connects again.
    let ch = client.channel("again", ChannelConfig::new()).await.unwrap();
    let mut conn2 = server.accept_after_subscribe(&ch).await;
    let j2 = conn2.recv_event("phx_join").await;
    conn2.accept_join(&j2);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
}

#[tokio::test(start_paused = true)]
async fn channels_are_created_reused_listed_and_removed() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let client = server
        .options()
        .disconnect_when_empty(None)
        .build()
        .unwrap();
    let a = client.channel("a", ChannelConfig::new()).await.unwrap();
    let a2 = client
        .channel("realtime:a", ChannelConfig::new())
        .await
        .unwrap();
    assert_eq!(a2.topic(), "realtime:a");
    assert_eq!(a2.name(), "a");
    let err = client
        .channel("a", ChannelConfig::new().broadcast_self(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TopicConflict);
    assert_eq!(
        client
            .channel("", ChannelConfig::new())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let b = client.channel("b", ChannelConfig::new()).await.unwrap();
    let mut topics: Vec<String> = client
        .channels()
        .await
        .unwrap()
        .iter()
        .map(|c| c.topic().to_string())
        .collect();
    topics.sort();
    assert_eq!(topics, ["realtime:a", "realtime:b"]);
    let mut conn = server.accept_after_subscribe(&a).await;
    join(&mut conn, &a).await;
    join(&mut conn, &b).await;
    let mut a_events = a.events().await.unwrap();

    // Unsubscribe keeps the channel; subscribing again rejoins.
    let c = a.clone();
    let unsub = tokio::spawn(async move { c.unsubscribe().await });
    let leave = conn.recv_event("phx_leave").await;
    conn.reply(&leave, "ok", json!({}));
    conn.close_channel(&leave);
    unsub.await.unwrap().unwrap();
    assert_eq!(a.status(), ChannelStatus::Closed);
    assert_eq!(client.channels().await.unwrap().len(), 2);
    join(&mut conn, &a).await;

    // Remove one: its subscriptions end.
    let c = client.clone();
    let a_again = a.clone();
    let rm = tokio::spawn(async move { c.remove_channel(&a_again).await });
    let leave = conn.recv_event("phx_leave").await;
    assert_eq!(leave.topic, "realtime:a");
    conn.reply(&leave, "ok", json!({}));
    rm.await.unwrap().unwrap();
    tokio::time::timeout(PATIENCE, async { while a_events.next().await.is_some() {} })
        .await
        .unwrap();
    assert_eq!(client.channels().await.unwrap().len(), 1);
    assert_eq!(
        a.subscribe().await.unwrap_err().kind(),
        ErrorKind::ChannelClosed
    );

    // Remove all.
    let c = client.clone();
    let rm = tokio::spawn(async move { c.remove_all_channels().await });
    let leave = conn.recv_event("phx_leave").await;
    assert_eq!(leave.topic, "realtime:b");
    conn.reply(&leave, "ok", json!({}));
    rm.await.unwrap().unwrap();
    assert!(client.channels().await.unwrap().is_empty());
    // disconnect_when_empty(None): still connected.
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(client.connection_state(), ConnectionState::Connected);
}

#[tokio::test(start_paused = true)]
async fn disconnect_and_connect_again() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let client = server.options().build().unwrap();
    let ch = client.channel("room", ChannelConfig::new()).await.unwrap();
    let mut conn = server.accept_after_subscribe(&ch).await;
    join(&mut conn, &ch).await;
    client.disconnect().await.unwrap();
    conn.closed().await;
    assert_eq!(client.connection_state(), ConnectionState::Disconnected);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        1,
        "reconnected after disconnect()"
    );
    let c = client.clone();
    tokio::spawn(async move { c.connect().await });
    let mut conn2 = server.accept().await;
    let j = conn2.recv_event("phx_join").await;
    conn2.accept_join(&j);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
}

#[tokio::test(start_paused = true)]
async fn broadcast_wire_shapes_acks_and_binary_payloads() {
    init_tracing();
    for protocol in BOTH {
        let mut server = FakeServer::start(protocol).await;
        let client = server.options().build().unwrap();
        let ch = client
            .channel("room", ChannelConfig::new().broadcast_ack(true))
            .await
            .unwrap();
        let mut events = ch.on(EventFilter::broadcast("Cursor")).await.unwrap();
        let mut conn = server.accept_after_subscribe(&ch).await;
        let j = join(&mut conn, &ch).await;

        let c = ch.clone();
        let send = tokio::spawn(async move { c.send("cursor", json!({"x": 1})).await });
        let push = conn.recv_event("broadcast").await;
        assert_eq!(push.join_ref, j.join_ref);
        match protocol {
            // Sent as a binary kind-3 frame, as realtime-js does.
            Protocol::V2 => assert_eq!(
                push.payload,
                FramePayload::UserBroadcast {
                    event: "cursor".into(),
                    payload: BroadcastPayload::Json(json!({"x": 1})),
                    meta: None
                }
            ),
            _ => assert_eq!(
                payload(&push),
                &json!({"type": "broadcast", "event": "cursor", "payload": {"x": 1}})
            ),
        }
        conn.reply(&push, "ok", json!({}));
        send.await.unwrap().unwrap();

        // A refused ack is an error; a missing one a timeout.
        let c = ch.clone();
        let send = tokio::spawn(async move { c.send("cursor", json!({})).await });
        let push = conn.recv_event("broadcast").await;
        conn.reply(&push, "error", json!("payload_size_exceeded"));
        let err = send.await.unwrap().unwrap_err();
        assert_eq!(
            (err.kind(), err.message()),
            (ErrorKind::PushRejected, "payload_size_exceeded")
        );
        let c = ch.clone();
        let send = tokio::spawn(async move { c.send("cursor", json!({})).await });
        conn.recv_event("broadcast").await;
        assert!(send.await.unwrap().unwrap_err().is_timeout());

        // Received: JSON text with metadata, and (2.0.0) binary kind 4 with raw bytes.
        conn.push(None, &j.topic, "broadcast", json!({"type": "broadcast", "event": "cursor", "payload": {"y": 2}, "meta": {"id": "m1"}}));
        let ev = next_event(&mut events, |_| true).await;
        assert_eq!(
            ev,
            ChannelEvent::Broadcast(Broadcast {
                event: "cursor".into(),
                payload: BroadcastPayload::Json(json!({"y": 2})),
                meta: Some(json!({"id": "m1"}))
            })
        );
        if protocol == Protocol::V2 {
            conn.send(Frame {
                join_ref: None,
                msg_ref: None,
                topic: j.topic.clone(),
                event: "broadcast".into(),
                payload: FramePayload::UserBroadcast {
                    event: "CURSOR".into(),
                    payload: BroadcastPayload::Binary(Bytes::from_static(&[1, 2, 3])),
                    meta: None,
                },
            });
            let ev = next_event(&mut events, |_| true).await;
            let ChannelEvent::Broadcast(b) = ev else {
                panic!("{ev:?}")
            };
            assert_eq!(
                b.payload,
                BroadcastPayload::Binary(Bytes::from_static(&[1, 2, 3]))
            );
            let c = ch.clone();
            let send =
                tokio::spawn(
                    async move { c.send_binary("bin", Bytes::from_static(b"\0\x01")).await },
                );
            let push = conn.recv_event("broadcast").await;
            assert!(matches!(
                &push.payload,
                FramePayload::UserBroadcast { payload: BroadcastPayload::Binary(b), .. } if &b[..] == b"\0\x01"
            ));
            conn.reply(&push, "ok", json!({}));
            send.await.unwrap().unwrap();
        } else {
            let err = ch
                .send_binary("bin", Bytes::from_static(b"x"))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported);
        }
        let err = ch.send(&"e".repeat(300), json!({})).await;
        if protocol == Protocol::V2 {
            assert_eq!(err.unwrap_err().kind(), ErrorKind::InvalidInput);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn malformed_frames_and_unexpected_payloads_are_skipped() {
    init_tracing();
    for protocol in BOTH {
        let mut server = FakeServer::start(protocol).await;
        let client = server.options().build().unwrap();
        let ch = client
            .channel("room", pg_config().presence(true))
            .await
            .unwrap();
        let mut events = ch.events().await.unwrap();
        let mut conn = server.accept_after_subscribe(&ch).await;
        let j = join(&mut conn, &ch).await;
        let jr = j.join_ref.as_deref();
        for text in [
            "not json",
            "{}",
            "[]",
            "[1,2,3]",
            r#"[null,null,5,"e",{}]"#,
            r#"{"topic":1}"#,
            r#"[null,null,"realtime:room","broadcast",{"type":"broadcast"}]"#,
            r#"{"topic":"realtime:room","event":"broadcast","payload":{"nope":1},"ref":null}"#,
            "\u{0}\u{1}",
        ] {
            conn.send_raw(Message::Text(text.into()));
        }
        for bin in [
            &[][..],
            &[9, 9, 9],
            &[4, 200, 1],
            &[4, 1, 1, 0, 1, b't', b'e', b'{'],
        ] {
            conn.send_raw(Message::Binary(Bytes::copy_from_slice(bin)));
        }
        conn.push(
            jr,
            &j.topic,
            "postgres_changes",
            json!({"ids": [1000], "data": "garbage"}),
        );
        conn.push(
            jr,
            &j.topic,
            "postgres_changes",
            json!({"ids": [1000], "data": {"schema": "public", "table": "t", "type": "TRUNCATE"}}),
        );
        conn.push(jr, &j.topic, "presence_state", json!(["not", "a", "map"]));
        conn.push(
            jr,
            &j.topic,
            "presence_diff",
            json!({"joins": 5, "leaves": {"k": {"metas": "x"}}}),
        );
        conn.push(jr, &j.topic, "system", json!("nonsense"));
        conn.push(jr, &j.topic, "some_new_event", json!({}));
        conn.push(jr, "realtime:unknown", "broadcast", json!({}));
        conn.send(Frame {
            join_ref: None,
            msg_ref: Some("77".into()),
            topic: "phoenix".into(),
            event: "phx_reply".into(),
            payload: FramePayload::Json(json!({"status": "ok", "response": {}})),
        });
        conn.send(broadcast_frame(jr, &j.topic, "ok", 1));
        let ev = next_event(&mut events, |e| broadcast_n(e).is_some()).await;
        assert_eq!(broadcast_n(&ev), Some(1));
        assert_eq!(ch.status(), ChannelStatus::Subscribed);
        assert_eq!(client.connection_state(), ConnectionState::Connected);
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        // and a later heartbeat still works
        let mut hb = client.heartbeats().await.unwrap();
        assert_eq!(hb.next().await, Some(HeartbeatEvent::Sent));
        assert!(matches!(hb.next().await, Some(HeartbeatEvent::Ok { .. })));
    }
}

#[tokio::test(start_paused = true)]
async fn server_closes_are_classified_by_the_system_message_before_them() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let (token, calls) = token_source("tok-1");
    let client = with_tokens(&server, &token, &calls);
    let ch = client.channel("room", ChannelConfig::new()).await.unwrap();
    let mut conn = server.accept_after_subscribe(&ch).await;
    let j = join(&mut conn, &ch).await;

    // Token expiry: rejoin with the callback's fresh token.
    *token.lock().unwrap() = "tok-2".into();
    conn.system(&j, "system", "error", "Token has expired 0 seconds ago");
    conn.close_channel(&j);
    wait_status(&ch, |s| {
        matches!(
            s,
            ChannelStatus::Errored {
                class: ErrorClass::RefreshToken,
                ..
            }
        )
    })
    .await;
    let j2 = conn.recv_event("phx_join").await;
    assert_eq!(payload(&j2)["access_token"], json!("tok-2"));
    conn.accept_join(&j2);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;

    // A crash: rejoin.
    conn.send(Frame {
        event: "phx_error".into(),
        payload: FramePayload::Json(json!({"reason": "channel_crash"})),
        ..j2.clone()
    });
    wait_status(&ch, |s| {
        matches!(
            s,
            ChannelStatus::Errored {
                class: ErrorClass::Retry,
                ..
            }
        )
    })
    .await;
    let j3 = conn.recv_event("phx_join").await;
    conn.accept_join(&j3);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;

    // A plain close: rejoin.
    conn.close_channel(&j3);
    let j4 = conn.recv_event("phx_join").await;
    conn.accept_join(&j4);
    wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;

    // Permissions lost: fatal.
    conn.system(
        &j4,
        "system",
        "error",
        "You no longer have permission to read from this Channel topic: room",
    );
    conn.close_channel(&j4);
    wait_status(&ch, |s| matches!(s, ChannelStatus::Failed { .. })).await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(conn.try_recv().is_none());
}

#[tokio::test(start_paused = true)]
async fn postgres_changes_are_routed_and_refusals_reported() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let client = server.options().build().unwrap();
    let config = ChannelConfig::new()
        .postgres_changes(
            PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public").table("t"),
        )
        .postgres_changes(PostgresChangesFilter::new(
            PostgresChangeEvent::All,
            "public",
        ));
    let ch = client.channel("db", config).await.unwrap();
    let mut all = ch.on(EventFilter::PostgresChanges(None)).await.unwrap();
    let mut inserts = ch.on(EventFilter::PostgresChanges(Some(0))).await.unwrap();
    let mut conn = server.accept_after_subscribe(&ch).await;
    let j = join(&mut conn, &ch).await;
    let data = |kind: &str| {
        json!({"schema": "public", "table": "t", "type": kind, "commit_timestamp": "2026-05-01T00:00:00Z",
        "columns": [{"name": "id", "type": "int4"}], "record": {"id": 1}, "old_record": {"id": 1}, "errors": null})
    };
    conn.push(
        None,
        &j.topic,
        "postgres_changes",
        json!({"ids": [1000, 1001], "data": data("INSERT")}),
    );
    conn.push(
        None,
        &j.topic,
        "postgres_changes",
        json!({"ids": [1000, 1001], "data": data("UPDATE")}),
    );
    let ChannelEvent::PostgresChange(c) = next_event(&mut all, |_| true).await else {
        panic!()
    };
    assert_eq!(
        (c.event, c.filters.clone()),
        (PostgresChangeEvent::Insert, vec![0, 1])
    );
    let ChannelEvent::PostgresChange(c) = next_event(&mut all, |_| true).await else {
        panic!()
    };
    assert_eq!(
        (c.event, c.filters.clone()),
        (PostgresChangeEvent::Update, vec![1])
    );
    assert_eq!(c.old_record.unwrap()["id"], json!(1));
    let ChannelEvent::PostgresChange(c) = next_event(&mut inserts, |_| true).await else {
        panic!()
    };
    assert_eq!(c.event, PostgresChangeEvent::Insert);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(inserts.now_or_never_is_none());

    // A server that echoes other bindings: the channel fails loudly.
    let bad = client
        .channel(
            "bad",
            ChannelConfig::new().postgres_changes(PostgresChangesFilter::new(
                PostgresChangeEvent::Delete,
                "public",
            )),
        )
        .await
        .unwrap();
    let c = bad.clone();
    let sub = tokio::spawn(async move { c.subscribe().await });
    let jb = conn.recv_event("phx_join").await;
    conn.reply(
        &jb,
        "ok",
        json!({"postgres_changes": [{"event": "*", "schema": "public", "id": 1}]}),
    );
    let err = sub.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PostgresChanges);
    assert!(matches!(bad.status(), ChannelStatus::Failed { .. }));

    // A refused subscription: joined, broadcasts work, the status says what failed.
    let refused = client.channel("refused", pg_config()).await.unwrap();
    let mut ev = refused.events().await.unwrap();
    let c = refused.clone();
    let sub = tokio::spawn(async move { c.subscribe().await });
    let jr = conn.recv_event("phx_join").await;
    conn.accept_join(&jr);
    conn.system(
        &jr,
        "postgres_changes",
        "error",
        "Error parsing `filter` params: [\"bad\"]",
    );
    let err = sub.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PostgresChanges);
    assert!(matches!(
        refused.status(),
        ChannelStatus::PostgresChangesFailed { .. }
    ));
    conn.send(broadcast_frame(
        jr.join_ref.as_deref(),
        &jr.topic,
        "still",
        5,
    ));
    let e = next_event(&mut ev, |e| broadcast_n(e).is_some()).await;
    assert_eq!(broadcast_n(&e), Some(5));
}

trait NowOrNever {
    fn now_or_never_is_none(&mut self) -> bool;
}

impl NowOrNever for livechat::realtime::Subscription {
    fn now_or_never_is_none(&mut self) -> bool {
        futures::FutureExt::now_or_never(self.next()).is_none()
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_token_callback_does_not_stall_the_client() {
    init_tracing();
    let mut server = FakeServer::start(Protocol::V2).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let client = server
        .options()
        .access_token(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 1 {
                    // The second call (first heartbeat) hangs far beyond the token timeout.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Some("tok".to_string())
            }
        })
        .build()
        .unwrap();
    let ch = client.channel("room", ChannelConfig::new()).await.unwrap();
    let mut conn = server.accept_after_subscribe(&ch).await;
    join(&mut conn, &ch).await;
    let mut hb = client.heartbeats().await.unwrap();
    assert_eq!(hb.next().await, Some(HeartbeatEvent::Sent));
    assert!(matches!(hb.next().await, Some(HeartbeatEvent::Ok { .. })));
    assert_eq!(client.connection_state(), ConnectionState::Connected);
    assert!(calls.load(Ordering::SeqCst) >= 2);
}

/// The default TCP transport against the fake server's loopback listener, in real time.
#[tokio::test]
async fn tcp_transport_connects_rejoins_and_delivers_in_real_time() {
    init_tracing();
    for protocol in BOTH {
        let mut server = FakeServer::start(protocol).await;
        let fast =
            livechat::realtime::Backoff::new(Duration::from_millis(20), Duration::from_millis(20));
        let client = server
            .tcp_options()
            .reconnect_backoff(fast)
            .build()
            .unwrap();
        let ch = client.channel("room", ChannelConfig::new()).await.unwrap();
        let mut events = ch.on(EventFilter::broadcast("*")).await.unwrap();
        let mut conn = server.accept_after_subscribe(&ch).await;
        assert!(conn.uri.contains("vsn="));
        let j = conn.recv_event("phx_join").await;
        conn.accept_join(&j);
        wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
        conn.drop_connection();
        let mut conn2 = server.accept().await;
        let j2 = conn2.recv_event("phx_join").await;
        conn2.accept_join(&j2);
        wait_status(&ch, |s| *s == ChannelStatus::Subscribed).await;
        conn2.send(broadcast_frame(j2.join_ref.as_deref(), &j2.topic, "x", 42));
        let ev = next_event(&mut events, |e| broadcast_n(e).is_some()).await;
        assert_eq!(broadcast_n(&ev), Some(42));
    }
}
