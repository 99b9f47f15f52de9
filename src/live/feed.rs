//! The task behind a message or conversation feed: it owns the channel subscription, the
//! [`Ledger`], and the catch-up queries, and hands typed events to the feed's stream.

use super::ledger::{key_of, Disposition, FeedRow, Key, Ledger, Order, Origin, Out};
use super::{Error, FeedOptions, FeedProblem, Live, Recovery, RecoveryReason};
use crate::realtime::{
    Broadcast, Channel, ChannelConfig, ChannelEvent, ChannelStatus, EventFilter, PostgresChange,
    PostgresChangeEvent, Subscription,
};
use crate::rest::Condition;
use crate::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use uuid::Uuid;

/// What a kind of feed needs to say about itself.
pub(crate) trait Spec: Send + 'static {
    type Row: FeedRow + DeserializeOwned;
    type Event: Send + 'static;

    /// Which timestamp orders the feed.
    const ORDER: Order;
    /// The table.
    const TABLE: &'static str;
    /// The column the feed is scoped by (`conversation_id`, `site_id`).
    const SCOPE: &'static str;
    /// Whether a catch-up also checks which delivered rows were deleted.
    const CHECK_DELETIONS: bool;

    /// Rows created at or before this (given the baseline key and the lookback) existed
    /// before the feed.
    fn preexisting_until(baseline: Key, lookback: std::time::Duration) -> DateTime<Utc>;

    /// A broadcast on the channel, as an event (typing indicators).
    fn broadcast(&self, b: &Broadcast) -> Option<Self::Event>;

    fn new_event(row: Self::Row, late: bool) -> Self::Event;
    fn updated_event(row: Self::Row) -> Self::Event;
    fn deleted_event(id: Uuid, old: Option<Self::Row>) -> Option<Self::Event>;
    fn recovered_event(r: Recovery) -> Self::Event;
    fn interrupted_event(reason: String) -> Self::Event;
    fn problem_event(p: FeedProblem) -> Self::Event;
}

/// Requests from the feed handle.
#[derive(Debug)]
pub(crate) enum Command {
    Resync,
}

/// The parts a feed handle keeps.
pub(crate) struct Handle<E> {
    pub(crate) events: mpsc::Receiver<E>,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) cursor: watch::Receiver<Option<Key>>,
    pub(crate) channel: Channel,
}

impl<E> std::fmt::Debug for Handle<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// Where the feed starts.
pub(crate) enum Start {
    /// From the beginning (snapshot).
    Beginning,
    /// After the newest row existing now.
    Now,
    /// After this key (a resumed message feed).
    After(Key),
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `t` minus `lookback`, saturating at the earliest representable time.
pub(crate) fn minus_lookback(t: DateTime<Utc>, lookback: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(lookback)
        .ok()
        .and_then(|lb| t.checked_sub_signed(lb))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn order_column(order: Order) -> &'static str {
    match order {
        Order::Created => "created_at",
        Order::Updated => "updated_at",
    }
}

/// The newest row of the scope by the feed's key.
async fn newest<S: Spec>(rest: &Client, scope: Uuid) -> Result<Option<S::Row>, crate::Error> {
    let col = order_column(S::ORDER);
    let rows: Vec<S::Row> = rest
        .from(S::TABLE)
        .eq(S::SCOPE, scope)
        .not_null(col)
        .order_desc(col)
        .order_desc("id")
        .limit(1)
        .fetch()
        .await?;
    Ok(rows.into_iter().next())
}

/// Every row of the scope with `updated_at > since` (all rows when `since` is `None`), by
/// `(updated_at, id)`, page by page with a keyset cursor.
async fn rows_since<R: DeserializeOwned + FeedRow>(
    rest: &Client,
    table: &str,
    scope_col: &str,
    scope: Uuid,
    since: Option<DateTime<Utc>>,
    page: u64,
) -> Result<Vec<R>, crate::Error> {
    let mut out: Vec<R> = Vec::new();
    let mut after: Option<(DateTime<Utc>, Uuid)> = None;
    loop {
        let mut q = rest
            .from(table)
            .eq(scope_col, scope)
            .order_asc("updated_at")
            .order_asc("id")
            .limit(page);
        match after {
            Some((t, id)) => {
                let t = rfc3339(t);
                q = q.filter(Condition::or([
                    Condition::gt("updated_at", &t),
                    Condition::and([Condition::eq("updated_at", &t), Condition::gt("id", id)]),
                ]));
            }
            None => {
                q = match since {
                    Some(t) => q.gt("updated_at", rfc3339(t)),
                    None => q,
                };
            }
        }
        let rows: Vec<R> = q.fetch().await?;
        // Stop on an empty page (not a short one: a server-side `max-rows` may cap pages).
        let Some(last) = rows.last() else { break };
        match last.row_updated_at() {
            Some(t) => after = Some((t, last.row_id())),
            None => {
                // Rows without updated_at sort last and end the scan.
                out.extend(rows);
                break;
            }
        }
        out.extend(rows);
    }
    Ok(out)
}

/// Which of `ids` no longer exist (or are no longer visible).
async fn missing_ids(
    rest: &Client,
    table: &str,
    scope_col: &str,
    scope: Uuid,
    ids: Vec<Uuid>,
    page: u64,
) -> Result<Vec<Uuid>, crate::Error> {
    #[derive(serde::Deserialize)]
    struct IdRow {
        id: Uuid,
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    const CHUNK: usize = 100;
    let mut present: HashSet<Uuid> = HashSet::new();
    if ids.len() <= CHUNK * 10 {
        for chunk in ids.chunks(CHUNK) {
            let rows: Vec<IdRow> = rest
                .from(table)
                .select("id")
                .in_("id", chunk.iter().map(Uuid::to_string))
                .fetch()
                .await?;
            present.extend(rows.into_iter().map(|r| r.id));
        }
    } else {
        // Many ids: scanning the scope's ids is fewer requests.
        let mut after: Option<Uuid> = None;
        loop {
            let mut q = rest
                .from(table)
                .select("id")
                .eq(scope_col, scope)
                .order_asc("id")
                .limit(page.max(1000));
            if let Some(a) = after {
                q = q.gt("id", a);
            }
            let rows: Vec<IdRow> = q.fetch().await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.id);
            present.extend(rows.into_iter().map(|r| r.id));
        }
    }
    Ok(ids.into_iter().filter(|i| !present.contains(i)).collect())
}

/// What a catch-up found.
pub(crate) struct Fetched<R> {
    rows: Vec<R>,
    gone: Vec<Uuid>,
}

/// A catch-up query under way.
struct InFlight<T> {
    reason: RecoveryReason,
    /// The watermark timestamp it started from (before the lookback).
    since: Option<DateTime<Utc>>,
    fut: BoxFuture<'static, T>,
}

type Running<R> = InFlight<Result<Fetched<R>, crate::Error>>;

/// Opens a feed: baseline, channel, subscription, then the task.
pub(crate) async fn open<S: Spec>(
    live: &Live,
    spec: S,
    scope: Uuid,
    channel_name: String,
    config: ChannelConfig,
    options: FeedOptions,
    start: Start,
) -> Result<Handle<S::Event>, Error> {
    let mut ledger = Ledger::new(S::ORDER, options.reorder_window);
    let baseline = match start {
        Start::Beginning => None,
        Start::After(k) => Some(k),
        Start::Now => newest::<S>(&live.rest, scope)
            .await?
            .and_then(|r| key_of(S::ORDER, &r)),
    };
    if let Some(b) = baseline {
        // Rows near the start point are recorded as already delivered, so that a catch-up
        // that reaches back `lookback` does not deliver them.
        let floor = minus_lookback(b.0, options.lookback);
        let seeds: Vec<S::Row> = rows_since(
            &live.rest,
            S::TABLE,
            S::SCOPE,
            scope,
            Some(floor),
            options.page_size,
        )
        .await?;
        for r in &seeds {
            if key_of(S::ORDER, r).is_some_and(|k| k <= b) {
                ledger.seed(r);
            }
        }
        ledger.start_at(Some(b), Some(S::preexisting_until(b, options.lookback)));
    }

    let channel = live
        .realtime
        .channel(&channel_name, config.private(live.private))
        .await?;
    let sub = channel.on(EventFilter::All).await?;
    channel.subscribe().await?;

    let (out, events) = mpsc::channel(options.buffer);
    let (commands_tx, commands) = mpsc::channel(8);
    let (cursor_tx, cursor) = watch::channel(ledger.watermark());
    let mut driver = Driver {
        spec,
        rest: live.rest.clone(),
        scope,
        options,
        ledger,
        sub,
        out,
        backlog: VecDeque::new(),
        started: false,
        closed: false,
        commands,
        cursor: cursor_tx,
        pending_since: None,
        want: None,
        running: None,
        retry_at: None,
        attempt: 0,
        report: None,
        interrupted: false,
    };
    // Events queued before subscribe() returned (its own status changes among them) predate
    // the initial catch-up: keep their rows, drop their statuses.
    while let Some(Some(ev)) = driver.sub.next().now_or_never() {
        if !matches!(ev, ChannelEvent::Status(_)) {
            driver.on_channel_event(ev).await;
        }
    }
    driver.request(RecoveryReason::Initial);
    tracing::debug!(channel = %channel_name, "live feed subscribed");
    tokio::spawn(driver.run());
    Ok(Handle {
        events,
        commands: commands_tx,
        cursor,
        channel,
    })
}

/// Rows parsed from a change.
enum Input<R> {
    Row(R, Origin),
    Delete { id: Uuid, old: Option<R> },
}

fn parse_change<R: DeserializeOwned>(c: PostgresChange) -> Result<Input<R>, String> {
    let parse = |m: Map<String, Value>| serde_json::from_value::<R>(Value::Object(m));
    if !c.errors.is_empty() {
        return Err(format!(
            "{} change of {} with errors {:?}",
            c.event.as_str(),
            c.table,
            c.errors
        ));
    }
    match c.event {
        PostgresChangeEvent::Insert | PostgresChangeEvent::Update => {
            let origin = if c.event == PostgresChangeEvent::Insert {
                Origin::Insert
            } else {
                Origin::Update
            };
            let record = c
                .record
                .ok_or_else(|| format!("{} change without a record", c.event.as_str()))?;
            parse(record).map(|r| Input::Row(r, origin)).map_err(|e| {
                format!(
                    "{} row of {} does not parse: {e}",
                    c.event.as_str(),
                    c.table
                )
            })
        }
        PostgresChangeEvent::Delete => {
            let old = c.old_record.unwrap_or_default();
            let id = old
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Uuid>().ok())
                .ok_or_else(|| format!("DELETE change of {} without an id", c.table))?;
            // With RLS on the table Supabase sends only the primary key; a full old row (as
            // the local stack may send) is passed on when it parses.
            let old = parse(old).ok();
            Ok(Input::Delete { id, old })
        }
        PostgresChangeEvent::All => Err("change of unknown type".into()),
    }
}

#[derive(Default)]
struct Counts {
    caught_up: usize,
    updated: usize,
    deleted: usize,
}

struct Driver<S: Spec> {
    spec: S,
    rest: Client,
    scope: Uuid,
    options: FeedOptions,
    ledger: Ledger<S::Row>,
    sub: Subscription,
    out: mpsc::Sender<S::Event>,
    /// Events produced before the task started (delivered first).
    backlog: VecDeque<S::Event>,
    started: bool,
    closed: bool,
    commands: mpsc::Receiver<Command>,
    cursor: watch::Sender<Option<Key>>,
    /// A catch-up is owed from this timestamp (`Some(None)`: from the beginning).
    pending_since: Option<Option<DateTime<Utc>>>,
    want: Option<RecoveryReason>,
    running: Option<Running<S::Row>>,
    retry_at: Option<Instant>,
    attempt: u32,
    /// A finished catch-up, reported once every row it found is released.
    report: Option<(Recovery, Option<Key>)>,
    interrupted: bool,
}

/// Sleeps until `t`, or forever when there is none (a `select!` branch that never fires).
pub(crate) async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn poll_running<T>(running: &mut Option<InFlight<T>>) -> T {
    match running {
        Some(r) => (&mut r.fut).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl<S: Spec> Driver<S> {
    async fn run(mut self) {
        self.started = true;
        while let Some(ev) = self.backlog.pop_front() {
            if self.out.send(ev).await.is_err() {
                return;
            }
        }
        let mut resync = self.options.resync_every.map(|d| {
            let mut i = tokio::time::interval_at(Instant::now() + d, d);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        while !self.closed {
            self.maybe_start();
            let release_at = self.ledger.next_release_at();
            let retry_at = if self.running.is_none() && self.want.is_some() {
                self.retry_at
            } else {
                None
            };
            tokio::select! {
                _ = self.out.closed() => break,
                ev = self.sub.next() => match ev {
                    Some(ev) => self.on_channel_event(ev).await,
                    None => {
                        tracing::debug!("live feed: the channel was removed");
                        break;
                    }
                },
                res = poll_running(&mut self.running) => self.on_fetched(res).await,
                _ = sleep_until_opt(release_at) => self.release().await,
                _ = sleep_until_opt(retry_at) => self.retry_at = None,
                _ = tick(&mut resync) => self.request(RecoveryReason::Periodic),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Resync) => self.request(RecoveryReason::Requested),
                    None => break,
                },
            }
        }
        tracing::debug!("live feed stopped");
    }

    async fn emit(&mut self, ev: S::Event) {
        if !self.started {
            self.backlog.push_back(ev);
        } else if self.out.send(ev).await.is_err() {
            self.closed = true;
        }
    }

    async fn emit_out(&mut self, outs: Vec<Out<S::Row>>) {
        for o in outs {
            let ev = match o {
                Out::New { row, late } => {
                    if late {
                        tracing::info!(
                            id = %row.row_id(),
                            late_total = self.ledger.late_count(),
                            "live feed: a row arrived after later ones; delivered late"
                        );
                    }
                    S::new_event(row, late)
                }
                Out::Updated { row } => S::updated_event(row),
            };
            self.emit(ev).await;
        }
        self.cursor.send_replace(self.ledger.watermark());
    }

    fn watermark_ts(&self) -> Option<DateTime<Utc>> {
        self.ledger.watermark().map(|k| k.0)
    }

    /// Widens the owed catch-up to start at `since` (`None`: from the beginning) at the
    /// latest.
    fn owe_since(&mut self, since: Option<DateTime<Utc>>) {
        self.pending_since = Some(match (self.pending_since, since) {
            (None, s) => s,
            (Some(None), _) | (_, None) => None,
            (Some(Some(p)), Some(s)) => Some(p.min(s)),
        });
    }

    /// A catch-up is owed; it starts as soon as none is running.
    fn request(&mut self, reason: RecoveryReason) {
        self.owe_since(self.watermark_ts());
        if self.want.is_none() {
            self.want = Some(reason);
        }
        if reason != RecoveryReason::Periodic && self.running.is_none() {
            // A fresh cause: do not wait out the backoff of an earlier failure.
            self.retry_at = None;
        }
    }

    fn maybe_start(&mut self) {
        if self.running.is_some() {
            return;
        }
        if self.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        let Some(reason) = self.want.take() else {
            return;
        };
        let since = self.pending_since.take().unwrap_or(None);
        let from = since.map(|t| minus_lookback(t, self.options.lookback));
        let rest = self.rest.clone();
        let scope = self.scope;
        let page = self.options.page_size;
        let known = if S::CHECK_DELETIONS {
            self.ledger.known_ids()
        } else {
            Vec::new()
        };
        tracing::debug!(?reason, since = ?from, "live feed: catching up");
        self.ledger.set_paused(true);
        let fut = async move {
            let rows = rows_since::<S::Row>(&rest, S::TABLE, S::SCOPE, scope, from, page).await?;
            let gone = missing_ids(&rest, S::TABLE, S::SCOPE, scope, known, page).await?;
            Ok(Fetched { rows, gone })
        };
        self.running = Some(InFlight {
            reason,
            since,
            fut: Box::pin(fut),
        });
    }

    async fn on_fetched(&mut self, res: Result<Fetched<S::Row>, crate::Error>) {
        let Some(InFlight { reason, since, .. }) = self.running.take() else {
            return;
        };
        self.ledger.set_paused(false);
        match res {
            Ok(fetched) => {
                let attempts = self.attempt + 1;
                self.attempt = 0;
                self.retry_at = None;
                let now = Instant::now();
                let mut until: Option<Key> = None;
                let mut counts = Counts::default();
                let fetched_any = !fetched.rows.is_empty();
                for row in fetched.rows {
                    let key = key_of(S::ORDER, &row);
                    let (outs, disp) = self.ledger.offer(row, Origin::Fetched, now);
                    match disp {
                        Disposition::Held { fresh } => {
                            if fresh {
                                counts.caught_up += 1;
                            }
                            until = until.max(key);
                        }
                        Disposition::Emitted => {
                            for o in &outs {
                                match o {
                                    Out::New { .. } => counts.caught_up += 1,
                                    Out::Updated { .. } => counts.updated += 1,
                                }
                            }
                        }
                        Disposition::Duplicate | Disposition::Deleted => {}
                    }
                    if !outs.is_empty() {
                        self.emit_out(outs).await;
                    }
                }
                if fetched_any {
                    // Offering rows does not move the watermark: one cursor update after the
                    // rows leaves the cursor where an update per row would.
                    self.cursor.send_replace(self.ledger.watermark());
                }
                for id in fetched.gone {
                    if self.ledger.delete(id) {
                        counts.deleted += 1;
                        if let Some(ev) = S::deleted_event(id, None) {
                            self.emit(ev).await;
                        }
                    }
                }
                tracing::debug!(
                    ?reason,
                    caught_up = counts.caught_up,
                    updated = counts.updated,
                    deleted = counts.deleted,
                    "live feed: catch-up done"
                );
                self.report = Some((
                    Recovery {
                        reason,
                        caught_up: counts.caught_up,
                        updated: counts.updated,
                        deleted: counts.deleted,
                        attempts,
                    },
                    until,
                ));
                self.release().await;
            }
            Err(e) => {
                self.attempt = self.attempt.saturating_add(1);
                let delay = self.options.retry.delay(self.attempt);
                tracing::warn!(error = %e, attempt = self.attempt, ?delay, "live feed: catch-up failed; retrying");
                self.retry_at = Some(Instant::now() + delay);
                if self.want.is_none() {
                    self.want = Some(reason);
                }
                self.owe_since(since);
                let problem = FeedProblem::RecoveryFailed {
                    error: Arc::new(e),
                    attempt: self.attempt,
                    retry_in: delay,
                };
                self.emit(S::problem_event(problem)).await;
            }
        }
    }

    async fn release(&mut self) {
        let outs = self.ledger.release(Instant::now());
        if !outs.is_empty() {
            self.emit_out(outs).await;
        }
        self.check_report().await;
    }

    async fn check_report(&mut self) {
        let done = match &self.report {
            Some((_, until)) => until.is_none_or(|k| !self.ledger.holds_at_or_below(k)),
            None => false,
        };
        if done {
            if let Some((r, _)) = self.report.take() {
                self.emit(S::recovered_event(r)).await;
            }
        }
    }

    async fn on_channel_event(&mut self, ev: ChannelEvent) {
        match ev {
            ChannelEvent::PostgresChange(c) => match parse_change::<S::Row>(c) {
                Ok(Input::Row(row, origin)) => {
                    let (outs, _) = self.ledger.offer(row, origin, Instant::now());
                    if !outs.is_empty() {
                        self.emit_out(outs).await;
                    }
                }
                Ok(Input::Delete { id, old }) => {
                    self.ledger.delete(id);
                    if let Some(ev) = S::deleted_event(id, old) {
                        self.emit(ev).await;
                    }
                    self.check_report().await;
                }
                Err(detail) => {
                    tracing::warn!(%detail, "live feed: change skipped");
                    self.emit(S::problem_event(FeedProblem::Malformed { detail }))
                        .await;
                }
            },
            ChannelEvent::Broadcast(b) => {
                if let Some(ev) = self.spec.broadcast(&b) {
                    self.emit(ev).await;
                }
            }
            ChannelEvent::Status(s) => self.on_status(s).await,
            ChannelEvent::Lagged { missed } => {
                tracing::warn!(missed, "live feed: realtime events dropped; catching up");
                self.request(RecoveryReason::Lagged);
            }
            _ => {}
        }
    }

    async fn on_status(&mut self, s: ChannelStatus) {
        match s {
            ChannelStatus::Subscribed => {
                if self.interrupted {
                    self.interrupted = false;
                    self.request(RecoveryReason::Resubscribed);
                }
            }
            ChannelStatus::Failed { reason } | ChannelStatus::PostgresChangesFailed { reason } => {
                self.mark_interrupted(reason.clone()).await;
                self.emit(S::problem_event(FeedProblem::ChannelFailed { reason }))
                    .await;
            }
            ChannelStatus::Errored { reason, .. } => self.mark_interrupted(reason).await,
            other => self.mark_interrupted(format!("{other:?}")).await,
        }
    }

    async fn mark_interrupted(&mut self, reason: String) {
        if self.interrupted {
            return;
        }
        self.interrupted = true;
        // What was lost from now on is after the current watermark.
        self.owe_since(self.watermark_ts());
        tracing::info!(%reason, "live feed interrupted");
        self.emit(S::interrupted_event(reason)).await;
    }
}
