//! Automatic assignment of pending conversations: the logic behind `livechat worker`.
//!
//! A [`Worker`] assigns every pending, unassigned conversation it can, following the platform's
//! routing rules:
//!
//! * a conversation with a department is routed only if that department auto-assigns
//!   (`auto_assign`), and only to that department's agents;
//! * a conversation without a department goes to any agent of its site;
//! * always to the least-loaded (`current_chat_count`) online, active agent with a free slot,
//!   never above the agent's `max_concurrent_chats`; oldest conversations first;
//! * the conversation becomes active, its `wait_time_seconds` is recorded and the agent's
//!   `current_chat_count` goes up, in one transaction.
//!
//! The assignments themselves happen in the database, in batches: each batch is one call of
//! `mod_chat_worker_assign_pending` (migration `20260101000600_worker.sql`), one transaction
//! that locks conversations and agents with `FOR UPDATE SKIP LOCKED`. So any number of workers
//! can run against one database without assigning a conversation twice, without waiting for
//! each other and without deadlocks, and a worker killed at any moment leaves nothing
//! half-assigned.
//!
//! # When it sweeps
//!
//! [`Worker::run`] sweeps (batches until nothing assignable is left):
//! * when a realtime `postgres_changes` event says a conversation may have become assignable: a
//!   new pending conversation, a conversation back to pending, a conversation that freed its
//!   agent's slot (resolved, closed, missed, transferred), an agent that came online, was
//!   re-activated or got more capacity;
//! * right after the realtime channels are (re)subscribed, to catch up on what happened while
//!   the worker was not listening;
//! * every [`sweep interval`](WorkerConfig::sweep_interval) anyway, as a safety net (realtime is
//!   best effort: connections drop, events can be missed);
//! * shortly again when a batch found a free agent held by another transaction (another
//!   worker's batch, or a dashboard action).
//!
//! Failed sweeps (database restarting, network down) are logged, counted and retried with a
//! backoff; the realtime client reconnects and rejoins by itself. Nothing stops the loop but the
//! shutdown future, after which the batch in flight finishes and `run` returns.
//!
//! Agent changes reach the worker because its migration adds `mod_chat_agents` to the
//! `supabase_realtime` publication (with full old rows). Where that is not applied, the agent
//! channel fails, a warning says so, and agents coming online are noticed at the next sweep.
//!
//! ```no_run
//! use std::time::Duration;
//! use livechat::worker::{Worker, WorkerConfig};
//! use livechat::Client;
//!
//! # async fn demo() -> livechat::Result<()> {
//! let client = Client::from_env()?; // SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY
//! let worker = Worker::new(
//!     client,
//!     WorkerConfig::new().sweep_interval(Duration::from_secs(10)),
//! )?;
//!
//! // One sweep, e.g. from a cron job:
//! let report = worker.run_once().await?;
//! println!("assigned {}, {} still waiting", report.assignments.len(), report.backlog);
//!
//! // Or run until Ctrl-C:
//! worker.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod events;
mod http;
mod metrics;
mod sweep;

pub use http::MetricsServer;
pub use metrics::Metrics;
pub use sweep::{Assignment, SweepReport, WaitingPool};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{Error, ErrorKind, Result};
use crate::realtime::Backoff;
use crate::Client;
use sweep::{Batch, BatchArgs, ASSIGN_FUNCTION};

/// The largest batch the database function accepts.
pub const MAX_BATCH_SIZE: u32 = 1000;

/// How often a sweep retries a batch that found its free agents held by another transaction,
/// before leaving it to the run loop.
const CONTENTION_RETRIES: u32 = 20;

/// How a [`Worker`] works. Setters consume and return the configuration.
///
/// ```
/// use std::time::Duration;
/// use livechat::worker::WorkerConfig;
///
/// let config = WorkerConfig::new()
///     .sites(["b0000000-0000-4000-8000-000000000001".parse().unwrap()])
///     .sweep_interval(Duration::from_secs(5))
///     .batch_size(100);
/// assert_eq!(config.get_batch_size(), 100);
/// ```
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    sites: Vec<Uuid>,
    sweep_interval: Duration,
    batch_size: u32,
    realtime: bool,
    reconnect_backoff: Backoff,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig::new()
    }
}

impl WorkerConfig {
    /// The defaults: every site, a sweep every 10 seconds, batches of 50, realtime on.
    pub fn new() -> WorkerConfig {
        WorkerConfig {
            sites: Vec::new(),
            sweep_interval: Duration::from_secs(10),
            batch_size: 50,
            realtime: true,
            reconnect_backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
        }
    }

    /// Only these sites (default: every site the API key can see).
    pub fn sites(mut self, sites: impl IntoIterator<Item = Uuid>) -> WorkerConfig {
        self.sites = sites.into_iter().collect();
        self.sites.sort();
        self.sites.dedup();
        self
    }

    /// The time between safety-net sweeps (default 10 s). Must be positive.
    pub fn sweep_interval(mut self, interval: Duration) -> WorkerConfig {
        self.sweep_interval = interval;
        self
    }

    /// At most this many assignments per transaction (default 50, at most
    /// [`MAX_BATCH_SIZE`]). Smaller batches hold locks for less time and let a shutdown
    /// finish sooner; larger ones assign a backlog faster.
    pub fn batch_size(mut self, n: u32) -> WorkerConfig {
        self.batch_size = n;
        self
    }

    /// Whether to listen to realtime changes (default true). Without, the worker only sweeps
    /// on its interval.
    pub fn realtime(mut self, on: bool) -> WorkerConfig {
        self.realtime = on;
        self
    }

    /// The realtime client's reconnect and rejoin backoff (default 0.5 s doubling to 10 s).
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> WorkerConfig {
        self.reconnect_backoff = backoff;
        self
    }

    /// The sites served (empty: all).
    pub fn get_sites(&self) -> &[Uuid] {
        &self.sites
    }

    /// The sweep interval.
    pub fn get_sweep_interval(&self) -> Duration {
        self.sweep_interval
    }

    /// The batch size.
    pub fn get_batch_size(&self) -> u32 {
        self.batch_size
    }

    /// Whether realtime is used.
    pub fn get_realtime(&self) -> bool {
        self.realtime
    }
}

/// Assigns pending conversations to agents: [`run_once`](Worker::run_once) for one sweep,
/// [`run`](Worker::run) to keep doing it until shutdown. See the [module docs](self).
///
/// Cheap to clone; clones share the metrics.
#[derive(Clone, Debug)]
pub struct Worker {
    client: Client,
    config: WorkerConfig,
    metrics: Arc<Metrics>,
}

impl Worker {
    /// A worker acting through `client` (normally with the service-role key: with a user's
    /// token, row-level security limits it to that user's sites).
    ///
    /// Fails with `ErrorKind::InvalidInput` for a zero sweep
    /// interval or a batch size outside 1..=[`MAX_BATCH_SIZE`].
    pub fn new(client: Client, config: WorkerConfig) -> Result<Worker> {
        if config.sweep_interval.is_zero() {
            return Err(Error::invalid_input("the sweep interval must be positive"));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&config.batch_size) {
            return Err(Error::invalid_input(format!(
                "the batch size must be between 1 and {MAX_BATCH_SIZE}, got {}",
                config.batch_size
            )));
        }
        Ok(Worker {
            client,
            config,
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The worker's metrics (serve them with [`MetricsServer`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// How long `/healthz` tolerates no progress of the run loop: two sweep intervals plus
    /// room for a slow request.
    pub fn liveness_window(&self) -> Duration {
        self.config.sweep_interval * 2 + Duration::from_secs(60)
    }

    /// One sweep: assignment batches until nothing assignable is left. Each assignment is
    /// logged; a failing batch ends the sweep with its error (the batches before it stay done).
    pub async fn run_once(&self) -> Result<SweepReport> {
        self.run_once_until(std::future::pending()).await
    }

    /// Like [`run_once`](Worker::run_once), stopping after the batch in flight when `shutdown`
    /// completes (the report is then marked [`interrupted`](SweepReport::interrupted)).
    pub async fn run_once_until<F>(&self, shutdown: F) -> Result<SweepReport>
    where
        F: Future<Output = ()>,
    {
        let (stop_tx, stop_rx) = watch::channel(false);
        // The receiver lives in the sweep, so `closed()` below fires when the sweep is done.
        let sweep = async move { self.timed_sweep(&stop_rx, &[]).await };
        let signal = async {
            tokio::select! {
                _ = shutdown => { let _ = stop_tx.send(true); }
                _ = stop_tx.closed() => {}
            }
        };
        let (report, ()) = tokio::join!(sweep, signal);
        report
    }

    /// Runs until `shutdown` completes: listens to realtime changes, sweeps when they call for
    /// it and every sweep interval, retries failures with a backoff. On shutdown the batch in
    /// flight finishes (it is one transaction either way), then this returns.
    ///
    /// Errors are logged and counted in [`metrics`](Worker::metrics), never returned: the
    /// `Result` is for setup only (a realtime URL that cannot be used).
    pub async fn run<F>(&self, shutdown: F) -> Result<()>
    where
        F: Future<Output = ()>,
    {
        let wake = Arc::new(Notify::new());
        let listener = if self.config.realtime {
            let realtime = self
                .client
                .realtime_options()
                .reconnect_backoff(self.config.reconnect_backoff)
                .rejoin_backoff(self.config.reconnect_backoff)
                .build()
                .map_err(|e| {
                    Error::config("the realtime client could not be set up").with_source(e)
                })?;
            Some(tokio::spawn(events::listen(
                realtime,
                self.config.sites.clone(),
                wake.clone(),
                self.metrics.clone(),
            )))
        } else {
            None
        };

        tracing::info!(
            url = %self.client.url(),
            sites = %describe_sites(&self.config.sites),
            sweep_interval_s = self.config.sweep_interval.as_secs_f64(),
            batch_size = self.config.batch_size,
            realtime = self.config.realtime,
            "worker started"
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let work = self.main_loop(&wake, stop_rx);
        let signal = async {
            tokio::select! {
                _ = shutdown => {
                    tracing::info!("shutdown requested; finishing the batch in flight");
                    let _ = stop_tx.send(true);
                }
                _ = stop_tx.closed() => {}
            }
        };
        tokio::join!(work, signal);
        if let Some(l) = listener {
            l.abort();
        }
        tracing::info!(assignments = self.metrics.assignments(), "worker stopped");
        Ok(())
    }

    async fn main_loop(&self, wake: &Notify, mut stop: watch::Receiver<bool>) {
        let interval = self.config.sweep_interval;
        let retry = Backoff::new(
            Duration::from_millis(250),
            interval.clamp(Duration::from_millis(250), Duration::from_secs(30)),
        );
        let contention = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
        let mut failures = 0u32;
        let mut contended_rounds = 0u32;
        let mut next = Instant::now();
        let mut waiting = Vec::new();
        loop {
            if *stop.borrow() {
                return;
            }
            self.metrics.tick();
            let why = tokio::select! {
                r = stop.changed() => {
                    if r.is_err() { return; }
                    continue;
                }
                _ = wake.notified() => "event",
                _ = tokio::time::sleep_until(next) => "timer",
            };
            tracing::trace!(why, "sweeping");
            match self.timed_sweep(&stop, &waiting).await {
                Ok(report) => {
                    failures = 0;
                    waiting = report.waiting;
                    next = Instant::now() + interval;
                    if report.contended > 0 {
                        contended_rounds += 1;
                        next = Instant::now() + contention.delay(contended_rounds);
                    } else {
                        contended_rounds = 0;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = retry.delay(failures);
                    tracing::warn!(
                        error = %e,
                        kind = %e.kind(),
                        attempt = failures,
                        retry_in_ms = delay.as_millis() as u64,
                        "sweep failed; retrying"
                    );
                    next = Instant::now() + delay;
                }
            }
        }
    }

    /// A sweep, timed and recorded in the metrics.
    async fn timed_sweep(
        &self,
        stop: &watch::Receiver<bool>,
        previous_waiting: &[WaitingPool],
    ) -> Result<SweepReport> {
        let started = Instant::now();
        let result = self.sweep(stop).await;
        let took = started.elapsed();
        match &result {
            Ok(r) => {
                self.metrics
                    .sweep_succeeded(took, r.backlog, r.manual, r.contended);
                sweep::log_waiting(&r.waiting, previous_waiting);
                if r.manual > 0 {
                    tracing::debug!(
                        conversations = r.manual,
                        "pending conversations left to manual routing (department without auto-assign)"
                    );
                }
                if r.assignments.is_empty() {
                    tracing::debug!(
                        backlog = r.backlog,
                        took_ms = took.as_millis() as u64,
                        "sweep done; nothing to assign"
                    );
                } else {
                    tracing::info!(
                        assigned = r.assignments.len(),
                        backlog = r.backlog,
                        batches = r.batches,
                        took_ms = took.as_millis() as u64,
                        "sweep done"
                    );
                }
            }
            Err(e) => {
                self.metrics.sweep_failed(took);
                if e.kind() == ErrorKind::NotFound {
                    tracing::error!(
                        function = ASSIGN_FUNCTION,
                        "the database function is missing: apply supabase/migrations/20260101000600_worker.sql"
                    );
                }
            }
        }
        result
    }

    async fn sweep(&self, stop: &watch::Receiver<bool>) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let contention = Backoff::new(Duration::from_millis(10), Duration::from_millis(200));
        let mut contended_rounds = 0;
        loop {
            let batch = self.batch().await?;
            let (more, contended, held) = (batch.more, batch.contended, batch.held);
            for a in &batch.assigned {
                sweep::log_assignment(a);
                self.metrics.assigned(a.latency_seconds);
            }
            if held > 0 || contended > 0 {
                tracing::debug!(held, contended, "batch met rows held by other transactions");
            }
            report.absorb(batch);
            if *stop.borrow() {
                report.interrupted = true;
                return Ok(report);
            }
            if more {
                continue;
            }
            if contended > 0 && contended_rounds < CONTENTION_RETRIES {
                contended_rounds += 1;
                tokio::time::sleep(contention.delay(contended_rounds)).await;
                continue;
            }
            return Ok(report);
        }
    }

    /// One batch: one call, one transaction.
    async fn batch(&self) -> Result<Batch> {
        let sites = (!self.config.sites.is_empty()).then_some(self.config.sites.as_slice());
        self.client
            .rpc(
                ASSIGN_FUNCTION,
                &BatchArgs {
                    p_site_ids: sites,
                    p_limit: self.config.batch_size,
                },
            )
            .call()
            .await
    }
}

fn describe_sites(sites: &[Uuid]) -> String {
    if sites.is_empty() {
        "all".to_string()
    } else {
        sites
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn client() -> Client {
        Client::new(Config::new("http://127.0.0.1:9", "key").unwrap()).unwrap()
    }

    #[test]
    fn nonsense_configurations_are_refused() {
        let zero = Worker::new(client(), WorkerConfig::new().sweep_interval(Duration::ZERO));
        assert_eq!(zero.unwrap_err().kind(), ErrorKind::InvalidInput);
        for n in [0, MAX_BATCH_SIZE + 1] {
            let e = Worker::new(client(), WorkerConfig::new().batch_size(n)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
        }
        assert!(Worker::new(client(), WorkerConfig::new().batch_size(MAX_BATCH_SIZE)).is_ok());
    }

    #[test]
    fn sites_are_deduplicated() {
        let a: Uuid = "b0000000-0000-4000-8000-000000000001".parse().unwrap();
        let c = WorkerConfig::new().sites([a, a]);
        assert_eq!(c.get_sites(), &[a]);
        assert_eq!(describe_sites(&[]), "all");
    }
}
