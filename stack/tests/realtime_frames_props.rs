//! Property tests ("fuzzing") of the realtime server's Phoenix frame handling.
//!
//! * The decoders of `livechat_stack::realtime::proto` (V1 JSON objects, V2 JSON arrays, V2
//!   binary kind 3) never panic on arbitrary text or bytes, refuse what is malformed, and
//!   round-trip what the encoders produce.
//! * Over a real WebSocket, a socket fed arbitrary text and binary frames (both serializers)
//!   stays open and still answers a heartbeat, and an untouched socket of the same server is
//!   unaffected.
//!
//! Bounded (`PROPTEST_CASES` overrides the defaults) so CI stays fast.

use std::time::{Duration, Instant};

use axum::extract::ws::Message as WsMessage;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use livechat_stack::realtime::proto::{
    decode_binary, decode_text, encode_msg, encode_user_broadcast_push, Incoming, Msg, Vsn,
};
use livechat_stack::Stack;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// `default` cases unless `PROPTEST_CASES` says otherwise; no failure-persistence files.
fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Any JSON value (bounded depth and size).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        // Dyadic fractions: exactly representable, so their JSON text round-trips (serde_json's
        // default float parser is not correctly rounded for arbitrary doubles).
        (any::<i32>(), 0u32..10).prop_map(|(n, e)| json!(f64::from(n) / f64::from(1u32 << e))),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((".{0,6}", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Topics and events that mean something to the server, plus noise.
fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("phoenix".to_string()),
        Just("realtime:room".to_string()),
        Just("realtime:".to_string()),
        Just(String::new()),
        ".{0,20}",
    ]
}

fn event() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "heartbeat",
            "phx_join",
            "phx_leave",
            "broadcast",
            "presence",
            "access_token",
            "phx_reply",
        ])
        .prop_map(str::to_string),
        ".{0,12}",
    ]
}

fn reference() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        "[0-9]{1,4}".prop_map(Value::String),
        json_value(),
    ]
}

/// A message the server might be sent: well-formed envelope, arbitrary content.
fn msg() -> impl Strategy<Value = Msg> {
    (reference(), reference(), topic(), event(), json_value()).prop_map(
        |(join_ref, msg_ref, topic, event, payload)| Msg {
            join_ref,
            msg_ref,
            topic,
            event,
            payload,
        },
    )
}

/// Strings of at most 255 bytes (the kind-3 length fields are one byte).
fn short() -> impl Strategy<Value = String> {
    ".{0,40}".prop_filter("fits one length byte", |s| s.len() <= 255)
}

/// A valid kind-3 frame and its parts.
#[allow(clippy::type_complexity)]
fn kind3() -> impl Strategy<Value = ((String, String, String, String, bool, Vec<u8>), Vec<u8>)> {
    (
        short(),
        short(),
        short(),
        short(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(j, r, t, e, json, p)| {
            let frame = encode_user_broadcast_push(&j, &r, &t, &e, json, &p);
            ((j, r, t, e, json, p), frame)
        })
}

/// Text frames for a socket of serializer `v2`: arbitrary text, arbitrary JSON, and
/// well-formed envelopes with arbitrary content.
fn text_frame(v2: bool) -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        2 => json_value().prop_map(|v| v.to_string()),
        3 => msg().prop_map(move |m| {
            if v2 {
                json!([m.join_ref, m.msg_ref, m.topic, m.event, m.payload]).to_string()
            } else {
                json!({"topic": m.topic, "event": m.event, "payload": m.payload,
                       "ref": m.msg_ref, "join_ref": m.join_ref})
                .to_string()
            }
        }),
        1 => (prop::collection::vec(json_value(), 0..8)).prop_map(|a| Value::Array(a).to_string()),
    ]
}

/// Binary frames: arbitrary bytes, and valid kind-3 frames with one byte changed or cut short.
fn binary_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..96),
        1 => kind3().prop_map(|(_, f)| f),
        2 => (kind3(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|((_, mut f), i, b)| {
            let i = i.index(f.len());
            f[i] = b;
            f
        }),
        1 => (kind3(), any::<prop::sample::Index>()).prop_map(|((_, f), i)| {
            let n = i.index(f.len());
            f[..n].to_vec()
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Decoder properties (no server)
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn text_decoders_never_panic(s in any::<String>(), j in json_value()) {
        for vsn in [Vsn::V1, Vsn::V2] {
            let _ = decode_text(vsn, &s);
            let _ = decode_text(vsn, &j.to_string());
        }
    }

    #[test]
    fn binary_decoder_never_panics_and_needs_kind_3(b in prop::collection::vec(any::<u8>(), 0..300)) {
        let bytes = Bytes::from(b.clone());
        prop_assert!(decode_binary(Vsn::V1, &bytes).is_err(), "V1 has no binary frames");
        let r = decode_binary(Vsn::V2, &bytes);
        if b.first() != Some(&3) {
            prop_assert!(r.is_err());
        }
    }

    #[test]
    fn mutated_and_truncated_kind3_frames_never_panic(f in binary_frame()) {
        let _ = decode_binary(Vsn::V2, &Bytes::from(f));
    }

    #[test]
    fn kind3_round_trips(((j, r, t, e, json, p), frame) in kind3()) {
        let decoded = decode_binary(Vsn::V2, &Bytes::from(frame.clone()))
            .map_err(|e| TestCaseError::fail(format!("valid frame refused: {e}")))?;
        prop_assert_eq!(
            decoded,
            Incoming::UserBroadcastPush {
                join_ref: j.clone(),
                msg_ref: r.clone(),
                topic: t.clone(),
                event: e.clone(),
                json,
                payload: Bytes::from(p),
            }
        );
        // Every prefix that cuts into the header or the strings is refused, not misread.
        let strings_end = 7 + j.len() + r.len() + t.len() + e.len();
        for n in 0..strings_end {
            prop_assert!(decode_binary(Vsn::V2, &Bytes::from(frame[..n].to_vec())).is_err(), "prefix {}", n);
        }
    }

    #[test]
    fn encoded_messages_decode_to_themselves(m in msg(), extra in prop::collection::vec(json_value(), 0..3)) {
        // V2: the whole envelope round-trips, and trailing extra elements are ignored.
        let WsMessage::Text(t) = encode_msg(Vsn::V2, &m) else {
            return Err(TestCaseError::fail("V2 messages are text"));
        };
        prop_assert_eq!(decode_text(Vsn::V2, t.as_str()), Ok(m.clone()));
        let mut arr = vec![m.join_ref.clone(), m.msg_ref.clone(), json!(m.topic), json!(m.event), m.payload.clone()];
        arr.extend(extra);
        prop_assert_eq!(decode_text(Vsn::V2, &Value::Array(arr).to_string()), Ok(m.clone()));
        // V1 output carries no join_ref.
        let WsMessage::Text(t) = encode_msg(Vsn::V1, &m) else {
            return Err(TestCaseError::fail("V1 messages are text"));
        };
        let back = decode_text(Vsn::V1, t.as_str())
            .map_err(|e| TestCaseError::fail(format!("V1 output refused: {e}")))?;
        prop_assert_eq!(back, Msg { join_ref: Value::Null, ..m });
    }

    #[test]
    fn envelopes_with_a_non_string_topic_or_event_are_refused(
        m in msg(),
        bad in json_value().prop_filter("not a string", |v| !v.is_string()),
        which in any::<bool>(),
    ) {
        let (topic, event) = if which { (bad, json!(m.event)) } else { (json!(m.topic), bad) };
        let v2 = json!([m.join_ref, m.msg_ref, topic, event, m.payload]).to_string();
        prop_assert!(decode_text(Vsn::V2, &v2).is_err());
        let v1 = json!({"topic": topic, "event": event, "payload": m.payload, "ref": m.msg_ref}).to_string();
        prop_assert!(decode_text(Vsn::V1, &v1).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Over the WebSocket
// ---------------------------------------------------------------------------------------------

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const DEADLINE: Duration = Duration::from_secs(20);

async fn connect(stack: &Stack, vsn: &str) -> Socket {
    let url = format!(
        "ws://127.0.0.1:{}/realtime/v1/websocket?apikey={}&vsn={vsn}",
        stack.port(),
        stack.anon_key()
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    ws
}

/// Sends a heartbeat with a ref no fuzzed frame uses and waits for its ok reply, skipping
/// whatever else the server sends (replies and errors to the fuzzed frames).
async fn heartbeat(ws: &mut Socket, v2: bool, n: u64) -> Result<(), String> {
    let r = format!("hb-{n}");
    let text = if v2 {
        json!([null, r, "phoenix", "heartbeat", {}]).to_string()
    } else {
        json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": r}).to_string()
    };
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = match tokio::time::timeout(left, ws.next()).await {
            Err(_) => return Err("no heartbeat reply".into()),
            Ok(None) => return Err("socket closed".into()),
            Ok(Some(Err(e))) => return Err(format!("socket error: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let Message::Text(t) = m else {
            if let Message::Close(c) = m {
                return Err(format!("socket closed by the server: {c:?}"));
            }
            continue;
        };
        let v: Value =
            serde_json::from_str(&t).map_err(|e| format!("server sent invalid JSON: {e}"))?;
        let (msg_ref, topic, payload) = if v2 {
            (v[1].clone(), v[2].clone(), v[4].clone())
        } else {
            (v["ref"].clone(), v["topic"].clone(), v["payload"].clone())
        };
        if msg_ref == json!(r) && topic == "phoenix" {
            return if payload == json!({"status": "ok", "response": {}}) {
                Ok(())
            } else {
                Err(format!("heartbeat answered {payload}"))
            };
        }
    }
}

#[derive(Debug, Clone)]
enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

fn frames(v2: bool) -> impl Strategy<Value = Vec<Frame>> {
    let one = if v2 {
        prop_oneof![
            3 => text_frame(true).prop_map(Frame::Text),
            2 => binary_frame().prop_map(Frame::Binary),
        ]
        .boxed()
    } else {
        prop_oneof![
            4 => text_frame(false).prop_map(Frame::Text),
            1 => binary_frame().prop_map(Frame::Binary),
        ]
        .boxed()
    };
    prop::collection::vec(one, 1..6)
}

#[test]
fn sockets_survive_arbitrary_frames_and_others_are_unaffected() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let stack = rt.block_on(Stack::for_tests()).expect("stack");
    // Taken out of the cells for each case (no borrow is held across an await).
    let witness = std::cell::RefCell::new(Some(rt.block_on(connect(&stack, "2.0.0"))));
    let counter = std::cell::Cell::new(0u64);
    for (vsn, v2) in [("1.0.0", false), ("2.0.0", true)] {
        let mut runner = TestRunner::new(config(128));
        let result = runner.run(&frames(v2), |batch| {
            let n = counter.get() + 1;
            counter.set(n);
            let mut w = witness
                .borrow_mut()
                .take()
                .ok_or_else(|| TestCaseError::fail("the witness socket was lost"))?;
            let outcome = rt.block_on(async {
                // A fresh socket per case, so that a failing case shrinks on its own.
                let mut ws = connect(&stack, vsn).await;
                for f in &batch {
                    let m = match f {
                        Frame::Text(t) => Message::Text(t.clone().into()),
                        Frame::Binary(b) => Message::Binary(b.clone().into()),
                    };
                    ws.send(m)
                        .await
                        .map_err(|e| TestCaseError::fail(format!("send failed: {e}")))?;
                }
                heartbeat(&mut ws, v2, n)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("fuzzed {vsn} socket: {e}")))?;
                let _ = ws.close(None).await;
                heartbeat(&mut w, true, n)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("witness socket: {e}")))
            });
            *witness.borrow_mut() = Some(w);
            outcome
        });
        if let Err(e) = result {
            panic!("{vsn}: {e}");
        }
    }
    // The server still accepts and serves new sockets.
    let mut fresh = rt.block_on(connect(&stack, "1.0.0"));
    if let Err(e) = rt.block_on(heartbeat(&mut fresh, false, 0)) {
        panic!("fresh socket: {e}");
    }
    rt.block_on(stack.shutdown());
}
