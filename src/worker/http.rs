//! A tiny HTTP/1.1 endpoint for operators: Prometheus metrics and health checks.
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | the metrics in the Prometheus text format |
//! | `GET /healthz` (also `/livez`, `/health`) | `200 ok` while the worker's loop makes progress, else `503` (liveness: restart me) |
//! | `GET /readyz` | `200 ready` when the most recent sweep succeeded, else `503` with the reason (readiness: the database is reachable and assignments happen) |
//!
//! `HEAD` works too. One request per connection (`Connection: close`), at most 64 connections
//! at a time, 5 seconds to send the request head. Deliberately small: no framework, no TLS;
//! bind it to a private address.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::metrics::Metrics;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 64;

/// A running metrics and health endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one) and serves `metrics` on it.
    /// `liveness` is how long the worker's loop may go without progress before `/healthz`
    /// answers 503 (the worker ticks at least once per sweep interval).
    pub async fn bind(
        addr: &str,
        metrics: Arc<Metrics>,
        liveness: Duration,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, metrics, liveness));
        Ok(MetricsServer { local_addr, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>, liveness: Duration) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics endpoint: too many connections; dropping one");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(stream, &metrics, liveness).await {
                tracing::debug!(%peer, error = %e, "metrics endpoint: connection failed");
            }
            drop(permit);
        });
    }
}

async fn serve(mut stream: TcpStream, metrics: &Metrics, liveness: Duration) -> io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(r) => r?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "request head")),
    };
    let (status, content_type, body, head_only) = respond(&head, metrics, liveness);
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Reads up to the end of the request head (`\r\n\r\n`), at most [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_HEAD {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Status line, content type, body, and whether to omit the body (HEAD).
fn respond(
    head: &str,
    metrics: &Metrics,
    liveness: Duration,
) -> (&'static str, &'static str, String, bool) {
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next());
    let Some(target) = target else {
        return ("400 Bad Request", TEXT, "bad request\n".into(), false);
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (
            "405 Method Not Allowed",
            TEXT,
            "only GET and HEAD\n".into(),
            false,
        );
    }
    let path = target.split('?').next().unwrap_or_default();
    let (status, content_type, body) = match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" | "/livez" | "/health" => {
            if metrics.alive(liveness) {
                ("200 OK", TEXT, "ok\n".to_string())
            } else {
                (
                    "503 Service Unavailable",
                    TEXT,
                    format!(
                        "stalled: no progress for more than {}s\n",
                        liveness.as_secs()
                    ),
                )
            }
        }
        "/readyz" => {
            if metrics.ready() {
                ("200 OK", TEXT, "ready\n".to_string())
            } else if metrics.sweeps() + metrics.failed_sweeps() == 0 {
                (
                    "503 Service Unavailable",
                    TEXT,
                    "starting: no sweep yet\n".to_string(),
                )
            } else {
                (
                    "503 Service Unavailable",
                    TEXT,
                    "the last sweep failed (see the logs)\n".to_string(),
                )
            }
        }
        _ => ("404 Not Found", TEXT, "not found\n".to_string()),
    };
    (status, content_type, body, head_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_answer_as_documented() {
        let m = Metrics::new();
        let live = Duration::from_secs(60);
        let (s, ct, body, _) = respond("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &m, live);
        assert_eq!(s, "200 OK");
        assert!(ct.starts_with("text/plain; version=0.0.4"));
        assert!(body.contains("livechat_worker_assignments_total 0"));
        assert_eq!(
            respond("GET /healthz HTTP/1.1\r\n\r\n", &m, live).0,
            "200 OK"
        );
        let (s, _, body, _) = respond("GET /readyz HTTP/1.1\r\n\r\n", &m, live);
        assert_eq!(s, "503 Service Unavailable");
        assert!(body.contains("no sweep yet"));
        m.sweep_succeeded(Duration::from_millis(1), 0, 0, 0);
        assert_eq!(
            respond("GET /readyz HTTP/1.0\r\n\r\n", &m, live).0,
            "200 OK"
        );
        m.sweep_failed(Duration::from_millis(1));
        assert_eq!(
            respond("GET /readyz HTTP/1.1\r\n\r\n", &m, live).0,
            "503 Service Unavailable"
        );
        let (s, _, _, head_only) = respond("HEAD /metrics?x=1 HTTP/1.1\r\n\r\n", &m, live);
        assert_eq!((s, head_only), ("200 OK", true));
        assert_eq!(
            respond("POST /metrics HTTP/1.1\r\n\r\n", &m, live).0,
            "405 Method Not Allowed"
        );
        assert_eq!(
            respond("GET /nope HTTP/1.1\r\n\r\n", &m, live).0,
            "404 Not Found"
        );
        assert_eq!(respond("garbage", &m, live).0, "400 Bad Request");
    }
}
