//! PostgREST-shaped errors: `{"code","message","details","hint"}` plus the HTTP status and the
//! extra headers (`Proxy-Status`, `WWW-Authenticate`) that PostgREST v14 sends with them.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One error response (boxed: errors travel through many `Result`s).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError(Box<ErrorParts>);

/// The parts of an [`ApiError`].
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorParts {
    /// HTTP status.
    pub status: StatusCode,
    /// `PGRSTnnn` or a SQLSTATE.
    pub code: String,
    /// The message.
    pub message: String,
    /// `details`: usually a string, an array for PGRST201, or null.
    pub details: Value,
    /// `hint`: a string or null.
    pub hint: Value,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

impl std::ops::Deref for ApiError {
    type Target = ErrorParts;
    fn deref(&self) -> &ErrorParts {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorParts {
        &mut self.0
    }
}

impl ApiError {
    /// A PostgREST error with no details and no hint.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError(Box::new(ErrorParts {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.to_string(),
            message: message.into(),
            details: Value::Null,
            hint: Value::Null,
            headers: Vec::new(),
        }))
    }

    /// Sets `details` to a string.
    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = Value::String(d.into());
        self
    }

    /// Sets `details` to any JSON value.
    pub fn details_json(mut self, d: Value) -> Self {
        self.details = d;
        self
    }

    /// Sets `hint` to a string.
    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Value::String(h.into());
        self
    }

    /// Sets `hint` to a string when there is one.
    pub fn hint_opt(mut self, h: Option<String>) -> Self {
        self.hint = h.map(Value::String).unwrap_or(Value::Null);
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// PGRST100: a query-string parse error.
    pub fn parse(what: &str, input: &str, column: usize, details: impl Into<String>) -> Self {
        ApiError::new(
            400,
            "PGRST100",
            format!("\"failed to parse {what} ({input})\" (line 1, column {column})"),
        )
        .details(details)
    }

    /// PGRSTX00: an internal failure, reported without a stack trace.
    pub fn internal(details: impl Into<String>) -> Self {
        ApiError::new(500, "PGRSTX00", "Internal server error").details(details)
    }

    /// PGRST000: the database cannot be reached.
    pub fn connection(details: impl Into<String>) -> Self {
        ApiError::new(503, "PGRST000", "Database connection error.").details(details)
    }

    /// PGRST001: the connection failed while in use.
    pub fn client(details: impl Into<String>) -> Self {
        ApiError::new(
            503,
            "PGRST001",
            "Database client error. Retrying the connection.",
        )
        .details(details)
    }

    /// True when the error comes from a broken database connection rather than from SQL.
    pub fn is_connection_problem(&self) -> bool {
        self.code == "PGRST000" || self.code == "PGRST001"
    }

    /// Maps a database error with the SQLSTATE table of PostgREST (`mapSQLtoHTTP`).
    ///
    /// `anon` tells whether the request ran as the anonymous role (42501 is then 401).
    pub fn from_pg(err: &tokio_postgres::Error, anon: bool) -> Self {
        let Some(db) = err.as_db_error() else {
            return ApiError::client(err.to_string());
        };
        let code = db.code().code().to_string();
        let message = db.message().to_string();
        let status = pg_status(&code, &message, anon);
        let mut e = ApiError::new(status, &code, message);
        e.details = db
            .detail()
            .map(|s| Value::String(s.to_string()))
            .unwrap_or(Value::Null);
        e.hint = db
            .hint()
            .map(|s| Value::String(s.to_string()))
            .unwrap_or(Value::Null);
        if code == "42501" && anon {
            e = e.header("WWW-Authenticate", "Bearer");
        }
        if code == "PGRST" {
            return raised_pgrst(db.message(), db.detail());
        }
        e
    }

    /// The JSON body, with keys in PostgREST's order: PostgREST encodes it with aeson, whose
    /// objects keep their keys sorted (`code`, `details`, `hint`, `message`).
    pub fn body(&self) -> String {
        format!(
            "{{\"code\":{},\"details\":{},\"hint\":{},\"message\":{}}}",
            Value::String(self.code.clone()),
            self.details,
            self.hint,
            Value::String(self.message.clone())
        )
    }
}

/// `RAISE SQLSTATE 'PGRST' USING MESSAGE = '{json}', DETAIL = '{json}'`.
fn raised_pgrst(message: &str, detail: Option<&str>) -> ApiError {
    let bad = || {
        ApiError::new(
            500,
            "PGRST121",
            "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error",
        )
    };
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(message) else {
        return bad();
    };
    let Ok(Value::Object(d)) = serde_json::from_str::<Value>(detail.unwrap_or("")) else {
        return bad();
    };
    let Some(status) = d.get("status").and_then(Value::as_u64) else {
        return bad();
    };
    let code = m
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut e = ApiError::new(
        u16::try_from(status).unwrap_or(500),
        &code,
        m.get("message").and_then(Value::as_str).unwrap_or(""),
    );
    e.details = m.get("details").cloned().unwrap_or(Value::Null);
    e.hint = m.get("hint").cloned().unwrap_or(Value::Null);
    if let Some(Value::Object(h)) = d.get("headers") {
        for (k, v) in h {
            if let Some(v) = v.as_str() {
                e.headers.push((k.clone(), v.to_string()));
            }
        }
    }
    e
}

/// PostgREST's SQLSTATE → HTTP status table (§5.2).
pub fn pg_status(code: &str, message: &str, anon: bool) -> u16 {
    let p2 = code.get(..2).unwrap_or("");
    match code {
        "21000" if message.ends_with("requires a WHERE clause") => 400,
        "21000" => 500,
        "22023" if message.starts_with("role \"") && message.ends_with("\" does not exist") => 401,
        "23503" | "23505" => 409,
        "25006" => 405,
        "42501" => {
            if anon {
                401
            } else {
                403
            }
        }
        "42883" if message.starts_with("function xmlagg(") => 406,
        "42883" => 404,
        "42P01" => 404,
        "42P17" => 500,
        "53400" => 500,
        "57P01" => 503,
        "57014" => 500,
        "P0001" => 400,
        _ => match p2 {
            "08" => 503,
            "09" => 500,
            "0L" | "0P" => 403,
            "25" => 500,
            "28" => 403,
            "2D" | "38" | "39" | "3B" | "40" => 500,
            "53" => 503,
            "54" | "55" | "57" | "58" | "F0" | "HV" | "XX" => 500,
            "P0" => 500,
            "PT" => code
                .get(2..)
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|s| (100..600).contains(s))
                .unwrap_or(500),
            _ => 400,
        },
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("PostgREST; error={}", self.code)) {
            h.insert("proxy-status", v);
        }
        for (name, value) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                axum::http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                h.append(n, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_keeps_postgrest_key_order_and_nulls() {
        let e = ApiError::new(401, "PGRST303", "JWT expired");
        assert_eq!(
            e.body(),
            r#"{"code":"PGRST303","details":null,"hint":null,"message":"JWT expired"}"#
        );
    }

    #[test]
    fn sqlstates_map_like_postgrest() {
        assert_eq!(pg_status("23505", "", false), 409);
        assert_eq!(pg_status("23503", "", false), 409);
        assert_eq!(pg_status("23514", "", false), 400);
        assert_eq!(pg_status("42501", "", true), 401);
        assert_eq!(pg_status("42501", "", false), 403);
        assert_eq!(pg_status("42P01", "", false), 404);
        assert_eq!(pg_status("22023", "role \"x\" does not exist", false), 401);
        assert_eq!(pg_status("22023", "other", false), 400);
        assert_eq!(pg_status("PT402", "", false), 402);
        assert_eq!(pg_status("08006", "", false), 503);
        assert_eq!(pg_status("57P01", "", false), 503);
        assert_eq!(pg_status("P0004", "", false), 500);
        assert_eq!(pg_status("25006", "", false), 405);
    }
}
