//! A Supabase-Realtime-compatible WebSocket server (`/realtime/v1`).

use axum::Router;

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

/// Fault switches and shutdown for tests.
#[derive(Clone, Debug, Default)]
pub struct RealtimeHandle {}

impl RealtimeHandle {
    /// Stops capturing changes and drops the replication slot.
    pub async fn shutdown(&self) {}
}

/// Builds the router to be nested at `/realtime/v1`, and its handle.
pub async fn router(_cfg: RealtimeConfig) -> anyhow::Result<(Router, RealtimeHandle)> {
    Ok((Router::new(), RealtimeHandle::default()))
}
