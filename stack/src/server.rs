//! The HTTP server: `/rest/v1` (PostgREST-compatible) and `/realtime/v1` (Realtime-compatible)
//! on one port, like Supabase's API gateway.

use crate::{realtime, rest, Stack};
use anyhow::{Context, Result};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) port: u16,
    pub(crate) realtime: realtime::RealtimeHandle,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        [("content-type", "application/json; charset=utf-8")],
        r#"{"message":"no Route matched with those values"}"#,
    )
}

impl Server {
    pub(crate) async fn start(stack: &Stack, port: u16) -> Result<Server> {
        let rest = rest::router(rest::RestConfig {
            db_url: stack.cluster.authenticator_url(&stack.db_name),
            jwt_secret: stack.jwt_secret.clone(),
        })
        .await
        .context("starting the REST API")?;
        let (rt, rt_handle) = realtime::router(realtime::RealtimeConfig {
            db_url: stack.cluster.superuser_url(&stack.db_name),
            db_name: stack.db_name.clone(),
            jwt_secret: stack.jwt_secret.clone(),
        })
        .await
        .context("starting the realtime server")?;
        let app = Router::new()
            .nest("/rest/v1", rest)
            .nest("/realtime/v1", rt)
            .fallback(not_found);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!("HTTP server stopped: {e}");
            }
        });
        Ok(Server {
            port,
            realtime: rt_handle,
            shutdown: Some(tx),
            task,
        })
    }

    /// Graceful stop: the realtime server drops its slot, then the HTTP server stops.
    pub(crate) async fn stop(mut self) {
        self.realtime.shutdown().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // WebSocket connections may hold the server open; do not wait for them for long.
        let abort = self.task.abort_handle();
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    pub(crate) fn abort(self) {
        self.task.abort();
    }
}
