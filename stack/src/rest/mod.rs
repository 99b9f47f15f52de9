//! A PostgREST-compatible HTTP API (`/rest/v1`), imitating PostgREST v14.
//!
//! Each request runs in one transaction on a pooled connection that logged in as
//! `authenticator`: `set_config` of the role, the JWT claims and the request context, then one
//! main statement built from the URL (see the `statement` module), then COMMIT or ROLLBACK. Row-level
//! security is therefore PostgreSQL's own. The schema cache is reloaded on
//! `NOTIFY pgrst, 'reload schema'` and, once, before answering that a table, function or
//! relationship does not exist.

mod error;
mod handler;
mod headers;
mod parse;
mod plan;
mod query;
mod schema;
mod sql;
mod statement;

use axum::Router;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{Mutex, RwLock};
use tokio_postgres::{AsyncMessage, NoTls};

pub use error::ApiError;
use schema::SchemaCache;

/// What the REST gateway needs to serve one database.
#[derive(Clone, Debug)]
pub struct RestConfig {
    /// Connection string of the database, logging in as the `authenticator` role.
    pub db_url: String,
    /// The HS256 secret that signs API keys and user tokens.
    pub jwt_secret: String,
}

/// Shared state of the gateway.
pub(crate) struct AppState {
    cfg: RestConfig,
    pool: Pool,
    cache: RwLock<Option<Arc<SchemaCache>>>,
    reload_lock: Mutex<u64>,
}

impl AppState {
    /// The current schema cache, loading it if it never loaded (PGRST002 if the database is
    /// unreachable).
    async fn cache(&self) -> Result<Arc<SchemaCache>, ApiError> {
        if let Some(c) = self.cache.read().await.clone() {
            return Ok(c);
        }
        self.reload().await;
        self.cache.read().await.clone().ok_or_else(|| {
            ApiError::new(
                503,
                "PGRST002",
                "Could not query the database for the schema cache. Retrying.",
            )
        })
    }

    /// Reloads the schema cache (concurrent callers share one reload).
    async fn reload(&self) {
        let seen = *self.reload_lock.lock().await;
        let mut guard = self.reload_lock.lock().await;
        if *guard != seen {
            return; // someone reloaded while we waited
        }
        match self.load().await {
            Ok(c) => {
                *self.cache.write().await = Some(Arc::new(c));
                *guard += 1;
                tracing::debug!("rest: schema cache loaded");
            }
            Err(e) => tracing::warn!("rest: schema cache load failed: {e}"),
        }
    }

    async fn load(&self) -> Result<SchemaCache, String> {
        let client = self.pool.get().await.map_err(|e| e.to_string())?;
        SchemaCache::load(&client).await
    }
}

fn make_pool(db_url: &str) -> anyhow::Result<Pool> {
    let pg = tokio_postgres::Config::from_str(db_url)?;
    let mgr = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(mgr)
        .max_size(10)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()?;
    Ok(pool)
}

/// Builds the router to be nested at `/rest/v1`.
pub async fn router(cfg: RestConfig) -> anyhow::Result<Router> {
    let pool = make_pool(&cfg.db_url)?;
    let state = Arc::new(AppState {
        cfg: cfg.clone(),
        pool,
        cache: RwLock::new(None),
        reload_lock: Mutex::new(0),
    });
    state.reload().await;
    tokio::spawn(listen(Arc::downgrade(&state), cfg.db_url.clone()));
    Ok(Router::new().fallback(handler::handle).with_state(state))
}

/// Keeps a dedicated `LISTEN pgrst` connection and reloads the schema cache on
/// `reload schema` (or an empty payload). Reconnects with backoff when the connection drops
/// (and reloads then, since notifications may have been missed). Ends when the router is gone.
async fn listen(state: Weak<AppState>, db_url: String) {
    let mut backoff = Duration::from_millis(200);
    let mut first = true;
    loop {
        if state.strong_count() == 0 {
            return;
        }
        match tokio_postgres::connect(&db_url, NoTls).await {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let driver = tokio::spawn(async move {
                    let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(msg) = stream.next().await {
                        match msg {
                            Ok(AsyncMessage::Notification(n)) => {
                                if n.channel() == "pgrst"
                                    && tx.send(n.payload().to_string()).is_err()
                                {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!("rest: LISTEN connection ended: {e}");
                                return;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute("LISTEN pgrst").await {
                    tracing::warn!("rest: LISTEN pgrst failed: {e}");
                    driver.abort();
                } else {
                    backoff = Duration::from_millis(200);
                    if !first {
                        if let Some(s) = state.upgrade() {
                            s.reload().await;
                        }
                    }
                    first = false;
                    loop {
                        let msg = tokio::select! {
                            m = rx.recv() => m,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                                if state.strong_count() == 0 {
                                    driver.abort();
                                    return;
                                }
                                continue;
                            }
                        };
                        let Some(payload) = msg else { break };
                        let mut reload = payload == "reload schema" || payload.is_empty();
                        // Coalesce a burst of notifications (a migration sends many).
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        while let Ok(p) = rx.try_recv() {
                            reload |= p == "reload schema" || p.is_empty();
                        }
                        if reload {
                            let Some(s) = state.upgrade() else {
                                driver.abort();
                                return;
                            };
                            s.reload().await;
                        }
                    }
                    driver.abort();
                }
                drop(client);
            }
            Err(e) => tracing::debug!("rest: LISTEN connection failed: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
