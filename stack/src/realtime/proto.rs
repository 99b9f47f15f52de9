//! Wire formats: the Phoenix V1 JSON serializer (`vsn=1.0.0`) and Supabase's V2 serializer
//! (`vsn=2.0.0`: JSON arrays plus the binary "user broadcast" kinds 3 and 4).

use axum::extract::ws::Message as WsMessage;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The serializer a socket negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vsn {
    /// `1.0.0`: JSON objects.
    V1,
    /// `2.0.0`: JSON arrays and binary user broadcasts.
    V2,
}

impl Vsn {
    /// Picks the serializer for the `vsn` query parameter (`~> 1.0.0` or `~> 2.0.0`; missing =
    /// 1.0.0). `None` means unsupported (the upgrade is answered 403).
    pub fn negotiate(vsn: Option<&str>) -> Option<Vsn> {
        let Some(v) = vsn else {
            return Some(Vsn::V1);
        };
        // Semantic version: MAJOR.MINOR.PATCH, optional pre-release/build suffix after the patch.
        let core = v.split(['-', '+']).next().unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        match (parts[0].parse::<u64>().ok()?, parts[1].parse::<u64>().ok()?) {
            (1, 0) => Some(Vsn::V1),
            (2, 0) => Some(Vsn::V2),
            _ => None,
        }
    }
}

/// A Phoenix message (both directions). `join_ref` and `msg_ref` are kept as JSON values so they
/// are echoed exactly as the client sent them.
#[derive(Clone, Debug, PartialEq)]
pub struct Msg {
    pub join_ref: Value,
    pub msg_ref: Value,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

impl Msg {
    pub fn new(join_ref: Value, msg_ref: Value, topic: &str, event: &str, payload: Value) -> Msg {
        Msg {
            join_ref,
            msg_ref,
            topic: topic.to_string(),
            event: event.to_string(),
            payload,
        }
    }

    /// A `phx_reply` to this message.
    pub fn reply(&self, status: &str, response: Value) -> Msg {
        Msg::new(
            self.join_ref.clone(),
            self.msg_ref.clone(),
            &self.topic,
            "phx_reply",
            json!({"status": status, "response": response}),
        )
    }
}

/// A broadcast that travels as a binary "user broadcast" where the receiver supports it.
#[derive(Clone, Debug, PartialEq)]
pub struct UserBroadcast {
    pub topic: String,
    pub event: String,
    /// JSON metadata object (`meta`), if any.
    pub meta: Option<Value>,
    /// `true`: `payload` is UTF-8 JSON text; `false`: raw bytes.
    pub json: bool,
    pub payload: Bytes,
}

impl UserBroadcast {
    /// The JSON form delivered to V1 sockets: `{type, event, payload, meta?}`. `None` when the
    /// payload is raw binary or not valid JSON (such a message cannot reach a V1 socket).
    pub fn to_json_payload(&self) -> Option<Value> {
        if !self.json {
            return None;
        }
        let payload: Value = serde_json::from_slice(&self.payload).ok()?;
        let mut m = Map::new();
        m.insert("type".into(), json!("broadcast"));
        m.insert("event".into(), json!(self.event));
        m.insert("payload".into(), payload);
        if let Some(meta) = &self.meta {
            m.insert("meta".into(), meta.clone());
        }
        Some(Value::Object(m))
    }
}

/// Something a socket is asked to send.
#[derive(Clone, Debug)]
pub enum Out {
    Json(Arc<Msg>),
    User(Arc<UserBroadcast>),
}

/// An incoming frame, decoded.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Msg(Msg),
    /// Binary kind 3.
    UserBroadcastPush {
        join_ref: String,
        msg_ref: String,
        topic: String,
        event: String,
        json: bool,
        payload: Bytes,
    },
}

const KIND_USER_BROADCAST_PUSH: u8 = 3;
const KIND_USER_BROADCAST: u8 = 4;

/// Decodes a text frame. Errors describe why it is malformed.
pub fn decode_text(vsn: Vsn, text: &str) -> Result<Msg, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    match vsn {
        Vsn::V1 => {
            let Value::Object(mut m) = v else {
                return Err("V1 frame is not a JSON object".into());
            };
            for k in ["topic", "event", "payload", "ref"] {
                if !m.contains_key(k) {
                    return Err(format!("V1 frame lacks `{k}`"));
                }
            }
            let topic = match m.remove("topic") {
                Some(Value::String(s)) => s,
                _ => return Err("`topic` is not a string".into()),
            };
            let event = match m.remove("event") {
                Some(Value::String(s)) => s,
                _ => return Err("`event` is not a string".into()),
            };
            Ok(Msg {
                join_ref: m.remove("join_ref").unwrap_or(Value::Null),
                msg_ref: m.remove("ref").unwrap_or(Value::Null),
                topic,
                event,
                payload: m.remove("payload").unwrap_or(Value::Null),
            })
        }
        Vsn::V2 => {
            let Value::Array(a) = v else {
                return Err("V2 text frame is not a JSON array".into());
            };
            if a.len() < 5 {
                return Err("V2 frame has fewer than 5 elements".into());
            }
            let mut it = a.into_iter();
            let join_ref = it.next().unwrap_or(Value::Null);
            let msg_ref = it.next().unwrap_or(Value::Null);
            let topic = match it.next() {
                Some(Value::String(s)) => s,
                _ => return Err("`topic` is not a string".into()),
            };
            let event = match it.next() {
                Some(Value::String(s)) => s,
                _ => return Err("`event` is not a string".into()),
            };
            let payload = it.next().unwrap_or(Value::Null);
            Ok(Msg {
                join_ref,
                msg_ref,
                topic,
                event,
                payload,
            })
        }
    }
}

fn take<'a>(buf: &'a [u8], off: &mut usize, len: usize) -> Result<&'a [u8], String> {
    let end = off
        .checked_add(len)
        .filter(|e| *e <= buf.len())
        .ok_or("binary frame is truncated")?;
    let s = &buf[*off..end];
    *off = end;
    Ok(s)
}

fn take_str(buf: &[u8], off: &mut usize, len: usize) -> Result<String, String> {
    let s = take(buf, off, len)?;
    String::from_utf8(s.to_vec()).map_err(|_| "binary frame has invalid UTF-8".to_string())
}

/// Decodes a binary frame (V2 only; V1 has no binary frames).
pub fn decode_binary(vsn: Vsn, data: &Bytes) -> Result<Incoming, String> {
    if vsn == Vsn::V1 {
        return Err("binary frames are not supported with vsn 1.0.0".into());
    }
    let buf: &[u8] = data;
    let Some(&kind) = buf.first() else {
        return Err("empty binary frame".into());
    };
    if kind != KIND_USER_BROADCAST_PUSH {
        return Err(format!("unsupported binary kind {kind}"));
    }
    // [3, len(join_ref), len(ref), len(topic), len(user_event), len(metadata), encoding]
    if buf.len() < 7 {
        return Err("binary frame is truncated".into());
    }
    let (jl, rl, tl, el, ml, enc) = (
        buf[1] as usize,
        buf[2] as usize,
        buf[3] as usize,
        buf[4] as usize,
        buf[5] as usize,
        buf[6],
    );
    let mut off = 7;
    let join_ref = take_str(buf, &mut off, jl)?;
    let msg_ref = take_str(buf, &mut off, rl)?;
    let topic = take_str(buf, &mut off, tl)?;
    let event = take_str(buf, &mut off, el)?;
    // Metadata is parsed by the real server and then discarded.
    let _metadata = take(buf, &mut off, ml)?;
    let json = match enc {
        0 => false,
        1 => true,
        other => return Err(format!("unknown payload encoding {other}")),
    };
    Ok(Incoming::UserBroadcastPush {
        join_ref,
        msg_ref,
        topic,
        event,
        json,
        payload: data.slice(off..),
    })
}

/// Encodes a message for a socket of this serializer.
pub fn encode_msg(vsn: Vsn, m: &Msg) -> WsMessage {
    let text = match vsn {
        Vsn::V1 => json!({
            "topic": m.topic,
            "event": m.event,
            "payload": m.payload,
            "ref": m.msg_ref,
        })
        .to_string(),
        Vsn::V2 => json!([m.join_ref, m.msg_ref, m.topic, m.event, m.payload]).to_string(),
    };
    WsMessage::Text(text.into())
}

/// Encodes a user broadcast: binary kind 4 for V2 (JSON text if a field is too long for the
/// one-byte lengths), converted JSON for V1 (`None` when it cannot be delivered to V1).
pub fn encode_user(vsn: Vsn, u: &UserBroadcast) -> Option<WsMessage> {
    let meta = u.meta.as_ref().map(|m| m.to_string()).unwrap_or_default();
    let fits = u.topic.len() <= 255 && u.event.len() <= 255 && meta.len() <= 255;
    if vsn == Vsn::V2 && fits {
        let mut out =
            Vec::with_capacity(5 + u.topic.len() + u.event.len() + meta.len() + u.payload.len());
        out.push(KIND_USER_BROADCAST);
        out.push(u.topic.len() as u8);
        out.push(u.event.len() as u8);
        out.push(meta.len() as u8);
        out.push(if u.json { 1 } else { 0 });
        out.extend_from_slice(u.topic.as_bytes());
        out.extend_from_slice(u.event.as_bytes());
        out.extend_from_slice(meta.as_bytes());
        out.extend_from_slice(&u.payload);
        return Some(WsMessage::Binary(out.into()));
    }
    let payload = u.to_json_payload()?;
    Some(encode_msg(
        vsn,
        &Msg::new(Value::Null, Value::Null, &u.topic, "broadcast", payload),
    ))
}

/// Encodes any outgoing item.
pub fn encode(vsn: Vsn, out: &Out) -> Option<WsMessage> {
    match out {
        Out::Json(m) => Some(encode_msg(vsn, m)),
        Out::User(u) => encode_user(vsn, u),
    }
}

/// Builds a kind-3 frame (used by tests and clients).
pub fn encode_user_broadcast_push(
    join_ref: &str,
    msg_ref: &str,
    topic: &str,
    event: &str,
    json: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![
        KIND_USER_BROADCAST_PUSH,
        join_ref.len() as u8,
        msg_ref.len() as u8,
        topic.len() as u8,
        event.len() as u8,
        0,
        if json { 1 } else { 0 },
    ];
    out.extend_from_slice(join_ref.as_bytes());
    out.extend_from_slice(msg_ref.as_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_versions() {
        assert_eq!(Vsn::negotiate(None), Some(Vsn::V1));
        assert_eq!(Vsn::negotiate(Some("1.0.0")), Some(Vsn::V1));
        assert_eq!(Vsn::negotiate(Some("1.0.3")), Some(Vsn::V1));
        assert_eq!(Vsn::negotiate(Some("2.0.0")), Some(Vsn::V2));
        assert_eq!(Vsn::negotiate(Some("2.1.0")), None);
        assert_eq!(Vsn::negotiate(Some("3.0.0")), None);
        assert_eq!(Vsn::negotiate(Some("2.0")), None);
        assert_eq!(Vsn::negotiate(Some("abc")), None);
    }

    #[test]
    fn decodes_v1_and_v2_text() {
        let m = decode_text(
            Vsn::V1,
            r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"7"}"#,
        )
        .unwrap();
        assert_eq!(m.topic, "phoenix");
        assert_eq!(m.msg_ref, json!("7"));
        assert_eq!(m.join_ref, Value::Null);
        assert!(decode_text(Vsn::V1, r#"{"topic":"x","event":"y","payload":{}}"#).is_err());
        let m = decode_text(Vsn::V2, r#"["1","2","realtime:a","phx_join",{},"extra"]"#).unwrap();
        assert_eq!(m.join_ref, json!("1"));
        assert_eq!(m.event, "phx_join");
        assert!(decode_text(Vsn::V2, r#"["1","2","t","e"]"#).is_err());
        assert!(decode_text(Vsn::V2, r#"{"topic":"x"}"#).is_err());
        assert!(decode_text(Vsn::V2, "not json").is_err());
    }

    #[test]
    fn kind3_roundtrip_and_kind4() {
        let f = encode_user_broadcast_push("1", "2", "realtime:r", "ev", true, br#"{"a":1}"#);
        let inc = decode_binary(Vsn::V2, &Bytes::from(f)).unwrap();
        let Incoming::UserBroadcastPush {
            join_ref,
            msg_ref,
            topic,
            event,
            json,
            payload,
        } = inc
        else {
            panic!()
        };
        assert_eq!(
            (
                join_ref.as_str(),
                msg_ref.as_str(),
                topic.as_str(),
                event.as_str(),
                json
            ),
            ("1", "2", "realtime:r", "ev", true)
        );
        assert_eq!(&payload[..], br#"{"a":1}"#);
        let u = UserBroadcast {
            topic,
            event,
            meta: None,
            json: true,
            payload,
        };
        let WsMessage::Binary(b) = encode_user(Vsn::V2, &u).unwrap() else {
            panic!()
        };
        assert_eq!(&b[..5], &[4, 10, 2, 0, 1]);
        let WsMessage::Text(t) = encode_user(Vsn::V1, &u).unwrap() else {
            panic!()
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(
            v["payload"],
            json!({"type":"broadcast","event":"ev","payload":{"a":1}})
        );
        let raw = UserBroadcast { json: false, ..u };
        assert!(encode_user(Vsn::V1, &raw).is_none());
    }

    #[test]
    fn malformed_binary_is_an_error() {
        for f in [
            vec![],
            vec![9, 1, 2],
            vec![3, 1, 1, 1],
            vec![3, 200, 0, 0, 0, 0, 1, b'x'],
            vec![3, 0, 0, 1, 0, 0, 7, b't'],
            vec![3, 0, 0, 1, 0, 0, 1, 0xff],
        ] {
            assert!(decode_binary(Vsn::V2, &Bytes::from(f)).is_err());
        }
        assert!(decode_binary(Vsn::V1, &Bytes::from(vec![3, 0, 0, 0, 0, 0, 1])).is_err());
    }
}
