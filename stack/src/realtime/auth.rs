//! Token checks with Supabase Realtime's rules and messages (on top of `crate::jwt::verify`).

use crate::jwt::{self, Claims};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// Why a token was refused, in Realtime's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    /// Expired this many seconds ago.
    Expired(i64),
    RoleExpRequired,
    ExpInvalid,
    Malformed,
    Signature,
}

impl TokenError {
    /// The message of the HTTP error at connect time (`{"error": …}`).
    pub fn connect_message(&self) -> String {
        match self {
            TokenError::Missing => "API key is missing".into(),
            TokenError::Expired(_) => "Token has expired".into(),
            TokenError::RoleExpRequired => "Fields `role` and `exp` are required in JWT".into(),
            TokenError::ExpInvalid => "Token expiration time is invalid".into(),
            TokenError::Malformed => "The token provided is not a valid JWT".into(),
            TokenError::Signature => "Failed to validate JWT signature".into(),
        }
    }

    /// The message used in `system` errors (token refresh, expiry).
    pub fn message(&self) -> String {
        match self {
            TokenError::Expired(n) => format!("Token has expired {n} seconds ago"),
            other => other.connect_message(),
        }
    }

    /// The join error reason `<Code>: <message>`.
    pub fn join_reason(&self) -> String {
        let code = match self {
            TokenError::Missing | TokenError::Malformed => "MalformedJWT",
            TokenError::Signature => "JwtSignatureError",
            TokenError::Expired(_) | TokenError::RoleExpRequired | TokenError::ExpInvalid => {
                "InvalidJWTToken"
            }
        };
        let msg = match self {
            TokenError::Missing => TokenError::Malformed.message(),
            other => other.message(),
        };
        format!("{code}: {msg}")
    }
}

/// A verified token: its claims, role and expiry (Unix seconds).
#[derive(Clone, Debug)]
pub struct Verified {
    pub claims: Claims,
    pub role: String,
    pub exp: i64,
}

fn unverified_exp(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("exp")?.as_f64().map(|f| f as i64)
}

/// Verifies a token with Realtime's rules: HS256 signature, `role` and `exp` required, `exp` in
/// the future (no clock skew).
pub fn check(token: &str, secret: &str) -> Result<Verified, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    let claims = match jwt::verify(token, secret) {
        Ok(c) => c,
        Err(e) if e.is_expired() => {
            let exp = unverified_exp(token).unwrap_or_else(jwt::now_secs);
            return Err(TokenError::Expired((jwt::now_secs() - exp).max(0)));
        }
        Err(e) if e.message == "No suitable key or wrong key type" => {
            return Err(TokenError::Signature);
        }
        Err(e) if e.message.contains("'exp' claim") => return Err(TokenError::ExpInvalid),
        Err(_) => return Err(TokenError::Malformed),
    };
    let role = match claims.get("role") {
        Some(Value::String(r)) if !r.is_empty() => r.clone(),
        _ => return Err(TokenError::RoleExpRequired),
    };
    let exp = match claims.get("exp") {
        Some(v) => match v.as_f64() {
            Some(f) => f as i64,
            None => return Err(TokenError::ExpInvalid),
        },
        None => return Err(TokenError::RoleExpRequired),
    };
    let now = jwt::now_secs();
    if exp <= now {
        return Err(TokenError::Expired(now - exp));
    }
    Ok(Verified { claims, role, exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{sign, sign_role};
    use serde_json::json;

    #[test]
    fn realtime_rules() {
        let s = "secret";
        let ok = sign_role("anon", 60, Claims::new(), s);
        assert_eq!(check(&ok, s).unwrap().role, "anon");
        assert_eq!(check("", s).unwrap_err(), TokenError::Missing);
        assert_eq!(check("abc", s).unwrap_err(), TokenError::Malformed);
        assert_eq!(check(&ok, "other").unwrap_err(), TokenError::Signature);
        let just_expired = sign_role("anon", -5, Claims::new(), s);
        assert!(
            matches!(check(&just_expired, s), Err(TokenError::Expired(n)) if (4..=7).contains(&n))
        );
        let long_expired = sign_role("anon", -500, Claims::new(), s);
        assert!(matches!(check(&long_expired, s), Err(TokenError::Expired(n)) if n >= 499));
        let mut c = Claims::new();
        c.insert("sub".into(), json!("x"));
        c.insert("exp".into(), json!(jwt::now_secs() + 60));
        assert_eq!(
            check(&sign(&c, s), s).unwrap_err(),
            TokenError::RoleExpRequired
        );
        assert_eq!(
            TokenError::Expired(3).join_reason(),
            "InvalidJWTToken: Token has expired 3 seconds ago"
        );
    }
}
