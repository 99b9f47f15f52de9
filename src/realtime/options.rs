//! [`RealtimeOptions`]: the builder for a [`RealtimeClient`](super::RealtimeClient).

use super::backoff::Backoff;
use super::error::{Error, ErrorKind};
use super::serializer::Protocol;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

/// An async callback returning the current user access token (a JWT), or `None` to use the
/// API key. It is called before every join and every heartbeat, and when an HTTP broadcast is
/// sent; when its value changes the new token is pushed to every joined channel.
pub type AccessTokenProvider = Arc<dyn Fn() -> BoxFuture<'static, Option<String>> + Send + Sync>;

/// A byte stream to run the WebSocket over, for [`RealtimeOptions::transport`].
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// Opens a [`Transport`] to the WebSocket URL (see [`RealtimeOptions::transport`]).
pub type TransportConnector =
    Arc<dyn Fn(Url) -> BoxFuture<'static, std::io::Result<Box<dyn Transport>>> + Send + Sync>;

/// Durations are capped at a year, so that deadline arithmetic can never overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

fn capped(d: Duration) -> Duration {
    d.min(MAX_DURATION)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum WhenEmpty {
    AfterTwoHeartbeats,
    After(Duration),
    Never,
}

/// How to connect: the project URL and API key plus tuning. Setters consume and return the
/// options; finish with [`connect`](RealtimeOptions::connect) or
/// [`build`](RealtimeOptions::build).
///
/// ```no_run
/// use livechat::realtime::{Backoff, Protocol, RealtimeOptions};
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), livechat::realtime::Error> {
/// let client = RealtimeOptions::new("https://abc.supabase.co", "<anon key>")
///     .access_token(|| async { Some("<user jwt>".to_string()) })
///     .heartbeat_interval(Duration::from_secs(15))
///     .reconnect_backoff(Backoff::new(Duration::from_millis(500), Duration::from_secs(30)))
///     .protocol(Protocol::V2)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RealtimeOptions {
    pub(crate) url: String,
    pub(crate) api_key: String,
    pub(crate) access_token: Option<AccessTokenProvider>,
    pub(crate) protocol: Protocol,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) reconnect_backoff: Backoff,
    pub(crate) rejoin_backoff: Backoff,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) token_timeout: Duration,
    pub(crate) postgres_timeout: Duration,
    pub(crate) when_empty: WhenEmpty,
    pub(crate) event_buffer: usize,
    pub(crate) command_buffer: usize,
    pub(crate) log_level: Option<String>,
    pub(crate) transport: Option<TransportConnector>,
}

impl fmt::Debug for RealtimeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeOptions")
            .field("url", &self.url)
            .field("api_key", &"<redacted>")
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<provider>"),
            )
            .field("protocol", &self.protocol)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("reconnect_backoff", &self.reconnect_backoff)
            .field("rejoin_backoff", &self.rejoin_backoff)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("token_timeout", &self.token_timeout)
            .field("postgres_timeout", &self.postgres_timeout)
            .field("when_empty", &self.when_empty)
            .field("event_buffer", &self.event_buffer)
            .field("command_buffer", &self.command_buffer)
            .field("log_level", &self.log_level)
            .field("transport", &self.transport.as_ref().map(|_| "<custom>"))
            .finish()
    }
}

impl RealtimeOptions {
    /// Options for the project at `url` (e.g. `https://<ref>.supabase.co` or
    /// `http://127.0.0.1:54321`; a `…/realtime/v1` or full `ws(s)://…/websocket` URL works
    /// too) with its API key (anon or service role).
    ///
    /// Defaults: protocol 2.0.0, heartbeat every 25 s answered within 10 s, reconnect and
    /// rejoin backoff 1 s doubling to 10 s with 30 % jitter, 10 s timeouts for connecting and
    /// replies, 5 s for the access-token callback, 20 s for the "Subscribed to PostgreSQL"
    /// confirmation, disconnect 50 s after the last channel is removed, 1024 buffered events
    /// per subscription.
    pub fn new(url: impl Into<String>, api_key: impl Into<String>) -> Self {
        RealtimeOptions {
            url: url.into(),
            api_key: api_key.into(),
            access_token: None,
            protocol: Protocol::V2,
            heartbeat_interval: Duration::from_secs(25),
            heartbeat_timeout: Duration::from_secs(10),
            reconnect_backoff: Backoff::default(),
            rejoin_backoff: Backoff::default(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            token_timeout: Duration::from_secs(5),
            postgres_timeout: Duration::from_secs(20),
            when_empty: WhenEmpty::AfterTwoHeartbeats,
            event_buffer: 1024,
            command_buffer: 256,
            log_level: None,
            transport: None,
        }
    }

    /// The access-token callback (see [`AccessTokenProvider`]).
    pub fn access_token<F, Fut>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Option<String>> + Send + 'static,
    {
        self.access_token = Some(Arc::new(move || Box::pin(provider())));
        self
    }

    /// The access-token callback, already boxed.
    pub fn access_token_provider(mut self, provider: AccessTokenProvider) -> Self {
        self.access_token = Some(provider);
        self
    }

    /// The serializer version (default [`Protocol::V2`]).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// How often to send a heartbeat (default 25 s; the server closes sockets idle for 60 s).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = capped(interval.max(Duration::from_millis(10)));
        self
    }

    /// How long a heartbeat reply may take before the connection is declared dead and
    /// replaced (default 10 s).
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = capped(timeout.max(Duration::from_millis(10)));
        self
    }

    /// The delays between reconnect attempts. Reconnecting never gives up, except on a fatal
    /// refusal (see [`ErrorClass::Fatal`](super::ErrorClass::Fatal)).
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> Self {
        self.reconnect_backoff = backoff;
        self
    }

    /// The delays between attempts to rejoin a channel after a failed join.
    pub fn rejoin_backoff(mut self, backoff: Backoff) -> Self {
        self.rejoin_backoff = backoff;
        self
    }

    /// How long to wait for a reply to a join, leave or push, and for a frame to be written
    /// (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = capped(timeout);
        self
    }

    /// How long one connection attempt (TCP, TLS, WebSocket upgrade) may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = capped(timeout);
        self
    }

    /// How long the access-token callback may take; after that the previous token is used
    /// (default 5 s).
    pub fn token_timeout(mut self, timeout: Duration) -> Self {
        self.token_timeout = capped(timeout);
        self
    }

    /// How long to wait, after a successful join, for the server's "Subscribed to PostgreSQL"
    /// when postgres_changes were asked for; after that the channel rejoins (default 20 s).
    pub fn postgres_timeout(mut self, timeout: Duration) -> Self {
        self.postgres_timeout = capped(timeout);
        self
    }

    /// Disconnect this long after the last channel is removed (`None`: stay connected).
    /// Default: twice the heartbeat interval, as realtime-js.
    pub fn disconnect_when_empty(mut self, after: Option<Duration>) -> Self {
        self.when_empty = match after {
            Some(d) => WhenEmpty::After(capped(d)),
            None => WhenEmpty::Never,
        };
        self
    }

    /// How many events each subscription buffers before a slow consumer starts losing them
    /// (it then receives a [`ChannelEvent::Lagged`](super::ChannelEvent::Lagged)); default 1024.
    pub fn event_buffer(mut self, capacity: usize) -> Self {
        self.event_buffer = capacity.max(1);
        self
    }

    /// The server-side log level for this socket (`info`, `warning` or `error`).
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = Some(level.into());
        self
    }

    /// Opens connections with `connector` instead of TCP (a proxy, a Unix socket, an in-memory
    /// pipe in tests). The WebSocket handshake, and TLS for `wss` URLs, run over the stream
    /// it returns; connect errors and timeouts are handled as for TCP.
    ///
    /// ```no_run
    /// use livechat::realtime::{RealtimeOptions, Transport};
    ///
    /// let options = RealtimeOptions::new("http://chat.internal", "<anon key>").transport(|url| async move {
    ///     let stream = tokio::net::TcpStream::connect("10.0.0.7:8080").await?;
    ///     Ok(Box::new(stream) as Box<dyn Transport>)
    /// });
    /// ```
    pub fn transport<F, Fut>(mut self, connector: F) -> Self
    where
        F: Fn(Url) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::io::Result<Box<dyn Transport>>> + Send + 'static,
    {
        self.transport = Some(Arc::new(move |url| Box::pin(connector(url))));
        self
    }

    /// Builds the client without connecting; it connects on
    /// [`connect`](super::RealtimeClient::connect) or on the first channel subscribe.
    /// Must be called inside a Tokio runtime.
    pub fn build(self) -> Result<super::RealtimeClient, Error> {
        super::RealtimeClient::new(self)
    }

    /// Builds the client and waits until it is connected (at most the connect timeout).
    pub async fn connect(self) -> Result<super::RealtimeClient, Error> {
        let client = self.build()?;
        client.connect().await?;
        Ok(client)
    }

    pub(crate) fn empty_disconnect_delay(&self) -> Option<Duration> {
        match self.when_empty {
            WhenEmpty::AfterTwoHeartbeats => Some(self.heartbeat_interval * 2),
            WhenEmpty::After(d) => Some(d),
            WhenEmpty::Never => None,
        }
    }
}

/// The two endpoints derived from the configured URL.
#[derive(Clone, Debug)]
pub(crate) struct Endpoints {
    /// `ws(s)://…/realtime/v1/websocket?apikey=…&vsn=…`
    pub(crate) websocket: Url,
    /// `http(s)://…/realtime/v1/api/broadcast`
    pub(crate) broadcast: Url,
}

pub(crate) fn endpoints(opts: &RealtimeOptions) -> Result<Endpoints, Error> {
    let invalid = |m: String| Error::new(ErrorKind::InvalidInput, m);
    let mut url =
        Url::parse(&opts.url).map_err(|e| invalid(format!("invalid URL {:?}: {e}", opts.url)))?;
    let (ws_scheme, http_scheme) = match url.scheme() {
        "http" | "ws" => ("ws", "http"),
        "https" | "wss" => ("wss", "https"),
        other => return Err(invalid(format!("unsupported URL scheme {other:?}"))),
    };
    let path = url.path().trim_end_matches('/').to_string();
    let base = if let Some(b) = path.strip_suffix("/websocket") {
        b.to_string()
    } else if path.ends_with("/realtime/v1") {
        path
    } else {
        format!("{path}/realtime/v1")
    };
    url.set_query(None);
    url.set_fragment(None);
    let mut ws = url.clone();
    ws.set_scheme(ws_scheme)
        .map_err(|_| invalid("cannot build the WebSocket URL".into()))?;
    ws.set_path(&format!("{base}/websocket"));
    {
        let mut q = ws.query_pairs_mut();
        q.append_pair("apikey", &opts.api_key);
        q.append_pair("vsn", opts.protocol.vsn());
        if let Some(level) = &opts.log_level {
            q.append_pair("log_level", level);
        }
    }
    let mut http = url;
    http.set_scheme(http_scheme)
        .map_err(|_| invalid("cannot build the HTTP URL".into()))?;
    http.set_path(&format!("{base}/api/broadcast"));
    Ok(Endpoints {
        websocket: ws,
        broadcast: http,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str) -> Endpoints {
        endpoints(&RealtimeOptions::new(url, "k e y")).unwrap()
    }

    #[test]
    fn derives_the_websocket_and_broadcast_urls() {
        let e = ep("https://abc.supabase.co");
        assert_eq!(
            e.websocket.as_str(),
            "wss://abc.supabase.co/realtime/v1/websocket?apikey=k+e+y&vsn=2.0.0"
        );
        assert_eq!(
            e.broadcast.as_str(),
            "https://abc.supabase.co/realtime/v1/api/broadcast"
        );
        for u in [
            "http://127.0.0.1:54321/",
            "http://127.0.0.1:54321/realtime/v1",
            "ws://127.0.0.1:54321/realtime/v1/websocket?vsn=1.0.0",
        ] {
            let e = ep(u);
            assert_eq!(
                e.websocket.as_str(),
                "ws://127.0.0.1:54321/realtime/v1/websocket?apikey=k+e+y&vsn=2.0.0",
                "{u}"
            );
            assert_eq!(
                e.broadcast.as_str(),
                "http://127.0.0.1:54321/realtime/v1/api/broadcast"
            );
        }
        let e = endpoints(
            &RealtimeOptions::new("http://h", "k")
                .protocol(Protocol::V1)
                .log_level("info"),
        )
        .unwrap();
        assert_eq!(
            e.websocket.as_str(),
            "ws://h/realtime/v1/websocket?apikey=k&vsn=1.0.0&log_level=info"
        );
    }

    #[test]
    fn absurd_durations_are_capped() {
        let o = RealtimeOptions::new("http://h", "k")
            .timeout(Duration::MAX)
            .heartbeat_interval(Duration::MAX)
            .disconnect_when_empty(Some(Duration::MAX));
        assert_eq!(o.timeout, MAX_DURATION);
        let _ = tokio::time::Instant::now() + o.timeout * 4 + o.heartbeat_interval * 2;
        assert_eq!(o.empty_disconnect_delay(), Some(MAX_DURATION));
    }

    #[test]
    fn rejects_bad_urls() {
        for u in ["", "not a url", "ftp://x/"] {
            let e = endpoints(&RealtimeOptions::new(u, "k")).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
        }
    }
}
