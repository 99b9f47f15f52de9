//! Pure encoding and decoding of Realtime frames: the Phoenix `1.0.0` JSON-object serializer,
//! the `2.0.0` JSON-array serializer and its binary "user broadcast" frames (kind 3, client to
//! server; kind 4, server to client).
//!
//! The client uses it internally; it is public so that tests and servers can speak the same
//! protocol (both [`Side`]s are implemented).
//!
//! ```
//! use livechat::realtime::serializer::{decode, encode, Frame, FramePayload, Side};
//! use livechat::realtime::Protocol;
//! use serde_json::json;
//!
//! let frame = Frame {
//!     join_ref: Some("1".into()),
//!     msg_ref: Some("1".into()),
//!     topic: "realtime:room".into(),
//!     event: "phx_join".into(),
//!     payload: FramePayload::Json(json!({"config": {}})),
//! };
//! let wire = encode(Protocol::V2, Side::Client, &frame).unwrap();
//! assert_eq!(decode(Protocol::V2, &wire).unwrap(), Some(frame));
//! ```

use super::error::{Error, ErrorKind};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The serializer version (`vsn` query parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// `1.0.0`: JSON objects; binary broadcast payloads are not available.
    V1,
    /// `2.0.0` (default, as in current realtime-js): JSON arrays plus binary user broadcasts.
    #[default]
    V2,
}

impl Protocol {
    /// The `vsn` value: `"1.0.0"` or `"2.0.0"`.
    pub fn vsn(self) -> &'static str {
        match self {
            Protocol::V1 => "1.0.0",
            Protocol::V2 => "2.0.0",
        }
    }
}

/// Which end of the socket encodes: clients send kind 3 and always include `join_ref`, servers
/// send kind 4 and (with `1.0.0`) never include `join_ref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Client to server.
    Client,
    /// Server to client.
    Server,
}

/// The payload of a user broadcast: JSON, or raw bytes (binary frames of protocol 2.0.0 only).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BroadcastPayload {
    /// A JSON value.
    Json(Value),
    /// Raw bytes.
    Binary(Bytes),
}

/// One Phoenix message.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// The join reference of the channel the message belongs to.
    pub join_ref: Option<String>,
    /// The message reference (set on pushes expecting a reply, and on replies).
    pub msg_ref: Option<String>,
    /// The topic, e.g. `realtime:room1` or `phoenix`.
    pub topic: String,
    /// The event, e.g. `phx_join`, `phx_reply`, `broadcast`.
    pub event: String,
    /// The payload.
    pub payload: FramePayload,
}

/// The payload of a [`Frame`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FramePayload {
    /// Any JSON payload (text frames).
    Json(Value),
    /// A user broadcast (event `broadcast`) that travels as a binary frame with protocol 2.0.0
    /// and as `{"type":"broadcast","event":…,"payload":…}` JSON with 1.0.0.
    UserBroadcast {
        /// The user event name.
        event: String,
        /// The user payload.
        payload: BroadcastPayload,
        /// Metadata (`meta`), e.g. `{"id": "…"}` for messages sent from the database.
        meta: Option<Value>,
    },
}

const KIND_USER_BROADCAST_PUSH: u8 = 3;
const KIND_USER_BROADCAST: u8 = 4;

fn malformed(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Malformed, msg)
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg)
}

fn ref_value(r: &Option<String>) -> Value {
    r.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn broadcast_json(
    event: &str,
    payload: &BroadcastPayload,
    meta: &Option<Value>,
) -> Result<Value, Error> {
    let BroadcastPayload::Json(p) = payload else {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "binary broadcast payloads need protocol 2.0.0",
        ));
    };
    let mut m = Map::new();
    m.insert("type".into(), json!("broadcast"));
    m.insert("event".into(), json!(event));
    m.insert("payload".into(), p.clone());
    if let Some(meta) = meta {
        m.insert("meta".into(), meta.clone());
    }
    Ok(Value::Object(m))
}

fn len_u8(what: &str, s: &[u8]) -> Result<u8, Error> {
    u8::try_from(s.len()).map_err(|_| invalid(format!("{what} is longer than 255 bytes")))
}

/// Encodes a frame for the wire.
///
/// Errors: binary payloads with [`Protocol::V1`] ([`ErrorKind::Unsupported`]), and fields
/// longer than 255 bytes in a binary frame ([`ErrorKind::InvalidInput`]).
pub fn encode(protocol: Protocol, side: Side, frame: &Frame) -> Result<WsMessage, Error> {
    let payload = match (&frame.payload, protocol) {
        (FramePayload::Json(v), _) => v.clone(),
        (
            FramePayload::UserBroadcast {
                event,
                payload,
                meta,
            },
            Protocol::V1,
        ) => broadcast_json(event, payload, meta)?,
        (
            FramePayload::UserBroadcast {
                event,
                payload,
                meta,
            },
            Protocol::V2,
        ) => {
            return encode_binary(side, frame, event, payload, meta);
        }
    };
    let text = match protocol {
        Protocol::V1 => {
            let mut m = Map::new();
            m.insert("topic".into(), json!(frame.topic));
            m.insert("event".into(), json!(frame.event));
            m.insert("payload".into(), payload);
            m.insert("ref".into(), ref_value(&frame.msg_ref));
            if side == Side::Client {
                m.insert("join_ref".into(), ref_value(&frame.join_ref));
            }
            Value::Object(m).to_string()
        }
        Protocol::V2 => json!([
            ref_value(&frame.join_ref),
            ref_value(&frame.msg_ref),
            frame.topic,
            frame.event,
            payload
        ])
        .to_string(),
    };
    Ok(WsMessage::Text(text.into()))
}

fn encode_binary(
    side: Side,
    frame: &Frame,
    event: &str,
    payload: &BroadcastPayload,
    meta: &Option<Value>,
) -> Result<WsMessage, Error> {
    let (encoding, body) = match payload {
        BroadcastPayload::Json(v) => (1u8, Bytes::from(v.to_string())),
        BroadcastPayload::Binary(b) => (0u8, b.clone()),
    };
    let meta = meta.as_ref().map(Value::to_string).unwrap_or_default();
    let topic = frame.topic.as_bytes();
    let ev = event.as_bytes();
    let mut out = Vec::with_capacity(7 + 40 + topic.len() + ev.len() + meta.len() + body.len());
    match side {
        Side::Client => {
            let join_ref = frame.join_ref.as_deref().unwrap_or("").as_bytes();
            let msg_ref = frame.msg_ref.as_deref().unwrap_or("").as_bytes();
            out.extend_from_slice(&[
                KIND_USER_BROADCAST_PUSH,
                len_u8("join_ref", join_ref)?,
                len_u8("ref", msg_ref)?,
                len_u8("topic", topic)?,
                len_u8("event", ev)?,
                len_u8("metadata", meta.as_bytes())?,
                encoding,
            ]);
            out.extend_from_slice(join_ref);
            out.extend_from_slice(msg_ref);
        }
        Side::Server => {
            out.extend_from_slice(&[
                KIND_USER_BROADCAST,
                len_u8("topic", topic)?,
                len_u8("event", ev)?,
                len_u8("metadata", meta.as_bytes())?,
                encoding,
            ]);
        }
    }
    out.extend_from_slice(topic);
    out.extend_from_slice(ev);
    out.extend_from_slice(meta.as_bytes());
    out.extend_from_slice(&body);
    Ok(WsMessage::Binary(out.into()))
}

fn opt_ref(v: Option<Value>) -> Result<Option<String>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(malformed(format!(
            "ref is neither a string nor null: {other}"
        ))),
    }
}

fn string_field(v: Option<Value>, what: &str) -> Result<String, Error> {
    match v {
        Some(Value::String(s)) => Ok(s),
        _ => Err(malformed(format!("`{what}` is missing or not a string"))),
    }
}

/// Decodes a WebSocket message. `Ok(None)` for control frames (ping, pong, close).
///
/// Errors ([`ErrorKind::Malformed`]): invalid JSON, a text frame of the wrong shape, a binary
/// frame with [`Protocol::V1`], an unknown binary kind, a truncated binary frame.
pub fn decode(protocol: Protocol, msg: &WsMessage) -> Result<Option<Frame>, Error> {
    match msg {
        WsMessage::Text(t) => decode_text(protocol, t.as_str()).map(Some),
        WsMessage::Binary(b) => decode_binary(protocol, b).map(Some),
        _ => Ok(None),
    }
}

fn decode_text(protocol: Protocol, text: &str) -> Result<Frame, Error> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| malformed(format!("invalid JSON: {e}")))?;
    match protocol {
        Protocol::V1 => {
            let Value::Object(mut m) = v else {
                return Err(malformed("a 1.0.0 frame must be a JSON object"));
            };
            Ok(Frame {
                join_ref: opt_ref(m.remove("join_ref"))?,
                msg_ref: opt_ref(m.remove("ref"))?,
                topic: string_field(m.remove("topic"), "topic")?,
                event: string_field(m.remove("event"), "event")?,
                payload: FramePayload::Json(m.remove("payload").unwrap_or(Value::Null)),
            })
        }
        Protocol::V2 => {
            let Value::Array(a) = v else {
                return Err(malformed("a 2.0.0 text frame must be a JSON array"));
            };
            if a.len() < 5 {
                return Err(malformed("a 2.0.0 frame needs 5 elements"));
            }
            let mut it = a.into_iter();
            Ok(Frame {
                join_ref: opt_ref(it.next())?,
                msg_ref: opt_ref(it.next())?,
                topic: string_field(it.next(), "topic")?,
                event: string_field(it.next(), "event")?,
                payload: FramePayload::Json(it.next().unwrap_or(Value::Null)),
            })
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self
            .buf
            .get(self.off)
            .ok_or_else(|| malformed("binary frame is truncated"))?;
        self.off += 1;
        Ok(b)
    }

    fn bytes(&mut self, len: u8) -> Result<&'a [u8], Error> {
        let end = self.off + usize::from(len);
        let s = self
            .buf
            .get(self.off..end)
            .ok_or_else(|| malformed("binary frame is truncated"))?;
        self.off = end;
        Ok(s)
    }

    fn string(&mut self, len: u8) -> Result<String, Error> {
        let s = self.bytes(len)?;
        String::from_utf8(s.to_vec()).map_err(|_| malformed("binary frame has invalid UTF-8"))
    }
}

fn decode_binary(protocol: Protocol, data: &Bytes) -> Result<Frame, Error> {
    if protocol == Protocol::V1 {
        return Err(malformed("binary frames are not part of protocol 1.0.0"));
    }
    let mut r = Reader { buf: data, off: 0 };
    let kind = r.byte()?;
    let (join_ref, msg_ref, tl, el, ml, encoding) = match kind {
        KIND_USER_BROADCAST_PUSH => {
            let (jl, rl, tl, el, ml, enc) = (
                r.byte()?,
                r.byte()?,
                r.byte()?,
                r.byte()?,
                r.byte()?,
                r.byte()?,
            );
            let join_ref = r.string(jl)?;
            let msg_ref = r.string(rl)?;
            (Some(join_ref), Some(msg_ref), tl, el, ml, enc)
        }
        KIND_USER_BROADCAST => (None, None, r.byte()?, r.byte()?, r.byte()?, r.byte()?),
        other => return Err(malformed(format!("unsupported binary frame kind {other}"))),
    };
    let topic = r.string(tl)?;
    let event = r.string(el)?;
    let meta = r.bytes(ml)?;
    let meta = if meta.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice::<Value>(meta)
                .map_err(|e| malformed(format!("invalid broadcast metadata: {e}")))?,
        )
    };
    let body = data.slice(r.off..);
    let payload = match encoding {
        1 => BroadcastPayload::Json(
            serde_json::from_slice(&body)
                .map_err(|e| malformed(format!("invalid JSON broadcast payload: {e}")))?,
        ),
        0 => BroadcastPayload::Binary(body),
        other => return Err(malformed(format!("unknown payload encoding {other}"))),
    };
    Ok(Frame {
        join_ref: join_ref.filter(|s| !s.is_empty()),
        msg_ref: msg_ref.filter(|s| !s.is_empty()),
        topic,
        event: "broadcast".into(),
        payload: FramePayload::UserBroadcast {
            event,
            payload,
            meta,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: FramePayload) -> Frame {
        Frame {
            join_ref: Some("3".into()),
            msg_ref: Some("4".into()),
            topic: "realtime:room".into(),
            event: "broadcast".into(),
            payload,
        }
    }

    #[test]
    fn v2_text_roundtrip_and_shape() {
        let f = Frame {
            join_ref: None,
            msg_ref: Some("7".into()),
            topic: "phoenix".into(),
            event: "heartbeat".into(),
            payload: FramePayload::Json(json!({})),
        };
        let m = encode(Protocol::V2, Side::Client, &f).unwrap();
        assert_eq!(
            m,
            WsMessage::Text(r#"[null,"7","phoenix","heartbeat",{}]"#.into())
        );
        assert_eq!(decode(Protocol::V2, &m).unwrap(), Some(f));
    }

    #[test]
    fn v1_client_includes_join_ref_server_does_not() {
        let f = frame(FramePayload::Json(json!({"a": 1})));
        let WsMessage::Text(c) = encode(Protocol::V1, Side::Client, &f).unwrap() else {
            panic!("text expected")
        };
        let v: Value = serde_json::from_str(&c).unwrap();
        assert_eq!(v["join_ref"], json!("3"));
        assert_eq!(v["ref"], json!("4"));
        let WsMessage::Text(s) = encode(Protocol::V1, Side::Server, &f).unwrap() else {
            panic!("text expected")
        };
        let v: Value = serde_json::from_str(&s).unwrap();
        assert!(v.get("join_ref").is_none());
        let back = decode(Protocol::V1, &WsMessage::Text(s)).unwrap().unwrap();
        assert_eq!(back.join_ref, None);
        assert_eq!(back.msg_ref.as_deref(), Some("4"));
    }

    #[test]
    fn v2_broadcast_is_binary_kind3_from_client_and_kind4_from_server() {
        let f = frame(FramePayload::UserBroadcast {
            event: "cursor".into(),
            payload: BroadcastPayload::Json(json!({"x": 1})),
            meta: None,
        });
        let WsMessage::Binary(b) = encode(Protocol::V2, Side::Client, &f).unwrap() else {
            panic!("binary expected")
        };
        assert_eq!(&b[..7], &[3, 1, 1, 13, 6, 0, 1]);
        assert_eq!(&b[7..9], b"34");
        assert_eq!(&b[9..22], b"realtime:room");
        assert_eq!(&b[22..28], b"cursor");
        assert_eq!(&b[28..], br#"{"x":1}"#);
        assert_eq!(
            decode(Protocol::V2, &WsMessage::Binary(b)).unwrap(),
            Some(f.clone())
        );

        let with_meta = frame(FramePayload::UserBroadcast {
            event: "cursor".into(),
            payload: BroadcastPayload::Binary(Bytes::from_static(&[0, 1, 2])),
            meta: Some(json!({"id": "x"})),
        });
        let WsMessage::Binary(b) = encode(Protocol::V2, Side::Server, &with_meta).unwrap() else {
            panic!("binary expected")
        };
        assert_eq!(&b[..5], &[4, 13, 6, 10, 0]);
        let back = decode(Protocol::V2, &WsMessage::Binary(b))
            .unwrap()
            .unwrap();
        assert_eq!(back.join_ref, None);
        assert_eq!(back.event, "broadcast");
        assert_eq!(back.payload, with_meta.payload);
    }

    #[test]
    fn v1_broadcast_is_json_and_binary_is_unsupported() {
        let f = frame(FramePayload::UserBroadcast {
            event: "cursor".into(),
            payload: BroadcastPayload::Json(json!({"x": 1})),
            meta: None,
        });
        let WsMessage::Text(t) = encode(Protocol::V1, Side::Client, &f).unwrap() else {
            panic!("text expected")
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(
            v["payload"],
            json!({"type":"broadcast","event":"cursor","payload":{"x":1}})
        );
        let bin = frame(FramePayload::UserBroadcast {
            event: "cursor".into(),
            payload: BroadcastPayload::Binary(Bytes::new()),
            meta: None,
        });
        let e = encode(Protocol::V1, Side::Client, &bin).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn long_fields_are_refused_in_binary_frames() {
        let mut f = frame(FramePayload::UserBroadcast {
            event: "e".repeat(256),
            payload: BroadcastPayload::Json(json!(null)),
            meta: None,
        });
        assert_eq!(
            encode(Protocol::V2, Side::Client, &f).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        f.payload = FramePayload::Json(json!({}));
        assert!(encode(Protocol::V2, Side::Client, &f).is_ok());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let texts = [
            "not json",
            "{}",
            r#"{"topic":1,"event":"x"}"#,
            "[1,2,3]",
            r#"[null,null,5,"e",{}]"#,
            r#"[{},null,"t","e",{}]"#,
        ];
        for t in texts {
            assert!(
                decode(Protocol::V2, &WsMessage::Text(t.into())).is_err(),
                "{t}"
            );
        }
        assert!(decode(Protocol::V1, &WsMessage::Text("[1]".into())).is_err());
        let bins: [&[u8]; 8] = [
            &[],
            &[9],
            &[4, 5],
            &[4, 200, 0, 0, 1, b'x'],
            &[4, 1, 1, 0, 7, b't', b'e'],
            &[4, 1, 1, 0, 1, b't', b'e', b'{'],
            &[4, 1, 1, 2, 1, b't', b'e', b'{', b'{', b'1'],
            &[3, 1, 1, 1, 1, 0, 1, 0xff, b'r', b't', b'e'],
        ];
        for b in bins {
            let m = WsMessage::Binary(Bytes::copy_from_slice(b));
            assert!(decode(Protocol::V2, &m).is_err(), "{b:?}");
            assert!(decode(Protocol::V1, &m).is_err());
        }
        assert_eq!(
            decode(Protocol::V2, &WsMessage::Ping(Bytes::new())).unwrap(),
            None
        );
    }

    #[test]
    fn numeric_refs_are_accepted() {
        let m = WsMessage::Text(r#"[1,2,"t","e",{},"extra"]"#.into());
        let f = decode(Protocol::V2, &m).unwrap().unwrap();
        assert_eq!(f.join_ref.as_deref(), Some("1"));
        assert_eq!(f.msg_ref.as_deref(), Some("2"));
    }
}
