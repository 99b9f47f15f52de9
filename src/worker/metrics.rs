//! The worker's counters, gauges and histograms, rendered in the Prometheus text format
//! (version 0.0.4), plus the state behind the health checks.
//!
//! Everything is lock-free atomics: the worker updates them on its hot path and a scrape reads
//! them at any time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Buckets of the insert → assignment latency, in seconds (a conversation may wait minutes for
/// a free agent, hence the long tail).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Buckets of a sweep's duration, in seconds.
const SWEEP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram with fixed buckets.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// One counter per bound (not cumulative; summed when rendered), then `+Inf`.
    counts: Vec<AtomicU64>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub(crate) fn observe(&self, value: f64) {
        let value = if value.is_finite() {
            value.max(0.0)
        } else {
            0.0
        };
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            f64::from_bits(self.sum.load(Ordering::Relaxed))
        );
        let _ = writeln!(out, "{name}_count {total}");
    }
}

/// What woke the worker up, as counted in `livechat_worker_realtime_events_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// A conversation was created pending and unassigned.
    NewPending,
    /// A conversation became pending and unassigned again (reopened, its agent deleted…).
    Requeued,
    /// A conversation gave its agent's slot back (resolved, closed, missed, transferred).
    SlotFreed,
    /// An agent became available: came online, was re-activated, got more capacity or a slot.
    AgentAvailable,
}

impl Trigger {
    const ALL: [Trigger; 4] = [
        Trigger::NewPending,
        Trigger::Requeued,
        Trigger::SlotFreed,
        Trigger::AgentAvailable,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trigger::NewPending => "new_pending",
            Trigger::Requeued => "requeued",
            Trigger::SlotFreed => "slot_freed",
            Trigger::AgentAvailable => "agent_available",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where an error happened, as labelled in `livechat_worker_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorSource {
    /// An assignment batch (the RPC) failed.
    Sweep,
    /// The realtime connection or a channel failed.
    Realtime,
}

/// The worker's metrics and health state. Shared (`Arc`) between the worker, its realtime
/// listener and the metrics endpoint; read it with the accessors or render it with
/// [`Metrics::render`].
#[derive(Debug)]
pub struct Metrics {
    assignments: AtomicU64,
    sweeps_ok: AtomicU64,
    sweeps_failed: AtomicU64,
    sweep_errors: AtomicU64,
    realtime_errors: AtomicU64,
    backlog: AtomicU64,
    manual: AtomicU64,
    contended: AtomicU64,
    events: [AtomicU64; 4],
    reconnects: AtomicU64,
    connected: AtomicBool,
    conversations_subscribed: AtomicBool,
    agents_subscribed: AtomicBool,
    /// Unix time in milliseconds of the last successful sweep (0: none yet).
    last_success_ms: AtomicU64,
    /// Whether the most recent sweep succeeded.
    last_sweep_ok: AtomicBool,
    /// Unix time in milliseconds at which the main loop last made progress.
    last_tick_ms: AtomicU64,
    started_ms: u64,
    pub(crate) latency: Histogram,
    pub(crate) sweep_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Metrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Metrics {
        let now = unix_ms();
        Metrics {
            assignments: AtomicU64::new(0),
            sweeps_ok: AtomicU64::new(0),
            sweeps_failed: AtomicU64::new(0),
            sweep_errors: AtomicU64::new(0),
            realtime_errors: AtomicU64::new(0),
            backlog: AtomicU64::new(0),
            manual: AtomicU64::new(0),
            contended: AtomicU64::new(0),
            events: Default::default(),
            reconnects: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            conversations_subscribed: AtomicBool::new(false),
            agents_subscribed: AtomicBool::new(false),
            last_success_ms: AtomicU64::new(0),
            last_sweep_ok: AtomicBool::new(false),
            last_tick_ms: AtomicU64::new(now),
            started_ms: now,
            latency: Histogram::new(LATENCY_BUCKETS),
            sweep_duration: Histogram::new(SWEEP_BUCKETS),
        }
    }

    /// Conversations this worker assigned.
    pub fn assignments(&self) -> u64 {
        self.assignments.load(Ordering::Relaxed)
    }

    /// Sweeps that completed.
    pub fn sweeps(&self) -> u64 {
        self.sweeps_ok.load(Ordering::Relaxed)
    }

    /// Sweeps that failed (each failure also counts as an error).
    pub fn failed_sweeps(&self) -> u64 {
        self.sweeps_failed.load(Ordering::Relaxed)
    }

    /// Errors of any source (failed assignment batches, realtime failures).
    pub fn errors(&self) -> u64 {
        self.sweep_errors.load(Ordering::Relaxed) + self.realtime_errors.load(Ordering::Relaxed)
    }

    /// Times the realtime connection was re-established after it was lost.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Realtime changes that woke the worker.
    pub fn events(&self) -> u64 {
        self.events.iter().map(|e| e.load(Ordering::Relaxed)).sum()
    }

    /// Pending, unassigned conversations that auto-assignment routes and that the last sweep
    /// left waiting (no free agent).
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Whether the realtime connection is up and the conversation channel is subscribed, so
    /// new conversations are seen as they are created.
    pub fn realtime_subscribed(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
            && self.conversations_subscribed.load(Ordering::Relaxed)
    }

    /// Whether the agent channel is subscribed (agents coming online are seen at once).
    pub fn agent_changes_subscribed(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.agents_subscribed.load(Ordering::Relaxed)
    }

    /// Whether the most recent sweep succeeded (what `/readyz` reports).
    pub fn ready(&self) -> bool {
        self.last_sweep_ok.load(Ordering::Relaxed)
    }

    /// Whether the main loop made progress within `within` (what `/healthz` reports).
    pub fn alive(&self, within: Duration) -> bool {
        unix_ms().saturating_sub(self.last_tick_ms.load(Ordering::Relaxed))
            <= within.as_millis() as u64
    }

    pub(crate) fn tick(&self) {
        self.last_tick_ms.store(unix_ms(), Ordering::Relaxed);
    }

    pub(crate) fn assigned(&self, latency_seconds: f64) {
        self.assignments.fetch_add(1, Ordering::Relaxed);
        self.latency.observe(latency_seconds);
    }

    pub(crate) fn sweep_succeeded(
        &self,
        took: Duration,
        backlog: u64,
        manual: u64,
        contended: u64,
    ) {
        self.sweeps_ok.fetch_add(1, Ordering::Relaxed);
        self.sweep_duration.observe(took.as_secs_f64());
        self.backlog.store(backlog, Ordering::Relaxed);
        self.manual.store(manual, Ordering::Relaxed);
        self.contended.store(contended, Ordering::Relaxed);
        self.last_success_ms.store(unix_ms(), Ordering::Relaxed);
        self.last_sweep_ok.store(true, Ordering::Relaxed);
        self.tick();
    }

    pub(crate) fn sweep_failed(&self, took: Duration) {
        self.sweeps_failed.fetch_add(1, Ordering::Relaxed);
        self.sweep_duration.observe(took.as_secs_f64());
        self.error(ErrorSource::Sweep);
        self.last_sweep_ok.store(false, Ordering::Relaxed);
        self.tick();
    }

    pub(crate) fn error(&self, source: ErrorSource) {
        match source {
            ErrorSource::Sweep => &self.sweep_errors,
            ErrorSource::Realtime => &self.realtime_errors,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn event(&self, trigger: Trigger) {
        if let Some(c) = self.events.get(trigger.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_subscribed(&self, agents: bool, subscribed: bool) {
        if agents {
            &self.agents_subscribed
        } else {
            &self.conversations_subscribed
        }
        .store(subscribed, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let flag = |a: &AtomicBool| u8::from(a.load(Ordering::Relaxed));
        let simple = |out: &mut String, name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };

        let _ = writeln!(
            out,
            "# HELP livechat_worker_info The worker's version.\n\
             # TYPE livechat_worker_info gauge\n\
             livechat_worker_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        simple(
            &mut out,
            "livechat_worker_start_time_seconds",
            "gauge",
            "When the worker started (Unix time).",
            format!("{:.3}", self.started_ms as f64 / 1000.0),
        );
        simple(
            &mut out,
            "livechat_worker_assignments_total",
            "counter",
            "Conversations assigned to an agent by this worker.",
            load(&self.assignments).to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP livechat_worker_sweeps_total Sweeps (each one or more assignment batches), by result.\n\
             # TYPE livechat_worker_sweeps_total counter\n\
             livechat_worker_sweeps_total{{result=\"ok\"}} {}\n\
             livechat_worker_sweeps_total{{result=\"error\"}} {}",
            load(&self.sweeps_ok),
            load(&self.sweeps_failed)
        );
        let _ = writeln!(
            out,
            "# HELP livechat_worker_errors_total Errors, by where they happened.\n\
             # TYPE livechat_worker_errors_total counter\n\
             livechat_worker_errors_total{{source=\"sweep\"}} {}\n\
             livechat_worker_errors_total{{source=\"realtime\"}} {}",
            load(&self.sweep_errors),
            load(&self.realtime_errors)
        );
        simple(
            &mut out,
            "livechat_worker_pending_backlog",
            "gauge",
            "Pending, unassigned conversations routed by auto-assignment that the last sweep left waiting for a free agent.",
            load(&self.backlog).to_string(),
        );
        simple(
            &mut out,
            "livechat_worker_pending_manual",
            "gauge",
            "Pending, unassigned conversations of departments that do not auto-assign, as seen by the last sweep.",
            load(&self.manual).to_string(),
        );
        simple(
            &mut out,
            "livechat_worker_pending_contended",
            "gauge",
            "Conversations the last sweep left because their free agents were held by another transaction (retried shortly).",
            load(&self.contended).to_string(),
        );
        simple(
            &mut out,
            "livechat_worker_last_success_timestamp_seconds",
            "gauge",
            "When the last sweep succeeded (Unix time; 0 if none yet).",
            format!("{:.3}", load(&self.last_success_ms) as f64 / 1000.0),
        );
        let _ = writeln!(
            out,
            "# HELP livechat_worker_realtime_events_total Realtime changes that woke the worker, by reason.\n\
             # TYPE livechat_worker_realtime_events_total counter"
        );
        for t in Trigger::ALL {
            let _ = writeln!(
                out,
                "livechat_worker_realtime_events_total{{reason=\"{}\"}} {}",
                t.as_str(),
                self.events.get(t.index()).map(load).unwrap_or(0)
            );
        }
        simple(
            &mut out,
            "livechat_worker_realtime_reconnects_total",
            "counter",
            "Times the realtime connection was re-established after it was lost.",
            load(&self.reconnects).to_string(),
        );
        simple(
            &mut out,
            "livechat_worker_realtime_connected",
            "gauge",
            "1 while the realtime connection is up.",
            flag(&self.connected).to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP livechat_worker_realtime_subscribed 1 while the channel is subscribed.\n\
             # TYPE livechat_worker_realtime_subscribed gauge\n\
             livechat_worker_realtime_subscribed{{table=\"mod_chat_conversations\"}} {}\n\
             livechat_worker_realtime_subscribed{{table=\"mod_chat_agents\"}} {}",
            flag(&self.conversations_subscribed),
            flag(&self.agents_subscribed)
        );
        self.latency.render(
            &mut out,
            "livechat_worker_assignment_latency_seconds",
            "Time from a conversation's creation to its assignment by this worker.",
        );
        self.sweep_duration.render(
            &mut out,
            "livechat_worker_sweep_duration_seconds",
            "How long sweeps took.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_sum_observations() {
        let h = Histogram::new(&[1.0, 5.0]);
        for v in [0.5, 1.0, 3.0, 9.0, f64::NAN] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"1\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"5\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_sum 13.5\n"), "{out}");
        assert!(out.contains("x_count 5\n"), "{out}");
    }

    #[test]
    fn rendering_lists_every_metric_with_help_and_type() {
        let m = Metrics::new();
        m.assigned(0.2);
        m.event(Trigger::AgentAvailable);
        m.error(ErrorSource::Realtime);
        m.sweep_succeeded(Duration::from_millis(3), 7, 2, 0);
        let text = m.render();
        for needle in [
            "livechat_worker_assignments_total 1\n",
            "livechat_worker_pending_backlog 7\n",
            "livechat_worker_pending_manual 2\n",
            "livechat_worker_errors_total{source=\"realtime\"} 1\n",
            "livechat_worker_realtime_events_total{reason=\"agent_available\"} 1\n",
            "livechat_worker_sweeps_total{result=\"ok\"} 1\n",
            "livechat_worker_assignment_latency_seconds_count 1\n",
            "# TYPE livechat_worker_realtime_reconnects_total counter\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // Every sample line belongs to a metric that has HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {name} "))
                    || text.contains(&format!("# TYPE {base} ")),
                "{line}"
            );
        }
        assert!(m.ready());
        assert!(m.alive(Duration::from_secs(5)));
    }
}
