//! The library's error type: one opaque [`Error`] that says what kind of failure it is
//! ([`Error::kind`]), whether trying again can help ([`Error::is_retryable`]), and keeps the
//! PostgREST error body intact ([`Error::postgrest`]).
//!
//! Callers decide between retrying, refreshing a token and giving up without matching on
//! internals:
//!
//! ```
//! use livechat::{Error, ErrorKind};
//!
//! fn describe(err: &Error) -> &'static str {
//!     match err.kind() {
//!         ErrorKind::NotFound => "no such row, table or function",
//!         ErrorKind::Conflict => "duplicate key or foreign-key violation",
//!         ErrorKind::Auth if err.is_token_expired() => "refresh the access token and retry",
//!         ErrorKind::Auth => "bad or missing credentials",
//!         _ if err.is_retryable() => "transient: try again later",
//!         _ => "permanent failure",
//!     }
//! }
//! # let _ = describe;
//! ```
#![warn(missing_docs)]

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

/// A boxed error from a lower layer (HTTP client, JSON decoder, token provider).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is.
///
/// The mapping from PostgREST responses follows PostgREST's own SQLSTATE → HTTP table: a
/// unique or foreign-key violation (409) is [`Conflict`](ErrorKind::Conflict), an RLS or
/// privilege violation by a signed-in user (403) is [`Forbidden`](ErrorKind::Forbidden), a
/// missing table, function or row (404, or 406 with zero rows for a single-row request) is
/// [`NotFound`](ErrorKind::NotFound), and so on (see [`Error::kind`]).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The client configuration is unusable: a missing environment variable, a malformed URL or
    /// an API key that cannot be sent as a header.
    Config,
    /// A table, view, function or (for single-row requests) row does not exist or is not
    /// visible to the caller. HTTP 404, or 406 `PGRST116` with zero rows.
    NotFound,
    /// A single-row request matched more than one row (406 `PGRST116`). The transaction was
    /// rolled back, so a write changed nothing.
    MultipleRows,
    /// A unique or foreign-key violation (HTTP 409, SQLSTATE 23505 / 23503).
    Conflict,
    /// The signed-in role may not do this: insufficient privilege or a row-level security
    /// violation (HTTP 403, SQLSTATE 42501).
    Forbidden,
    /// The request was rejected as malformed or invalid: a parse error (`PGRST100`), a bad value
    /// for a column type (22P02), a not-null or check violation, an unknown column, a raised
    /// exception (P0001), an unsatisfiable range, or a value the library cannot encode.
    InvalidInput,
    /// Authentication failed: a missing, malformed, expired or wrongly signed JWT (HTTP 401), a
    /// privilege violation while anonymous, or an access-token provider that failed.
    Auth,
    /// Too many requests (HTTP 429); see [`Error::retry_after`].
    RateLimited,
    /// The request did not complete at the HTTP level: connection refused or reset, TLS, DNS.
    Transport,
    /// The request, or the statement it ran, took too long (client timeout, HTTP 408/504,
    /// `PGRST003`, SQLSTATE 57014).
    Timeout,
    /// The server failed (HTTP 5xx): database unavailable, serialization failure, deadlock,
    /// internal error.
    Server,
    /// The response could not be decoded into the requested type.
    Decode,
}

impl ErrorKind {
    /// A short lowercase name, e.g. `"not found"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "configuration error",
            ErrorKind::NotFound => "not found",
            ErrorKind::MultipleRows => "more than one row",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Auth => "authentication failed",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Transport => "transport error",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Server => "server error",
            ErrorKind::Decode => "decode error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PostgREST's error body, `{"code", "message", "details", "hint"}`, as the server sent it.
///
/// For database errors `code` is the SQLSTATE (e.g. `"23505"`); PostgREST's own errors use
/// `PGRSTnnn` codes. `details` is usually a string but is an array of objects for `PGRST201`
/// (ambiguous embedding), so it is kept as JSON; [`PostgrestError::details_text`] gives the
/// string form.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PostgrestError {
    /// SQLSTATE or `PGRSTnnn` code.
    #[serde(default)]
    pub code: Option<String>,
    /// The primary message.
    #[serde(default)]
    pub message: Option<String>,
    /// Details: a string, or structured JSON for some PostgREST errors.
    #[serde(default)]
    pub details: Option<serde_json::Value>,
    /// A hint, e.g. a suggested table name.
    #[serde(default)]
    pub hint: Option<String>,
}

impl PostgrestError {
    /// Parses a PostgREST error body. Returns `None` when the body is not a JSON object or has
    /// none of the four keys (e.g. a proxy's HTML error page).
    pub fn from_body(body: &[u8]) -> Option<PostgrestError> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let obj = value.as_object()?;
        if !["code", "message", "details", "hint"]
            .iter()
            .any(|k| obj.contains_key(*k))
        {
            return None;
        }
        let text = |k: &str| match obj.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        Some(PostgrestError {
            code: text("code"),
            message: text("message"),
            details: obj.get("details").filter(|v| !v.is_null()).cloned(),
            hint: text("hint"),
        })
    }

    /// `details` as text: the string itself, or the JSON text of structured details.
    pub fn details_text(&self) -> Option<String> {
        match &self.details {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        }
    }

    /// The code, or `""`.
    pub fn code_str(&self) -> &str {
        self.code.as_deref().unwrap_or("")
    }
}

impl fmt::Display for PostgrestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => write!(f, "{c}: {m}")?,
            (Some(c), None) => f.write_str(c)?,
            (None, Some(m)) => f.write_str(m)?,
            (None, None) => f.write_str("(no message)")?,
        }
        if let Some(d) = self.details_text() {
            write!(f, " ({d})")?;
        }
        if let Some(h) = &self.hint {
            write!(f, " hint: {h}")?;
        }
        Ok(())
    }
}

/// The error of every fallible operation in this crate.
///
/// Opaque on purpose: ask it what happened with [`kind`](Error::kind),
/// [`is_retryable`](Error::is_retryable), [`status`](Error::status), [`code`](Error::code) and
/// [`postgrest`](Error::postgrest).
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    retryable: bool,
    status: Option<StatusCode>,
    postgrest: Option<PostgrestError>,
    body: Option<String>,
    context: Option<String>,
    retry_after: Option<Duration>,
    source: Option<BoxError>,
}

impl Error {
    fn build(kind: ErrorKind) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                retryable: false,
                status: None,
                postgrest: None,
                body: None,
                context: None,
                retry_after: None,
                source: None,
            }),
        }
    }

    /// An error of the given kind with a message (for errors found by this library itself).
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        let mut e = Error::build(kind);
        e.inner.context = Some(message.into());
        e
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Error {
        self.inner.source = Some(source.into());
        self
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    pub(crate) fn invalid_input(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidInput, message)
    }

    pub(crate) fn decode(message: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::new(ErrorKind::Decode, message).with_source(source)
    }

    /// An error from the HTTP client. `idempotent` says whether the request may be sent again
    /// without risk of doing its work twice (GET, HEAD, DELETE).
    pub(crate) fn from_reqwest(err: reqwest::Error, idempotent: bool) -> Error {
        let (kind, retryable) = if err.is_timeout() {
            (ErrorKind::Timeout, idempotent || err.is_connect())
        } else if err.is_connect() {
            // Nothing reached the server.
            (ErrorKind::Transport, true)
        } else if err.is_builder() {
            (ErrorKind::InvalidInput, false)
        } else {
            // The connection broke after the request may have reached the server (a reset,
            // a body that stopped half-way): only an idempotent request may be repeated.
            (ErrorKind::Transport, idempotent)
        };
        let mut e = Error::build(kind);
        e.inner.retryable = retryable;
        e.inner.status = err.status();
        e.inner.source = Some(Box::new(err));
        e
    }

    /// Classifies an HTTP error response from PostgREST (or a proxy in front of it).
    pub(crate) fn from_response(
        status: StatusCode,
        body: &[u8],
        retry_after: Option<Duration>,
        idempotent: bool,
    ) -> Error {
        let postgrest = PostgrestError::from_body(body);
        let (kind, retryable) = classify(status, postgrest.as_ref(), idempotent);
        let mut e = Error::build(kind);
        e.inner.retryable = retryable;
        e.inner.status = Some(status);
        e.inner.retry_after = retry_after;
        if postgrest.is_none() && !body.is_empty() {
            let text = String::from_utf8_lossy(body);
            let mut text = text.into_owned();
            if text.len() > 2048 {
                let mut cut = 2048;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            e.inner.body = Some(text);
        }
        e.inner.postgrest = postgrest;
        e
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether sending the same request again can succeed without risk of doing its work twice.
    ///
    /// True for: connection failures (nothing reached the server); timeouts and dropped
    /// connections of idempotent requests (GET, HEAD, DELETE); the database being unreachable
    /// (`PGRST000`–`PGRST003`, SQLSTATE class 08, 57P01–57P03, 53xxx); serialization failures and
    /// deadlocks (40001, 40P01), whose transaction was rolled back; HTTP 429 and 503; and 502/504
    /// of idempotent requests. False for everything else, including [`ErrorKind::Auth`] (refresh
    /// the token first; see [`Error::is_token_expired`]).
    pub fn is_retryable(&self) -> bool {
        self.inner.retryable
    }

    /// True when the server said the JWT has expired (`PGRST303`, or `PGRST301` "JWT expired" in
    /// PostgREST v12): refresh the access token, then retry.
    pub fn is_token_expired(&self) -> bool {
        self.inner.kind == ErrorKind::Auth
            && self
                .inner
                .postgrest
                .as_ref()
                .and_then(|p| p.message.as_deref())
                .is_some_and(|m| m.to_ascii_lowercase().contains("expired"))
    }

    /// The HTTP status of the response, when there was one.
    pub fn status(&self) -> Option<u16> {
        self.inner.status.map(|s| s.as_u16())
    }

    /// The PostgREST error body, when the server sent one.
    pub fn postgrest(&self) -> Option<&PostgrestError> {
        self.inner.postgrest.as_ref()
    }

    /// The SQLSTATE or `PGRSTnnn` code of the PostgREST error body.
    pub fn code(&self) -> Option<&str> {
        self.inner
            .postgrest
            .as_ref()
            .and_then(|p| p.code.as_deref())
    }

    /// The raw response body, when it was not a PostgREST error object (e.g. a proxy's page);
    /// cut to 2 KiB.
    pub fn body(&self) -> Option<&str> {
        self.inner.body.as_deref()
    }

    /// The delay the server asked for in a `Retry-After` header, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// For a single-row request that did not get exactly one row (`PGRST116`): how many rows
    /// the result had, as PostgREST reported it.
    pub fn row_count(&self) -> Option<u64> {
        let p = self.inner.postgrest.as_ref()?;
        if p.code.as_deref() != Some("PGRST116") {
            return None;
        }
        first_integer(&p.details_text()?)
    }

    /// Shorthand for `kind() == ErrorKind::NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.inner.kind == ErrorKind::NotFound
    }

    /// Shorthand for `kind() == ErrorKind::Conflict`.
    pub fn is_conflict(&self) -> bool {
        self.inner.kind == ErrorKind::Conflict
    }

    /// Shorthand for `kind() == ErrorKind::Timeout`.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }
}

fn first_integer(s: &str) -> Option<u64> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let digits: String = s[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Maps a status and PostgREST body to a kind and whether a retry can help.
fn classify(
    status: StatusCode,
    body: Option<&PostgrestError>,
    idempotent: bool,
) -> (ErrorKind, bool) {
    let code = body.map(PostgrestError::code_str).unwrap_or("");

    // Codes that say more than the status does.
    match code {
        "PGRST116" => {
            let rows = body
                .and_then(PostgrestError::details_text)
                .and_then(|d| first_integer(&d));
            return match rows {
                Some(n) if n > 1 => (ErrorKind::MultipleRows, false),
                _ => (ErrorKind::NotFound, false),
            };
        }
        "PGRST000" | "PGRST001" | "PGRST002" => return (ErrorKind::Server, true),
        "PGRST003" => return (ErrorKind::Timeout, true),
        "40001" | "40P01" => return (ErrorKind::Server, true),
        "57014" => return (ErrorKind::Timeout, idempotent),
        "57P01" | "57P02" | "57P03" => return (ErrorKind::Server, true),
        "PGRST301" | "PGRST302" | "PGRST303" => return (ErrorKind::Auth, false),
        _ => {}
    }
    if code.starts_with("08") || (code.starts_with("53") && code.len() == 5) {
        return (ErrorKind::Server, true);
    }

    match status.as_u16() {
        401 => (ErrorKind::Auth, false),
        403 => (ErrorKind::Forbidden, false),
        404 => (ErrorKind::NotFound, false),
        408 => (ErrorKind::Timeout, idempotent),
        409 => (ErrorKind::Conflict, false),
        429 => (ErrorKind::RateLimited, true),
        502 => (ErrorKind::Server, idempotent),
        503 => (ErrorKind::Server, true),
        504 => (ErrorKind::Timeout, idempotent),
        s if (500..600).contains(&s) => (ErrorKind::Server, false),
        // 300 (ambiguous embedding or overload), 400, 405, 406, 416 and custom 4xx statuses.
        _ => (ErrorKind::InvalidInput, false),
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        d.field("retryable", &self.inner.retryable);
        if let Some(s) = self.inner.status {
            d.field("status", &s.as_u16());
        }
        if let Some(p) = &self.inner.postgrest {
            d.field("postgrest", p);
        }
        if let Some(b) = &self.inner.body {
            d.field("body", b);
        }
        if let Some(c) = &self.inner.context {
            d.field("context", c);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.inner.kind.as_str())?;
        if let Some(s) = self.inner.status {
            write!(f, " (HTTP {})", s.as_u16())?;
        }
        if let Some(c) = &self.inner.context {
            write!(f, ": {c}")?;
        }
        if let Some(p) = &self.inner.postgrest {
            write!(f, ": {p}")?;
        } else if let Some(b) = &self.inner.body {
            write!(f, ": {b}")?;
        }
        if let Some(s) = &self.inner.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str) -> Error {
        Error::from_response(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            None,
            true,
        )
    }

    #[test]
    fn postgrest_statuses_map_to_kinds() {
        let cases = [
            (
                409,
                r#"{"code":"23505","message":"duplicate key value violates unique constraint \"x_pkey\"","details":"Key (id)=(1) already exists.","hint":null}"#,
                ErrorKind::Conflict,
            ),
            (
                409,
                r#"{"code":"23503","message":"fk","details":null,"hint":null}"#,
                ErrorKind::Conflict,
            ),
            (
                403,
                r#"{"code":"42501","message":"new row violates row-level security policy for table \"t\"","details":null,"hint":null}"#,
                ErrorKind::Forbidden,
            ),
            (
                401,
                r#"{"code":"42501","message":"permission denied for table t","details":null,"hint":null}"#,
                ErrorKind::Auth,
            ),
            (
                401,
                r#"{"code":"PGRST303","message":"JWT expired","details":null,"hint":null}"#,
                ErrorKind::Auth,
            ),
            (
                404,
                r#"{"code":"PGRST205","message":"Could not find the table 'public.x' in the schema cache","details":null,"hint":null}"#,
                ErrorKind::NotFound,
            ),
            (
                404,
                r#"{"code":"PGRST202","message":"Could not find the function","details":"…","hint":null}"#,
                ErrorKind::NotFound,
            ),
            (
                406,
                r#"{"code":"PGRST116","message":"Cannot coerce the result to a single JSON object","details":"The result contains 0 rows","hint":null}"#,
                ErrorKind::NotFound,
            ),
            (
                406,
                r#"{"code":"PGRST116","message":"Cannot coerce the result to a single JSON object","details":"The result contains 4 rows","hint":null}"#,
                ErrorKind::MultipleRows,
            ),
            (
                400,
                r#"{"code":"22P02","message":"invalid input syntax for type uuid: \"abc\"","details":null,"hint":null}"#,
                ErrorKind::InvalidInput,
            ),
            (
                400,
                r#"{"code":"PGRST100","message":"\"failed to parse filter (0)\" (line 1, column 1)","details":"unexpected","hint":null}"#,
                ErrorKind::InvalidInput,
            ),
            (
                300,
                r#"{"code":"PGRST201","message":"Could not embed","details":[{"cardinality":"many-to-one"}],"hint":"Try"}"#,
                ErrorKind::InvalidInput,
            ),
            (
                416,
                r#"{"code":"PGRST103","message":"Requested range not satisfiable","details":null,"hint":null}"#,
                ErrorKind::InvalidInput,
            ),
            (
                500,
                r#"{"code":"P0004","message":"assert","details":null,"hint":null}"#,
                ErrorKind::Server,
            ),
            (
                500,
                r#"{"code":"40001","message":"could not serialize access","details":null,"hint":null}"#,
                ErrorKind::Server,
            ),
            (
                503,
                r#"{"code":"PGRST000","message":"Database connection error.","details":null,"hint":null}"#,
                ErrorKind::Server,
            ),
            (
                504,
                r#"{"code":"PGRST003","message":"Timed out acquiring connection from connection pool.","details":null,"hint":null}"#,
                ErrorKind::Timeout,
            ),
            (429, "Too Many Requests", ErrorKind::RateLimited),
            (502, "<html>bad gateway</html>", ErrorKind::Server),
        ];
        for (status, body, kind) in cases {
            assert_eq!(err(status, body).kind(), kind, "{status} {body}");
        }
    }

    #[test]
    fn retry_predicates() {
        assert!(err(503, r#"{"code":"PGRST000","message":"x"}"#).is_retryable());
        assert!(err(500, r#"{"code":"40P01","message":"deadlock detected"}"#).is_retryable());
        assert!(!err(500, r#"{"code":"XX000","message":"internal"}"#).is_retryable());
        assert!(!err(409, r#"{"code":"23505","message":"dup"}"#).is_retryable());
        assert!(!err(401, r#"{"code":"PGRST303","message":"JWT expired"}"#).is_retryable());
        assert!(err(401, r#"{"code":"PGRST303","message":"JWT expired"}"#).is_token_expired());
        assert!(err(401, r#"{"code":"PGRST301","message":"JWT expired"}"#).is_token_expired());
        let post_502 = Error::from_response(StatusCode::BAD_GATEWAY, b"", None, false);
        assert!(!post_502.is_retryable());
    }

    #[test]
    fn body_is_kept_intact() {
        let e = err(
            300,
            r#"{"code":"PGRST201","message":"m","details":[{"a":1}],"hint":"h"}"#,
        );
        let p = e.postgrest().unwrap();
        assert_eq!(p.code.as_deref(), Some("PGRST201"));
        assert_eq!(p.details, Some(serde_json::json!([{"a": 1}])));
        assert_eq!(p.hint.as_deref(), Some("h"));
        assert_eq!(e.code(), Some("PGRST201"));
        let e = err(
            406,
            r#"{"code":"PGRST116","message":"m","details":"The result contains 3 rows","hint":null}"#,
        );
        assert_eq!(e.row_count(), Some(3));
        let e = err(502, "<html>bad gateway</html>");
        assert!(e.postgrest().is_none());
        assert_eq!(e.body(), Some("<html>bad gateway</html>"));
        assert!(e.to_string().contains("HTTP 502"));
    }
}
