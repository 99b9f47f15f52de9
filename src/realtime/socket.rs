//! The socket task: the one owner of the WebSocket, every channel and every timer. Handles
//! talk to it with [`Command`]s; it answers through oneshot channels, publishes states through
//! `watch` channels and delivers events with bounded `try_send`, so it never waits on a caller.

use super::channel::{
    Broadcast, ChannelConfig, ChannelEvent, ChannelParts, ChannelStatus, EventFilter,
    PostgresChange, SystemMessage,
};
use super::error::{postgres_error_is_permanent, Error, ErrorClass, ErrorKind};
use super::options::{RealtimeOptions, Transport, TransportConnector};
use super::presence::{PresenceState, PresenceSync};
use super::serializer::{self, BroadcastPayload, Frame, FramePayload, Side};
use super::{ConnectionState, DisconnectReason, HeartbeatEvent};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

type Ws = WebSocketStream<MaybeTlsStream<Box<dyn Transport>>>;
type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What handles ask of the socket task.
pub(crate) enum Command {
    Connect,
    Disconnect {
        done: Reply<()>,
    },
    Channel {
        topic: String,
        config: ChannelConfig,
        reply: Reply<ChannelParts>,
    },
    Channels {
        reply: Reply<Vec<ChannelParts>>,
    },
    Listen {
        id: u64,
        filter: EventFilter,
        tx: mpsc::Sender<ChannelEvent>,
    },
    Subscribe {
        id: u64,
        reply: Reply<()>,
    },
    Unsubscribe {
        id: u64,
        reply: Reply<()>,
    },
    Remove {
        id: u64,
        reply: Reply<()>,
    },
    RemoveAll {
        reply: Reply<()>,
    },
    Broadcast {
        id: u64,
        event: String,
        payload: BroadcastPayload,
        reply: Reply<()>,
    },
    /// `Some(meta)` tracks, `None` untracks.
    Track {
        id: u64,
        meta: Option<Value>,
        reply: Reply<()>,
    },
    SetAuth {
        token: Option<String>,
        reply: Reply<()>,
    },
    Heartbeats {
        tx: mpsc::Sender<HeartbeatEvent>,
    },
}

/// Held by every handle and subscription of a channel; when the last one is dropped the task
/// is told, and leaves the channel.
pub(crate) struct ChannelLife {
    id: u64,
    gone: mpsc::UnboundedSender<u64>,
    _keep_task: mpsc::Sender<Command>,
}

impl Drop for ChannelLife {
    fn drop(&mut self) {
        let _ = self.gone.send(self.id);
    }
}

trait Lagging: Clone {
    fn lagged(missed: u64) -> Self;
}

impl Lagging for ChannelEvent {
    fn lagged(missed: u64) -> Self {
        ChannelEvent::Lagged { missed }
    }
}

impl Lagging for HeartbeatEvent {
    fn lagged(missed: u64) -> Self {
        HeartbeatEvent::Lagged { missed }
    }
}

/// A bounded delivery queue that counts what a slow consumer missed and tells it so.
struct Sink<T> {
    tx: mpsc::Sender<T>,
    missed: u64,
}

impl<T: Lagging> Sink<T> {
    fn new(tx: mpsc::Sender<T>) -> Self {
        Sink { tx, missed: 0 }
    }

    /// Tells the consumer what it missed, if there is room now; `false` once it is gone.
    fn flush(&mut self) -> bool {
        if self.missed > 0 {
            match self.tx.try_send(T::lagged(self.missed)) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        !self.tx.is_closed()
    }

    /// Offers an event; `false` once the receiver is gone.
    fn offer(&mut self, ev: &T, what: &str) -> bool {
        if self.missed > 0 {
            match self.tx.try_send(T::lagged(self.missed)) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {
                    self.missed += 1;
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(ev.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                if self.missed == 0 {
                    tracing::warn!(
                        what,
                        "slow consumer: its buffer is full, events are dropped"
                    );
                }
                self.missed += 1;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

struct Listener {
    filter: EventFilter,
    sink: Sink<ChannelEvent>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not wanted.
    Closed,
    /// Wanted; waiting for the connection.
    WaitingSocket,
    /// Wanted; waiting for the access token before sending the join.
    WaitingToken,
    /// `phx_join` sent (its deadline is in `pending`).
    Joining,
    /// Joined; waiting for "Subscribed to PostgreSQL".
    AwaitingPg {
        deadline: Instant,
    },
    Subscribed,
    /// Joined, postgres_changes refused for good.
    PgFailed,
    /// A failed attempt; rejoin at `until`.
    Backoff {
        until: Instant,
    },
    /// The token was rejected and there is no callback: wait for `set_auth`.
    WaitingAuth,
    /// `phx_leave` sent (its deadline is in `pending`).
    Leaving,
    /// Fatal failure; not retried until subscribed again.
    Failed,
}

impl Phase {
    fn is_joined(self) -> bool {
        matches!(
            self,
            Phase::AwaitingPg { .. } | Phase::Subscribed | Phase::PgFailed
        )
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Phase::AwaitingPg { deadline } => Some(deadline),
            Phase::Backoff { until } => Some(until),
            _ => None,
        }
    }
}

struct ChannelEntry {
    id: u64,
    topic: String,
    config: ChannelConfig,
    life: Weak<ChannelLife>,
    status_tx: watch::Sender<ChannelStatus>,
    presence_tx: watch::Sender<PresenceState>,
    listeners: Vec<Listener>,
    presence_listener: bool,
    phase: Phase,
    wanted: bool,
    remove_after_leave: bool,
    join_ref: Option<String>,
    join_token: Option<String>,
    pg_ids: Vec<Value>,
    presence: PresenceSync,
    tracked: Option<Value>,
    rejoin_attempt: u32,
    last_system_error: Option<String>,
    subscribe_waiters: Vec<Reply<()>>,
    leave_waiters: Vec<Reply<()>>,
}

impl ChannelEntry {
    fn parts(&self, life: Arc<ChannelLife>) -> ChannelParts {
        ChannelParts {
            id: self.id,
            topic: self.topic.clone(),
            config: self.config.clone(),
            status: self.status_tx.subscribe(),
            presence: self.presence_tx.subscribe(),
            life,
        }
    }

    fn deliver(&mut self, ev: &ChannelEvent) {
        let topic = &self.topic;
        self.listeners.retain_mut(|l| {
            if l.sink.tx.is_closed() {
                false
            } else if l.filter.matches(ev) {
                l.sink.offer(ev, topic)
            } else {
                true
            }
        });
    }

    fn flush_lag(&mut self) {
        self.listeners.retain_mut(|l| l.sink.flush());
    }

    fn set_status(&mut self, status: ChannelStatus) {
        if *self.status_tx.borrow() == status {
            return;
        }
        tracing::debug!(topic = %self.topic, ?status, "channel status");
        self.status_tx.send_replace(status.clone());
        self.deliver(&ChannelEvent::Status(status));
    }

    fn answer_subscribers(&mut self, result: Result<(), Error>) {
        for w in self.subscribe_waiters.drain(..) {
            let _ = w.send(result.clone());
        }
    }

    fn presence_enabled(&self) -> bool {
        self.config.presence || self.presence_listener
    }
}

enum PendingKind {
    Join,
    Leave,
    /// A push waiting for its reply; `None` for the client's own pushes (re-track).
    Push(Option<Reply<()>>),
}

struct Pending {
    channel: u64,
    kind: PendingKind,
    deadline: Instant,
}

#[derive(Default)]
struct Heartbeat {
    next_at: Option<Instant>,
    /// (ref, sent at, reply deadline)
    pending: Option<(String, Instant, Instant)>,
}

enum AfterToken {
    Join(u64),
    Heartbeat,
}

enum Conn {
    Idle,
    Waiting(Instant),
    Connecting(BoxFuture<'static, Result<Box<Ws>, DisconnectReason>>),
    Open(Box<Ws>),
}

enum ConnEvent {
    Opened(Result<Box<Ws>, DisconnectReason>),
    Read(Option<Result<WsMessage, WsError>>),
}

async fn conn_event(conn: &mut Conn) -> ConnEvent {
    match conn {
        Conn::Connecting(fut) => ConnEvent::Opened(fut.await),
        Conn::Open(ws) => ConnEvent::Read(ws.next().await),
        Conn::Idle | Conn::Waiting(_) => std::future::pending().await,
    }
}

async fn token_ready(
    fetch: &mut Option<BoxFuture<'static, Option<Option<String>>>>,
) -> Option<Option<String>> {
    match fetch {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, DisconnectReason> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| DisconnectReason::ConnectFailed(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn open(
    url: Url,
    tls: Option<Arc<rustls::ClientConfig>>,
    transport: Option<TransportConnector>,
    timeout: Duration,
) -> Result<Box<Ws>, DisconnectReason> {
    let attempt = async move {
        let stream: Box<dyn Transport> = match transport {
            Some(connect) => connect(url.clone()).await,
            None => tcp(&url).await,
        }
        .map_err(|e| DisconnectReason::ConnectFailed(e.to_string()))?;
        let connector = tls.map(tokio_tungstenite::Connector::Rustls);
        let (ws, _) =
            tokio_tungstenite::client_async_tls_with_config(url.as_str(), stream, None, connector)
                .await
                .map_err(|e| match e {
                    WsError::Http(resp) => DisconnectReason::Refused {
                        status: resp.status().as_u16(),
                        body: resp
                            .body()
                            .as_ref()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .unwrap_or_default(),
                    },
                    e => DisconnectReason::ConnectFailed(e.to_string()),
                })?;
        Ok(Box::new(ws))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(DisconnectReason::ConnectTimeout),
        Ok(r) => r,
    }
}

async fn tcp(url: &Url) -> std::io::Result<Box<dyn Transport>> {
    let host = url.host_str().unwrap_or("localhost");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(Box::new(stream))
}

fn reply_parts(payload: &FramePayload) -> (bool, Value) {
    match payload {
        FramePayload::Json(v) => (
            v.get("status").and_then(Value::as_str) == Some("ok"),
            v.get("response").cloned().unwrap_or(Value::Null),
        ),
        _ => (false, Value::Null),
    }
}

fn reason_text(response: &Value) -> String {
    match response {
        Value::String(s) => s.clone(),
        Value::Object(m) => match m.get("reason") {
            Some(Value::String(s)) => s.clone(),
            _ => response.to_string(),
        },
        other => other.to_string(),
    }
}

/// The task itself.
pub(crate) struct SocketTask {
    opts: Arc<RealtimeOptions>,
    url: Url,
    tls: Option<Arc<rustls::ClientConfig>>,
    cmd_rx: mpsc::Receiver<Command>,
    cmd_weak: mpsc::WeakSender<Command>,
    gone_tx: mpsc::UnboundedSender<u64>,
    gone_rx: mpsc::UnboundedReceiver<u64>,
    state_tx: watch::Sender<ConnectionState>,
    token_tx: watch::Sender<Option<String>>,
    conn: Conn,
    wanted: bool,
    attempt: u32,
    next_ref: u64,
    next_id: u64,
    channels: BTreeMap<u64, ChannelEntry>,
    pending: HashMap<String, Pending>,
    hb: Heartbeat,
    hb_sinks: Vec<Sink<HeartbeatEvent>>,
    token: Option<String>,
    token_fetch: Option<BoxFuture<'static, Option<Option<String>>>>,
    after_token: Vec<AfterToken>,
    empty_deadline: Option<Instant>,
    broken: Option<DisconnectReason>,
}

impl SocketTask {
    pub(crate) fn new(
        opts: Arc<RealtimeOptions>,
        url: Url,
        cmd_rx: mpsc::Receiver<Command>,
        cmd_weak: mpsc::WeakSender<Command>,
        state_tx: watch::Sender<ConnectionState>,
        token_tx: watch::Sender<Option<String>>,
    ) -> SocketTask {
        let (gone_tx, gone_rx) = mpsc::unbounded_channel();
        SocketTask {
            opts,
            url,
            tls: None,
            cmd_rx,
            cmd_weak,
            gone_tx,
            gone_rx,
            state_tx,
            token_tx,
            conn: Conn::Idle,
            wanted: false,
            attempt: 0,
            next_ref: 0,
            next_id: 0,
            channels: BTreeMap::new(),
            pending: HashMap::new(),
            hb: Heartbeat::default(),
            hb_sinks: Vec::new(),
            token: None,
            token_fetch: None,
            after_token: Vec::new(),
            empty_deadline: None,
            broken: None,
        }
    }

    pub(crate) async fn run(mut self) {
        tracing::debug!(endpoint = %self.endpoint(), "realtime task started");
        loop {
            if let Some(reason) = self.broken.take() {
                self.lost(reason);
                continue;
            }
            let wake = self.next_deadline();
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => break,
                },
                Some(id) = self.gone_rx.recv() => self.on_gone(id).await,
                ev = conn_event(&mut self.conn) => match ev {
                    ConnEvent::Opened(res) => self.on_opened(res).await,
                    ConnEvent::Read(msg) => self.on_read(msg).await,
                },
                tok = token_ready(&mut self.token_fetch) => self.on_token(tok).await,
                _ = sleep_until(wake) => self.on_timers().await,
            }
        }
        self.close_ws("client dropped").await;
        tracing::debug!("realtime task stopped");
    }

    /// The endpoint without its query (which holds the API key), for logs.
    fn endpoint(&self) -> String {
        let mut u = self.url.clone();
        u.set_query(None);
        u.to_string()
    }

    fn make_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    fn is_open(&self) -> bool {
        matches!(self.conn, Conn::Open(_)) && self.broken.is_none()
    }

    fn set_state(&mut self, state: ConnectionState) {
        self.state_tx.send_if_modified(|s| {
            if *s == state {
                false
            } else {
                *s = state;
                true
            }
        });
    }

    fn emit_heartbeat(&mut self, ev: HeartbeatEvent) {
        self.hb_sinks.retain_mut(|s| s.offer(&ev, "heartbeats"));
    }

    fn topic_id(&self, topic: &str) -> Option<u64> {
        self.channels
            .values()
            .find(|c| c.topic == topic)
            .map(|c| c.id)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        if let Conn::Waiting(until) = self.conn {
            consider(Some(until));
        }
        if matches!(self.conn, Conn::Open(_)) {
            consider(self.hb.next_at);
            consider(self.hb.pending.as_ref().map(|p| p.2));
        }
        consider(self.empty_deadline);
        for p in self.pending.values() {
            consider(Some(p.deadline));
        }
        for c in self.channels.values() {
            consider(c.phase.deadline());
        }
        at
    }

    // ----- writing -----

    async fn send_msg(&mut self, msg: WsMessage) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let Conn::Open(ws) = &mut self.conn else {
            return false;
        };
        match tokio::time::timeout(self.opts.timeout, ws.send(msg)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.broken = Some(DisconnectReason::ConnectionLost(format!(
                    "write failed: {e}"
                )));
                false
            }
            Err(_) => {
                self.broken = Some(DisconnectReason::WriteTimeout);
                false
            }
        }
    }

    async fn send_frame(&mut self, frame: &Frame) -> bool {
        tracing::trace!(topic = %frame.topic, event = %frame.event, msg_ref = ?frame.msg_ref, "send");
        match serializer::encode(self.opts.protocol, Side::Client, frame) {
            Ok(msg) => self.send_msg(msg).await,
            Err(e) => {
                tracing::warn!(topic = %frame.topic, event = %frame.event, error = %e, "cannot encode a frame");
                false
            }
        }
    }

    async fn close_ws(&mut self, reason: &str) {
        if let Conn::Open(ws) = &mut self.conn {
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: reason.to_string().into(),
            };
            let limit = self.opts.timeout.min(Duration::from_secs(1));
            let _ =
                tokio::time::timeout(limit, WebSocketStream::close(ws.as_mut(), Some(frame))).await;
        }
        self.conn = Conn::Idle;
    }

    // ----- connection -----

    fn start_connect(&mut self) {
        if self.url.scheme() == "wss" && self.tls.is_none() {
            match tls_config() {
                Ok(c) => self.tls = Some(c),
                Err(reason) => {
                    self.lost(reason);
                    return;
                }
            }
        }
        tracing::debug!(endpoint = %self.endpoint(), attempt = self.attempt, "connecting");
        self.conn = Conn::Connecting(Box::pin(open(
            self.url.clone(),
            self.tls.clone(),
            self.opts.transport.clone(),
            self.opts.connect_timeout,
        )));
        if self.attempt == 0 {
            self.set_state(ConnectionState::Connecting);
        }
    }

    fn ensure_connecting(&mut self) {
        self.wanted = true;
        if matches!(self.conn, Conn::Idle) {
            if matches!(
                *self.state_tx.borrow(),
                ConnectionState::Failed { .. } | ConnectionState::Disconnected
            ) {
                self.attempt = 0;
            }
            self.start_connect();
        }
    }

    async fn on_opened(&mut self, res: Result<Box<Ws>, DisconnectReason>) {
        match res {
            Ok(ws) => {
                self.conn = Conn::Open(ws);
                tracing::info!(endpoint = %self.endpoint(), after_attempts = self.attempt, "realtime connected");
                self.attempt = 0;
                self.hb = Heartbeat {
                    next_at: Some(Instant::now() + self.opts.heartbeat_interval),
                    pending: None,
                };
                self.set_state(ConnectionState::Connected);
                let ids: Vec<u64> = self
                    .channels
                    .values()
                    .filter(|c| {
                        c.wanted && matches!(c.phase, Phase::WaitingSocket | Phase::Backoff { .. })
                    })
                    .map(|c| c.id)
                    .collect();
                for id in ids {
                    self.start_join(id).await;
                }
            }
            Err(reason) => self.lost(reason),
        }
    }

    /// The connection (or a connection attempt) ended: reset everything that belonged to it
    /// and, unless the cause is fatal or nobody wants a connection, schedule a reconnect.
    fn lost(&mut self, reason: DisconnectReason) {
        let user_closed = !self.wanted;
        self.reset_connection(if user_closed { None } else { Some(&reason) });
        if user_closed {
            self.set_state(ConnectionState::Disconnected);
            return;
        }
        match reason.class() {
            ErrorClass::Fatal => {
                tracing::error!(%reason, "realtime connection refused for good; not reconnecting");
                self.wanted = false;
                let err = Error::new(
                    ErrorKind::Disconnected,
                    format!("connection refused: {reason}"),
                )
                .with_class(ErrorClass::Fatal);
                for c in self.channels.values_mut() {
                    c.answer_subscribers(Err(err.clone()));
                }
                self.set_state(ConnectionState::Failed { reason });
            }
            _ => {
                self.attempt = self.attempt.saturating_add(1);
                let delay = self.opts.reconnect_backoff.delay(self.attempt);
                tracing::warn!(%reason, attempt = self.attempt, ?delay, "realtime connection lost; reconnecting");
                self.conn = Conn::Waiting(Instant::now() + delay);
                self.set_state(ConnectionState::Reconnecting {
                    attempt: self.attempt,
                    reason,
                });
            }
        }
    }

    /// Drops the socket and everything tied to it. Channels that were joined or joining wait
    /// for the next connection; `reason` is `None` for a disconnect the caller asked for.
    fn reset_connection(&mut self, reason: Option<&DisconnectReason>) {
        self.conn = Conn::Idle;
        self.hb = Heartbeat::default();
        let err = Error::new(
            ErrorKind::Disconnected,
            match reason {
                Some(r) => format!("connection lost: {r}"),
                None => "disconnected".to_string(),
            },
        );
        for (_, p) in self.pending.drain() {
            if let PendingKind::Push(Some(reply)) = p.kind {
                let _ = reply.send(Err(err.clone()));
            }
        }
        let ids: Vec<u64> = self.channels.keys().copied().collect();
        for id in ids {
            let Some(c) = self.channels.get_mut(&id) else {
                continue;
            };
            match c.phase {
                Phase::Leaving => self.finish_leave(id, Ok(())),
                Phase::WaitingToken
                | Phase::Joining
                | Phase::AwaitingPg { .. }
                | Phase::Subscribed
                | Phase::PgFailed
                | Phase::Backoff { .. }
                | Phase::WaitingSocket => {
                    c.phase = Phase::WaitingSocket;
                    c.join_ref = None;
                    match reason {
                        Some(r) => c.set_status(ChannelStatus::Errored {
                            reason: format!("connection lost: {r}"),
                            class: ErrorClass::Retry,
                            attempt: c.rejoin_attempt,
                        }),
                        None => {
                            c.set_status(ChannelStatus::Joining);
                            c.answer_subscribers(Err(err.clone()));
                        }
                    }
                }
                Phase::Closed | Phase::WaitingAuth | Phase::Failed => {}
            }
        }
    }

    fn schedule_empty_disconnect(&mut self) {
        if self.channels.is_empty() && !matches!(self.conn, Conn::Idle) {
            if let Some(d) = self.opts.empty_disconnect_delay() {
                self.empty_deadline = Some(Instant::now() + d);
            }
        }
    }

    async fn disconnect(&mut self, why: &str) {
        tracing::info!(why, "realtime disconnecting");
        self.wanted = false;
        self.close_ws(why).await;
        self.attempt = 0;
        self.reset_connection(None);
        self.set_state(ConnectionState::Disconnected);
    }

    // ----- reading -----

    async fn on_read(&mut self, msg: Option<Result<WsMessage, WsError>>) {
        match msg {
            None => {
                self.broken = Some(DisconnectReason::ConnectionLost(
                    "the connection ended without a close frame".into(),
                ))
            }
            Some(Err(e)) => self.broken = Some(DisconnectReason::ConnectionLost(e.to_string())),
            Some(Ok(WsMessage::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                self.broken = Some(DisconnectReason::Closed { code, reason });
            }
            Some(Ok(msg)) => match serializer::decode(self.opts.protocol, &msg) {
                Ok(Some(frame)) => self.on_frame(frame).await,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "malformed frame skipped"),
            },
        }
    }

    async fn on_frame(&mut self, frame: Frame) {
        tracing::trace!(topic = %frame.topic, event = %frame.event, msg_ref = ?frame.msg_ref, "received");
        if frame.topic == "phoenix" {
            if frame.event == "phx_reply" {
                self.on_heartbeat_reply(&frame);
            }
            return;
        }
        if frame.event == "phx_reply" {
            self.on_reply(frame).await;
            return;
        }
        let Some(id) = self.topic_id(&frame.topic) else {
            tracing::debug!(topic = %frame.topic, event = %frame.event, "message for an unknown topic ignored");
            return;
        };
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        let current = ch.join_ref.clone();
        if frame.join_ref.is_some() && frame.join_ref != current {
            tracing::debug!(topic = %frame.topic, event = %frame.event, "message of an earlier join dropped");
            return;
        }
        match frame.event.as_str() {
            "phx_close" | "phx_error" => {
                // Protocol 1.0.0 carries the join ref of a close in `ref`.
                let of = frame.join_ref.clone().or(frame.msg_ref.clone());
                if current.is_none() || (of.is_some() && of != current) {
                    tracing::debug!(topic = %frame.topic, event = %frame.event, "close of an earlier join ignored");
                    return;
                }
                if frame.event == "phx_close" {
                    self.on_server_close(id).await;
                } else {
                    let msg = "the channel crashed on the server";
                    self.fail_attempt(
                        id,
                        msg,
                        ErrorClass::Retry,
                        Error::new(ErrorKind::ChannelClosed, msg).with_class(ErrorClass::Retry),
                    );
                }
            }
            _ if !ch.phase.is_joined() => {
                tracing::debug!(topic = %frame.topic, event = %frame.event, "message while not joined ignored");
            }
            "system" => self.on_system(id, &frame.payload).await,
            "broadcast" => on_broadcast(ch, frame.payload),
            "presence_state" | "presence_diff" => {
                let (FramePayload::Json(v), Some(join_ref)) = (&frame.payload, &current) else {
                    return;
                };
                let events = if frame.event == "presence_state" {
                    ch.presence.on_state(join_ref, v)
                } else {
                    ch.presence.on_diff(join_ref, v)
                };
                if !events.is_empty() {
                    ch.presence_tx.send_replace(ch.presence.view());
                    for e in events {
                        ch.deliver(&ChannelEvent::Presence(e));
                    }
                }
            }
            "postgres_changes" => {
                let FramePayload::Json(v) = &frame.payload else {
                    return;
                };
                match PostgresChange::parse(v, &ch.config.postgres_changes, &ch.pg_ids) {
                    Ok(change) => {
                        if change.filters.is_empty() {
                            tracing::debug!(topic = %ch.topic, "a change matched none of the channel's filters");
                        }
                        ch.deliver(&ChannelEvent::PostgresChange(change));
                    }
                    Err(e) => {
                        tracing::warn!(topic = %ch.topic, error = %e, "postgres_changes message skipped")
                    }
                }
            }
            other => {
                tracing::debug!(topic = %frame.topic, event = other, "unhandled event ignored")
            }
        }
    }

    fn on_heartbeat_reply(&mut self, frame: &Frame) {
        match &self.hb.pending {
            Some((r, sent, _)) if frame.msg_ref.as_deref() == Some(r.as_str()) => {
                let rtt = sent.elapsed();
                let (ok, _) = reply_parts(&frame.payload);
                self.hb.pending = None;
                self.hb.next_at = Some(Instant::now() + self.opts.heartbeat_interval);
                if ok {
                    self.emit_heartbeat(HeartbeatEvent::Ok { rtt });
                } else {
                    tracing::warn!("heartbeat answered with an error");
                    self.emit_heartbeat(HeartbeatEvent::Error);
                }
            }
            _ => tracing::debug!(msg_ref = ?frame.msg_ref, "stale heartbeat reply ignored"),
        }
    }

    async fn on_reply(&mut self, frame: Frame) {
        let Some(r) = frame.msg_ref.clone() else {
            tracing::debug!(topic = %frame.topic, "reply without a ref ignored");
            return;
        };
        let Some(p) = self.pending.remove(&r) else {
            tracing::debug!(topic = %frame.topic, msg_ref = %r, "reply with an unknown or stale ref ignored");
            return;
        };
        let (ok, response) = reply_parts(&frame.payload);
        match p.kind {
            PendingKind::Join => self.on_join_reply(p.channel, &r, ok, response).await,
            PendingKind::Leave => self.finish_leave(p.channel, Ok(())),
            PendingKind::Push(reply) => {
                let result = if ok {
                    Ok(())
                } else {
                    Err(Error::new(ErrorKind::PushRejected, reason_text(&response)))
                };
                match reply {
                    Some(reply) => {
                        let _ = reply.send(result);
                    }
                    None => {
                        if let Err(e) = result {
                            tracing::warn!(topic = %frame.topic, error = %e, "push refused");
                        }
                    }
                }
            }
        }
    }

    async fn on_join_reply(&mut self, id: u64, r: &str, ok: bool, response: Value) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        if ch.phase != Phase::Joining || ch.join_ref.as_deref() != Some(r) {
            tracing::debug!(topic = %ch.topic, "reply to an abandoned join ignored");
            return;
        }
        if !ok {
            let reason = reason_text(&response);
            tracing::warn!(topic = %ch.topic, %reason, "join refused");
            let class = ErrorClass::for_join_error(&reason);
            self.fail_attempt(id, &reason, class, Error::join_rejected(&reason));
            return;
        }
        if !ch.config.postgres_changes.is_empty() {
            let filters = &ch.config.postgres_changes;
            let echoed = response.get("postgres_changes").and_then(Value::as_array);
            match echoed {
                Some(list)
                    if list.len() == filters.len()
                        && filters.iter().zip(list).all(|(f, v)| f.matches_reply(v)) =>
                {
                    ch.pg_ids = list
                        .iter()
                        .map(|v| v.get("id").cloned().unwrap_or(Value::Null))
                        .collect();
                }
                _ => {
                    let msg = "mismatch between server and client bindings for postgres changes";
                    tracing::error!(topic = %ch.topic, ?response, "{msg}");
                    self.abandon_join(id).await;
                    self.fail_attempt(
                        id,
                        msg,
                        ErrorClass::Fatal,
                        Error::new(ErrorKind::PostgresChanges, msg),
                    );
                    return;
                }
            }
            ch.phase = Phase::AwaitingPg {
                deadline: Instant::now() + self.opts.postgres_timeout,
            };
            ch.set_status(ChannelStatus::Joined);
            tracing::debug!(topic = %ch.topic, "joined; waiting for the postgres_changes subscription");
        } else {
            self.subscribed(id);
        }
        if self.channels.get(&id).is_some_and(|c| c.tracked.is_some()) {
            self.push_presence(id, None).await;
        }
    }

    fn subscribed(&mut self, id: u64) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        ch.phase = Phase::Subscribed;
        ch.rejoin_attempt = 0;
        tracing::info!(topic = %ch.topic, "channel subscribed");
        ch.set_status(ChannelStatus::Subscribed);
        ch.answer_subscribers(Ok(()));
    }

    async fn on_system(&mut self, id: u64, payload: &FramePayload) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        let FramePayload::Json(v) = payload else {
            return;
        };
        let Some(msg) = SystemMessage::parse(v) else {
            tracing::warn!(topic = %ch.topic, payload = %v, "malformed system message skipped");
            return;
        };
        ch.deliver(&ChannelEvent::System(msg.clone()));
        if msg.extension == "postgres_changes" {
            if msg.ok {
                if matches!(ch.phase, Phase::AwaitingPg { .. }) {
                    self.subscribed(id);
                } else {
                    tracing::debug!(topic = %ch.topic, message = %msg.message, "postgres_changes confirmed again");
                }
            } else if postgres_error_is_permanent(&msg.message) {
                if matches!(ch.phase, Phase::AwaitingPg { .. } | Phase::Subscribed) {
                    tracing::error!(topic = %ch.topic, message = %msg.message, "postgres_changes refused");
                    ch.phase = Phase::PgFailed;
                    ch.set_status(ChannelStatus::PostgresChangesFailed {
                        reason: msg.message.clone(),
                    });
                    ch.answer_subscribers(Err(Error::new(ErrorKind::PostgresChanges, msg.message)));
                }
            } else {
                tracing::warn!(topic = %ch.topic, message = %msg.message, "postgres_changes error; the server retries");
            }
        } else if !msg.ok {
            tracing::warn!(topic = %ch.topic, message = %msg.message, "system error");
            ch.last_system_error = Some(msg.message);
        } else {
            tracing::info!(topic = %ch.topic, message = %msg.message, "system message");
        }
    }

    async fn on_server_close(&mut self, id: u64) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        match ch.phase {
            Phase::Leaving => self.finish_leave(id, Ok(())),
            Phase::Joining | Phase::AwaitingPg { .. } | Phase::Subscribed | Phase::PgFailed => {
                let (reason, class) = match ch.last_system_error.take() {
                    Some(m) => {
                        let class = ErrorClass::for_system_error(&m);
                        (m, class)
                    }
                    None => (
                        "the server closed the channel".to_string(),
                        ErrorClass::Retry,
                    ),
                };
                tracing::warn!(topic = %ch.topic, %reason, ?class, "channel closed by the server");
                let err = Error::new(ErrorKind::ChannelClosed, reason.clone()).with_class(class);
                self.fail_attempt(id, &reason, class, err);
            }
            _ => {}
        }
    }

    // ----- joining and leaving -----

    async fn start_join(&mut self, id: u64) {
        let open = self.is_open();
        let has_provider = self.opts.access_token.is_some();
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        if !ch.wanted {
            return;
        }
        ch.set_status(ChannelStatus::Joining);
        if !open {
            ch.phase = Phase::WaitingSocket;
            self.ensure_connecting();
            return;
        }
        ch.phase = Phase::WaitingToken;
        if has_provider {
            self.want_token(AfterToken::Join(id));
        } else {
            self.send_join(id).await;
        }
    }

    async fn send_join(&mut self, id: u64) {
        let open = self.is_open();
        if !self
            .channels
            .get(&id)
            .is_some_and(|c| c.wanted && c.phase == Phase::WaitingToken)
        {
            return;
        }
        if !open {
            if let Some(c) = self.channels.get_mut(&id) {
                c.phase = Phase::WaitingSocket;
            }
            self.ensure_connecting();
            return;
        }
        let r = self.make_ref();
        let token = self.token.clone();
        let deadline = Instant::now() + self.opts.timeout;
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        let payload = ch
            .config
            .join_payload(ch.presence_enabled(), token.as_deref());
        ch.join_ref = Some(r.clone());
        ch.join_token = token;
        ch.pg_ids.clear();
        ch.last_system_error = None;
        ch.phase = Phase::Joining;
        let frame = Frame {
            join_ref: Some(r.clone()),
            msg_ref: Some(r.clone()),
            topic: ch.topic.clone(),
            event: "phx_join".into(),
            payload: FramePayload::Json(payload),
        };
        tracing::debug!(topic = %ch.topic, join_ref = %r, "joining");
        self.pending.insert(
            r,
            Pending {
                channel: id,
                kind: PendingKind::Join,
                deadline,
            },
        );
        self.send_frame(&frame).await;
    }

    /// Tells the server to drop a join this client no longer waits for (fire and forget).
    async fn abandon_join(&mut self, id: u64) {
        let r = self.make_ref();
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        let Some(join_ref) = ch.join_ref.take() else {
            return;
        };
        let frame = Frame {
            join_ref: Some(join_ref),
            msg_ref: Some(r),
            topic: ch.topic.clone(),
            event: "phx_leave".into(),
            payload: FramePayload::Json(json!({})),
        };
        self.send_frame(&frame).await;
    }

    /// An attempt to join (or to stay joined) failed: answer the waiting subscribers and
    /// decide, by class, whether and when to try again.
    fn fail_attempt(&mut self, id: u64, reason: &str, class: ErrorClass, err: Error) {
        let has_provider = self.opts.access_token.is_some();
        let token = self.token.clone();
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        ch.answer_subscribers(Err(err));
        ch.join_ref = None;
        ch.last_system_error = None;
        match class {
            ErrorClass::Fatal => {
                tracing::error!(topic = %ch.topic, %reason, "channel failed; not retrying");
                ch.phase = Phase::Failed;
                ch.wanted = false;
                ch.set_status(ChannelStatus::Failed {
                    reason: reason.to_string(),
                });
            }
            ErrorClass::RefreshToken if !has_provider && ch.join_token == token => {
                tracing::warn!(topic = %ch.topic, %reason, "access token refused; waiting for set_auth");
                ch.phase = Phase::WaitingAuth;
                ch.set_status(ChannelStatus::Errored {
                    reason: reason.to_string(),
                    class,
                    attempt: ch.rejoin_attempt,
                });
            }
            _ => {
                ch.rejoin_attempt = ch.rejoin_attempt.saturating_add(1);
                let delay = self.opts.rejoin_backoff.delay(ch.rejoin_attempt);
                tracing::warn!(topic = %ch.topic, %reason, attempt = ch.rejoin_attempt, ?delay, "rejoining after a backoff");
                ch.phase = Phase::Backoff {
                    until: Instant::now() + delay,
                };
                ch.set_status(ChannelStatus::Errored {
                    reason: reason.to_string(),
                    class,
                    attempt: ch.rejoin_attempt,
                });
            }
        }
    }

    async fn leave(&mut self, id: u64, reply: Option<Reply<()>>, remove: bool) {
        let open = self.is_open();
        let Some(ch) = self.channels.get_mut(&id) else {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(()));
            }
            return;
        };
        ch.wanted = false;
        ch.answer_subscribers(Err(Error::new(
            ErrorKind::ChannelClosed,
            "the channel was unsubscribed",
        )));
        ch.remove_after_leave |= remove;
        if let Some(reply) = reply {
            ch.leave_waiters.push(reply);
        }
        if ch.phase == Phase::Leaving {
            return;
        }
        let joined = ch.phase.is_joined() || ch.phase == Phase::Joining;
        match (&ch.join_ref, joined && open) {
            (Some(join_ref), true) => {
                let join_ref = join_ref.clone();
                let topic = ch.topic.clone();
                ch.phase = Phase::Leaving;
                ch.set_status(ChannelStatus::Leaving);
                let r = self.make_ref();
                self.pending.insert(
                    r.clone(),
                    Pending {
                        channel: id,
                        kind: PendingKind::Leave,
                        deadline: Instant::now() + self.opts.timeout,
                    },
                );
                let frame = Frame {
                    join_ref: Some(join_ref),
                    msg_ref: Some(r),
                    topic,
                    event: "phx_leave".into(),
                    payload: FramePayload::Json(json!({})),
                };
                self.send_frame(&frame).await;
            }
            _ => {
                ch.phase = Phase::Leaving;
                self.finish_leave(id, Ok(()));
            }
        }
    }

    fn finish_leave(&mut self, id: u64, result: Result<(), Error>) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        if ch.phase != Phase::Leaving {
            return;
        }
        ch.phase = Phase::Closed;
        ch.join_ref = None;
        ch.set_status(ChannelStatus::Closed);
        for w in ch.leave_waiters.drain(..) {
            let _ = w.send(result.clone());
        }
        if ch.remove_after_leave {
            self.remove_entry(id);
        } else if ch.wanted {
            // Subscribed again while leaving.
            ch.phase = Phase::Backoff {
                until: Instant::now(),
            };
        }
    }

    fn remove_entry(&mut self, id: u64) {
        if let Some(ch) = self.channels.remove(&id) {
            tracing::debug!(topic = %ch.topic, "channel removed");
            self.after_token
                .retain(|a| !matches!(a, AfterToken::Join(j) if *j == id));
        }
        self.schedule_empty_disconnect();
    }

    async fn on_gone(&mut self, id: u64) {
        if self
            .channels
            .get(&id)
            .is_some_and(|c| c.life.strong_count() == 0)
        {
            tracing::debug!(id, "last handle of a channel dropped; leaving it");
            self.leave(id, None, true).await;
        }
    }

    // ----- presence, broadcast, token -----

    async fn push_presence(&mut self, id: u64, reply: Option<Reply<()>>) {
        let r = self.make_ref();
        let deadline = Instant::now() + self.opts.timeout;
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        let payload = match &ch.tracked {
            Some(meta) => json!({"type": "presence", "event": "track", "payload": meta}),
            None => json!({"type": "presence", "event": "untrack"}),
        };
        let frame = Frame {
            join_ref: ch.join_ref.clone(),
            msg_ref: Some(r.clone()),
            topic: ch.topic.clone(),
            event: "presence".into(),
            payload: FramePayload::Json(payload),
        };
        self.pending.insert(
            r,
            Pending {
                channel: id,
                kind: PendingKind::Push(reply),
                deadline,
            },
        );
        self.send_frame(&frame).await;
    }

    fn want_token(&mut self, after: AfterToken) {
        self.after_token.push(after);
        if self.token_fetch.is_none() {
            if let Some(provider) = &self.opts.access_token {
                let fut = provider();
                let limit = self.opts.token_timeout;
                self.token_fetch = Some(Box::pin(async move {
                    tokio::time::timeout(limit, fut).await.ok()
                }));
            }
        }
    }

    async fn on_token(&mut self, fetched: Option<Option<String>>) {
        self.token_fetch = None;
        match fetched {
            Some(token) => self.apply_token(token).await,
            None => tracing::warn!(
                "the access token callback did not answer in time; using the last token"
            ),
        }
        for after in std::mem::take(&mut self.after_token) {
            match after {
                AfterToken::Join(id) => self.send_join(id).await,
                AfterToken::Heartbeat => self.send_heartbeat().await,
            }
        }
    }

    async fn apply_token(&mut self, token: Option<String>) {
        if token == self.token {
            return;
        }
        tracing::debug!("access token changed");
        self.token = token.clone();
        self.token_tx.send_replace(token.clone());
        if let Some(t) = token {
            let joined: Vec<u64> = self
                .channels
                .values()
                .filter(|c| c.phase.is_joined())
                .map(|c| c.id)
                .collect();
            for id in joined {
                let r = self.make_ref();
                let Some(ch) = self.channels.get(&id) else {
                    continue;
                };
                let frame = Frame {
                    join_ref: ch.join_ref.clone(),
                    msg_ref: Some(r),
                    topic: ch.topic.clone(),
                    event: "access_token".into(),
                    payload: FramePayload::Json(json!({ "access_token": t })),
                };
                self.send_frame(&frame).await;
            }
        }
        let waiting: Vec<u64> = self
            .channels
            .values()
            .filter(|c| c.wanted && c.phase == Phase::WaitingAuth)
            .map(|c| c.id)
            .collect();
        for id in waiting {
            self.start_join(id).await;
        }
    }

    // ----- heartbeat -----

    async fn begin_heartbeat(&mut self) {
        if self.opts.access_token.is_some() {
            self.want_token(AfterToken::Heartbeat);
        } else {
            self.send_heartbeat().await;
        }
    }

    async fn send_heartbeat(&mut self) {
        if !self.is_open() || self.hb.pending.is_some() {
            return;
        }
        let r = self.make_ref();
        let frame = Frame {
            join_ref: None,
            msg_ref: Some(r.clone()),
            topic: "phoenix".into(),
            event: "heartbeat".into(),
            payload: FramePayload::Json(json!({})),
        };
        if self.send_frame(&frame).await {
            let now = Instant::now();
            self.hb.pending = Some((r, now, now + self.opts.heartbeat_timeout));
            self.emit_heartbeat(HeartbeatEvent::Sent);
        }
        // A consumer that fell behind hears about it at the latest now, even if no event
        // follows.
        for ch in self.channels.values_mut() {
            ch.flush_lag();
        }
        self.hb_sinks.retain_mut(|s| s.flush());
    }

    // ----- timers -----

    async fn on_timers(&mut self) {
        let now = Instant::now();
        if let Conn::Waiting(until) = self.conn {
            if until <= now {
                self.start_connect();
            }
        }
        if matches!(self.conn, Conn::Open(_)) {
            if self.hb.pending.as_ref().is_some_and(|p| p.2 <= now) {
                tracing::warn!("heartbeat not answered in time; the connection is dead");
                self.hb.pending = None;
                self.emit_heartbeat(HeartbeatEvent::Timeout);
                self.close_ws("heartbeat timeout").await;
                self.broken = Some(DisconnectReason::HeartbeatTimeout);
                return;
            }
            if self.hb.next_at.is_some_and(|t| t <= now) {
                self.hb.next_at = None;
                self.begin_heartbeat().await;
            }
        }
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(r, _)| r.clone())
            .collect();
        for r in expired {
            if let Some(p) = self.pending.remove(&r) {
                self.on_pending_expired(&r, p).await;
            }
        }
        let due: Vec<u64> = self
            .channels
            .values()
            .filter(|c| c.phase.deadline().is_some_and(|d| d <= now))
            .map(|c| c.id)
            .collect();
        for id in due {
            let Some(phase) = self.channels.get(&id).map(|c| c.phase) else {
                continue;
            };
            match phase {
                Phase::AwaitingPg { .. } => {
                    let msg = "no \"Subscribed to PostgreSQL\" in time";
                    self.abandon_join(id).await;
                    self.fail_attempt(
                        id,
                        msg,
                        ErrorClass::Retry,
                        Error::timeout("the postgres_changes subscription"),
                    );
                }
                Phase::Backoff { .. } => self.start_join(id).await,
                _ => {}
            }
        }
        if self.empty_deadline.is_some_and(|d| d <= now) {
            self.empty_deadline = None;
            if self.channels.is_empty() && !matches!(self.conn, Conn::Idle) {
                self.disconnect("no channels left").await;
            }
        }
    }

    async fn on_pending_expired(&mut self, r: &str, p: Pending) {
        match p.kind {
            PendingKind::Join => {
                let current = self
                    .channels
                    .get(&p.channel)
                    .is_some_and(|c| c.phase == Phase::Joining && c.join_ref.as_deref() == Some(r));
                if current {
                    self.abandon_join(p.channel).await;
                    self.fail_attempt(
                        p.channel,
                        "join timed out",
                        ErrorClass::Retry,
                        Error::timeout("join"),
                    );
                }
            }
            PendingKind::Leave => self.finish_leave(p.channel, Err(Error::timeout("leave"))),
            PendingKind::Push(reply) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(Error::timeout("push")));
                } else {
                    tracing::warn!(msg_ref = r, "push not acknowledged in time");
                }
            }
        }
    }

    // ----- commands -----

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Connect => {
                self.wanted = true;
                match self.conn {
                    Conn::Waiting(_) => self.start_connect(),
                    Conn::Idle => self.ensure_connecting(),
                    _ => {}
                }
            }
            Command::Disconnect { done } => {
                self.empty_deadline = None;
                self.disconnect("disconnect requested").await;
                let _ = done.send(Ok(()));
            }
            Command::Channel {
                topic,
                config,
                reply,
            } => {
                let _ = reply.send(self.channel(topic, config).await);
            }
            Command::Channels { reply } => {
                let parts = self
                    .channels
                    .values()
                    .filter_map(|c| c.life.upgrade().map(|l| c.parts(l)))
                    .collect();
                let _ = reply.send(Ok(parts));
            }
            Command::Listen { id, filter, tx } => {
                if let Some(ch) = self.channels.get_mut(&id) {
                    if filter == EventFilter::Presence {
                        ch.presence_listener = true;
                    }
                    ch.listeners.push(Listener {
                        filter,
                        sink: Sink::new(tx),
                    });
                }
            }
            Command::Subscribe { id, reply } => self.subscribe(id, reply).await,
            Command::Unsubscribe { id, reply } => self.leave(id, Some(reply), false).await,
            Command::Remove { id, reply } => self.leave(id, Some(reply), true).await,
            Command::RemoveAll { reply } => {
                let ids: Vec<u64> = self.channels.keys().copied().collect();
                let mut waits = Vec::new();
                for id in ids {
                    let (tx, rx) = oneshot::channel();
                    self.leave(id, Some(tx), true).await;
                    waits.push(rx);
                }
                tokio::spawn(async move {
                    let mut result = Ok(());
                    for w in waits {
                        if let Ok(Err(e)) = w.await {
                            result = Err(e);
                        }
                    }
                    let _ = reply.send(result);
                });
            }
            Command::Broadcast {
                id,
                event,
                payload,
                reply,
            } => self.broadcast(id, event, payload, reply).await,
            Command::Track { id, meta, reply } => {
                let open = self.is_open();
                let Some(ch) = self.channels.get_mut(&id) else {
                    let _ = reply.send(Err(Error::new(
                        ErrorKind::ChannelClosed,
                        "the channel was removed",
                    )));
                    return;
                };
                let was_tracked = ch.tracked.is_some();
                ch.tracked = meta;
                if ch.phase.is_joined() && open && (was_tracked || ch.tracked.is_some()) {
                    self.push_presence(id, Some(reply)).await;
                } else {
                    let _ = reply.send(Ok(()));
                }
            }
            Command::SetAuth { token, reply } => {
                self.apply_token(token).await;
                let _ = reply.send(Ok(()));
            }
            Command::Heartbeats { tx } => self.hb_sinks.push(Sink::new(tx)),
        }
    }

    async fn channel(
        &mut self,
        topic: String,
        config: ChannelConfig,
    ) -> Result<ChannelParts, Error> {
        if let Some(id) = self.topic_id(&topic) {
            if let Some(ch) = self.channels.get(&id) {
                if let Some(life) = ch.life.upgrade() {
                    if ch.config != config {
                        return Err(Error::new(
                            ErrorKind::TopicConflict,
                            format!("{topic} already exists with another configuration"),
                        ));
                    }
                    return Ok(ch.parts(life));
                }
            }
            // Its handles are gone and the notice is still queued: finish it off now.
            self.leave(id, None, true).await;
            self.remove_entry(id);
        }
        let keep = self.cmd_weak.upgrade().ok_or_else(Error::client_closed)?;
        self.next_id += 1;
        let id = self.next_id;
        let life = Arc::new(ChannelLife {
            id,
            gone: self.gone_tx.clone(),
            _keep_task: keep,
        });
        let entry = ChannelEntry {
            id,
            topic,
            config,
            life: Arc::downgrade(&life),
            status_tx: watch::channel(ChannelStatus::Closed).0,
            presence_tx: watch::channel(PresenceState::new()).0,
            listeners: Vec::new(),
            presence_listener: false,
            phase: Phase::Closed,
            wanted: false,
            remove_after_leave: false,
            join_ref: None,
            join_token: None,
            pg_ids: Vec::new(),
            presence: PresenceSync::default(),
            tracked: None,
            rejoin_attempt: 0,
            last_system_error: None,
            subscribe_waiters: Vec::new(),
            leave_waiters: Vec::new(),
        };
        let parts = entry.parts(life);
        self.channels.insert(id, entry);
        self.empty_deadline = None;
        Ok(parts)
    }

    async fn subscribe(&mut self, id: u64, reply: Reply<()>) {
        let Some(ch) = self.channels.get_mut(&id) else {
            let _ = reply.send(Err(Error::new(
                ErrorKind::ChannelClosed,
                "the channel was removed",
            )));
            return;
        };
        match ch.phase {
            Phase::Subscribed => {
                let _ = reply.send(Ok(()));
                return;
            }
            Phase::PgFailed => {
                let reason = match &*ch.status_tx.borrow() {
                    ChannelStatus::PostgresChangesFailed { reason } => reason.clone(),
                    _ => "postgres_changes refused".to_string(),
                };
                let _ = reply.send(Err(Error::new(ErrorKind::PostgresChanges, reason)));
                return;
            }
            _ => {}
        }
        ch.subscribe_waiters.push(reply);
        ch.wanted = true;
        self.wanted = true;
        match ch.phase {
            Phase::Closed | Phase::Failed | Phase::WaitingAuth | Phase::Backoff { .. } => {
                if matches!(ch.phase, Phase::Failed | Phase::Closed) {
                    ch.rejoin_attempt = 0;
                }
                self.start_join(id).await;
            }
            Phase::WaitingSocket => self.ensure_connecting(),
            _ => {}
        }
    }

    async fn broadcast(
        &mut self,
        id: u64,
        event: String,
        payload: BroadcastPayload,
        reply: Reply<()>,
    ) {
        let open = self.is_open();
        let r = self.make_ref();
        let Some(ch) = self.channels.get(&id) else {
            let _ = reply.send(Err(Error::new(
                ErrorKind::ChannelClosed,
                "the channel was removed",
            )));
            return;
        };
        if !ch.phase.is_joined() || !open {
            let _ = reply.send(Err(Error::new(
                ErrorKind::NotJoined,
                "the channel is not joined",
            )));
            return;
        }
        let frame = Frame {
            join_ref: ch.join_ref.clone(),
            msg_ref: Some(r.clone()),
            topic: ch.topic.clone(),
            event: "broadcast".into(),
            payload: FramePayload::UserBroadcast {
                event,
                payload,
                meta: None,
            },
        };
        let ack = ch.config.broadcast_ack;
        let msg = match serializer::encode(self.opts.protocol, Side::Client, &frame) {
            Ok(m) => m,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if !self.send_msg(msg).await {
            let _ = reply.send(Err(Error::new(
                ErrorKind::Disconnected,
                "the connection was lost",
            )));
            return;
        }
        if ack {
            self.pending.insert(
                r,
                Pending {
                    channel: id,
                    kind: PendingKind::Push(Some(reply)),
                    deadline: Instant::now() + self.opts.timeout,
                },
            );
        } else {
            let _ = reply.send(Ok(()));
        }
    }
}

fn on_broadcast(ch: &mut ChannelEntry, payload: FramePayload) {
    let b = match payload {
        FramePayload::UserBroadcast {
            event,
            payload,
            meta,
        } => Broadcast {
            event,
            payload,
            meta,
        },
        FramePayload::Json(v) => match v.get("event").and_then(Value::as_str) {
            Some(event) => Broadcast {
                event: event.to_string(),
                payload: BroadcastPayload::Json(v.get("payload").cloned().unwrap_or(Value::Null)),
                meta: v.get("meta").cloned(),
            },
            None => {
                tracing::warn!(topic = %ch.topic, payload = %v, "broadcast without an event skipped");
                return;
            }
        },
    };
    ch.deliver(&ChannelEvent::Broadcast(b));
}
