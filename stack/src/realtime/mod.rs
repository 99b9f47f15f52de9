//! A Supabase-Realtime-compatible WebSocket server (`/realtime/v1`).
//!
//! * `GET /websocket` — the Phoenix socket, serializers `vsn=1.0.0` (JSON objects) and
//!   `vsn=2.0.0` (JSON arrays plus binary user broadcasts, kinds 3 and 4);
//! * `POST /api/broadcast` — batch REST broadcast; `POST /api/broadcast/{topic}/events/{event}` —
//!   single-message REST broadcast.
//!
//! Broadcast and presence live in memory ([`hub`]); `postgres_changes` are captured from the WAL
//! with `wal2json` through a logical replication slot named after the database ([`cdc`]).

pub mod auth;
pub mod cdc;
pub mod filter;
pub mod hub;
pub mod proto;
mod socket;
mod walstream;

use axum::body::Bytes;
use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::jwt::Claims;
use cdc::Capture;
use hub::{room_key, Hub};
use proto::{Msg, Out, UserBroadcast, Vsn};

/// What the realtime server needs to serve one database.
#[derive(Clone, Debug)]
pub struct RealtimeConfig {
    /// Connection string of the database as a superuser (for logical decoding and RLS checks).
    pub db_url: String,
    /// Name of the database (used to name its replication slot uniquely within the cluster).
    pub db_name: String,
    /// The HS256 secret that signs API keys and user tokens.
    pub jwt_secret: String,
}

/// State shared by the routes, the sockets and the capture.
pub(crate) struct Shared {
    cfg: RealtimeConfig,
    hub: Arc<Hub>,
    capture: Arc<Capture>,
    pool: Pool,
    kill: watch::Sender<u64>,
    refuse_until: Mutex<Option<Instant>>,
    idle_timeout_ms: AtomicU64,
    connect_error_backoff_ms: AtomicU64,
    join_error_backoff_ms: AtomicU64,
    next_id: AtomicU64,
    shut: AtomicBool,
    capture_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.load(Ordering::Relaxed))
    }
    fn join_error_backoff(&self) -> Duration {
        Duration::from_millis(self.join_error_backoff_ms.load(Ordering::Relaxed))
    }
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
    fn is_shut(&self) -> bool {
        self.shut.load(Ordering::Relaxed)
    }
    fn refusing(&self) -> bool {
        let g = self.refuse_until.lock().unwrap_or_else(|e| e.into_inner());
        g.is_some_and(|t| Instant::now() < t)
    }

    /// Authorization of a private channel through RLS on `realtime.messages`, as Supabase does:
    /// read (`write: None`) = the role can see a `broadcast`/`presence` row of the topic; write
    /// (`Some(extension)`) = it can insert a row of that extension (`broadcast` for sending,
    /// `presence` for tracking). The bootstrap always creates `realtime.messages`; any failure
    /// of the check (that table missing included) denies.
    async fn authorize_private(
        &self,
        topic_name: &str,
        role: &str,
        claims: &Claims,
        write: Option<&str>,
    ) -> Result<(), String> {
        let denied = || {
            format!(
                "Unauthorized: You do not have permissions to read from this Channel topic: {topic_name}"
            )
        };
        let client = self.pool.get().await.map_err(|e| {
            tracing::warn!("realtime: private channel check cannot connect: {e}");
            "UnableToConnectToProject: Realtime was unable to connect to the project database"
                .to_string()
        })?;
        let claims_json = Value::Object(claims.clone()).to_string();
        let res = async {
            client.batch_execute("BEGIN").await?;
            client
                .execute(
                    "SELECT set_config('realtime.topic', $1, true)",
                    &[&topic_name],
                )
                .await?;
            if write.is_none() {
                client
                    .execute(
                        "INSERT INTO realtime.messages (topic, extension, private) \
                         VALUES ($1, 'broadcast', true), ($1, 'presence', true)",
                        &[&topic_name],
                    )
                    .await?;
            }
            client
                .execute(
                    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
                    &[&role, &claims_json],
                )
                .await?;
            let ok = if let Some(extension) = write {
                client
                    .execute(
                        "INSERT INTO realtime.messages (topic, extension, private) \
                         VALUES ($1, $2, true)",
                        &[&topic_name, &extension],
                    )
                    .await
                    .is_ok()
            } else {
                client
                    .query_one(
                        "SELECT count(*) FROM realtime.messages WHERE topic = $1 \
                         AND extension IN ('broadcast', 'presence')",
                        &[&topic_name],
                    )
                    .await?
                    .try_get::<_, i64>(0)?
                    > 0
            };
            Ok::<bool, tokio_postgres::Error>(ok)
        }
        .await;
        let _ = client.batch_execute("ROLLBACK").await;
        match res {
            Ok(true) => Ok(()),
            Ok(false) => Err(denied()),
            Err(e) => {
                tracing::debug!("realtime: private channel check failed: {e}");
                Err(denied())
            }
        }
    }
}

impl Drop for Shared {
    /// When the router and every handle are gone without `shutdown`, stop capturing and, if a
    /// runtime is still there, drop the slot.
    fn drop(&mut self) {
        if self.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        self.capture.stop();
        self.pool.close();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let capture = self.capture.clone();
            let task = self
                .capture_task
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            rt.spawn(async move {
                if let Some(t) = task {
                    let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
                }
                capture.drop_slot().await;
            });
        }
    }
}

/// Fault switches and shutdown for tests. A `Default` handle is inert.
#[derive(Clone, Default)]
pub struct RealtimeHandle {
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for RealtimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeHandle")
            .field("slot", &self.slot_name())
            .finish()
    }
}

impl RealtimeHandle {
    /// Stops capturing changes and drops the replication slot; closes the server's database
    /// connections.
    pub async fn shutdown(&self) {
        let Some(s) = &self.shared else {
            return;
        };
        if s.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        s.capture.stop();
        let task = s
            .capture_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = task {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                tracing::warn!("realtime: capture loop did not stop in time");
            }
        }
        s.capture.drop_slot().await;
        s.pool.close();
    }

    /// Abruptly closes every WebSocket (no close frame).
    pub fn drop_all_connections(&self) {
        if let Some(s) = &self.shared {
            s.kill.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// Refuses new WebSocket upgrades (HTTP 503) for `d`.
    pub fn refuse_connections_for(&self, d: Duration) {
        if let Some(s) = &self.shared {
            *s.refuse_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + d);
        }
    }

    /// Changes the idle timeout (default 60 s) for sockets that read a frame from now on.
    pub fn set_idle_timeout(&self, d: Duration) {
        if let Some(s) = &self.shared {
            s.idle_timeout_ms
                .store(d.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Delays before connect-time HTTP errors and join error replies (Supabase: 2 s and 5 s;
    /// default here: none).
    pub fn set_error_backoff(&self, connect: Duration, join: Duration) {
        if let Some(s) = &self.shared {
            s.connect_error_backoff_ms
                .store(connect.as_millis() as u64, Ordering::Relaxed);
            s.join_error_backoff_ms
                .store(join.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// The name of the replication slot.
    pub fn slot_name(&self) -> Option<String> {
        self.shared.as_ref().map(|s| s.capture.slot.clone())
    }
}

/// Builds the router to be nested at `/realtime/v1`, and its handle. Creates the replication
/// slot before returning, so changes committed from then on are captured.
pub async fn router(cfg: RealtimeConfig) -> anyhow::Result<(Router, RealtimeHandle)> {
    let base: tokio_postgres::Config = cfg.db_url.parse()?;
    let mut poll_cfg = base.clone();
    poll_cfg.options("-c TimeZone=UTC");
    poll_cfg.application_name("livechat-realtime-capture");
    let mut pool_cfg = base;
    pool_cfg.options("-c TimeZone=UTC -c statement_timeout=10000");
    pool_cfg.application_name("livechat-realtime");
    let manager = Manager::from_config(
        pool_cfg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(4).build()?;
    let hub = Arc::new(Hub::default());
    let capture = Arc::new(Capture::new(
        poll_cfg.clone(),
        pool.clone(),
        cdc::slot_name(&cfg.db_name),
        hub.clone(),
    ));
    {
        let client = cdc::connect(&poll_cfg).await?;
        capture.ensure_slot(&client, true).await?;
        if commits_flush_late(&client).await {
            tokio::spawn(capture.clone().flusher());
        }
    }
    let task = tokio::spawn(capture.clone().run());
    let shared = Arc::new(Shared {
        cfg,
        hub,
        capture,
        pool,
        kill: watch::channel(0).0,
        refuse_until: Mutex::new(None),
        idle_timeout_ms: AtomicU64::new(60_000),
        connect_error_backoff_ms: AtomicU64::new(0),
        join_error_backoff_ms: AtomicU64::new(0),
        next_id: AtomicU64::new(1),
        shut: AtomicBool::new(false),
        capture_task: Mutex::new(Some(task)),
    });
    let router = Router::new()
        .route("/websocket", get(ws_handler))
        .route("/api/broadcast", post(rest_batch))
        .route("/api/broadcast/{topic}/events/{event}", post(rest_single))
        .with_state(shared.clone());
    Ok((
        router,
        RealtimeHandle {
            shared: Some(shared),
        },
    ))
}

/// Logical decoding only sees a commit once its WAL is flushed. With `synchronous_commit = off`
/// that waits for the WAL writer (`wal_writer_delay`, 200 ms by default), which would delay every
/// change event. Returns whether the capture must nudge WAL flushes itself.
async fn commits_flush_late(client: &tokio_postgres::Client) -> bool {
    let row = client
        .query_one(
            "SELECT current_setting('synchronous_commit'), \
                    (SELECT setting::int FROM pg_settings WHERE name = 'wal_writer_delay')",
            &[],
        )
        .await;
    let Ok(row) = row else {
        return false;
    };
    let (Ok(sync), Ok(delay)) = (row.try_get::<_, String>(0), row.try_get::<_, i32>(1)) else {
        return false;
    };
    let late = sync == "off" && delay > 20;
    if late {
        tracing::info!(
            "realtime: synchronous_commit is off and wal_writer_delay is {delay} ms: \
             nudging WAL flushes while changes are subscribed"
        );
    }
    late
}

fn last_param(params: &[(String, String)], key: &str) -> Option<String> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

fn query_params(uri: &Uri) -> Vec<(String, String)> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn ws_handler(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if shared.refusing() || shared.is_shut() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "Error connecting to Realtime"})),
        )
            .into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let params = query_params(&uri);
    let Some(vsn) = Vsn::negotiate(last_param(&params, "vsn").as_deref()) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let token = header_str(&headers, "x-api-key")
        .or_else(|| last_param(&params, "apikey"))
        .unwrap_or_default();
    if let Err(e) = auth::check(&token, &shared.cfg.jwt_secret) {
        let delay = Duration::from_millis(shared.connect_error_backoff_ms.load(Ordering::Relaxed));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        tracing::debug!("realtime: connection refused: {}", e.connect_message());
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": e.connect_message()})),
        )
            .into_response();
    }
    ws.max_frame_size(5_000_000)
        .max_message_size(5_000_000)
        .on_upgrade(move |socket| socket::run(socket, shared, vsn, token))
}

fn rest_token(headers: &HeaderMap, uri: &Uri) -> String {
    if let Some(b) = header_str(headers, "authorization") {
        let mut parts = b.splitn(2, ' ');
        if let (Some(scheme), Some(tok)) = (parts.next(), parts.next()) {
            if scheme.eq_ignore_ascii_case("bearer") && !tok.trim().is_empty() {
                return tok.trim().to_string();
            }
        }
    }
    header_str(headers, "apikey")
        .or_else(|| header_str(headers, "x-api-key"))
        .or_else(|| last_param(&query_params(uri), "apikey"))
        .unwrap_or_default()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"message": "Unauthorized"})),
    )
        .into_response()
}

fn unprocessable(msg: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"errors": {"messages": [msg]}})),
    )
        .into_response()
}

async fn rest_batch(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Ok(verified) = auth::check(&rest_token(&headers, &uri), &shared.cfg.jwt_secret) else {
        return unauthorized();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": "Invalid JSON body"})),
        )
            .into_response();
    };
    let Some(messages) = v.get("messages").and_then(Value::as_array) else {
        return unprocessable("messages is required and must be a list");
    };
    let mut checked: Vec<(String, String, Value, bool, Option<Value>)> = Vec::new();
    for m in messages {
        let topic = m.get("topic").and_then(Value::as_str);
        let event = m.get("event").and_then(Value::as_str);
        let payload = m.get("payload").filter(|p| p.is_object());
        let (Some(topic), Some(event), Some(payload)) = (topic, event, payload) else {
            return unprocessable("each message needs a topic, an event and an object payload");
        };
        if payload.to_string().len() > 3000 * 1024 + 500 {
            return unprocessable("Payload size exceeds tenant limit");
        }
        let private = match m.get("private") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        let id = m.get("id").filter(|v| !v.is_null()).cloned();
        checked.push((
            topic.to_string(),
            event.to_string(),
            payload.clone(),
            private,
            id,
        ));
    }
    let mut write_ok: HashMap<String, bool> = HashMap::new();
    for (topic, event, payload, private, id) in checked {
        if private {
            let ok = match write_ok.get(&topic) {
                Some(v) => *v,
                None => {
                    let v = shared
                        .authorize_private(
                            &topic,
                            &verified.role,
                            &verified.claims,
                            Some("broadcast"),
                        )
                        .await
                        .is_ok();
                    write_ok.insert(topic.clone(), v);
                    v
                }
            };
            if !ok {
                continue;
            }
        }
        let full = format!("realtime:{topic}");
        let mut p = json!({"type": "broadcast", "event": event, "payload": payload});
        if let (Some(id), Some(o)) = (id, p.as_object_mut()) {
            o.insert("meta".into(), json!({ "id": id }));
        }
        let out = Out::Json(Arc::new(Msg::new(
            Value::Null,
            Value::Null,
            &full,
            "broadcast",
            p,
        )));
        shared.hub.broadcast(&room_key(&full, private), None, out);
    }
    StatusCode::ACCEPTED.into_response()
}

async fn rest_single(
    State(shared): State<Arc<Shared>>,
    Path((topic, event)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Ok(verified) = auth::check(&rest_token(&headers, &uri), &shared.cfg.jwt_secret) else {
        return unauthorized();
    };
    let ctype = header_str(&headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = match mime.as_str() {
        "application/json" => true,
        "application/octet-stream" => false,
        _ => return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response(),
    };
    if json && serde_json::from_slice::<Value>(&body).is_err() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": "Invalid JSON body"})),
        )
            .into_response();
    }
    let private =
        last_param(&query_params(&uri), "private").is_some_and(|p| p.eq_ignore_ascii_case("true"));
    if private
        && shared
            .authorize_private(&topic, &verified.role, &verified.claims, Some("broadcast"))
            .await
            .is_err()
    {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"message": "Unauthorized"})),
        )
            .into_response();
    }
    let full = format!("realtime:{topic}");
    let out = Out::User(Arc::new(UserBroadcast {
        topic: full.clone(),
        event,
        meta: None,
        json,
        payload: body,
    }));
    shared.hub.broadcast(&room_key(&full, private), None, out);
    StatusCode::ACCEPTED.into_response()
}
