//! The realtime client against the real local stack (PostgreSQL + the stack's Realtime
//! server), with both protocols: broadcast (WebSocket, binary, HTTP, self, ack), presence,
//! postgres_changes with one and several filters and RLS, private channels, heartbeats,
//! tokens, deferred disconnect, and the acceptance test: postgres_changes keep flowing after
//! the server drops every connection ten times in a row.

use crate::realtime_support;

use bytes::Bytes;
use futures::StreamExt;
use livechat::realtime::{
    Backoff, Broadcast, BroadcastPayload, Channel, ChannelConfig, ChannelEvent, ChannelStatus,
    ConnectionState, DisconnectReason, ErrorClass, EventFilter, HeartbeatEvent,
    HttpBroadcastMessage, PostgresChange, PostgresChangeEvent, PostgresChangesFilter,
    PresenceEvent, Protocol, RealtimeClient, RealtimeOptions, Subscription,
};
use livechat_stack::Stack;
use realtime_support::init_tracing;
use serde_json::{json, Value};
use std::time::Duration;

const BOTH: [Protocol; 2] = [Protocol::V1, Protocol::V2];
const WAIT: Duration = Duration::from_secs(20);
const ALICE: &str = "c0000000-0000-4000-8000-000000000001";
const BOB: &str = "c0000000-0000-4000-8000-000000000002";

fn options(stack: &Stack, key: &str, protocol: Protocol) -> RealtimeOptions {
    let quick = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    RealtimeOptions::new(stack.url(), key)
        .protocol(protocol)
        .reconnect_backoff(quick)
        .rejoin_backoff(quick)
}

fn client(stack: &Stack, protocol: Protocol) -> RealtimeClient {
    options(stack, stack.anon_key(), protocol).build().unwrap()
}

async fn next(
    sub: &mut Subscription,
    what: &str,
    pred: impl Fn(&ChannelEvent) -> bool,
) -> ChannelEvent {
    tokio::time::timeout(WAIT, async {
        while let Some(ev) = sub.next().await {
            if pred(&ev) {
                return ev;
            }
        }
        panic!("{what}: subscription ended")
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

async fn nothing_more(sub: &mut Subscription, pred: impl Fn(&ChannelEvent) -> bool) {
    let got = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(ev) = sub.next().await {
            if pred(&ev) {
                return Some(ev);
            }
        }
        None
    })
    .await;
    if let Ok(Some(ev)) = got {
        panic!("unexpected event {ev:?}");
    }
}

async fn subscribe(ch: &Channel) {
    tokio::time::timeout(WAIT, ch.subscribe())
        .await
        .expect("subscribe hung")
        .unwrap_or_else(|e| panic!("subscribe {}: {e:?}", ch.topic()));
}

fn is_broadcast(event: &str) -> impl Fn(&ChannelEvent) -> bool + '_ {
    move |e| matches!(e, ChannelEvent::Broadcast(b) if b.event == event)
}

fn json_payload(ev: &ChannelEvent) -> Value {
    match ev {
        ChannelEvent::Broadcast(Broadcast {
            payload: BroadcastPayload::Json(v),
            ..
        }) => v.clone(),
        other => panic!("not a JSON broadcast: {other:?}"),
    }
}

fn change(ev: ChannelEvent) -> PostgresChange {
    match ev {
        ChannelEvent::PostgresChange(c) => c,
        other => panic!("not a change: {other:?}"),
    }
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

/// `rtc_notes`: RLS, each user sees their own rows; published with replica identity full.
async fn notes_table(stack: &Stack) -> tokio_postgres::Client {
    let c = db(stack).await;
    c.batch_execute(
        "create table public.rtc_notes (id int primary key, owner uuid, body text, n int);
         alter table public.rtc_notes replica identity full;
         alter table public.rtc_notes enable row level security;
         create policy own on public.rtc_notes for select to authenticated using (owner = auth.uid());
         grant select on public.rtc_notes to anon, authenticated, service_role;
         alter publication supabase_realtime add table public.rtc_notes;",
    )
    .await
    .expect("test table");
    c
}

#[tokio::test]
async fn broadcast_self_ack_and_across_protocols() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    for (p_send, p_recv) in [
        (Protocol::V1, Protocol::V1),
        (Protocol::V2, Protocol::V2),
        (Protocol::V1, Protocol::V2),
        (Protocol::V2, Protocol::V1),
    ] {
        let name = format!("room-{p_send:?}-{p_recv:?}");
        let sender = client(&stack, p_send);
        let receiver = client(&stack, p_recv);
        let s_ch = sender
            .channel(
                &name,
                ChannelConfig::new()
                    .broadcast_self(true)
                    .broadcast_ack(true),
            )
            .await
            .unwrap();
        let r_ch = receiver.channel(&name, ChannelConfig::new()).await.unwrap();
        let mut s_events = s_ch.on(EventFilter::broadcast("typing")).await.unwrap();
        let mut r_events = r_ch.on(EventFilter::broadcast("*")).await.unwrap();
        subscribe(&s_ch).await;
        subscribe(&r_ch).await;
        assert!(sender.is_connected());
        // Acked: resolves once the server has it.
        s_ch.send("typing", json!({"user": "ann", "n": 1}))
            .await
            .unwrap();
        let got = next(&mut r_events, "receiver", is_broadcast("typing")).await;
        assert_eq!(
            json_payload(&got),
            json!({"user": "ann", "n": 1}),
            "{p_send:?}->{p_recv:?}"
        );
        let own = next(&mut s_events, "self", is_broadcast("typing")).await;
        assert_eq!(json_payload(&own), json!({"user": "ann", "n": 1}));
        // Without self, the receiver's own broadcasts do not come back to it.
        r_ch.send("typing", json!({"n": 2})).await.unwrap();
        let got = next(
            &mut s_events,
            "sender gets receiver's",
            is_broadcast("typing"),
        )
        .await;
        assert_eq!(json_payload(&got)["n"], json!(2));
        nothing_more(&mut r_events, is_broadcast("typing")).await;
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn binary_broadcast_between_v2_clients() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let a = client(&stack, Protocol::V2);
    let b = client(&stack, Protocol::V2);
    let v1 = client(&stack, Protocol::V1);
    let a_ch = a
        .channel("bin", ChannelConfig::new().broadcast_ack(true))
        .await
        .unwrap();
    let b_ch = b.channel("bin", ChannelConfig::new()).await.unwrap();
    let v1_ch = v1.channel("bin", ChannelConfig::new()).await.unwrap();
    let mut b_events = b_ch.on(EventFilter::broadcast("blob")).await.unwrap();
    let mut v1_events = v1_ch.on(EventFilter::broadcast("*")).await.unwrap();
    for ch in [&a_ch, &b_ch, &v1_ch] {
        subscribe(ch).await;
    }
    a_ch.send_binary("blob", Bytes::from_static(&[0, 159, 146, 150]))
        .await
        .unwrap();
    let got = next(&mut b_events, "binary", is_broadcast("blob")).await;
    let ChannelEvent::Broadcast(b) = got else {
        unreachable!()
    };
    assert_eq!(
        b.payload,
        BroadcastPayload::Binary(Bytes::from_static(&[0, 159, 146, 150]))
    );
    // A binary payload cannot reach a 1.0.0 socket; JSON ones can.
    a_ch.send("text", json!({"ok": true})).await.unwrap();
    let got = next(&mut v1_events, "v1", |e| {
        matches!(e, ChannelEvent::Broadcast(_))
    })
    .await;
    assert_eq!(json_payload(&got), json!({"ok": true}));
    stack.shutdown().await;
}

#[tokio::test]
async fn http_broadcast_reaches_subscribers() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    for protocol in BOTH {
        let receiver = client(&stack, protocol);
        let ch = receiver
            .channel("news", ChannelConfig::new())
            .await
            .unwrap();
        let mut events = ch.on(EventFilter::broadcast("*")).await.unwrap();
        subscribe(&ch).await;
        // Explicitly over HTTP.
        let sender = client(&stack, protocol);
        sender
            .broadcast_http(&[HttpBroadcastMessage::new(
                "news",
                "headline",
                json!({"t": 1}),
            )])
            .await
            .unwrap();
        let got = next(&mut events, "batch", is_broadcast("headline")).await;
        assert_eq!(json_payload(&got), json!({"t": 1}));
        // A channel that is not joined falls back to HTTP, as realtime-js does.
        let unjoined = sender.channel("news", ChannelConfig::new()).await.unwrap();
        unjoined.send("headline", json!({"t": 2})).await.unwrap();
        let got = next(&mut events, "fallback", is_broadcast("headline")).await;
        assert_eq!(json_payload(&got), json!({"t": 2}));
        unjoined
            .http_send("headline", json!({"t": 3}))
            .await
            .unwrap();
        let got = next(&mut events, "http_send", is_broadcast("headline")).await;
        assert_eq!(json_payload(&got), json!({"t": 3}));
    }
    // A bad API key is refused with a classified error.
    let bad = RealtimeOptions::new(stack.url(), "not-a-key")
        .build()
        .unwrap();
    let err = bad
        .broadcast_http(&[HttpBroadcastMessage::new("news", "x", json!({}))])
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), Some(401), "{err:?}");
    assert_eq!(err.class(), ErrorClass::RefreshToken);
    stack.shutdown().await;
}

#[tokio::test]
async fn postgres_changes_with_one_and_several_filters() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let db = notes_table(&stack).await;
    for (i, protocol) in BOTH.into_iter().enumerate() {
        let base = (i as i32 + 1) * 100;
        let c = options(&stack, stack.service_role_key(), protocol)
            .build()
            .unwrap();
        let one = c
            .channel(
                &format!("one-{i}"),
                ChannelConfig::new().postgres_changes(
                    PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public")
                        .table("rtc_notes")
                        .filter(format!("id=eq.{}", base + 1)),
                ),
            )
            .await
            .unwrap();
        let several = c
            .channel(
                &format!("several-{i}"),
                ChannelConfig::new()
                    .postgres_changes(
                        PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public")
                            .table("rtc_notes"),
                    )
                    .postgres_changes(
                        PostgresChangesFilter::new(PostgresChangeEvent::Update, "public")
                            .table("rtc_notes"),
                    )
                    .postgres_changes(
                        PostgresChangesFilter::new(PostgresChangeEvent::Delete, "public")
                            .table("rtc_notes"),
                    ),
            )
            .await
            .unwrap();
        let mut one_ev = one.on(EventFilter::PostgresChanges(None)).await.unwrap();
        let mut all_ev = several
            .on(EventFilter::PostgresChanges(None))
            .await
            .unwrap();
        let mut updates = several
            .on(EventFilter::PostgresChanges(Some(1)))
            .await
            .unwrap();
        subscribe(&one).await;
        subscribe(&several).await;
        assert_eq!(several.status(), ChannelStatus::Subscribed);

        // One step at a time: on a table with RLS the server checks each change against the
        // row as it is when the change is read, so a row deleted at once never shows its insert.
        db.execute(
            "insert into public.rtc_notes (id, owner, body, n) values ($1, null, 'a', 1), ($2, null, 'b', 2)",
            &[&(base + 1), &(base + 2)],
        )
        .await
        .unwrap();
        let c1 = change(next(&mut one_ev, "filtered insert", |_| true).await);
        assert_eq!(c1.event, PostgresChangeEvent::Insert);
        assert_eq!(
            (c1.schema.as_str(), c1.table.as_str()),
            ("public", "rtc_notes")
        );
        assert_eq!(c1.record.as_ref().unwrap()["id"], json!(base + 1));
        assert!(c1.commit_timestamp.is_some());
        assert!(c1
            .columns
            .iter()
            .any(|col| col.name == "body" && col.type_name == "text"));
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let c = change(next(&mut all_ev, "several: inserts", |_| true).await);
            kinds.push((c.event, c.filters.clone(), c.record.unwrap()["id"].clone()));
        }
        db.execute(
            "update public.rtc_notes set n = 5 where id = $1",
            &[&(base + 2)],
        )
        .await
        .unwrap();
        let c = change(next(&mut all_ev, "several: update", |_| true).await);
        kinds.push((c.event, c.filters.clone(), c.record.unwrap()["id"].clone()));
        db.execute("delete from public.rtc_notes where id = $1", &[&(base + 1)])
            .await
            .unwrap();
        let c = change(next(&mut all_ev, "several: delete", |_| true).await);
        assert!(c.record.is_none());
        kinds.push((
            c.event,
            c.filters.clone(),
            c.old_record.unwrap()["id"].clone(),
        ));
        assert_eq!(
            kinds,
            [
                (PostgresChangeEvent::Insert, vec![0], json!(base + 1)),
                (PostgresChangeEvent::Insert, vec![0], json!(base + 2)),
                (PostgresChangeEvent::Update, vec![1], json!(base + 2)),
                (PostgresChangeEvent::Delete, vec![2], json!(base + 1)),
            ]
        );
        nothing_more(&mut one_ev, |e| {
            matches!(e, ChannelEvent::PostgresChange(_))
        })
        .await;
        let u = change(next(&mut updates, "update only", |_| true).await);
        assert_eq!(u.event, PostgresChangeEvent::Update);
        assert_eq!(u.record.as_ref().unwrap()["n"], json!(5));
        assert_eq!(u.old_record.as_ref().unwrap()["n"], json!(2));
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn postgres_changes_follow_rls_and_the_access_token() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let db = notes_table(&stack).await;
    let alice_token = stack.user_token(ALICE, Some("alice@acme.test"));
    let t = alice_token.clone();
    let alice = options(&stack, stack.anon_key(), Protocol::V2)
        .access_token(move || {
            let t = t.clone();
            async move { Some(t) }
        })
        .build()
        .unwrap();
    let config = ChannelConfig::new().postgres_changes(
        PostgresChangesFilter::new(PostgresChangeEvent::All, "public").table("rtc_notes"),
    );
    let ch = alice.channel("mine", config.clone()).await.unwrap();
    let mut ev = ch.on(EventFilter::PostgresChanges(None)).await.unwrap();
    subscribe(&ch).await;
    db.execute(
        "insert into public.rtc_notes (id, owner, body) values (1, $1::text::uuid, 'bob''s'), (2, $2::text::uuid, 'alice''s')",
        &[&BOB, &ALICE],
    )
    .await
    .unwrap();
    let c = change(next(&mut ev, "alice's row", |_| true).await);
    assert_eq!(c.record.as_ref().unwrap()["id"], json!(2));
    nothing_more(&mut ev, |e| matches!(e, ChannelEvent::PostgresChange(_))).await;

    // set_auth on a client without a callback: the new token is pushed, the server
    // re-subscribes (another "Subscribed to PostgreSQL"), and bob's rows come through.
    let bob = options(&stack, stack.anon_key(), Protocol::V1)
        .build()
        .unwrap();
    bob.set_auth(Some(stack.user_token(ALICE, None)))
        .await
        .unwrap();
    let ch = bob.channel("switch", config).await.unwrap();
    let mut ev = ch.events().await.unwrap();
    subscribe(&ch).await;
    bob.set_auth(Some(stack.user_token(BOB, None)))
        .await
        .unwrap();
    next(&mut ev, "re-subscribed", |e| {
        matches!(e, ChannelEvent::System(s) if s.ok && s.message.contains("Subscribed to PostgreSQL"))
    })
    .await;
    db.execute(
        "insert into public.rtc_notes (id, owner, body) values (3, $1::text::uuid, 'bob again')",
        &[&BOB],
    )
    .await
    .unwrap();
    let c = change(
        next(&mut ev, "bob's row", |e| {
            matches!(e, ChannelEvent::PostgresChange(_))
        })
        .await,
    );
    assert_eq!(c.record.as_ref().unwrap()["id"], json!(3));
    stack.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_is_classified_as_refresh() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let expired =
        livechat_stack::jwt::user_token(ALICE, "authenticated", None, -60, stack.jwt_secret());
    let c = options(&stack, stack.anon_key(), Protocol::V2)
        .build()
        .unwrap();
    c.set_auth(Some(expired)).await.unwrap();
    let ch = c.channel("expired", ChannelConfig::new()).await.unwrap();
    let err = tokio::time::timeout(WAIT, ch.subscribe())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::RefreshToken, "{err:?}");
    assert!(matches!(
        ch.status(),
        ChannelStatus::Errored {
            class: ErrorClass::RefreshToken,
            ..
        }
    ));
    c.set_auth(Some(stack.user_token(ALICE, None)))
        .await
        .unwrap();
    let mut s = ch.status_changes();
    tokio::time::timeout(WAIT, async {
        while let Some(st) = s.next().await {
            if st == ChannelStatus::Subscribed {
                break;
            }
        }
    })
    .await
    .expect("joined after set_auth");
    stack.shutdown().await;
}

#[tokio::test]
async fn presence_track_untrack_state_and_events() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    for protocol in BOTH {
        let name = format!("lobby-{protocol:?}");
        let a = client(&stack, protocol);
        let b = client(&stack, protocol);
        let a_ch = a
            .channel(&name, ChannelConfig::new().presence_key("agent-a"))
            .await
            .unwrap();
        let b_ch = b
            .channel(&name, ChannelConfig::new().presence_key("agent-b"))
            .await
            .unwrap();
        let mut a_ev = a_ch.on(EventFilter::Presence).await.unwrap();
        subscribe(&a_ch).await;
        subscribe(&b_ch).await;
        a_ch.track(json!({"status": "online"})).await.unwrap();
        b_ch.track(json!({"status": "away"})).await.unwrap();
        // Both keys, seen by a, with their metas.
        tokio::time::timeout(WAIT, async {
            loop {
                let s = a_ch.presence_state();
                if s.contains_key("agent-a") && s.contains_key("agent-b") {
                    break;
                }
                next(&mut a_ev, "presence", |_| true).await;
            }
        })
        .await
        .expect("both present");
        let s = a_ch.presence_state();
        assert_eq!(s["agent-b"].len(), 1);
        assert_eq!(s["agent-b"][0].meta["status"], json!("away"));
        assert!(!s["agent-b"][0].presence_ref.is_empty());
        // An update replaces the meta.
        b_ch.track(json!({"status": "busy"})).await.unwrap();
        tokio::time::timeout(WAIT, async {
            while a_ch
                .presence_state()
                .get("agent-b")
                .map(|m| m[0].meta["status"].clone())
                != Some(json!("busy"))
            {
                next(&mut a_ev, "update", |_| true).await;
            }
        })
        .await
        .expect("update seen");
        assert_eq!(a_ch.presence_state()["agent-b"].len(), 1);
        // Untrack: a leave event and the key is gone.
        b_ch.untrack().await.unwrap();
        // (Events of the update may still be queued: the leave that empties the key is ours.)
        let ev = next(&mut a_ev, "leave", |e| {
            matches!(e, ChannelEvent::Presence(PresenceEvent::Leave { key, current, .. })
                if key == "agent-b" && current.is_empty())
        })
        .await;
        let ChannelEvent::Presence(PresenceEvent::Leave { current, left, .. }) = ev else {
            unreachable!()
        };
        assert!(current.is_empty());
        assert_eq!(left.len(), 1);
        next(&mut a_ev, "sync", |e| {
            *e == ChannelEvent::Presence(PresenceEvent::Sync)
        })
        .await;
        assert!(!a_ch.presence_state().contains_key("agent-b"));
        // Two connections under one key: two metas.
        let c = client(&stack, protocol);
        let c_ch = c
            .channel(&name, ChannelConfig::new().presence_key("agent-a"))
            .await
            .unwrap();
        subscribe(&c_ch).await;
        c_ch.track(json!({"device": "phone"})).await.unwrap();
        tokio::time::timeout(WAIT, async {
            while a_ch.presence_state().get("agent-a").map_or(0, |m| m.len()) < 2 {
                next(&mut a_ev, "second device", |_| true).await;
            }
        })
        .await
        .expect("two metas under one key");
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn private_channels_are_authorized_by_rls() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let db = db(&stack).await;
    db.batch_execute(
        // The stack provides realtime.messages and realtime.topic() (RLS on, no policies),
        // as Supabase does; the project adds policies.
        "create policy alice_reads on realtime.messages for select to authenticated
             using (realtime.topic() = 'secret' and auth.uid() = 'c0000000-0000-4000-8000-000000000001');
         create policy alice_writes on realtime.messages for insert to authenticated
             with check (realtime.topic() = 'secret' and auth.uid() = 'c0000000-0000-4000-8000-000000000001');",
    )
    .await
    .expect("realtime.messages");
    for protocol in BOTH {
        let alice = options(&stack, stack.anon_key(), protocol).build().unwrap();
        alice
            .set_auth(Some(stack.user_token(ALICE, None)))
            .await
            .unwrap();
        let bob = options(&stack, stack.anon_key(), protocol).build().unwrap();
        bob.set_auth(Some(stack.user_token(BOB, None)))
            .await
            .unwrap();
        let private = ChannelConfig::new().private(true).broadcast_self(true);
        let a_ch = alice.channel("secret", private.clone()).await.unwrap();
        let mut a_ev = a_ch.on(EventFilter::broadcast("*")).await.unwrap();
        subscribe(&a_ch).await;
        a_ch.send("note", json!({"x": 1})).await.unwrap();
        let got = next(&mut a_ev, "own private broadcast", is_broadcast("note")).await;
        assert_eq!(json_payload(&got), json!({"x": 1}));
        let b_ch = bob.channel("secret", private).await.unwrap();
        let err = tokio::time::timeout(WAIT, b_ch.subscribe())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Fatal, "{err:?}");
        assert!(matches!(b_ch.status(), ChannelStatus::Failed { .. }));
        // The public channel of the same name is another room.
        let pub_ch = bob
            .channel("secret-public", ChannelConfig::new())
            .await
            .unwrap();
        subscribe(&pub_ch).await;
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn heartbeats_at_the_configured_interval() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    for protocol in BOTH {
        let c = options(&stack, stack.anon_key(), protocol)
            .heartbeat_interval(Duration::from_millis(200))
            .build()
            .unwrap();
        let mut hb = c.heartbeats().await.unwrap();
        c.connect().await.unwrap();
        let t0 = tokio::time::Instant::now();
        let mut oks = 0;
        while oks < 3 {
            match tokio::time::timeout(WAIT, hb.next()).await.unwrap() {
                Some(HeartbeatEvent::Ok { rtt }) => {
                    assert!(rtt < Duration::from_secs(5));
                    oks += 1;
                }
                Some(HeartbeatEvent::Sent) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(t0.elapsed() >= Duration::from_millis(400));
        assert_eq!(c.connection_state(), ConnectionState::Connected);
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn deferred_disconnect_and_channel_registry() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let c = options(&stack, stack.anon_key(), Protocol::V2)
        .disconnect_when_empty(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let a = c.channel("a", ChannelConfig::new()).await.unwrap();
    let b = c.channel("b", ChannelConfig::new()).await.unwrap();
    subscribe(&a).await;
    subscribe(&b).await;
    assert_eq!(c.channels().await.unwrap().len(), 2);
    c.remove_channel(&a).await.unwrap();
    assert_eq!(c.channels().await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(c.is_connected(), "disconnected while a channel remained");
    c.remove_all_channels().await.unwrap();
    let mut states = c.connection_states();
    tokio::time::timeout(WAIT, async {
        while let Some(s) = states.next().await {
            if s == ConnectionState::Disconnected {
                break;
            }
        }
    })
    .await
    .expect("disconnected after the last channel went");
    stack.shutdown().await;
}

#[tokio::test]
async fn refused_connections_are_retried() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let rt = stack.realtime().expect("realtime").clone();
    rt.refuse_connections_for(Duration::from_millis(800));
    let c = client(&stack, Protocol::V2);
    let mut states = c.connection_states();
    let ch = c.channel("r", ChannelConfig::new()).await.unwrap();
    let sub = tokio::spawn({
        let ch = ch.clone();
        async move { ch.subscribe().await }
    });
    let refused = tokio::time::timeout(WAIT, async {
        while let Some(s) = states.next().await {
            if let ConnectionState::Reconnecting {
                reason: DisconnectReason::Refused { status, .. },
                ..
            } = s
            {
                return status;
            }
        }
        0
    })
    .await
    .expect("a refusal was reported");
    assert_eq!(refused, 503);
    let _ = sub.await;
    subscribe(&ch).await;
    stack.shutdown().await;
}

/// Acceptance: a subscriber keeps receiving postgres_changes after the stack drops every
/// connection ten times in a row, with no action by the caller.
#[tokio::test]
async fn postgres_changes_survive_ten_connection_drops() {
    init_tracing();
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let db = notes_table(&stack).await;
    let rt = stack.realtime().expect("realtime").clone();
    for protocol in BOTH {
        let base = if protocol == Protocol::V1 { 1000 } else { 2000 };
        let c = options(&stack, stack.service_role_key(), protocol)
            .build()
            .unwrap();
        let ch = c
            .channel(
                &format!("feed-{protocol:?}"),
                ChannelConfig::new().postgres_changes(
                    PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public")
                        .table("rtc_notes"),
                ),
            )
            .await
            .unwrap();
        let mut ev = ch.on(EventFilter::PostgresChanges(None)).await.unwrap();
        let mut statuses = ch.status_changes();
        subscribe(&ch).await;
        // Ten drops, each followed by a change that must arrive.
        for i in 0..10 {
            rt.drop_all_connections();
            // The caller does nothing but wait for the channel to be subscribed again.
            tokio::time::timeout(WAIT, async {
                let mut left = false;
                while let Some(s) = statuses.next().await {
                    if s != ChannelStatus::Subscribed {
                        left = true;
                    } else if left {
                        break;
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("drop {i}: not subscribed again; {:?}", ch.status()));
            db.execute(
                "insert into public.rtc_notes (id, body) values ($1, 'x')",
                &[&(base + i)],
            )
            .await
            .unwrap();
            let c = change(next(&mut ev, &format!("change after drop {i}"), |_| true).await);
            assert_eq!(c.record.unwrap()["id"], json!(base + i));
        }
        // Ten drops in a burst, then changes still flow.
        for _ in 0..10 {
            rt.drop_all_connections();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let id = base + 100;
        let deadline = tokio::time::Instant::now() + WAIT;
        // Changes committed while disconnected are not replayed (as on Supabase); insert until
        // one arrives after the client is back.
        let mut n = 0;
        loop {
            db.execute(
                "insert into public.rtc_notes (id, body) values ($1, 'y')",
                &[&(id + n)],
            )
            .await
            .unwrap();
            match tokio::time::timeout(Duration::from_millis(500), ev.next()).await {
                Ok(Some(e)) => {
                    let c = change(e);
                    assert!(c.record.unwrap()["id"].as_i64().unwrap() >= i64::from(id));
                    break;
                }
                Ok(None) => panic!("subscription ended"),
                Err(_) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "no change after the burst; {:?}",
                        ch.status()
                    );
                    n += 1;
                }
            }
        }
        assert_eq!(ch.status(), ChannelStatus::Subscribed);
    }
    stack.shutdown().await;
}
