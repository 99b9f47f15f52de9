//! Visitor tokens: short-lived JWTs that let one widget visitor read its own conversations and
//! write into them, and nothing else.
//!
//! The embeddable chat widget runs in the visitor's browser, where only the project's anon key
//! is available. The anon key alone can read the public widget settings and create a visitor
//! and a conversation, but it cannot read any conversation or message (see the migration
//! `20260101000500_visitor_access.sql`). To chat, the widget needs a **visitor token**, minted
//! on the trusted side (your backend, which holds the project's JWT secret) after it has
//! decided that the browser really is that visitor, typically right after creating the visitor
//! with the service-role key or after the widget created it.
//!
//! # Token format
//!
//! An HS256 JWT signed with the project's JWT secret (the one that signs the anon and
//! service-role keys), with exactly these claims:
//!
//! | claim | value |
//! |---|---|
//! | `role` | `"anon"`: the request runs as the `anon` database role |
//! | `visitor_id` | the visitor's id (uuid string) |
//! | `site_id` | the visitor's site (uuid string) |
//! | `iat` | issue time, Unix seconds |
//! | `exp` | expiry, Unix seconds: `iat` + the TTL (at most [`MAX_TTL`]) |
//! | `iss` | [`ISSUER`] (`"livechat"`) |
//!
//! There is deliberately **no `sub`**: `auth.uid()` stays null, so no policy for signed-in
//! dashboard users applies; only the anon policies that read `visitor_id` and `site_id` do.
//! Nothing else in the token grants anything. PostgREST and Supabase Realtime both accept it as
//! a bearer token / channel `access_token` (they require `role` and `exp`, and check `exp`).
//!
//! With such a token a client can: read its own `mod_chat_visitors` row; read its own
//! conversations of that site and their messages except internal notes; insert messages into
//! those conversations only with `sender_type = 'visitor'`; receive `postgres_changes` only for
//! those rows. Refresh it before it expires (mint a new one); an expired token is refused with
//! HTTP 401 `PGRST303` by PostgREST and closes the Realtime channel.
//!
//! Row-level security selects rows, not columns; column privileges for `anon` (migration
//! `20260101000700_visitor_columns.sql`) hide what agents write about the visitor:
//! `internal_notes` and `tags` of `mod_chat_conversations`, and `notes`, `tags` and
//! `crm_contact_id` of `mod_chat_visitors` are not readable with a visitor token (nor with the
//! plain anon key), and realtime change records sent to it leave them out. So `select=*` on
//! those two tables is refused: name the readable columns
//! ([`VISITOR_CONVERSATION_COLUMNS`](crate::visitor::VISITOR_CONVERSATION_COLUMNS),
//! [`VISITOR_ROW_COLUMNS`](crate::visitor::VISITOR_ROW_COLUMNS)).
//!
//! # Keep the secret on the server
//!
//! Minting needs the JWT secret, which can also mint service-role keys. Never ship it to a
//! browser or a mobile app. Mint only for a visitor id your backend created or has verified
//! belongs to the caller: whoever holds a token reads that visitor's chats.
//!
//! ```
//! use std::time::Duration;
//! use livechat::visitor_token::{mint_visitor_token, verify_visitor_token};
//! use uuid::Uuid;
//!
//! let secret = "super-secret-jwt-token-with-at-least-32-characters-long";
//! let visitor = Uuid::from_u128(0x10000000_0000_4000_8000_000000000101);
//! let site = Uuid::from_u128(0xb0000000_0000_4000_8000_000000000001);
//!
//! let token = mint_visitor_token(secret, visitor, site, Duration::from_secs(15 * 60))?;
//! // Hand `token` to the widget; it sends it as `Authorization: Bearer <token>` and as the
//! // Realtime channel's `access_token`. The library's own client can use it too:
//! let widget = livechat::Client::new(
//!     livechat::Config::new("http://127.0.0.1:54321", "anon-key")?.with_access_token(&token),
//! )?;
//! # let _ = widget;
//!
//! let claims = verify_visitor_token(secret, &token)?;
//! assert_eq!(claims.visitor_id, visitor);
//! assert_eq!(claims.role, "anon");
//! # Ok::<(), livechat::Error>(())
//! ```
#![warn(missing_docs)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;
use uuid::Uuid;

use crate::error::{Error, ErrorKind, Result};

/// The `iss` claim of visitor tokens.
pub const ISSUER: &str = "livechat";

/// The `role` claim of visitor tokens.
pub const ROLE: &str = "anon";

/// The longest TTL [`mint_visitor_token`] accepts: 24 hours. Visitor tokens are meant to be
/// short-lived (minutes); the widget asks for a new one before `exp`.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest JWT secret accepted, in bytes (Supabase requires at least 32 characters).
pub const MIN_SECRET_LEN: usize = 32;

/// Clock skew allowed by [`verify_visitor_token`] on `iat` (as PostgREST: 30 s).
const CLOCK_SKEW_SECS: i64 = 30;

const HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

/// The claims of a visitor token (see the [module docs](self) for the format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorClaims {
    /// Always `"anon"`.
    pub role: String,
    /// The visitor the token speaks for.
    pub visitor_id: Uuid,
    /// The visitor's site.
    pub site_id: Uuid,
    /// Issue time, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Always [`ISSUER`].
    pub iss: String,
}

fn hmac(secret: &str) -> Result<Hmac<Sha256>> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(Error::config(format!(
            "the JWT secret must be at least {MIN_SECRET_LEN} bytes long"
        )));
    }
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .map_err(|_| Error::config("the JWT secret cannot be used as an HMAC key"))
}

fn unix_secs(t: SystemTime) -> Result<i64> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::invalid_input("the issue time is before 1970"))?
        .as_secs();
    i64::try_from(secs).map_err(|_| Error::invalid_input("the issue time is too far in the future"))
}

/// Mints a visitor token for `visitor_id` of `site_id`, valid for `ttl` from now.
///
/// `secret` is the project's JWT secret (Supabase dashboard: Project Settings → API → JWT
/// secret; the local stack's `jwt_secret`). Fails with [`ErrorKind::Config`] for a secret
/// shorter than [`MIN_SECRET_LEN`] bytes, and with [`ErrorKind::InvalidInput`] for a nil
/// visitor or site id or a TTL of zero or longer than [`MAX_TTL`]. Errors never contain the
/// secret.
///
/// ```
/// use std::time::Duration;
/// use uuid::Uuid;
///
/// let secret = "super-secret-jwt-token-with-at-least-32-characters-long";
/// let token = livechat::visitor_token::mint_visitor_token(
///     secret,
///     Uuid::new_v4(),
///     Uuid::new_v4(),
///     Duration::from_secs(600),
/// )?;
/// assert_eq!(token.split('.').count(), 3);
/// # Ok::<(), livechat::Error>(())
/// ```
pub fn mint_visitor_token(
    secret: &str,
    visitor_id: Uuid,
    site_id: Uuid,
    ttl: Duration,
) -> Result<String> {
    mint_visitor_token_at(secret, visitor_id, site_id, ttl, SystemTime::now())
}

/// Like [`mint_visitor_token`], issued at `issued_at` instead of now (for tests, or to align
/// `iat` with a clock of your own). A token issued far enough in the past is already expired.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use uuid::Uuid;
/// use livechat::visitor_token::{mint_visitor_token_at, verify_visitor_token, VerifyError};
///
/// let secret = "super-secret-jwt-token-with-at-least-32-characters-long";
/// let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
/// let stale = mint_visitor_token_at(
///     secret, Uuid::new_v4(), Uuid::new_v4(), Duration::from_secs(60), an_hour_ago,
/// )?;
/// assert_eq!(verify_visitor_token(secret, &stale), Err(VerifyError::Expired));
/// # Ok::<(), livechat::Error>(())
/// ```
pub fn mint_visitor_token_at(
    secret: &str,
    visitor_id: Uuid,
    site_id: Uuid,
    ttl: Duration,
    issued_at: SystemTime,
) -> Result<String> {
    let mac = hmac(secret)?;
    if visitor_id.is_nil() || site_id.is_nil() {
        return Err(Error::invalid_input(
            "a visitor token needs a non-nil visitor id and site id",
        ));
    }
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(Error::invalid_input(format!(
            "the visitor token TTL must be between 1 second and {} seconds",
            MAX_TTL.as_secs()
        )));
    }
    let iat = unix_secs(issued_at)?;
    // Whole seconds, rounded up, so a sub-second TTL still gives a token that lives a moment.
    let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let exp = i64::try_from(ttl_secs)
        .ok()
        .and_then(|t| iat.checked_add(t))
        .ok_or_else(|| Error::invalid_input("the visitor token expiry overflows"))?;
    let claims = VisitorClaims {
        role: ROLE.to_string(),
        visitor_id,
        site_id,
        iat,
        exp,
        iss: ISSUER.to_string(),
    };
    let payload = serde_json::to_vec(&claims).map_err(|e| {
        Error::new(ErrorKind::InvalidInput, "cannot serialize the claims").with_source(e)
    })?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = mac;
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{sig}"))
}

/// Why [`verify_visitor_token`] refused a token. Messages never contain the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("the JWT secret must be at least {MIN_SECRET_LEN} bytes long")]
    WeakSecret,
    /// The token is well formed and correctly signed, but `exp` has passed.
    #[error("the visitor token has expired")]
    Expired,
    /// Anything else: malformed, wrong algorithm, bad signature, wrong claims.
    #[error("invalid visitor token: {0}")]
    Invalid(&'static str),
}

impl VerifyError {
    /// True for [`VerifyError::Expired`]: mint a new token.
    pub fn is_expired(&self) -> bool {
        matches!(self, VerifyError::Expired)
    }
}

impl From<VerifyError> for Error {
    fn from(e: VerifyError) -> Error {
        let kind = match e {
            VerifyError::WeakSecret => ErrorKind::Config,
            VerifyError::Expired | VerifyError::Invalid(_) => ErrorKind::Auth,
        };
        Error::new(kind, e.to_string())
    }
}

/// The header, payload and signature parts of a compact JWT: exactly three dot-separated
/// parts, or `None`. Nothing is decoded or checked.
pub(crate) fn jwt_parts(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => Some((h, p, s)),
        _ => None,
    }
}

/// A JWT header or payload part: base64url (no padding) of a JSON value of type `T`, or `None`
/// when it is not one.
pub(crate) fn decode_part<T: DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Verifies a visitor token minted with `secret` and returns its claims (for a backend that
/// receives visitor tokens back, e.g. to refresh one).
///
/// Checks, in order: three base64url parts, header `alg` = `HS256` (`none` and every other
/// algorithm are refused), the signature (constant-time), the claims: `role` = `anon`, no
/// `sub`, `iss` = [`ISSUER`], uuid `visitor_id` and `site_id`, numeric `iat` not in the future
/// (30 s skew) and `exp` in the future (no skew).
pub fn verify_visitor_token(
    secret: &str,
    token: &str,
) -> std::result::Result<VisitorClaims, VerifyError> {
    verify_visitor_token_at(secret, token, SystemTime::now())
}

/// Like [`verify_visitor_token`], at the instant `now`.
pub fn verify_visitor_token_at(
    secret: &str,
    token: &str,
    now: SystemTime,
) -> std::result::Result<VisitorClaims, VerifyError> {
    use VerifyError::Invalid;
    let mut mac = hmac(secret).map_err(|_| VerifyError::WeakSecret)?;
    let (h, p, s) = jwt_parts(token).ok_or(Invalid("not three dot-separated parts"))?;
    let header: Value = decode_part(h).ok_or(Invalid("malformed header"))?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(Invalid("unsupported algorithm (only HS256)"));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| Invalid("malformed signature"))?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&sig)
        .map_err(|_| Invalid("signature mismatch"))?;
    let raw: Map<String, Value> = decode_part(p).ok_or(Invalid("malformed claims"))?;
    if raw.contains_key("sub") {
        return Err(Invalid("a visitor token must not carry `sub`"));
    }
    let claims: VisitorClaims = serde_json::from_value(Value::Object(raw))
        .map_err(|_| Invalid("missing or mistyped claims"))?;
    if claims.role != ROLE {
        return Err(Invalid("role is not anon"));
    }
    if claims.iss != ISSUER {
        return Err(Invalid("unexpected issuer"));
    }
    let now = unix_secs(now).map_err(|_| Invalid("the clock is before 1970"))?;
    if claims.iat > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(Invalid("issued in the future"));
    }
    if claims.exp <= now {
        return Err(VerifyError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

    fn ids() -> (Uuid, Uuid) {
        (
            Uuid::from_u128(0x10000000_0000_4000_8000_000000000101),
            Uuid::from_u128(0xb0000000_0000_4000_8000_000000000001),
        )
    }

    #[test]
    fn round_trip_and_exact_claims() {
        let (v, s) = ids();
        let t = mint_visitor_token(SECRET, v, s, Duration::from_secs(300)).unwrap();
        let c = verify_visitor_token(SECRET, &t).unwrap();
        assert_eq!((c.visitor_id, c.site_id), (v, s));
        assert_eq!(c.exp - c.iat, 300);
        let payload = URL_SAFE_NO_PAD
            .decode(t.split('.').nth(1).unwrap())
            .unwrap();
        let m: Map<String, Value> = serde_json::from_slice(&payload).unwrap();
        let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["exp", "iat", "iss", "role", "site_id", "visitor_id"]);
    }

    #[test]
    fn refuses_bad_inputs() {
        let (v, s) = ids();
        let e = mint_visitor_token("short", v, s, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(!e.to_string().contains("short"));
        for ttl in [Duration::ZERO, MAX_TTL + Duration::from_secs(1)] {
            assert_eq!(
                mint_visitor_token(SECRET, v, s, ttl).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
        assert!(mint_visitor_token(SECRET, Uuid::nil(), s, Duration::from_secs(1)).is_err());
        assert!(mint_visitor_token(SECRET, v, Uuid::nil(), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn refuses_forged_expired_and_alg_none() {
        let (v, s) = ids();
        let t = mint_visitor_token(SECRET, v, s, Duration::from_secs(60)).unwrap();
        let other = "another-secret-that-is-also-at-least-32-bytes";
        assert_eq!(
            verify_visitor_token(other, &t),
            Err(VerifyError::Invalid("signature mismatch"))
        );
        let old = SystemTime::now() - Duration::from_secs(120);
        let t = mint_visitor_token_at(SECRET, v, s, Duration::from_secs(60), old).unwrap();
        assert!(verify_visitor_token(SECRET, &t).unwrap_err().is_expired());
        assert_eq!(Error::from(VerifyError::Expired).kind(), ErrorKind::Auth);
        let parts: Vec<&str> = t.split('.').collect();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1]
        );
        let e = verify_visitor_token(SECRET, &none).unwrap_err();
        assert_eq!(
            e,
            VerifyError::Invalid("unsupported algorithm (only HS256)")
        );
        assert!(!e.to_string().contains(parts[1]));
    }
}
