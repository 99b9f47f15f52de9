//! Channels: their configuration, the events they deliver, and the [`Channel`] handle.

use super::error::{Error, ErrorClass, ErrorKind};
use super::presence::{PresenceEvent, PresenceState};
use super::serializer::BroadcastPayload;
use super::socket::{ChannelLife, Command};
use super::{request, Changes, Shared};
use bytes::Bytes;
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, watch};

/// Which row changes a `postgres_changes` filter asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PostgresChangeEvent {
    /// Every change (`*`).
    #[default]
    All,
    /// `INSERT`
    Insert,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
}

impl PostgresChangeEvent {
    /// The wire name: `*`, `INSERT`, `UPDATE` or `DELETE`.
    pub fn as_str(self) -> &'static str {
        match self {
            PostgresChangeEvent::All => "*",
            PostgresChangeEvent::Insert => "INSERT",
            PostgresChangeEvent::Update => "UPDATE",
            PostgresChangeEvent::Delete => "DELETE",
        }
    }

    fn parse(s: &str) -> Option<PostgresChangeEvent> {
        match s {
            "INSERT" => Some(PostgresChangeEvent::Insert),
            "UPDATE" => Some(PostgresChangeEvent::Update),
            "DELETE" => Some(PostgresChangeEvent::Delete),
            "*" => Some(PostgresChangeEvent::All),
            _ => None,
        }
    }
}

/// One `postgres_changes` subscription of a channel.
///
/// ```
/// use livechat::realtime::{PostgresChangeEvent, PostgresChangesFilter};
/// let f = PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public")
///     .table("mod_chat_messages")
///     .filter("conversation_id=eq.42");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PostgresChangesFilter {
    event: PostgresChangeEvent,
    schema: String,
    table: Option<String>,
    filter: Option<String>,
}

impl PostgresChangesFilter {
    /// Changes of kind `event` in every published table of `schema`.
    pub fn new(event: PostgresChangeEvent, schema: impl Into<String>) -> Self {
        PostgresChangesFilter {
            event,
            schema: schema.into(),
            table: None,
            filter: None,
        }
    }

    /// Only changes of this table.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    /// A row filter in the server's grammar, e.g. `id=eq.1` or `status=in.(open,pending)`.
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// The event kind asked for.
    pub fn event(&self) -> PostgresChangeEvent {
        self.event
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("event".into(), json!(self.event.as_str()));
        m.insert("schema".into(), json!(self.schema));
        if let Some(t) = &self.table {
            m.insert("table".into(), json!(t));
        }
        if let Some(f) = &self.filter {
            m.insert("filter".into(), json!(f));
        }
        Value::Object(m)
    }

    /// Whether the server's echo of this filter in the join reply matches it (realtime-js
    /// compares event exactly, and schema/table/filter with null ≈ absent).
    pub(crate) fn matches_reply(&self, v: &Value) -> bool {
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        s("event") == Some(self.event.as_str())
            && s("schema") == Some(self.schema.as_str())
            && s("table") == self.table.as_deref()
            && s("filter") == self.filter.as_deref()
    }
}

/// How a channel joins. Setters consume and return the configuration.
///
/// ```
/// use livechat::realtime::{ChannelConfig, PostgresChangeEvent, PostgresChangesFilter};
/// let config = ChannelConfig::new()
///     .broadcast_self(true)
///     .broadcast_ack(true)
///     .presence_key("agent-7")
///     .private(true)
///     .postgres_changes(PostgresChangesFilter::new(PostgresChangeEvent::All, "public").table("t"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChannelConfig {
    pub(crate) broadcast_self: bool,
    pub(crate) broadcast_ack: bool,
    pub(crate) presence_key: Option<String>,
    pub(crate) presence: bool,
    pub(crate) postgres_changes: Vec<PostgresChangesFilter>,
    pub(crate) private: bool,
}

impl ChannelConfig {
    /// The defaults: public channel, no self broadcasts, no acks, no presence, no
    /// postgres_changes.
    pub fn new() -> Self {
        ChannelConfig::default()
    }

    /// Receive this client's own broadcasts.
    pub fn broadcast_self(mut self, on: bool) -> Self {
        self.broadcast_self = on;
        self
    }

    /// Ask the server to acknowledge each broadcast; [`Channel::send`] then waits for it.
    pub fn broadcast_ack(mut self, on: bool) -> Self {
        self.broadcast_ack = on;
        self
    }

    /// The presence key this client tracks under (default: a key the server generates per
    /// join). Setting it enables presence.
    pub fn presence_key(mut self, key: impl Into<String>) -> Self {
        self.presence_key = Some(key.into());
        self.presence = true;
        self
    }

    /// Receive presence state and diffs. Also enabled by a presence key or by a
    /// [`EventFilter::Presence`] listener registered before subscribing.
    pub fn presence(mut self, on: bool) -> Self {
        self.presence = on;
        self
    }

    /// Adds a `postgres_changes` subscription; events name it by its index (0, 1, …) in
    /// [`PostgresChange::filters`].
    pub fn postgres_changes(mut self, filter: PostgresChangesFilter) -> Self {
        self.postgres_changes.push(filter);
        self
    }

    /// A private channel: joins and messages are authorized by RLS policies on
    /// `realtime.messages`.
    pub fn private(mut self, on: bool) -> Self {
        self.private = on;
        self
    }

    pub(crate) fn join_payload(&self, presence_enabled: bool, token: Option<&str>) -> Value {
        let mut payload = json!({
            "config": {
                "broadcast": {"ack": self.broadcast_ack, "self": self.broadcast_self},
                "presence": {
                    "key": self.presence_key.clone().unwrap_or_default(),
                    "enabled": presence_enabled,
                },
                "postgres_changes": self.postgres_changes.iter().map(|f| f.to_json()).collect::<Vec<_>>(),
                "private": self.private,
            }
        });
        if let (Some(t), Some(m)) = (token, payload.as_object_mut()) {
            m.insert("access_token".into(), json!(t));
        }
        payload
    }
}

/// Where a channel is in its life.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ChannelStatus {
    /// Not subscribed (initially, and after unsubscribing).
    Closed,
    /// Joining, or waiting for the connection or the access token to do so.
    Joining,
    /// The join succeeded; waiting for the server's "Subscribed to PostgreSQL".
    Joined,
    /// Fully subscribed: events flow.
    Subscribed,
    /// The last attempt failed; the channel rejoins after a backoff (or, for a rejected token
    /// without a token callback, once [`set_auth`](super::RealtimeClient::set_auth) gives a
    /// new one).
    Errored {
        /// Why.
        reason: String,
        /// What the failure calls for.
        class: ErrorClass,
        /// The number of consecutive failed attempts.
        attempt: u32,
    },
    /// Joined (broadcast and presence work) but the postgres_changes subscriptions were
    /// refused for good (bad filter, table not published…).
    PostgresChangesFailed {
        /// The server's message.
        reason: String,
    },
    /// Leaving.
    Leaving,
    /// Failed for good (e.g. not authorized); not retried until subscribed again.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A broadcast message.
#[derive(Clone, Debug, PartialEq)]
pub struct Broadcast {
    /// The user event name.
    pub event: String,
    /// The payload.
    pub payload: BroadcastPayload,
    /// Metadata, e.g. `{"id": "…"}` for messages sent from the database or REST.
    pub meta: Option<Value>,
}

/// A column of a changed table, as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Column {
    /// The column name.
    pub name: String,
    /// The PostgreSQL type name (`int4`, `text`, `_text`…).
    #[serde(rename = "type")]
    pub type_name: String,
}

/// A row change delivered by `postgres_changes`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PostgresChange {
    /// `Insert`, `Update` or `Delete` (never `All`).
    pub event: PostgresChangeEvent,
    /// The schema.
    pub schema: String,
    /// The table.
    pub table: String,
    /// When the transaction committed (e.g. `2026-05-01T12:34:56.789Z`).
    pub commit_timestamp: Option<String>,
    /// The columns the subscriber may see.
    pub columns: Vec<Column>,
    /// The new row (INSERT, UPDATE).
    pub record: Option<Map<String, Value>>,
    /// The old row or its identity (UPDATE, DELETE).
    pub old_record: Option<Map<String, Value>>,
    /// Errors the server reports for this change (e.g. `Error 413: Payload Too Large`).
    pub errors: Vec<String>,
    /// The indices, in the channel's [`ChannelConfig::postgres_changes`], of the filters
    /// this change matched.
    pub filters: Vec<usize>,
}

#[derive(Deserialize)]
struct RawChange {
    #[serde(default)]
    ids: Vec<Value>,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    schema: String,
    table: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    commit_timestamp: Option<String>,
    #[serde(default)]
    columns: Option<Vec<Column>>,
    #[serde(default)]
    record: Option<Map<String, Value>>,
    #[serde(default)]
    old_record: Option<Map<String, Value>>,
    #[serde(default)]
    errors: Option<Value>,
}

impl PostgresChange {
    /// Parses a `postgres_changes` payload and routes it to the channel's filters given the
    /// ids of the join reply (a filter matches when its id is listed and its event is `*` or
    /// the change's type). `Err` describes a payload of the wrong shape.
    pub(crate) fn parse(
        payload: &Value,
        filters: &[PostgresChangesFilter],
        reply_ids: &[Value],
    ) -> Result<PostgresChange, String> {
        let raw: RawChange = serde_json::from_value(payload.clone())
            .map_err(|e| format!("unexpected postgres_changes payload: {e}"))?;
        let event = match PostgresChangeEvent::parse(&raw.data.kind) {
            Some(PostgresChangeEvent::All) | None => {
                return Err(format!("unknown change type {:?}", raw.data.kind))
            }
            Some(e) => e,
        };
        let matched = filters
            .iter()
            .zip(reply_ids)
            .enumerate()
            .filter(|(_, (f, id))| {
                raw.ids.contains(id) && (f.event == PostgresChangeEvent::All || f.event == event)
            })
            .map(|(i, _)| i)
            .collect();
        let errors = match raw.data.errors {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|e| match e {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            Some(Value::String(s)) => vec![s],
            Some(other) => vec![other.to_string()],
        };
        Ok(PostgresChange {
            event,
            schema: raw.data.schema,
            table: raw.data.table,
            commit_timestamp: raw.data.commit_timestamp,
            columns: raw.data.columns.unwrap_or_default(),
            record: raw.data.record,
            old_record: raw.data.old_record,
            errors,
            filters: matched,
        })
    }
}

/// A `system` message (`Subscribed to PostgreSQL`, token expiry, rate limits…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemMessage {
    /// `postgres_changes` or `system`.
    pub extension: String,
    /// `true` for status `ok`.
    pub ok: bool,
    /// The server's message.
    pub message: String,
}

impl SystemMessage {
    pub(crate) fn parse(payload: &Value) -> Option<SystemMessage> {
        let s = |k: &str| payload.get(k).and_then(Value::as_str);
        Some(SystemMessage {
            extension: s("extension").unwrap_or("system").to_string(),
            ok: s("status")? == "ok",
            message: s("message").unwrap_or("").to_string(),
        })
    }
}

/// What a channel delivers to its subscriptions.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ChannelEvent {
    /// A broadcast message.
    Broadcast(Broadcast),
    /// A row change.
    PostgresChange(PostgresChange),
    /// A presence change (the state itself is [`Channel::presence_state`]).
    Presence(PresenceEvent),
    /// A `system` message.
    System(SystemMessage),
    /// The channel's status changed.
    Status(ChannelStatus),
    /// This subscription was not read fast enough and `missed` events were dropped.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

/// Which events a subscription receives ([`Channel::on`]). Every subscription also receives
/// [`ChannelEvent::Lagged`] when it falls behind.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventFilter {
    /// Everything.
    All,
    /// Broadcasts of one event (case-insensitive), or of any event (`None`).
    Broadcast(Option<String>),
    /// Row changes of every filter, or of the filter at this index.
    PostgresChanges(Option<usize>),
    /// Presence events (registering one before subscribing enables presence).
    Presence,
    /// `system` messages.
    System,
    /// Status changes.
    Status,
}

impl EventFilter {
    /// Broadcasts of `event` (case-insensitive; `"*"` for every event).
    pub fn broadcast(event: impl Into<String>) -> Self {
        let e = event.into();
        EventFilter::Broadcast(if e == "*" { None } else { Some(e) })
    }

    pub(crate) fn matches(&self, ev: &ChannelEvent) -> bool {
        match (self, ev) {
            (_, ChannelEvent::Lagged { .. }) | (EventFilter::All, _) => true,
            (EventFilter::Broadcast(None), ChannelEvent::Broadcast(_)) => true,
            (EventFilter::Broadcast(Some(e)), ChannelEvent::Broadcast(b)) => {
                b.event.eq_ignore_ascii_case(e)
            }
            (EventFilter::PostgresChanges(None), ChannelEvent::PostgresChange(c)) => {
                !c.filters.is_empty()
            }
            (EventFilter::PostgresChanges(Some(i)), ChannelEvent::PostgresChange(c)) => {
                c.filters.contains(i)
            }
            (EventFilter::Presence, ChannelEvent::Presence(_))
            | (EventFilter::System, ChannelEvent::System(_))
            | (EventFilter::Status, ChannelEvent::Status(_)) => true,
            _ => false,
        }
    }
}

/// A stream of a channel's events ([`Channel::on`]). The channel stays joined while a
/// `Channel` handle or a `Subscription` of it is alive; dropping the last one leaves it. The
/// stream ends when the channel is removed.
pub struct Subscription {
    rx: mpsc::Receiver<ChannelEvent>,
    _life: Arc<ChannelLife>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Stream for Subscription {
    type Item = ChannelEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChannelEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// What the socket task hands out for a channel.
pub(crate) struct ChannelParts {
    pub(crate) id: u64,
    pub(crate) topic: String,
    pub(crate) config: ChannelConfig,
    pub(crate) status: watch::Receiver<ChannelStatus>,
    pub(crate) presence: watch::Receiver<PresenceState>,
    pub(crate) life: Arc<ChannelLife>,
}

/// A channel handle: cheap to clone; every clone refers to the same channel.
///
/// ```no_run
/// use futures::StreamExt;
/// use livechat::realtime::{ChannelConfig, ChannelEvent, EventFilter, RealtimeOptions};
/// use serde_json::json;
///
/// # async fn demo() -> Result<(), livechat::realtime::Error> {
/// let client = RealtimeOptions::new("http://127.0.0.1:54321", "<anon key>").build()?;
/// let room = client.channel("room1", ChannelConfig::new()).await?;
/// let mut typing = room.on(EventFilter::broadcast("typing")).await?;
/// room.subscribe().await?;
/// room.send("typing", json!({"user": "ann"})).await?;
/// while let Some(ev) = typing.next().await {
///     if let ChannelEvent::Broadcast(b) = ev {
///         println!("{:?}", b.payload);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Channel {
    parts: Arc<ChannelParts>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("topic", &self.parts.topic)
            .field("status", &*self.parts.status.borrow())
            .finish()
    }
}

impl Channel {
    pub(crate) fn new(parts: ChannelParts, shared: Arc<Shared>) -> Channel {
        Channel {
            parts: Arc::new(parts),
            shared,
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.parts.id
    }

    /// The full topic, e.g. `realtime:room1`.
    pub fn topic(&self) -> &str {
        &self.parts.topic
    }

    /// The channel name, without the `realtime:` prefix.
    pub fn name(&self) -> &str {
        self.parts
            .topic
            .strip_prefix("realtime:")
            .unwrap_or(&self.parts.topic)
    }

    /// The configuration the channel joins with.
    pub fn config(&self) -> &ChannelConfig {
        &self.parts.config
    }

    /// The current status.
    pub fn status(&self) -> ChannelStatus {
        self.parts.status.borrow().clone()
    }

    /// The current status, then every change.
    pub fn status_changes(&self) -> Changes<ChannelStatus> {
        Changes::new(self.parts.status.clone())
    }

    /// A subscription to the events selected by `filter`. Register listeners before
    /// [`subscribe`](Channel::subscribe) to see everything from the first event on.
    pub async fn on(&self, filter: EventFilter) -> Result<Subscription, Error> {
        let (tx, rx) = mpsc::channel(self.shared.options.event_buffer);
        let cmd = Command::Listen {
            id: self.id(),
            filter,
            tx,
        };
        tokio::time::timeout(self.shared.options.timeout, self.shared.cmd.send(cmd))
            .await
            .map_err(|_| Error::timeout("registering a listener"))?
            .map_err(|_| Error::client_closed())?;
        Ok(Subscription {
            rx,
            _life: self.parts.life.clone(),
        })
    }

    /// All events of the channel.
    pub async fn events(&self) -> Result<Subscription, Error> {
        self.on(EventFilter::All).await
    }

    /// Joins the channel (connecting first if needed) and waits until it is subscribed: the
    /// join was accepted and, if postgres_changes were asked for, the server confirmed them.
    ///
    /// An error reports the first failed attempt; unless its class is
    /// [`ErrorClass::Fatal`] the channel keeps trying in the background (see
    /// [`status`](Channel::status)). Once subscribed, the channel rejoins by itself after every
    /// reconnect.
    pub async fn subscribe(&self) -> Result<(), Error> {
        let o = &self.shared.options;
        let deadline = o.connect_timeout + o.token_timeout + o.timeout + o.postgres_timeout;
        request(&self.shared.cmd, deadline, "subscribe", |reply| {
            Command::Subscribe {
                id: self.id(),
                reply,
            }
        })
        .await
    }

    /// Leaves the channel (it stays registered and can subscribe again).
    pub async fn unsubscribe(&self) -> Result<(), Error> {
        let o = &self.shared.options;
        request(&self.shared.cmd, o.timeout * 2, "unsubscribe", |reply| {
            Command::Unsubscribe {
                id: self.id(),
                reply,
            }
        })
        .await
    }

    /// Broadcasts `payload` as event `event` to the channel's other members (and to itself with
    /// [`ChannelConfig::broadcast_self`]). With [`ChannelConfig::broadcast_ack`] it waits for
    /// the server's acknowledgement. If the channel is not joined, the message goes over HTTP
    /// instead (as realtime-js does).
    pub async fn send(&self, event: &str, payload: Value) -> Result<(), Error> {
        match self
            .push_broadcast(event, BroadcastPayload::Json(payload.clone()))
            .await
        {
            Err(e) if e.kind() == ErrorKind::NotJoined => self.http_send(event, payload).await,
            other => other,
        }
    }

    /// Broadcasts raw bytes (protocol 2.0.0 only; needs a joined channel).
    pub async fn send_binary(&self, event: &str, payload: Bytes) -> Result<(), Error> {
        self.push_broadcast(event, BroadcastPayload::Binary(payload))
            .await
    }

    async fn push_broadcast(&self, event: &str, payload: BroadcastPayload) -> Result<(), Error> {
        request(
            &self.shared.cmd,
            self.shared.options.timeout * 2,
            "broadcast",
            |reply| Command::Broadcast {
                id: self.id(),
                event: event.to_string(),
                payload,
                reply,
            },
        )
        .await
    }

    /// Broadcasts over HTTP (`POST /realtime/v1/api/broadcast`), joined or not.
    pub async fn http_send(&self, event: &str, payload: Value) -> Result<(), Error> {
        let msg = super::HttpBroadcastMessage {
            topic: self.name().to_string(),
            event: event.to_string(),
            payload,
            private: self.parts.config.private,
        };
        self.shared.broadcast_http(std::slice::from_ref(&msg)).await
    }

    /// Tracks this client's presence with `meta` (a JSON object). A tracked presence is sent
    /// again after every rejoin; tracking before the channel is joined sends it on join.
    pub async fn track(&self, meta: Value) -> Result<(), Error> {
        if !meta.is_object() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "presence meta must be a JSON object",
            ));
        }
        request(
            &self.shared.cmd,
            self.shared.options.timeout * 2,
            "presence track",
            |reply| Command::Track {
                id: self.id(),
                meta: Some(meta),
                reply,
            },
        )
        .await
    }

    /// Stops tracking this client's presence.
    pub async fn untrack(&self) -> Result<(), Error> {
        request(
            &self.shared.cmd,
            self.shared.options.timeout * 2,
            "presence untrack",
            |reply| Command::Track {
                id: self.id(),
                meta: None,
                reply,
            },
        )
        .await
    }

    /// The current presence state: key → presences.
    pub fn presence_state(&self) -> PresenceState {
        self.parts.presence.borrow().clone()
    }

    /// The current presence state, then the state after every change.
    pub fn presence_changes(&self) -> Changes<PresenceState> {
        Changes::new(self.parts.presence.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_payload_has_the_realtime_js_shape() {
        let c = ChannelConfig::new()
            .broadcast_self(true)
            .presence_key("k")
            .private(true)
            .postgres_changes(
                PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public")
                    .table("t")
                    .filter("id=eq.1"),
            );
        assert_eq!(
            c.join_payload(true, Some("jwt")),
            json!({
                "config": {
                    "broadcast": {"ack": false, "self": true},
                    "presence": {"key": "k", "enabled": true},
                    "postgres_changes": [{"event": "INSERT", "schema": "public", "table": "t", "filter": "id=eq.1"}],
                    "private": true
                },
                "access_token": "jwt"
            })
        );
        let p = ChannelConfig::new().join_payload(false, None);
        assert!(p.get("access_token").is_none());
        assert_eq!(
            p["config"]["presence"],
            json!({"key": "", "enabled": false})
        );
    }

    #[test]
    fn changes_are_routed_to_matching_filters() {
        let filters = [
            PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public").table("t"),
            PostgresChangesFilter::new(PostgresChangeEvent::All, "public"),
            PostgresChangesFilter::new(PostgresChangeEvent::Delete, "public").table("t"),
        ];
        let ids = [json!(11), json!(22), json!(33)];
        let payload = json!({
            "ids": [11, 22, 33],
            "data": {
                "schema": "public", "table": "t", "type": "INSERT",
                "commit_timestamp": "2026-05-01T12:34:56.789Z",
                "columns": [{"name": "id", "type": "int4"}],
                "record": {"id": 1}, "errors": null
            }
        });
        let c = PostgresChange::parse(&payload, &filters, &ids).unwrap();
        assert_eq!(c.filters, vec![0, 1]);
        assert_eq!(c.event, PostgresChangeEvent::Insert);
        assert_eq!(c.record.unwrap()["id"], json!(1));
        assert_eq!(c.columns[0].type_name, "int4");
        assert!(c.errors.is_empty());
        assert!(PostgresChange::parse(&json!({"ids": []}), &filters, &ids).is_err());
        assert!(PostgresChange::parse(
            &json!({"data": {"schema": "s", "table": "t", "type": "TRUNCATE"}}),
            &filters,
            &ids
        )
        .is_err());
    }

    #[test]
    fn reply_bindings_compare_like_realtime_js() {
        let f = PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public").table("t");
        assert!(
            f.matches_reply(&json!({"event": "INSERT", "schema": "public", "table": "t", "id": 5}))
        );
        assert!(f.matches_reply(
            &json!({"event": "INSERT", "schema": "public", "table": "t", "filter": null, "id": 5})
        ));
        assert!(!f.matches_reply(&json!({"event": "*", "schema": "public", "table": "t"})));
        assert!(!f.matches_reply(&json!({"event": "INSERT", "schema": "public"})));
    }

    #[test]
    fn filters_select_events() {
        let b = ChannelEvent::Broadcast(Broadcast {
            event: "Typing".into(),
            payload: BroadcastPayload::Json(json!(1)),
            meta: None,
        });
        assert!(EventFilter::broadcast("typing").matches(&b));
        assert!(EventFilter::broadcast("*").matches(&b));
        assert!(!EventFilter::broadcast("other").matches(&b));
        assert!(!EventFilter::Presence.matches(&b));
        assert!(EventFilter::Presence.matches(&ChannelEvent::Lagged { missed: 1 }));
        assert!(EventFilter::All.matches(&ChannelEvent::Status(ChannelStatus::Closed)));
    }
}
