//! HS256 JSON Web Tokens, signed and verified the way PostgREST and Supabase do it.
//!
//! Verification errors carry the PostgREST error code (`PGRST301` for tokens that cannot be
//! decoded, `PGRST303` for claims that are invalid) and the exact v14 message, so the REST gateway
//! and the realtime server can report them faithfully.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

/// Supabase's well-known JWT secret for local development (`supabase start` uses it too).
pub const DEFAULT_JWT_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

/// Clock skew PostgREST allows on `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW_SECS: i64 = 30;

/// The claims of a token: a JSON object.
pub type Claims = Map<String, Value>;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct JwtError {
    /// `PGRST301` (could not decode) or `PGRST303` (claims invalid).
    pub code: &'static str,
    /// The PostgREST v14 message, e.g. `JWT expired`.
    pub message: String,
    /// Optional details (as PostgREST sends them).
    pub details: Option<String>,
}

impl JwtError {
    fn decode(message: impl Into<String>) -> Self {
        JwtError {
            code: "PGRST301",
            message: message.into(),
            details: None,
        }
    }
    fn claims(message: impl Into<String>) -> Self {
        JwtError {
            code: "PGRST303",
            message: message.into(),
            details: None,
        }
    }
    /// True when the token was well formed and correctly signed but has expired.
    pub fn is_expired(&self) -> bool {
        self.message == "JWT expired"
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// Signs `claims` with HS256.
pub fn sign(claims: &Claims, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
    let signing_input = format!("{header}.{payload}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Signs a token with `role`, `iss` = `supabase-demo`, `iat` now and `exp` after `ttl_secs`,
/// plus any extra claims.
pub fn sign_role(role: &str, ttl_secs: i64, extra: Claims, secret: &str) -> String {
    let now = now_secs();
    let mut claims = Claims::new();
    claims.insert("iss".into(), json!("supabase-demo"));
    claims.insert("role".into(), json!(role));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl_secs));
    for (k, v) in extra {
        claims.insert(k, v);
    }
    sign(&claims, secret)
}

/// Expiry of the API keys: the same fixed instant as Supabase's local demo keys (2032-11-12), so
/// the keys of a stack are the same at every start.
pub const API_KEY_EXP: i64 = 1_983_812_996;

fn api_key(role: &str, secret: &str) -> String {
    let mut claims = Claims::new();
    claims.insert("iss".into(), json!("supabase-demo"));
    claims.insert("role".into(), json!(role));
    claims.insert("exp".into(), json!(API_KEY_EXP));
    sign(&claims, secret)
}

/// The anon key of a stack with this secret (stable: no `iat`, fixed `exp`).
pub fn anon_key(secret: &str) -> String {
    api_key("anon", secret)
}

/// The service-role key of a stack with this secret (stable: no `iat`, fixed `exp`).
pub fn service_role_key(secret: &str) -> String {
    api_key("service_role", secret)
}

/// A user's access token as Supabase Auth would issue it.
pub fn user_token(
    sub: &str,
    role: &str,
    email: Option<&str>,
    ttl_secs: i64,
    secret: &str,
) -> String {
    let mut extra = Claims::new();
    extra.insert("sub".into(), json!(sub));
    extra.insert("aud".into(), json!("authenticated"));
    if let Some(e) = email {
        extra.insert("email".into(), json!(e));
    }
    sign_role(role, ttl_secs, extra, secret)
}

/// Verifies an HS256 token and its time claims (with PostgREST's 30 s skew).
pub fn verify(token: &str, secret: &str) -> Result<Claims, JwtError> {
    if token.is_empty() {
        return Err(JwtError::decode(
            "Empty JWT is sent in Authorization header",
        ));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(JwtError::decode(format!(
            "Expected 3 parts in JWT; got {}",
            parts.len()
        )));
    }
    let header_bytes = URL_SAFE_NO_PAD
        .decode(parts[0].trim_end_matches('='))
        .map_err(|_| JwtError::decode("JWT cryptographic operation failed"))?;
    let header: Value = serde_json::from_slice(&header_bytes)
        .map_err(|_| JwtError::decode("JWT cryptographic operation failed"))?;
    match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => {}
        Some(_) => return Err(JwtError::decode("Wrong or unsupported encoding algorithm")),
        None => return Err(JwtError::decode("JWT cryptographic operation failed")),
    }
    let sig = URL_SAFE_NO_PAD
        .decode(parts[2].trim_end_matches('='))
        .map_err(|_| JwtError::decode("JWT cryptographic operation failed"))?;
    let mut m = mac(secret);
    m.update(parts[0].as_bytes());
    m.update(b".");
    m.update(parts[1].as_bytes());
    if m.verify_slice(&sig).is_err() {
        let mut e = JwtError::decode("No suitable key or wrong key type");
        e.details = Some("None of the keys was able to decode the JWT".into());
        return Err(e);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .map_err(|_| JwtError::decode("JWT cryptographic operation failed"))?;
    let claims: Value =
        serde_json::from_slice(&payload).map_err(|_| JwtError::claims("Parsing claims failed"))?;
    let Value::Object(claims) = claims else {
        return Err(JwtError::claims("Parsing claims failed"));
    };
    let now = now_secs();
    for name in ["exp", "nbf", "iat"] {
        match claims.get(name) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let Some(t) = v.as_f64() else {
                    return Err(JwtError::claims(format!(
                        "The JWT '{name}' claim must be a number"
                    )));
                };
                let t = t as i64;
                match name {
                    "exp" if now - CLOCK_SKEW_SECS >= t => {
                        return Err(JwtError::claims("JWT expired"));
                    }
                    "nbf" if now + CLOCK_SKEW_SECS < t => {
                        return Err(JwtError::claims("JWT not yet valid"));
                    }
                    "iat" if now + CLOCK_SKEW_SECS < t => {
                        return Err(JwtError::claims("JWT issued at future"));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_token_verifies_and_keeps_claims() {
        let t = user_token("abc", "authenticated", Some("a@b.c"), 60, "s3cret");
        let c = verify(&t, "s3cret").unwrap();
        assert_eq!(c["sub"], "abc");
        assert_eq!(c["role"], "authenticated");
        assert_eq!(c["email"], "a@b.c");
    }

    #[test]
    fn wrong_secret_is_pgrst301() {
        let t = anon_key("one");
        let e = verify(&t, "two").unwrap_err();
        assert_eq!(e.code, "PGRST301");
        assert_eq!(e.message, "No suitable key or wrong key type");
    }

    #[test]
    fn expired_token_is_pgrst303() {
        let t = sign_role("anon", -120, Claims::new(), "k");
        let e = verify(&t, "k").unwrap_err();
        assert_eq!(e.code, "PGRST303");
        assert!(e.is_expired());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert_eq!(
            verify("a.b", "k").unwrap_err().message,
            "Expected 3 parts in JWT; got 2"
        );
        assert_eq!(
            verify("", "k").unwrap_err().message,
            "Empty JWT is sent in Authorization header"
        );
        assert_eq!(
            verify("!!.??.##", "k").unwrap_err().message,
            "JWT cryptographic operation failed"
        );
    }
}
