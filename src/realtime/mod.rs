//! A Supabase Realtime client that is never silently dead.
//!
//! One background task owns the WebSocket and every channel; [`RealtimeClient`] and
//! [`Channel`] are cheap handles that talk to it through a command queue, and events arrive on
//! [`Subscription`] streams. The task
//!
//! - sends a heartbeat every interval and replaces a connection whose reply does not come in
//!   time; it reconnects forever with jittered backoff, unless the server refuses for good
//!   (see [`ErrorClass`]); [`RealtimeClient::connection_states`] always says where it is;
//! - rejoins every channel after a reconnect with its full join payload and the latest access
//!   token; asks the token callback before every join and heartbeat and pushes a changed token
//!   to joined channels;
//! - counts a channel as subscribed only after its join reply and, where postgres_changes
//!   were asked for, the server's "Subscribed to PostgreSQL";
//! - delivers through bounded buffers: a subscriber that does not keep up loses events and is
//!   told so with [`ChannelEvent::Lagged`]; the socket is never held up by a consumer;
//! - keeps presence state with Phoenix's exact sync algorithm;
//! - ignores replies with stale refs and messages of earlier joins, and skips malformed frames
//!   with a log line (through `tracing`).
//!
//! ```no_run
//! use futures::StreamExt;
//! use livechat::realtime::{
//!     ChannelConfig, ChannelEvent, EventFilter, PostgresChangeEvent, PostgresChangesFilter,
//!     RealtimeOptions,
//! };
//!
//! # async fn demo() -> Result<(), livechat::realtime::Error> {
//! let client = RealtimeOptions::new("http://127.0.0.1:54321", "<anon key>")
//!     .access_token(|| async { Some("<user jwt>".to_string()) })
//!     .connect()
//!     .await?;
//! let chat = client
//!     .channel(
//!         "conversation-42",
//!         ChannelConfig::new().postgres_changes(
//!             PostgresChangesFilter::new(PostgresChangeEvent::Insert, "public")
//!                 .table("mod_chat_messages")
//!                 .filter("conversation_id=eq.42"),
//!         ),
//!     )
//!     .await?;
//! let mut changes = chat.on(EventFilter::PostgresChanges(None)).await?;
//! chat.subscribe().await?;
//! while let Some(event) = changes.next().await {
//!     match event {
//!         ChannelEvent::PostgresChange(c) => println!("new message {:?}", c.record),
//!         ChannelEvent::Lagged { missed } => eprintln!("missed {missed} changes"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

mod backoff;
mod channel;
mod error;
mod http;
mod options;
mod presence;
pub mod serializer;
mod socket;

pub use backoff::Backoff;
pub use channel::{
    Broadcast, Channel, ChannelConfig, ChannelEvent, ChannelStatus, Column, EventFilter,
    PostgresChange, PostgresChangeEvent, PostgresChangesFilter, Subscription, SystemMessage,
};
pub use error::{Error, ErrorClass, ErrorKind};
pub use http::HttpBroadcastMessage;
pub use options::{AccessTokenProvider, RealtimeOptions, Transport, TransportConnector};
pub use presence::{Presence, PresenceEvent, PresenceState};
pub use serializer::{BroadcastPayload, Protocol};

use futures::Stream;
use socket::Command;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Why the connection went down.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// A heartbeat was not answered in time; the connection was declared dead.
    HeartbeatTimeout,
    /// The server closed the WebSocket with this code (1005 when it gave none).
    Closed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// The connection broke without a close frame (the 1006 case), or a read failed.
    ConnectionLost(String),
    /// A connection attempt failed (DNS, TCP, TLS, handshake).
    ConnectFailed(String),
    /// The server refused the WebSocket upgrade with this HTTP status.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response body (the server's `{"error": …}`).
        body: String,
    },
    /// A connection attempt took longer than the connect timeout.
    ConnectTimeout,
    /// A frame could not be written within the timeout.
    WriteTimeout,
}

impl DisconnectReason {
    /// Whether reconnecting can help.
    pub fn class(&self) -> ErrorClass {
        match self {
            DisconnectReason::Closed { code, .. } => ErrorClass::for_close_code(*code),
            DisconnectReason::Refused { status, .. } => ErrorClass::for_http_status(*status),
            _ => ErrorClass::Retry,
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::HeartbeatTimeout => write!(f, "heartbeat timeout"),
            DisconnectReason::Closed { code, reason } => {
                write!(f, "closed by the server ({code} {reason})")
            }
            DisconnectReason::ConnectionLost(e) => write!(f, "connection lost: {e}"),
            DisconnectReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            DisconnectReason::Refused { status, body } => {
                write!(f, "refused with HTTP {status}: {body}")
            }
            DisconnectReason::ConnectTimeout => write!(f, "connect timeout"),
            DisconnectReason::WriteTimeout => write!(f, "write timeout"),
        }
    }
}

/// The state of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Not connected and not trying (initially, after [`RealtimeClient::disconnect`], and after
    /// the last channel was removed).
    Disconnected,
    /// The first connection attempt is under way.
    Connecting,
    /// Connected.
    Connected,
    /// The connection was lost or could not be made; attempt `attempt` (1, 2, …) is scheduled
    /// or under way.
    Reconnecting {
        /// The number of the reconnect attempt.
        attempt: u32,
        /// Why the previous connection or attempt ended.
        reason: DisconnectReason,
    },
    /// The server refused for good (see [`ErrorClass::Fatal`]); no more attempts until
    /// [`RealtimeClient::connect`] is called again.
    Failed {
        /// The refusal.
        reason: DisconnectReason,
    },
}

/// What happened to a heartbeat ([`RealtimeClient::heartbeats`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum HeartbeatEvent {
    /// A heartbeat was sent.
    Sent,
    /// The server answered ok after `rtt`.
    Ok {
        /// The round-trip time.
        rtt: Duration,
    },
    /// The server answered with an error status.
    Error,
    /// No answer within the heartbeat timeout: the connection is replaced.
    Timeout,
    /// This stream fell behind and `missed` events were dropped.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

/// A stream of heartbeat events.
pub struct HeartbeatStream {
    rx: mpsc::Receiver<HeartbeatEvent>,
}

impl std::fmt::Debug for HeartbeatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatStream").finish_non_exhaustive()
    }
}

impl Stream for HeartbeatStream {
    type Item = HeartbeatEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<HeartbeatEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// A stream of the current value of some state, then each change (a slow reader skips
/// intermediate values but always sees the latest).
pub struct Changes<T> {
    inner: Pin<Box<dyn Stream<Item = T> + Send>>,
}

impl<T> std::fmt::Debug for Changes<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> Changes<T> {
    pub(crate) fn new(mut rx: watch::Receiver<T>) -> Self {
        rx.mark_changed();
        let inner = futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let v = rx.borrow_and_update().clone();
            Some((v, rx))
        });
        Changes {
            inner: Box::pin(inner),
        }
    }
}

impl<T> Stream for Changes<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// What the handles share: the command queue, the options, the HTTP side.
pub(crate) struct Shared {
    pub(crate) cmd: mpsc::Sender<Command>,
    pub(crate) options: Arc<RealtimeOptions>,
    http: http::HttpBroadcaster,
    token: watch::Receiver<Option<String>>,
}

impl Shared {
    async fn current_token(&self) -> Option<String> {
        match &self.options.access_token {
            Some(provider) => {
                match tokio::time::timeout(self.options.token_timeout, provider()).await {
                    Ok(t) => t,
                    Err(_) => {
                        tracing::warn!("access token callback timed out; using the last token");
                        self.token.borrow().clone()
                    }
                }
            }
            None => self.token.borrow().clone(),
        }
    }

    pub(crate) async fn broadcast_http(
        &self,
        messages: &[HttpBroadcastMessage],
    ) -> Result<(), Error> {
        let token = self.current_token().await;
        self.http.send(token.as_deref(), messages).await
    }
}

/// Sends a command that carries a reply channel and waits for the reply, all within
/// `deadline`.
pub(crate) async fn request<T>(
    cmd: &mpsc::Sender<Command>,
    deadline: Duration,
    what: &str,
    make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
) -> Result<T, Error> {
    let until = tokio::time::Instant::now() + deadline;
    let (tx, rx) = oneshot::channel();
    tokio::time::timeout_at(until, cmd.send(make(tx)))
        .await
        .map_err(|_| Error::timeout(what))?
        .map_err(|_| Error::client_closed())?;
    match tokio::time::timeout_at(until, rx).await {
        Err(_) => Err(Error::timeout(what)),
        Ok(Err(_)) => Err(Error::client_closed()),
        Ok(Ok(r)) => r,
    }
}

/// The realtime client: a cheap, cloneable handle to the task that owns the connection.
/// The task stops when every handle (client, channels, subscriptions) is dropped.
///
/// ```no_run
/// use livechat::realtime::{ConnectionState, RealtimeOptions};
/// use futures::StreamExt;
///
/// # async fn demo() -> Result<(), livechat::realtime::Error> {
/// let client = RealtimeOptions::new("http://127.0.0.1:54321", "<anon key>").build()?;
/// let mut states = client.connection_states();
/// client.connect().await?;
/// tokio::spawn(async move {
///     while let Some(s) = states.next().await {
///         if let ConnectionState::Reconnecting { attempt, reason } = s {
///             eprintln!("reconnecting (attempt {attempt}): {reason}");
///         }
///     }
/// });
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RealtimeClient {
    shared: Arc<Shared>,
    state: watch::Receiver<ConnectionState>,
}

impl std::fmt::Debug for RealtimeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeClient")
            .field("url", &self.shared.options.url)
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl RealtimeClient {
    /// Starts the client's task without connecting (see [`RealtimeOptions::build`]).
    /// Must be called inside a Tokio runtime.
    pub fn new(options: RealtimeOptions) -> Result<RealtimeClient, Error> {
        let endpoints = options::endpoints(&options)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                "the realtime client needs a Tokio runtime",
            )
        })?;
        let http = http::HttpBroadcaster::new(
            endpoints.broadcast.clone(),
            options.api_key.clone(),
            options.timeout,
        )?;
        let options = Arc::new(options);
        let (cmd_tx, cmd_rx) = mpsc::channel(options.command_buffer);
        let (state_tx, state_rx) = watch::channel(ConnectionState::Disconnected);
        let (token_tx, token_rx) = watch::channel(None);
        let task = socket::SocketTask::new(
            options.clone(),
            endpoints.websocket,
            cmd_rx,
            cmd_tx.downgrade(),
            state_tx,
            token_tx,
        );
        runtime.spawn(task.run());
        Ok(RealtimeClient {
            shared: Arc::new(Shared {
                cmd: cmd_tx,
                options,
                http,
                token: token_rx,
            }),
            state: state_rx,
        })
    }

    async fn command(&self, cmd: Command) -> Result<(), Error> {
        tokio::time::timeout(self.shared.options.timeout, self.shared.cmd.send(cmd))
            .await
            .map_err(|_| Error::timeout("sending a command"))?
            .map_err(|_| Error::client_closed())
    }

    /// Connects (if not connected) and waits until connected, at most the connect timeout.
    /// On a timeout the client keeps trying in the background.
    pub async fn connect(&self) -> Result<(), Error> {
        self.command(Command::Connect).await?;
        let mut rx = self.state.clone();
        let wait = rx.wait_for(|s| {
            matches!(
                s,
                ConnectionState::Connected | ConnectionState::Failed { .. }
            )
        });
        let state = match tokio::time::timeout(self.shared.options.connect_timeout, wait).await {
            Err(_) => return Err(Error::timeout("connect")),
            Ok(Err(_)) => return Err(Error::client_closed()),
            Ok(Ok(s)) => s.clone(),
        };
        match state {
            ConnectionState::Failed { reason } => Err(Error::new(
                ErrorKind::Disconnected,
                format!("connection refused: {reason}"),
            )
            .with_class(reason.class())),
            _ => Ok(()),
        }
    }

    /// Closes the connection (code 1000) and stops reconnecting. Channels stay registered and
    /// rejoin on the next [`connect`](RealtimeClient::connect) or subscribe.
    pub async fn disconnect(&self) -> Result<(), Error> {
        request(
            &self.shared.cmd,
            self.shared.options.timeout * 2,
            "disconnect",
            |done| Command::Disconnect { done },
        )
        .await
    }

    /// The current connection state.
    pub fn connection_state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    /// `true` while connected.
    pub fn is_connected(&self) -> bool {
        matches!(*self.state.borrow(), ConnectionState::Connected)
    }

    /// The current connection state, then every change.
    pub fn connection_states(&self) -> Changes<ConnectionState> {
        Changes::new(self.state.clone())
    }

    /// The channel for `name` (`realtime:` is prefixed unless present): the existing one if
    /// this client already has it with the same configuration, else a new one (not joined
    /// yet: see [`Channel::subscribe`]). A different configuration for an existing topic is
    /// an [`ErrorKind::TopicConflict`].
    pub async fn channel(&self, name: &str, config: ChannelConfig) -> Result<Channel, Error> {
        let topic = if name.starts_with("realtime:") {
            name.to_string()
        } else {
            format!("realtime:{name}")
        };
        if topic.len() <= "realtime:".len() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a channel needs a name",
            ));
        }
        let parts = request(
            &self.shared.cmd,
            self.shared.options.timeout,
            "creating a channel",
            |reply| Command::Channel {
                topic,
                config,
                reply,
            },
        )
        .await?;
        Ok(Channel::new(parts, self.shared.clone()))
    }

    /// Every channel of this client.
    pub async fn channels(&self) -> Result<Vec<Channel>, Error> {
        let parts = request(
            &self.shared.cmd,
            self.shared.options.timeout,
            "listing channels",
            |reply| Command::Channels { reply },
        )
        .await?;
        Ok(parts
            .into_iter()
            .map(|p| Channel::new(p, self.shared.clone()))
            .collect())
    }

    /// Leaves the channel and removes it: its subscriptions end. When the last channel is
    /// gone the connection closes after the configured delay.
    pub async fn remove_channel(&self, channel: &Channel) -> Result<(), Error> {
        request(
            &self.shared.cmd,
            self.shared.options.timeout * 2,
            "removing a channel",
            |reply| Command::Remove {
                id: channel.id(),
                reply,
            },
        )
        .await
    }

    /// Leaves and removes every channel.
    pub async fn remove_all_channels(&self) -> Result<(), Error> {
        request(
            &self.shared.cmd,
            self.shared.options.timeout * 2,
            "removing all channels",
            |reply| Command::RemoveAll { reply },
        )
        .await
    }

    /// Sets the access token used for joins from now on and pushes it to every joined
    /// channel. With an access-token callback, the callback's next answer wins.
    pub async fn set_auth(&self, token: Option<String>) -> Result<(), Error> {
        request(
            &self.shared.cmd,
            self.shared.options.timeout,
            "set_auth",
            |reply| Command::SetAuth { token, reply },
        )
        .await
    }

    /// A stream of heartbeat events.
    pub async fn heartbeats(&self) -> Result<HeartbeatStream, Error> {
        let (tx, rx) = mpsc::channel(self.shared.options.event_buffer);
        self.command(Command::Heartbeats { tx }).await?;
        Ok(HeartbeatStream { rx })
    }

    /// Broadcasts messages over HTTP (`POST /realtime/v1/api/broadcast`), with the current
    /// access token (or the API key) as bearer.
    pub async fn broadcast_http(&self, messages: &[HttpBroadcastMessage]) -> Result<(), Error> {
        self.shared.broadcast_http(messages).await
    }
}
