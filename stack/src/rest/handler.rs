//! The HTTP side: routing, the per-request transaction and the response (status, headers, body).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use serde_json::Value;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio_postgres::types::Type;

use super::error::ApiError;
use super::headers::{
    authenticate, cookies_json, headers_json, negotiate, range_header, Auth, Media, Prefs,
    Resolution, Return, ANON_ROLE,
};
use super::query::{parse_query, QueryParams};
use super::schema::{SchemaCache, EXPOSED_SCHEMAS};
use super::sql::TextParam;
use super::statement::{self, CallArgs, Kind, Prepared};
use super::AppState;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The one row every main statement returns.
#[derive(Debug, Default)]
struct Outcome {
    total: Option<i64>,
    page_total: i64,
    body: Option<String>,
    inserted: Option<i64>,
    location: Option<String>,
    response_headers: Option<String>,
    response_status: Option<String>,
}

/// Entry point for every request under `/rest/v1`.
pub async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let fut = AssertUnwindSafe(handle_inner(st, req)).catch_unwind();
    match fut.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(_) => {
            tracing::error!("rest: request handler panicked");
            ApiError::internal("the request could not be processed").into_response()
        }
    }
}

enum Target {
    Root,
    Table(String),
    Rpc(String),
}

fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn route(path: &str) -> Result<Target, ApiError> {
    let trimmed = path.trim_start_matches('/');
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Ok(Target::Root);
    }
    let segs: Vec<&str> = trimmed.split('/').collect();
    match segs.as_slice() {
        [t] => Ok(Target::Table(decode_segment(t))),
        ["rpc", f] => Ok(Target::Rpc(decode_segment(f))),
        _ => Err(ApiError::new(
            404,
            "PGRST125",
            "Invalid path specified in request URL",
        )),
    }
}

/// The schema chosen by `Accept-Profile` / `Content-Profile` (PGRST106 if not exposed).
fn profile(method: &Method, headers: &HeaderMap) -> Result<(String, bool), ApiError> {
    let name = if matches!(*method, Method::GET | Method::HEAD) {
        "accept-profile"
    } else {
        "content-profile"
    };
    match headers.get(name).and_then(|v| v.to_str().ok()) {
        None => Ok((EXPOSED_SCHEMAS[0].to_string(), false)),
        Some(s) if EXPOSED_SCHEMAS.contains(&s) => Ok((s.to_string(), true)),
        Some(s) => Err(
            ApiError::new(406, "PGRST106", format!("Invalid schema: {s}")).hint(format!(
                "Only the following schemas are exposed: {}",
                EXPOSED_SCHEMAS.join(", ")
            )),
        ),
    }
}

fn is_cache_miss(e: &ApiError) -> bool {
    matches!(
        e.code.as_str(),
        "PGRST205" | "PGRST202" | "PGRST200" | "PGRST204"
    )
}

async fn handle_inner(st: Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let headers = parts.headers;
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();

    let auth = authenticate(&headers, &st.cfg.jwt_secret)?;
    let target = route(&path)?;
    let (schema, profile_given) = profile(&method, &headers)?;

    if method == Method::OPTIONS {
        let allow = match target {
            Target::Rpc(_) => "OPTIONS,GET,HEAD,POST",
            _ => "OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE",
        };
        let mut r = Response::new(Body::empty());
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return Ok(r);
    }

    let is_rpc = matches!(target, Target::Rpc(_));
    match (&target, &method) {
        (_, m)
            if !matches!(
                *m,
                Method::GET
                    | Method::HEAD
                    | Method::POST
                    | Method::PATCH
                    | Method::DELETE
                    | Method::PUT
            ) =>
        {
            return Err(ApiError::new(
                405,
                "PGRST117",
                format!("Unsupported HTTP method: {m}"),
            ));
        }
        (Target::Rpc(_), m) if !matches!(*m, Method::GET | Method::HEAD | Method::POST) => {
            return Err(ApiError::new(
                405,
                "PGRST101",
                format!("Cannot use the {m} method on RPC"),
            ));
        }
        _ => {}
    }

    if let Target::Root = target {
        if method == Method::GET || method == Method::HEAD {
            return Ok(root_document(&st, &schema).await);
        }
        return Err(ApiError::new(
            404,
            "PGRST125",
            "Invalid path specified in request URL",
        ));
    }

    let read_method = matches!(method, Method::GET | Method::HEAD);
    let q = parse_query(&raw_query, is_rpc && read_method)?;
    let prefs = Prefs::parse(&headers);
    prefs.check_strict()?;
    let media = negotiate(&headers)?;
    let range = if method == Method::GET {
        range_header(&headers)
    } else {
        None
    };
    let body: Bytes = if read_method {
        Bytes::new()
    } else {
        axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
            ApiError::new(400, "PGRST102", "Empty or invalid json").details(e.to_string())
        })?
    };
    let head = method == Method::HEAD;

    // Plan against the schema cache; reload it once on a miss (a table or function created
    // while the stack runs).
    let mut reloaded = false;
    let prepared = loop {
        let cache = st.cache().await?;
        let r = plan(
            &cache, &target, &schema, &method, &q, range, &prefs, media, head, &body,
        );
        match r {
            Err(e) if !reloaded && is_cache_miss(&e) => {
                reloaded = true;
                st.reload().await;
            }
            other => break other?,
        }
    };

    let ctx = TxContext {
        auth: &auth,
        method: method.as_str(),
        path: &path,
        headers_json: headers_json(&headers),
        cookies_json: cookies_json(&headers),
    };
    let kind = prepared.kind.clone();
    let outcome = run(&st, &ctx, &prepared, |o| {
        check_outcome(o, &kind, media, &prefs, &method)
    })
    .await?;
    respond(
        outcome,
        &kind,
        &prefs,
        media,
        &method,
        &target,
        &raw_query,
        profile_given.then_some(schema.as_str()),
        head,
    )
}

#[allow(clippy::too_many_arguments)]
fn plan(
    cache: &SchemaCache,
    target: &Target,
    schema: &str,
    method: &Method,
    q: &QueryParams,
    range: Option<(i64, Option<i64>)>,
    prefs: &Prefs,
    media: Media,
    head: bool,
    body: &[u8],
) -> Result<Prepared, ApiError> {
    match target {
        Target::Table(name) => {
            let table = cache
                .table(schema, name)
                .ok_or_else(|| cache.table_not_found(schema, name))?;
            match *method {
                Method::GET | Method::HEAD => {
                    statement::read(cache, table, q, range, prefs, media, head)
                }
                Method::POST => statement::insert(cache, table, q, body, prefs, media),
                Method::PATCH => statement::update(cache, table, q, body, prefs, media),
                Method::DELETE => statement::delete(cache, table, q, prefs, media),
                Method::PUT => put(cache, table, q, body, prefs, media),
                _ => Err(ApiError::new(
                    405,
                    "PGRST117",
                    format!("Unsupported HTTP method: {method}"),
                )),
            }
        }
        Target::Rpc(name) => {
            let read_method = matches!(*method, Method::GET | Method::HEAD);
            let args = if read_method {
                CallArgs::Query(q.rpc_args.clone())
            } else {
                let text = std::str::from_utf8(body)
                    .map_err(|_| ApiError::new(400, "PGRST102", "Empty or invalid json"))?;
                if text.trim().is_empty() {
                    CallArgs::Json(Value::Object(Default::default()), "{}".to_string())
                } else {
                    CallArgs::Json(
                        serde_json::from_str(text)
                            .map_err(|_| ApiError::new(400, "PGRST102", "Empty or invalid json"))?,
                        text.to_string(),
                    )
                }
            };
            statement::call(
                cache,
                schema,
                name,
                args,
                q,
                range,
                prefs,
                media,
                head,
                read_method,
            )
        }
        Target::Root => Err(ApiError::new(
            404,
            "PGRST125",
            "Invalid path specified in request URL",
        )),
    }
}

/// PUT: a single-row upsert whose filters are exactly the primary key with `eq`.
fn put(
    cache: &SchemaCache,
    table: &super::schema::Table,
    q: &QueryParams,
    body: &[u8],
    prefs: &Prefs,
    media: Media,
) -> Result<Prepared, ApiError> {
    use super::parse::{Operation, SimpleOp};
    if q.limit.iter().any(|(p, _)| p.is_empty()) || q.offset.iter().any(|(p, _)| p.is_empty()) {
        return Err(ApiError::new(
            400,
            "PGRST114",
            "limit/offset querystring parameters are not allowed for PUT",
        ));
    }
    let mut pk_vals = Vec::new();
    for (p, f) in &q.filters {
        match (&f.op, p.is_empty(), f.negated, f.field.path.is_empty()) {
            (Operation::Simple(SimpleOp::Eq, None, v), true, false, true) => {
                pk_vals.push((f.field.name.clone(), v.clone()))
            }
            _ => pk_vals.push((String::new(), String::new())),
        }
    }
    let mut names: Vec<&String> = pk_vals.iter().map(|(n, _)| n).collect();
    names.sort();
    let mut pk: Vec<&String> = table.pk.iter().collect();
    pk.sort();
    if table.pk.is_empty() || names != pk || !q.logic.is_empty() {
        return Err(ApiError::new(
            405,
            "PGRST105",
            "Filters must include all and only primary key columns with 'eq' operators",
        ));
    }
    let payload = statement::parse_payload(body, q, false)?;
    if let Some(row) = payload.rows.first() {
        for (n, v) in &pk_vals {
            let matches = match row.get(n) {
                Some(Value::String(s)) => s == v,
                Some(Value::Null) | None => false,
                Some(other) => v.as_str() == other.to_string().as_str(),
            };
            if !matches {
                return Err(ApiError::new(
                    400,
                    "PGRST115",
                    "Payload values do not match URL in primary key column(s)",
                ));
            }
        }
    }
    let mut p2 = prefs.clone();
    p2.resolution = Some(Resolution::MergeDuplicates);
    let mut q2 = q.clone();
    q2.filters.clear();
    let mut prepared = statement::insert(cache, table, &q2, body, &p2, media)?;
    if let Kind::Insert { put, .. } = &mut prepared.kind {
        *put = true;
    }
    Ok(prepared)
}

struct TxContext<'a> {
    auth: &'a Auth,
    method: &'a str,
    path: &'a str,
    headers_json: String,
    cookies_json: String,
}

fn pool_error(e: deadpool_postgres::PoolError) -> ApiError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => ApiError::new(
            504,
            "PGRST003",
            "Timed out acquiring connection from connection pool.",
        ),
        PoolError::Backend(e) => ApiError::connection(e.to_string()),
        other => ApiError::connection(other.to_string()),
    }
}

fn row_outcome(row: &tokio_postgres::Row) -> Result<Outcome, ApiError> {
    let bad = |e: tokio_postgres::Error| ApiError::internal(e.to_string());
    Ok(Outcome {
        total: row.try_get(0).map_err(bad)?,
        page_total: row.try_get::<_, Option<i64>>(1).map_err(bad)?.unwrap_or(0),
        body: row.try_get(2).map_err(bad)?,
        inserted: row.try_get(3).map_err(bad)?,
        location: row.try_get(4).map_err(bad)?,
        response_headers: row.try_get(5).map_err(bad)?,
        response_status: row.try_get(6).map_err(bad)?,
    })
}

/// Runs the request's transaction: BEGIN, the settings, the main statement, then COMMIT, or
/// ROLLBACK when the statement fails or `check` condemns the result.
async fn run(
    st: &AppState,
    ctx: &TxContext<'_>,
    p: &Prepared,
    check: impl FnOnce(&Outcome) -> Result<(), ApiError>,
) -> Result<Outcome, ApiError> {
    let anon = ctx.auth.role == ANON_ROLE;
    // A pooled connection may have died with the server (a restart): when BEGIN fails for a
    // connection reason, nothing of the request has run yet, so retry on a fresh connection.
    let mut check = Some(check);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut client = st.pool.get().await.map_err(pool_error)?;
        let result = run_on(&mut client, ctx, p, &mut check, anon).await;
        match result {
            Ok(o) => return Ok(o),
            Err((e, begin_failed)) => {
                if e.is_connection_problem() {
                    tracing::warn!("rest: dropping a broken pooled connection: {:?}", e.details);
                    let _ = deadpool_postgres::Object::take(client);
                    if begin_failed && attempt < 4 {
                        continue;
                    }
                }
                return Err(e);
            }
        }
    }
}

async fn run_on<F>(
    client: &mut deadpool_postgres::Object,
    ctx: &TxContext<'_>,
    p: &Prepared,
    check: &mut Option<F>,
    anon: bool,
) -> Result<Outcome, (ApiError, bool)>
where
    F: FnOnce(&Outcome) -> Result<(), ApiError>,
{
    let pg = |e: tokio_postgres::Error| (ApiError::from_pg(&e, anon), false);
    let tx = client
        .build_transaction()
        .read_only(p.read_only)
        .start()
        .await
        .map_err(|e| (ApiError::from_pg(&e, anon), true))?;
    let settings = [
        TextParam(Some("\"public\", \"extensions\"".into())),
        TextParam(Some(ctx.auth.role.clone())),
        TextParam(Some(ctx.auth.claims.clone())),
        TextParam(Some(ctx.method.to_string())),
        TextParam(Some(ctx.path.to_string())),
        TextParam(Some(ctx.headers_json.clone())),
        TextParam(Some(ctx.cookies_json.clone())),
    ];
    let typed: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = settings
        .iter()
        .map(|s| {
            (
                s as &(dyn tokio_postgres::types::ToSql + Sync),
                Type::UNKNOWN,
            )
        })
        .collect();
    tx.query_typed(
        "select set_config('search_path', $1, true), set_config('role', $2, true), set_config('request.jwt.claims', $3, true), set_config('request.method', $4, true), set_config('request.path', $5, true), set_config('request.headers', $6, true), set_config('request.cookies', $7, true)",
        &typed,
    )
    .await
    .map_err(pg)?;
    for (name, value) in &p.tx_settings {
        let pair = [
            TextParam(Some(name.clone())),
            TextParam(Some(value.clone())),
        ];
        let typed: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = pair
            .iter()
            .map(|s| (s as &(dyn tokio_postgres::types::ToSql + Sync), Type::TEXT))
            .collect();
        tx.query_typed("select set_config($1, $2, true)", &typed)
            .await
            .map_err(pg)?;
    }
    let typed: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = p
        .params
        .params
        .iter()
        .map(|s| {
            (
                s as &(dyn tokio_postgres::types::ToSql + Sync),
                Type::UNKNOWN,
            )
        })
        .collect();
    tracing::debug!(sql = %p.sql, "rest: main statement");
    let rows = tx.query_typed(&p.sql, &typed).await.map_err(pg)?;
    let Some(row) = rows.first() else {
        return Err((
            ApiError::internal("the main statement returned no row"),
            false,
        ));
    };
    let outcome = row_outcome(row).map_err(|e| (e, false))?;
    let verdict = match check.take() {
        Some(f) => f(&outcome),
        None => Ok(()),
    };
    if let Err(e) = verdict {
        tx.rollback().await.map_err(pg)?;
        return Err((e, false));
    }
    tx.commit().await.map_err(pg)?;
    Ok(outcome)
}

/// Singular and max-affected checks that condemn the transaction.
fn check_outcome(
    o: &Outcome,
    kind: &Kind,
    media: Media,
    prefs: &Prefs,
    method: &Method,
) -> Result<(), ApiError> {
    let void = matches!(kind, Kind::Call { void: true, .. });
    if media.singular && !void && o.page_total != 1 {
        return Err(ApiError::new(
            406,
            "PGRST116",
            "Cannot coerce the result to a single JSON object",
        )
        .details(format!("The result contains {} rows", o.page_total)));
    }
    if prefs.strict == Some(true) {
        if let Some(max) = prefs.max_affected {
            if matches!(*method, Method::PATCH | Method::DELETE) && o.page_total > max {
                return Err(ApiError::new(
                    400,
                    "PGRST124",
                    "Query result exceeds max-affected preference constraint",
                )
                .details(format!("The query affects {} rows", o.page_total)));
            }
        }
    }
    Ok(())
}

/// `Content-Range` of PostgREST (`contentRangeH`).
fn content_range(lower: i64, upper: i64, total: Option<i64>) -> String {
    let total_s = total.map_or("*".to_string(), |t| t.to_string());
    let range = if total != Some(0) && lower <= upper {
        format!("{lower}-{upper}")
    } else {
        "*".to_string()
    };
    format!("{range}/{total_s}")
}

/// GET/HEAD/RPC status and Content-Range (`rangeStatusHeader`).
fn range_status(offset: i64, rows: i64, total: Option<i64>) -> Result<(u16, String), ApiError> {
    let upper = offset.saturating_add(rows).saturating_sub(1);
    let cr = content_range(offset, upper, total);
    let status = match total {
        None => 200,
        Some(t) if offset > t => {
            return Err(
                ApiError::new(416, "PGRST103", "Requested range not satisfiable")
                    .details(format!(
                        "An offset of {offset} was requested, but there are only {t} rows."
                    ))
                    .header("Content-Range", format!("*/{t}")),
            );
        }
        Some(t) if rows < t => 206,
        Some(_) => 200,
    };
    Ok((status, cr))
}

fn location_header(table: &str, loc: &str) -> Option<String> {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(loc) else {
        return None;
    };
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, QUERY_ENCODE).to_string();
    let parts: Vec<String> = m
        .iter()
        .map(|(k, v)| match v {
            Value::Null => format!("{}=is.null", enc(k)),
            Value::String(s) => format!("{}=eq.{}", enc(k), enc(s)),
            other => format!("{}=eq.{}", enc(k), enc(&other.to_string())),
        })
        .collect();
    Some(format!("/{}?{}", table, parts.join("&")))
}

/// `Content-Location` for reads: the query string with its parameters sorted by key.
fn content_location(table: &str, raw_query: &str) -> String {
    let mut pairs = super::query::decode_pairs(raw_query);
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    if pairs.is_empty() {
        return format!("/{table}");
    }
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s.trim(), QUERY_ENCODE)
            .to_string()
            .replace("%20", "+")
    };
    let qs: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    format!("/{table}?{}", qs.join("&"))
}

const QUERY_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[allow(clippy::too_many_arguments)]
fn respond(
    o: Outcome,
    kind: &Kind,
    prefs: &Prefs,
    media: Media,
    method: &Method,
    target: &Target,
    raw_query: &str,
    profile: Option<&str>,
    head: bool,
) -> Result<Response, ApiError> {
    let counting = prefs.count.is_some();
    let mut hdrs: Vec<(String, String)> = Vec::new();
    let mut body: Option<String> = None;
    let status: u16;
    match kind {
        Kind::Read { offset } => {
            let (s, cr) = range_status(*offset, o.page_total, o.total)?;
            status = s;
            hdrs.push(("Content-Range".into(), cr));
            if let Target::Table(t) = target {
                if *method == Method::GET || head {
                    hdrs.push(("Content-Location".into(), content_location(t, raw_query)));
                }
            }
            if let Some(a) = prefs.applied(false, false, false) {
                hdrs.push(("Preference-Applied".into(), a));
            }
            body = if head { None } else { o.body.clone() };
        }
        Kind::Call { offset, void } => {
            if *void {
                status = 204;
            } else {
                let (s, cr) = range_status(*offset, o.page_total, o.total)?;
                status = s;
                hdrs.push(("Content-Range".into(), cr));
                body = if head { None } else { o.body.clone() };
            }
            if let Some(a) = prefs.applied(false, false, false) {
                hdrs.push(("Preference-Applied".into(), a));
            }
        }
        Kind::Insert {
            merge,
            echo_resolution,
            pk,
            put,
        } => {
            let total = counting.then_some(o.page_total);
            hdrs.push(("Content-Range".into(), content_range(1, 0, total)));
            status = if *put && prefs.ret != Some(Return::Representation) {
                204
            } else if *merge && o.inserted.unwrap_or(0) <= 0 {
                200
            } else {
                201
            };
            if let Some(a) = prefs.applied(*echo_resolution, true, true) {
                hdrs.push(("Preference-Applied".into(), a));
            }
            match prefs.ret {
                Some(Return::Representation) => body = o.body.clone(),
                Some(Return::HeadersOnly) if o.page_total == 1 && !pk.is_empty() => {
                    if let (Target::Table(t), Some(l)) = (target, &o.location) {
                        if let Some(loc) = location_header(t, l) {
                            hdrs.push(("Location".into(), loc));
                        }
                    }
                }
                _ => {}
            }
        }
        Kind::Update => {
            let total = counting.then_some(o.page_total);
            hdrs.push((
                "Content-Range".into(),
                content_range(0, o.page_total.saturating_sub(1), total),
            ));
            if let Some(a) = prefs.applied(false, true, true) {
                hdrs.push(("Preference-Applied".into(), a));
            }
            if prefs.ret == Some(Return::Representation) {
                status = 200;
                body = o.body.clone();
            } else {
                status = 204;
            }
        }
        Kind::Delete => {
            let total = counting.then_some(o.page_total);
            hdrs.push(("Content-Range".into(), content_range(1, 0, total)));
            if let Some(a) = prefs.applied(false, false, true) {
                hdrs.push(("Preference-Applied".into(), a));
            }
            if prefs.ret == Some(Return::Representation) {
                status = 200;
                body = o.body.clone();
            } else {
                status = 204;
            }
        }
    }
    let mut status = status;
    // Functions and triggers may set response.status / response.headers.
    if let Some(s) = &o.response_status {
        match s.trim().parse::<u16>() {
            Ok(n) if (100..600).contains(&n) => status = n,
            _ => {
                return Err(ApiError::new(
                    500,
                    "PGRST112",
                    "Error in response.status: the status code must be an integer between 100 and 599",
                ));
            }
        }
    }
    if let Some(h) = &o.response_headers {
        let bad = || {
            ApiError::new(500, "PGRST111", "response.headers guc must be a JSON array composed of objects with a single key and a string value")
        };
        let Ok(Value::Array(items)) = serde_json::from_str::<Value>(h) else {
            return Err(bad());
        };
        for item in items {
            let Value::Object(m) = item else {
                return Err(bad());
            };
            for (k, v) in m {
                let Value::String(v) = v else {
                    return Err(bad());
                };
                hdrs.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
                hdrs.push((k, v));
            }
        }
    }
    let has_body = body.is_some()
        || (head
            && status != 204
            && !matches!(kind, Kind::Insert { .. } | Kind::Update | Kind::Delete));
    let mut resp = match body {
        Some(b) => Response::new(Body::from(b)),
        None => Response::new(Body::empty()),
    };
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let h = resp.headers_mut();
    if has_body {
        if let Ok(v) = HeaderValue::from_str(&media.content_type()) {
            h.insert(header::CONTENT_TYPE, v);
        }
        if let Some(p) = profile {
            if let Ok(v) = HeaderValue::from_str(p) {
                h.insert("content-profile", v);
            }
        }
    }
    for (k, v) in hdrs {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            h.insert(n, v);
        }
    }
    Ok(resp)
}

/// `GET /`: a small OpenAPI-style description of the exposed tables and functions.
async fn root_document(st: &AppState, schema: &str) -> Response {
    let cache = match st.cache().await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let mut paths = serde_json::Map::new();
    let mut names: Vec<&String> = cache
        .tables
        .keys()
        .filter(|(s, _)| s == schema)
        .map(|(_, n)| n)
        .collect();
    names.sort();
    for n in names {
        paths.insert(format!("/{n}"), Value::Object(Default::default()));
    }
    let mut fns: Vec<&String> = cache
        .functions
        .keys()
        .filter(|(s, _)| s == schema)
        .map(|(_, n)| n)
        .collect();
    fns.sort();
    for n in fns {
        paths.insert(format!("/rpc/{n}"), Value::Object(Default::default()));
    }
    let doc = serde_json::json!({
        "swagger": "2.0",
        "info": {"title": "livechat-stack REST", "version": "14.0"},
        "paths": paths,
    });
    let mut r = Response::new(Body::from(doc.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openapi+json; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(content_range(0, 14, None), "0-14/*");
        assert_eq!(content_range(1, 0, None), "*/*");
        assert_eq!(content_range(1, 0, Some(0)), "*/0");
        assert_eq!(content_range(0, 24, Some(3573458)), "0-24/3573458");
        assert_eq!(content_range(0, -1, Some(0)), "*/0");
    }

    #[test]
    fn range_statuses() {
        assert_eq!(range_status(0, 3, None).unwrap(), (200, "0-2/*".into()));
        assert_eq!(range_status(0, 2, Some(5)).unwrap(), (206, "0-1/5".into()));
        assert_eq!(range_status(0, 5, Some(5)).unwrap(), (200, "0-4/5".into()));
        assert_eq!(range_status(5, 0, Some(5)).unwrap(), (206, "*/5".into()));
        assert_eq!(range_status(0, 0, Some(0)).unwrap(), (200, "*/0".into()));
        let e = range_status(10, 0, Some(5)).unwrap_err();
        assert_eq!(e.status.as_u16(), 416);
        assert_eq!(
            e.details,
            serde_json::json!("An offset of 10 was requested, but there are only 5 rows.")
        );
    }

    #[test]
    fn locations() {
        assert_eq!(
            location_header("messages", r#"{"id":5}"#).as_deref(),
            Some("/messages?id=eq.5")
        );
        assert_eq!(
            location_header("t", r#"{"a":"x y","b":null}"#).as_deref(),
            Some("/t?a=eq.x%20y&b=is.null")
        );
    }

    #[test]
    fn routes() {
        assert!(matches!(route("/"), Ok(Target::Root)));
        assert!(matches!(route("/messages"), Ok(Target::Table(t)) if t == "messages"));
        assert!(matches!(route("/rpc/f"), Ok(Target::Rpc(f)) if f == "f"));
        assert_eq!(
            route("/a/b").err().map(|e| e.code.clone()),
            Some("PGRST125".into())
        );
    }
}
