//! The realtime client's error type and the classification of server failures.

use std::fmt;
use std::sync::Arc;

/// What went wrong, as a small `Copy` value to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument was invalid: a URL that cannot be turned into a WebSocket endpoint, an empty
    /// topic, a field too long for the binary frame format.
    InvalidInput,
    /// A reply or a state change did not come within its deadline.
    Timeout,
    /// The connection was lost (or is not up) before the operation completed.
    Disconnected,
    /// The client's socket task has stopped (every handle was dropped, or it panicked).
    ClientClosed,
    /// The server refused to join the channel (`phx_reply` with status `error`).
    JoinRejected,
    /// The server answered a push (broadcast with ack, presence track) with an error.
    PushRejected,
    /// The channel was closed, unsubscribed or removed while the operation was waiting.
    ChannelClosed,
    /// The operation needs a joined channel.
    NotJoined,
    /// The server could not set up the channel's `postgres_changes` subscriptions.
    PostgresChanges,
    /// A channel with the same topic but a different configuration already exists.
    TopicConflict,
    /// An HTTP request (broadcast over REST) failed.
    Http,
    /// The operation is not possible with the negotiated protocol (binary payloads need 2.0.0).
    Unsupported,
    /// A frame or payload from the server could not be understood.
    Malformed,
}

/// What a caller (and the client itself) should do about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Transient: try again after a backoff.
    Retry,
    /// The access token was rejected: get a fresh one, then try again.
    RefreshToken,
    /// Trying again cannot succeed without a change by the caller (permissions, configuration).
    Fatal,
}

impl ErrorClass {
    /// Classifies a WebSocket close code sent by the server (or 1006 for an abrupt close).
    ///
    /// Going-away, restart, internal-error and abnormal closures are [`ErrorClass::Retry`];
    /// policy violations (1008, and 3000 "unauthorized") ask for a fresh token; protocol errors
    /// (1002, 1003, 1007, 1010) and 3003 "forbidden" are [`ErrorClass::Fatal`].
    ///
    /// ```
    /// use livechat::realtime::ErrorClass;
    /// assert_eq!(ErrorClass::for_close_code(1012), ErrorClass::Retry);
    /// assert_eq!(ErrorClass::for_close_code(1008), ErrorClass::RefreshToken);
    /// assert_eq!(ErrorClass::for_close_code(1002), ErrorClass::Fatal);
    /// ```
    pub fn for_close_code(code: u16) -> ErrorClass {
        match code {
            1008 | 3000 => ErrorClass::RefreshToken,
            1002 | 1003 | 1007 | 1010 | 3003 => ErrorClass::Fatal,
            _ => ErrorClass::Retry,
        }
    }

    /// Classifies the HTTP status with which the server refused the WebSocket upgrade.
    ///
    /// 408, 429 and 5xx are transient; any other refusal (401 bad API key, 403 realtime
    /// disabled or unsupported `vsn`, 404 unknown tenant) is [`ErrorClass::Fatal`]: the API key
    /// and URL are fixed for the lifetime of a client.
    pub fn for_http_status(status: u16) -> ErrorClass {
        match status {
            408 | 429 | 500..=599 => ErrorClass::Retry,
            _ => ErrorClass::Fatal,
        }
    }

    /// Classifies the `reason` of a join error reply (`"<Code>: <message>"`).
    ///
    /// ```
    /// use livechat::realtime::ErrorClass;
    /// assert_eq!(
    ///     ErrorClass::for_join_error("InvalidJWTToken: Token has expired 3 seconds ago"),
    ///     ErrorClass::RefreshToken
    /// );
    /// assert_eq!(
    ///     ErrorClass::for_join_error("Unauthorized: You do not have permissions to read from this Channel topic: room"),
    ///     ErrorClass::Fatal
    /// );
    /// assert_eq!(
    ///     ErrorClass::for_join_error("ClientJoinRateLimitReached: Too many joins per second"),
    ///     ErrorClass::Retry
    /// );
    /// ```
    pub fn for_join_error(reason: &str) -> ErrorClass {
        let code = reason.split(':').next().unwrap_or("").trim();
        match code {
            "InvalidJWTToken" | "MalformedJWT" | "JwtSignatureError" => ErrorClass::RefreshToken,
            "Unauthorized"
            | "PrivateOnly"
            | "TopicNameRequired"
            | "UnableToReplayMessages"
            | "TenantNotFound"
            | "RealtimeDisabledForTenant"
            | "ChannelRateLimitReached"
            | "JwtSignerError" => ErrorClass::Fatal,
            _ => Self::for_system_error(reason),
        }
    }

    /// Classifies the message of a `system` error that the server sends before closing a
    /// channel (token expiry, lost permissions, rate limits).
    pub fn for_system_error(message: &str) -> ErrorClass {
        const TOKEN: [&str; 4] = [
            "Token has expired",
            "not a valid JWT",
            "Fields `role` and `exp` are required",
            "Failed to validate JWT signature",
        ];
        const FATAL: [&str; 4] = [
            "do not have permissions",
            "no longer have permission",
            "Track message size exceeded",
            "only allows private channels",
        ];
        if TOKEN.iter().any(|t| message.contains(t)) {
            ErrorClass::RefreshToken
        } else if FATAL.iter().any(|t| message.contains(t)) {
            ErrorClass::Fatal
        } else {
            ErrorClass::Retry
        }
    }
}

/// Whether a `postgres_changes` system error is permanent (the server does not retry it: bad
/// filter, table not published, invalid column) rather than transient (the server retries).
pub(crate) fn postgres_error_is_permanent(message: &str) -> bool {
    [
        "Error parsing",
        "Unable to subscribe",
        "No subscription params",
    ]
    .iter()
    .any(|p| message.contains(p))
}

/// The error of every realtime operation: a [`kind`](Error::kind), a
/// [`class`](Error::class) telling whether to retry, a message, and possibly a source.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    class: ErrorClass,
    message: String,
    status: Option<u16>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        let class = match kind {
            ErrorKind::Timeout | ErrorKind::Disconnected | ErrorKind::Http => ErrorClass::Retry,
            _ => ErrorClass::Fatal,
        };
        Error {
            kind,
            class,
            message: message.into(),
            status: None,
            source: None,
        }
    }

    pub(crate) fn with_class(mut self, class: ErrorClass) -> Error {
        self.class = class;
        self
    }

    pub(crate) fn with_status(mut self, status: u16) -> Error {
        self.status = Some(status);
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.source = Some(Arc::new(source));
        self
    }

    pub(crate) fn timeout(what: &str) -> Error {
        Error::new(ErrorKind::Timeout, format!("{what} timed out"))
    }

    pub(crate) fn client_closed() -> Error {
        Error::new(ErrorKind::ClientClosed, "the realtime client has stopped")
    }

    pub(crate) fn join_rejected(reason: &str) -> Error {
        Error::new(ErrorKind::JoinRejected, reason).with_class(ErrorClass::for_join_error(reason))
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether trying again can help, possibly after refreshing the access token.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The human-readable message (for a rejected join, the server's reason).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status, for HTTP failures.
    pub fn http_status(&self) -> Option<u16> {
        self.status
    }

    /// `true` for [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind)
            .field("class", &self.class)
            .field("message", &self.message);
        if let Some(s) = self.status {
            d.field("status", &s);
        }
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "realtime: {} (HTTP {s})", self.message),
            None => write!(f, "realtime: {}", self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_errors_are_classified() {
        for (reason, class) in [
            (
                "InvalidJWTToken: Fields `role` and `exp` are required in JWT",
                ErrorClass::RefreshToken,
            ),
            (
                "MalformedJWT: The token provided is not a valid JWT",
                ErrorClass::RefreshToken,
            ),
            (
                "JwtSignatureError: Failed to validate JWT signature",
                ErrorClass::RefreshToken,
            ),
            (
                "PrivateOnly: This project only allows private channels",
                ErrorClass::Fatal,
            ),
            (
                "ChannelRateLimitReached: Too many channels",
                ErrorClass::Fatal,
            ),
            (
                "TopicNameRequired: You must provide a topic name",
                ErrorClass::Fatal,
            ),
            (
                "RealtimeRestarting: Realtime is restarting, please standby",
                ErrorClass::Retry,
            ),
            (
                "UnableToConnectToProject: Realtime was unable to connect to the project database",
                ErrorClass::Retry,
            ),
            ("Unknown Error on Channel", ErrorClass::Retry),
            ("something new", ErrorClass::Retry),
        ] {
            assert_eq!(ErrorClass::for_join_error(reason), class, "{reason}");
        }
    }

    #[test]
    fn system_errors_are_classified() {
        assert_eq!(
            ErrorClass::for_system_error("Token has expired 0 seconds ago"),
            ErrorClass::RefreshToken
        );
        assert_eq!(
            ErrorClass::for_system_error(
                "You no longer have permission to read from this Channel topic: x"
            ),
            ErrorClass::Fatal
        );
        assert_eq!(
            ErrorClass::for_system_error("Too many messages per second"),
            ErrorClass::Retry
        );
    }

    #[test]
    fn close_codes_and_statuses_are_classified() {
        for c in [1000, 1001, 1006, 1011, 1012, 1013, 4000] {
            assert_eq!(ErrorClass::for_close_code(c), ErrorClass::Retry, "{c}");
        }
        assert_eq!(ErrorClass::for_close_code(1008), ErrorClass::RefreshToken);
        assert_eq!(ErrorClass::for_close_code(1003), ErrorClass::Fatal);
        assert_eq!(ErrorClass::for_http_status(503), ErrorClass::Retry);
        assert_eq!(ErrorClass::for_http_status(429), ErrorClass::Retry);
        assert_eq!(ErrorClass::for_http_status(401), ErrorClass::Fatal);
        assert_eq!(ErrorClass::for_http_status(403), ErrorClass::Fatal);
    }

    #[test]
    fn postgres_errors_permanent_or_transient() {
        assert!(postgres_error_is_permanent(
            "Error parsing `filter` params: [\"id\"]"
        ));
        assert!(postgres_error_is_permanent(
            "Unable to subscribe to changes with given parameters."
        ));
        assert!(!postgres_error_is_permanent("Too many database timeouts"));
    }
}
