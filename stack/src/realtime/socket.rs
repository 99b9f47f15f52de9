//! One WebSocket connection: frames in, channels, replies and pushes out.

use super::auth::{self, TokenError};
use super::cdc::{binding_id, SubError};
use super::hub::{room_key, JoinSpec};
use super::proto::{self, Incoming, Msg, Out, UserBroadcast, Vsn};
use super::Shared;
use crate::jwt;
use crate::jwt::Claims;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Maximum channels per socket.
const MAX_CHANNELS: usize = 100;
/// The `realtime.messages` extension a private channel's write check inserts for a broadcast.
const WRITE_BROADCAST: &str = "broadcast";
/// ...and for a presence track.
const WRITE_PRESENCE: &str = "presence";
/// Maximum broadcast payload (3000 KB plus slack).
const MAX_PAYLOAD_BYTES: usize = 3000 * 1024 + 500;

struct Chan {
    chan_id: u64,
    join_ref: Value,
    name: String,
    private: bool,
    ack: bool,
    self_broadcast: bool,
    presence_enabled: bool,
    token: String,
    exp: i64,
    pg_params: Vec<Value>,
    /// The role and claims of the channel's token (for the write check of private channels).
    role: String,
    claims: Claims,
    /// Private channels: the RLS write checks (broadcast, presence), made at the first
    /// broadcast or track and cached until the token changes (as Supabase Realtime does).
    can_broadcast: Option<bool>,
    can_track: Option<bool>,
}

struct Socket {
    shared: Arc<Shared>,
    vsn: Vsn,
    tx: mpsc::UnboundedSender<Out>,
    connect_token: String,
    chans: HashMap<String, Chan>,
    outbox: Vec<WsMessage>,
}

/// Reads a boolean the way Realtime does (`true`, `"true"`, `"TRUE"`…).
fn flex_bool(v: Option<&Value>, default: bool) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        _ => default,
    }
}

fn empty_to_null(s: String) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s)
    }
}

fn instant_for(exp: i64) -> Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let secs = (exp as f64 - now).clamp(0.0, 10.0 * 365.0 * 86400.0);
    Instant::now() + Duration::from_secs_f64(secs)
}

/// Runs a connection until it closes.
pub async fn run(ws: WebSocket, shared: Arc<Shared>, vsn: Vsn, connect_token: String) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let mut kill = shared.kill.subscribe();
    let mut sock = Socket {
        shared: shared.clone(),
        vsn,
        tx,
        connect_token,
        chans: HashMap::new(),
        outbox: Vec::new(),
    };
    let mut idle_deadline = Instant::now() + shared.idle_timeout();
    let mut abrupt = false;
    loop {
        let next_exp = sock.chans.values().map(|c| c.exp).min().map(instant_for);
        tokio::select! {
            _ = kill.changed() => {
                abrupt = true;
                break;
            }
            frame = stream.next() => {
                match frame {
                    None => break,
                    Some(Err(e)) => {
                        tracing::debug!("realtime: websocket read error: {e}");
                        let too_big = e.to_string().to_ascii_lowercase().contains("too long")
                            || e.to_string().to_ascii_lowercase().contains("too big")
                            || e.to_string().to_ascii_lowercase().contains("capacity");
                        if too_big {
                            let _ = sink.send(WsMessage::Close(Some(CloseFrame {
                                code: 1009,
                                reason: "frame too large".into(),
                            }))).await;
                        }
                        break;
                    }
                    Some(Ok(m)) => {
                        idle_deadline = Instant::now() + shared.idle_timeout();
                        match m {
                            WsMessage::Text(t) => sock.on_text(t.as_str()).await,
                            WsMessage::Binary(b) => sock.on_binary(b).await,
                            WsMessage::Close(_) => break,
                            _ => {}
                        }
                    }
                }
            }
            Some(out) = rx.recv() => {
                if let Some(m) = proto::encode(vsn, &out) {
                    sock.outbox.push(m);
                }
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                tracing::debug!("realtime: closing idle socket");
                let _ = sink.send(WsMessage::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "idle timeout".into(),
                }))).await;
                break;
            }
            _ = async {
                match next_exp {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                sock.expire_tokens();
            }
        }
        let mut failed = false;
        for m in sock.outbox.drain(..) {
            if let Err(e) = sink.send(m).await {
                tracing::debug!("realtime: websocket write error: {e}");
                failed = true;
                break;
            }
        }
        if failed {
            break;
        }
    }
    for (_, c) in sock.chans.drain() {
        shared.hub.leave(c.chan_id);
    }
    if abrupt {
        // Dropping both halves without a close frame ends the TCP connection abruptly.
        drop(sink);
        drop(stream);
    }
}

impl Socket {
    fn send(&mut self, m: Msg) {
        self.outbox.push(proto::encode_msg(self.vsn, &m));
    }

    fn push_out(&self, m: Msg) {
        let _ = self.tx.send(Out::Json(Arc::new(m)));
    }

    async fn on_text(&mut self, text: &str) {
        match proto::decode_text(self.vsn, text) {
            Ok(m) => self.on_msg(m).await,
            Err(e) => tracing::warn!("realtime: MalformedWebSocketMessage: {e}"),
        }
    }

    async fn on_binary(&mut self, data: Bytes) {
        match proto::decode_binary(self.vsn, &data) {
            Ok(Incoming::Msg(m)) => self.on_msg(m).await,
            Ok(Incoming::UserBroadcastPush {
                join_ref,
                msg_ref,
                topic,
                event,
                json,
                payload,
            }) => {
                let m = Msg::new(
                    empty_to_null(join_ref),
                    empty_to_null(msg_ref),
                    &topic,
                    "broadcast",
                    Value::Null,
                );
                if !self.chans.contains_key(&topic) {
                    self.send(m.reply("error", json!({"reason": "unmatched topic"})));
                    return;
                }
                if !self.may_write(&topic, WRITE_BROADCAST).await {
                    tracing::debug!("realtime: broadcast on {topic} refused by the write policy");
                    return;
                }
                let Some(chan) = self.chans.get(&topic) else {
                    return;
                };
                let out = Out::User(Arc::new(UserBroadcast {
                    topic: topic.clone(),
                    event,
                    meta: None,
                    json,
                    payload,
                }));
                let (ack, over) = (chan.ack, data.len() > MAX_PAYLOAD_BYTES);
                if !over {
                    self.relay(&topic, out);
                }
                if ack {
                    self.ack(&m, over);
                }
            }
            Err(e) => tracing::warn!("realtime: MalformedWebSocketMessage: {e}"),
        }
    }

    fn ack(&mut self, m: &Msg, over: bool) {
        if over {
            self.send(Msg::new(
                m.join_ref.clone(),
                m.msg_ref.clone(),
                &m.topic,
                "phx_reply",
                json!({"status": "error", "response": "payload_size_exceeded"}),
            ));
        } else {
            self.send(m.reply("ok", json!({})));
        }
    }

    fn relay(&self, topic: &str, out: Out) {
        let Some(chan) = self.chans.get(topic) else {
            return;
        };
        let exclude = if chan.self_broadcast {
            None
        } else {
            Some(chan.chan_id)
        };
        self.shared
            .hub
            .broadcast(&room_key(topic, chan.private), exclude, out);
    }

    async fn on_msg(&mut self, m: Msg) {
        if m.topic == "phoenix" && m.event == "heartbeat" {
            self.send(m.reply("ok", json!({})));
            return;
        }
        if m.event == "phx_join" {
            self.join(m).await;
            return;
        }
        if !self.chans.contains_key(&m.topic) {
            if m.event == "phx_leave" {
                self.send(m.reply("ok", json!({})));
            } else {
                self.send(m.reply("error", json!({"reason": "unmatched topic"})));
            }
            return;
        }
        match m.event.as_str() {
            "phx_leave" => {
                self.send(m.reply("ok", json!({})));
                self.close_chan(&m.topic);
            }
            "broadcast" => {
                if self.may_write(&m.topic, WRITE_BROADCAST).await {
                    self.on_broadcast(m);
                } else {
                    // Supabase drops it silently: no reply, even with ack on.
                    tracing::debug!(
                        "realtime: broadcast on {} refused by the write policy",
                        m.topic
                    );
                }
            }
            "presence" => self.on_presence(m).await,
            "access_token" => self.on_access_token(m).await,
            other => tracing::debug!("realtime: ignoring event {other:?} on {}", m.topic),
        }
    }

    /// Whether the channel may broadcast and track: always on public channels; on private
    /// ones the RLS write policy on `realtime.messages` decides, once per token.
    async fn may_write(&mut self, topic: &str, extension: &'static str) -> bool {
        let Some(chan) = self.chans.get(topic) else {
            return false;
        };
        if !chan.private {
            return true;
        }
        let cached = if extension == WRITE_PRESENCE {
            chan.can_track
        } else {
            chan.can_broadcast
        };
        if let Some(ok) = cached {
            return ok;
        }
        let (name, role, claims) = (chan.name.clone(), chan.role.clone(), chan.claims.clone());
        let ok = self
            .shared
            .authorize_private(&name, &role, &claims, Some(extension))
            .await
            .is_ok();
        if let Some(chan) = self.chans.get_mut(topic) {
            if extension == WRITE_PRESENCE {
                chan.can_track = Some(ok);
            } else {
                chan.can_broadcast = Some(ok);
            }
        }
        ok
    }

    /// Sends `phx_close` for a channel and forgets it.
    fn close_chan(&mut self, topic: &str) {
        if let Some(c) = self.chans.remove(topic) {
            self.shared.hub.leave(c.chan_id);
            self.send(Msg::new(
                c.join_ref.clone(),
                c.join_ref.clone(),
                topic,
                "phx_close",
                json!({}),
            ));
        }
    }

    /// `system` error then `phx_close`.
    fn shutdown_chan(&mut self, topic: &str, message: &str) {
        let Some(c) = self.chans.get(topic) else {
            return;
        };
        let m = Msg::new(
            c.join_ref.clone(),
            Value::Null,
            topic,
            "system",
            json!({"extension": "system", "status": "error", "message": message, "channel": c.name}),
        );
        self.send(m);
        self.close_chan(topic);
    }

    fn join_error(&mut self, m: &Msg, reason: String) {
        let reply = m.reply("error", json!({"reason": reason}));
        let delay = self.shared.join_error_backoff();
        if delay.is_zero() {
            self.send(reply);
        } else {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(Out::Json(Arc::new(reply)));
            });
        }
    }

    async fn join(&mut self, m: Msg) {
        let Some(name) = m.topic.strip_prefix("realtime:").map(str::to_string) else {
            self.send(m.reply("error", json!({"reason": "unmatched topic"})));
            return;
        };
        // A second join on the same topic closes the first channel.
        if self.chans.contains_key(&m.topic) {
            let topic = m.topic.clone();
            self.close_chan(&topic);
        }
        if self.shared.is_shut() {
            self.join_error(
                &m,
                "RealtimeRestarting: Realtime is restarting, please standby".into(),
            );
            return;
        }
        if name.is_empty() {
            self.join_error(
                &m,
                "TopicNameRequired: You must provide a topic name".into(),
            );
            return;
        }
        let empty = Map::new();
        let payload = m.payload.as_object().unwrap_or(&empty);
        let token = ["access_token", "user_token"]
            .iter()
            .find_map(|k| payload.get(*k).and_then(Value::as_str))
            .filter(|t| !t.starts_with("sb_") && !t.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| self.connect_token.clone());
        let verified = match auth::check(&token, &self.shared.cfg.jwt_secret) {
            Ok(v) => v,
            Err(e) => {
                self.join_error(&m, e.join_reason());
                return;
            }
        };
        if self.chans.len() >= MAX_CHANNELS {
            self.join_error(&m, "ChannelRateLimitReached: Too many channels".into());
            return;
        }
        let config = payload.get("config").and_then(Value::as_object);
        let sub = |a: &str, b: &str| config.and_then(|c| c.get(a)).and_then(|x| x.get(b));
        let self_broadcast = flex_bool(sub("broadcast", "self"), false);
        let ack = flex_bool(sub("broadcast", "ack"), false);
        let presence_enabled = flex_bool(sub("presence", "enabled"), true);
        let presence_key = match sub("presence", "key") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        let private = flex_bool(config.and_then(|c| c.get("private")), false);
        let pg_params: Vec<Value> = match config.and_then(|c| c.get("postgres_changes")) {
            Some(Value::Array(a)) => a.iter().filter(|v| !v.is_null()).cloned().collect(),
            _ => Vec::new(),
        };
        if private {
            if let Err(reason) = self
                .shared
                .authorize_private(&name, &verified.role, &verified.claims, None)
                .await
            {
                self.join_error(&m, reason);
                return;
            }
        }
        let chan_id = self.shared.next_id();
        self.shared.hub.join(JoinSpec {
            chan_id,
            topic: m.topic.clone(),
            private,
            tx: self.tx.clone(),
            self_broadcast,
            presence_key,
            role: verified.role.clone(),
            claims: verified.claims.clone(),
        });
        let echo: Vec<Value> = pg_params
            .iter()
            .map(|p| {
                let mut o = p.as_object().cloned().unwrap_or_default();
                o.insert("id".into(), json!(binding_id(p)));
                Value::Object(o)
            })
            .collect();
        self.chans.insert(
            m.topic.clone(),
            Chan {
                chan_id,
                join_ref: m.msg_ref.clone(),
                name: name.clone(),
                private,
                ack,
                self_broadcast,
                presence_enabled,
                token,
                exp: verified.exp,
                pg_params: pg_params.clone(),
                role: verified.role.clone(),
                claims: verified.claims.clone(),
                can_broadcast: None,
                can_track: None,
            },
        );
        self.send(m.reply("ok", json!({"postgres_changes": echo})));
        if !pg_params.is_empty() {
            self.spawn_subscribe(&m.topic, &verified.role);
        }
        if presence_enabled {
            let state = self.shared.hub.presence_state(&m.topic, private);
            self.send(Msg::new(
                m.msg_ref.clone(),
                Value::Null,
                &m.topic,
                "presence_state",
                state,
            ));
        }
    }

    /// Creates (or refreshes) the channel's Postgres subscriptions in the background and pushes
    /// the `system` outcome. A later call (a new role after `access_token`) supersedes one still
    /// running: only the latest attaches its subscriptions and reports. Until then the channel
    /// keeps its previous subscriptions, so no change is missed in between.
    fn spawn_subscribe(&self, topic: &str, role: &str) {
        let Some(c) = self.chans.get(topic) else {
            return;
        };
        let Some(gen) = self.shared.hub.begin_pg(c.chan_id) else {
            return;
        };
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        let (chan_id, join_ref, name, params, topic, role) = (
            c.chan_id,
            c.join_ref.clone(),
            c.name.clone(),
            c.pg_params.clone(),
            topic.to_string(),
            role.to_string(),
        );
        tokio::spawn(async move {
            let system = |status: &str, message: &str| {
                Out::Json(Arc::new(Msg::new(
                    join_ref.clone(),
                    Value::Null,
                    &topic,
                    "system",
                    json!({"extension": "postgres_changes", "status": status, "message": message, "channel": name}),
                )))
            };
            loop {
                if !shared.hub.is_current_pg(chan_id, gen) {
                    return;
                }
                match shared.capture.subscribe(&params, &role).await {
                    Ok(subs) => {
                        if shared.hub.set_pg(chan_id, gen, subs) {
                            shared.capture.wake.notify_one();
                            let _ = tx.send(system("ok", "Subscribed to PostgreSQL"));
                        }
                        return;
                    }
                    Err(SubError::Fatal(msg)) => {
                        if shared.hub.is_current_pg(chan_id, gen) {
                            let _ = tx.send(system("error", &msg));
                        }
                        return;
                    }
                    Err(SubError::Retry(msg)) => {
                        tracing::warn!("realtime: postgres_changes subscription retrying: {msg}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    fn on_broadcast(&mut self, m: Msg) {
        let Some(chan) = self.chans.get(&m.topic) else {
            return;
        };
        if !m.payload.is_object() {
            tracing::debug!("realtime: broadcast payload is not an object");
            return;
        }
        let ack = chan.ack;
        let over = m.payload.to_string().len() > MAX_PAYLOAD_BYTES;
        if !over {
            let out = Out::Json(Arc::new(Msg::new(
                Value::Null,
                Value::Null,
                &m.topic,
                "broadcast",
                m.payload.clone(),
            )));
            self.relay(&m.topic, out);
        }
        if ack {
            self.ack(&m, over);
        }
    }

    async fn on_presence(&mut self, m: Msg) {
        let event = m
            .payload
            .get("event")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        // Tracking on a private channel needs the presence write policy.
        if event.as_deref() == Some("track") && !self.may_write(&m.topic, WRITE_PRESENCE).await {
            self.send(m.reply("error", json!({})));
            return;
        }
        let Some(chan) = self.chans.get_mut(&m.topic) else {
            return;
        };
        let chan_id = chan.chan_id;
        match event.as_deref() {
            None => self.send(m.reply("ok", json!({}))),
            Some("track") => {
                let Some(meta) = m.payload.get("payload").and_then(Value::as_object) else {
                    self.send(m.reply(
                        "error",
                        json!({"reason": "Presence track payload must be a map"}),
                    ));
                    return;
                };
                let enable = !chan.presence_enabled;
                chan.presence_enabled = true;
                let private = chan.private;
                let join_ref = chan.join_ref.clone();
                self.shared.hub.track(chan_id, meta.clone());
                self.send(m.reply("ok", json!({})));
                if enable {
                    let state = self.shared.hub.presence_state(&m.topic, private);
                    self.push_out(Msg::new(
                        join_ref,
                        Value::Null,
                        &m.topic,
                        "presence_state",
                        state,
                    ));
                }
            }
            Some("untrack") => {
                self.shared.hub.untrack(chan_id);
                self.send(m.reply("ok", json!({})));
            }
            Some(_) => self.send(m.reply("error", json!({"reason": "Unknown presence event"}))),
        }
    }

    async fn on_access_token(&mut self, m: Msg) {
        let Some(token) = m.payload.get("access_token").and_then(Value::as_str) else {
            return;
        };
        let Some(chan) = self.chans.get(&m.topic) else {
            return;
        };
        if token.starts_with("sb_") || token == chan.token {
            return;
        }
        let chan_id = chan.chan_id;
        let has_pg = !chan.pg_params.is_empty();
        match auth::check(token, &self.shared.cfg.jwt_secret) {
            Err(e) => {
                let e = if token.is_empty() {
                    TokenError::Malformed
                } else {
                    e
                };
                self.shutdown_chan(&m.topic, &e.message());
            }
            Ok(v) => {
                // A private channel is authorized again for the new claims (read policies);
                // denied, it is closed as Supabase does.
                let private = self
                    .chans
                    .get(&m.topic)
                    .map(|c| (c.private, c.name.clone()));
                if let Some((true, name)) = private {
                    if let Err(reason) = self
                        .shared
                        .authorize_private(&name, &v.role, &v.claims, None)
                        .await
                    {
                        self.shutdown_chan(&m.topic, &reason);
                        return;
                    }
                }
                if let Some(c) = self.chans.get_mut(&m.topic) {
                    c.token = token.to_string();
                    c.exp = v.exp;
                    c.role = v.role.clone();
                    c.claims = v.claims.clone();
                    c.can_broadcast = None;
                    c.can_track = None;
                }
                self.shared
                    .hub
                    .set_claims(chan_id, &v.role, v.claims.clone());
                if has_pg {
                    self.spawn_subscribe(&m.topic, &v.role);
                }
            }
        }
    }

    /// Closes channels whose token has expired.
    fn expire_tokens(&mut self) {
        let now = jwt::now_secs();
        let expired: Vec<(String, i64)> = self
            .chans
            .iter()
            .filter(|(_, c)| c.exp <= now)
            .map(|(t, c)| (t.clone(), c.exp))
            .collect();
        for (topic, exp) in expired {
            let msg = TokenError::Expired((now - exp).max(0)).message();
            self.shutdown_chan(&topic, &msg);
        }
    }
}
