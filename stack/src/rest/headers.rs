//! Request headers: JWT authentication (§6), `Prefer` (§2.1), `Accept` (§2.4) and `Range` (§1.8).

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::jwt;

/// The role and claims a request runs with.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The database role.
    pub role: String,
    /// `request.jwt.claims`: all claims plus `role`.
    pub claims: String,
}

/// The anonymous role.
pub const ANON_ROLE: &str = "anon";

/// Reads `Authorization: Bearer <jwt>`; no header or another scheme means anonymous.
pub fn authenticate(headers: &HeaderMap, secret: &str) -> Result<Auth, ApiError> {
    let anon = || {
        let mut m = Map::new();
        m.insert("role".into(), Value::String(ANON_ROLE.into()));
        Auth {
            role: ANON_ROLE.into(),
            claims: Value::Object(m).to_string(),
        }
    };
    let Some(h) = headers.get("authorization") else {
        return Ok(anon());
    };
    let Ok(h) = h.to_str() else {
        return Ok(anon());
    };
    let h = h.trim();
    let (scheme, token) = match h.split_once(' ') {
        Some((s, t)) => (s, t.trim()),
        None => (h, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(anon());
    }
    match jwt::verify(token, secret) {
        Ok(mut claims) => {
            let role = claims
                .get("role")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .unwrap_or(ANON_ROLE)
                .to_string();
            claims.insert("role".into(), Value::String(role.clone()));
            Ok(Auth {
                role,
                claims: Value::Object(claims).to_string(),
            })
        }
        Err(e) => {
            let www = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                e.message.replace('"', "'")
            );
            let mut err =
                ApiError::new(401, e.code, e.message.clone()).header("WWW-Authenticate", www);
            if let Some(d) = e.details {
                err = err.details(d);
            }
            Err(err)
        }
    }
}

/// `return=`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    HeadersOnly,
    Representation,
}

/// `resolution=`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    MergeDuplicates,
    IgnoreDuplicates,
}

/// The merged `Prefer` headers.
#[derive(Debug, Clone, Default)]
pub struct Prefs {
    /// `return=`
    pub ret: Option<Return>,
    /// `count=` (exact, planned, estimated; all are computed exactly)
    pub count: Option<String>,
    /// `resolution=`
    pub resolution: Option<Resolution>,
    /// `missing=default` (true) / `missing=null` (false)
    pub missing_default: Option<bool>,
    /// `handling=strict` (true) / `lenient` (false)
    pub strict: Option<bool>,
    /// `max-affected=N`
    pub max_affected: Option<i64>,
    /// Values that did not parse.
    pub invalid: Vec<String>,
}

impl Prefs {
    /// Parses every `Prefer` header; for each kind the first value wins.
    pub fn parse(headers: &HeaderMap) -> Prefs {
        let mut p = Prefs::default();
        for h in headers.get_all("prefer") {
            let Ok(h) = h.to_str() else { continue };
            for item in h.split(',') {
                let item = item.trim();
                if item.is_empty() {
                    continue;
                }
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                let (k, v) = (k.trim(), v.trim());
                let ok = match k {
                    "return" => {
                        let r = match v {
                            "minimal" => Some(Return::Minimal),
                            "headers-only" => Some(Return::HeadersOnly),
                            "representation" => Some(Return::Representation),
                            _ => None,
                        };
                        if p.ret.is_none() {
                            p.ret = r;
                        }
                        r.is_some()
                    }
                    "count" => {
                        let ok = matches!(v, "exact" | "planned" | "estimated");
                        if ok && p.count.is_none() {
                            p.count = Some(v.to_string());
                        }
                        ok
                    }
                    "resolution" => {
                        let r = match v {
                            "merge-duplicates" => Some(Resolution::MergeDuplicates),
                            "ignore-duplicates" => Some(Resolution::IgnoreDuplicates),
                            _ => None,
                        };
                        if p.resolution.is_none() {
                            p.resolution = r;
                        }
                        r.is_some()
                    }
                    "missing" => {
                        let r = match v {
                            "default" => Some(true),
                            "null" => Some(false),
                            _ => None,
                        };
                        if p.missing_default.is_none() {
                            p.missing_default = r;
                        }
                        r.is_some()
                    }
                    "handling" => {
                        let r = match v {
                            "strict" => Some(true),
                            "lenient" => Some(false),
                            _ => None,
                        };
                        if p.strict.is_none() {
                            p.strict = r;
                        }
                        r.is_some()
                    }
                    "max-affected" => {
                        let r = v.parse::<i64>().ok();
                        if p.max_affected.is_none() {
                            p.max_affected = r;
                        }
                        r.is_some()
                    }
                    // Known, but not applied by this gateway (tx needs a server override;
                    // timezone is accepted and left to the database default).
                    "tx" => matches!(v, "commit" | "rollback"),
                    "timezone" => !v.is_empty(),
                    _ => false,
                };
                if !ok {
                    p.invalid.push(item.to_string());
                }
            }
        }
        p
    }

    /// PGRST122 under `handling=strict`.
    pub fn check_strict(&self) -> Result<(), ApiError> {
        if self.strict == Some(true) && !self.invalid.is_empty() {
            return Err(ApiError::new(
                400,
                "PGRST122",
                "Invalid preferences given with handling=strict",
            )
            .details(format!("Invalid preferences: {}", self.invalid.join(", "))));
        }
        Ok(())
    }

    /// `Preference-Applied` for the given kinds, in PostgREST's order.
    pub fn applied(&self, resolution: bool, missing: bool, ret: bool) -> Option<String> {
        let mut v = Vec::new();
        if resolution {
            match self.resolution {
                Some(Resolution::MergeDuplicates) => v.push("resolution=merge-duplicates".into()),
                Some(Resolution::IgnoreDuplicates) => v.push("resolution=ignore-duplicates".into()),
                None => {}
            }
        }
        if missing {
            match self.missing_default {
                Some(true) => v.push("missing=default".into()),
                Some(false) => v.push("missing=null".into()),
                None => {}
            }
        }
        if ret {
            match self.ret {
                Some(Return::Minimal) => v.push("return=minimal".into()),
                Some(Return::HeadersOnly) => v.push("return=headers-only".into()),
                Some(Return::Representation) => v.push("return=representation".into()),
                None => {}
            }
        }
        if let Some(c) = &self.count {
            v.push(format!("count={c}"));
        }
        match self.strict {
            Some(true) => v.push("handling=strict".to_string()),
            Some(false) => v.push("handling=lenient".to_string()),
            None => {}
        }
        if self.strict == Some(true) {
            if let Some(n) = self.max_affected {
                v.push(format!("max-affected={n}"));
            }
        }
        if v.is_empty() {
            None
        } else {
            Some(v.join(", "))
        }
    }
}

/// What the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media {
    /// `application/vnd.pgrst.object+json`
    pub singular: bool,
    /// `;nulls=stripped`
    pub strip_nulls: bool,
}

impl Media {
    /// The response Content-Type.
    pub fn content_type(&self) -> String {
        let base = if self.singular {
            "application/vnd.pgrst.object+json"
        } else {
            "application/json"
        };
        if self.strip_nulls {
            format!("{base}; nulls=stripped; charset=utf-8")
        } else {
            format!("{base}; charset=utf-8")
        }
    }
}

/// Negotiates `Accept`: JSON arrays or the singular object; anything else is PGRST107.
pub fn negotiate(headers: &HeaderMap) -> Result<Media, ApiError> {
    let Some(raw) = headers.get("accept").and_then(|v| v.to_str().ok()) else {
        return Ok(Media {
            singular: false,
            strip_nulls: false,
        });
    };
    if raw.trim().is_empty() {
        return Ok(Media {
            singular: false,
            strip_nulls: false,
        });
    }
    let mut entries: Vec<(f32, usize, String, bool)> = Vec::new();
    for (i, part) in raw.split(',').enumerate() {
        let mut bits = part.split(';');
        let mt = bits.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        let mut strip = false;
        for b in bits {
            let (k, v) = b.split_once('=').unwrap_or((b, ""));
            match k.trim() {
                "q" => q = v.trim().parse().unwrap_or(1.0),
                "nulls" => strip = v.trim() == "stripped",
                _ => {}
            }
        }
        entries.push((q, i, mt, strip));
    }
    entries.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (q, _, mt, strip) in entries {
        if q <= 0.0 {
            continue;
        }
        match mt.as_str() {
            "application/json"
            | "application/*"
            | "*/*"
            | "application/vnd.pgrst.array+json"
            | "application/vnd.pgrst.array" => {
                return Ok(Media {
                    singular: false,
                    strip_nulls: strip,
                });
            }
            "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" => {
                return Ok(Media {
                    singular: true,
                    strip_nulls: strip,
                });
            }
            _ => {}
        }
    }
    Err(ApiError::new(
        406,
        "PGRST107",
        format!("None of these media types are available: {raw}"),
    ))
}

/// `Range: a-b` / `a-` as (offset, optional upper bound); `None` when absent or unparsable.
pub fn range_header(headers: &HeaderMap) -> Option<(i64, Option<i64>)> {
    let raw = headers.get("range")?.to_str().ok()?.trim();
    let raw = raw.strip_prefix("items=").unwrap_or(raw);
    let (a, b) = raw.split_once('-')?;
    let lo = a.trim().parse::<i64>().ok()?;
    let b = b.trim();
    if b.is_empty() {
        return Some((lo, None));
    }
    Some((lo, Some(b.parse::<i64>().ok()?)))
}

/// Request headers as `request.headers` wants them: lowercase names, no Cookie.
pub fn headers_json(headers: &HeaderMap) -> String {
    let mut m = Map::new();
    for (k, v) in headers {
        if k.as_str() == "cookie" {
            continue;
        }
        if m.contains_key(k.as_str()) {
            continue;
        }
        m.insert(
            k.as_str().to_string(),
            Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        );
    }
    Value::Object(m).to_string()
}

/// `request.cookies`: the Cookie header as a JSON object.
pub fn cookies_json(headers: &HeaderMap) -> String {
    let mut m = Map::new();
    for h in headers.get_all("cookie") {
        let Ok(s) = h.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.split_once('=') {
                m.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
            }
        }
    }
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn anonymous_without_bearer() {
        let a = authenticate(&h(&[]), "s").unwrap();
        assert_eq!(a.role, "anon");
        assert_eq!(a.claims, r#"{"role":"anon"}"#);
        let a = authenticate(&h(&[("authorization", "Basic abc")]), "s").unwrap();
        assert_eq!(a.role, "anon");
    }

    #[test]
    fn bearer_tokens() {
        let secret = "super-secret-jwt-token-with-at-least-32-characters-long";
        let t = jwt::user_token("u1", "authenticated", None, 60, secret);
        let a = authenticate(&h(&[("authorization", &format!("bearer {t}"))]), secret).unwrap();
        assert_eq!(a.role, "authenticated");
        assert!(a.claims.contains("\"sub\":\"u1\""));
        let e = authenticate(&h(&[("authorization", "Bearer ")]), secret).unwrap_err();
        assert_eq!(e.code, "PGRST301");
        assert_eq!(e.message, "Empty JWT is sent in Authorization header");
        let e =
            authenticate(&h(&[("authorization", &format!("Bearer {t}"))]), "other").unwrap_err();
        assert_eq!(e.status.as_u16(), 401);
        assert!(e.headers[0].1.starts_with("Bearer error=\"invalid_token\""));
    }

    #[test]
    fn prefer_merging_and_strict() {
        let p = Prefs::parse(&h(&[
            ("prefer", "return=representation, count=exact"),
            ("prefer", "return=minimal, foo"),
        ]));
        assert_eq!(p.ret, Some(Return::Representation));
        assert_eq!(p.count.as_deref(), Some("exact"));
        assert!(p.check_strict().is_ok());
        assert_eq!(
            p.applied(false, false, true).as_deref(),
            Some("return=representation, count=exact")
        );
        let p = Prefs::parse(&h(&[("prefer", "handling=strict, foo, bar=baz")]));
        let e = p.check_strict().unwrap_err();
        assert_eq!(e.code, "PGRST122");
        assert_eq!(
            e.details,
            serde_json::json!("Invalid preferences: foo, bar=baz")
        );
    }

    #[test]
    fn accept_negotiation() {
        assert!(!negotiate(&h(&[])).unwrap().singular);
        assert!(
            negotiate(&h(&[("accept", "application/vnd.pgrst.object+json")]))
                .unwrap()
                .singular
        );
        assert_eq!(
            negotiate(&h(&[("accept", "text/xml")])).unwrap_err().code,
            "PGRST107"
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(range_header(&h(&[("range", "0-9")])), Some((0, Some(9))));
        assert_eq!(range_header(&h(&[("range", "10-")])), Some((10, None)));
    }
}
