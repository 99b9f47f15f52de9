//! Agent presence on a site (`useAgentPresence`).

use super::feed::sleep_until_opt;
use super::{Error, FeedProblem, Live, RecoveryReason};
use crate::chat::models::AgentStatus;
use crate::realtime::{
    Channel, ChannelConfig, ChannelEvent, ChannelStatus, EventFilter, PresenceEvent, PresenceState,
    RealtimeClient, Subscription,
};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

/// An agent in the site's presence, as the hook's `onlineAgents` lists it: the latest tracked
/// meta of its presence key.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OnlineAgent {
    /// The presence key (the agent id the hook tracks under).
    pub key: String,
    /// `agentId` of the meta (the key when absent).
    pub agent_id: String,
    /// `status`.
    pub status: AgentStatus,
    /// `currentChats` (0 when absent).
    pub current_chats: u32,
    /// `lastSeen`, when it is an RFC 3339 instant.
    pub last_seen: Option<DateTime<Utc>>,
    /// How many connections (tabs, processes) track under this key.
    pub connections: usize,
}

impl OnlineAgent {
    fn from_meta(key: &str, meta: &Map<String, Value>, connections: usize) -> Option<OnlineAgent> {
        let status = meta
            .get("status")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<AgentStatus>().ok())?;
        let agent_id = match meta.get("agentId") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => key.to_string(),
        };
        let current_chats = meta
            .get("currentChats")
            .and_then(Value::as_u64)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let last_seen = meta
            .get("lastSeen")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        Some(OnlineAgent {
            key: key.to_string(),
            agent_id,
            status,
            current_chats,
            last_seen,
            connections,
        })
    }
}

/// The online agents of a presence state: per key, the newest meta that parses.
fn agents_of(state: &PresenceState) -> BTreeMap<String, OnlineAgent> {
    let mut out = BTreeMap::new();
    for (key, presences) in state {
        let agent = presences
            .iter()
            .rev()
            .find_map(|p| OnlineAgent::from_meta(key, &p.meta, presences.len()));
        match agent {
            Some(a) => {
                out.insert(key.clone(), a);
            }
            None => tracing::warn!(%key, "presence without a valid agent status; not listed"),
        }
    }
    out
}

/// A change of the site's online agents.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PresenceChange {
    /// An agent came online.
    Joined(OnlineAgent),
    /// An agent left (untracked, left the channel, or its connection died); its last state.
    Left(OnlineAgent),
    /// An agent's tracked state changed (status, current chats, last seen, connections).
    Updated(OnlineAgent),
    /// The presence list was rebuilt from the server's full state: after a rejoin
    /// ([`RecoveryReason::Resubscribed`]; the changes it implied were reported just before),
    /// or at the start with [`AgentPresenceBuilder::snapshot`] ([`RecoveryReason::Initial`],
    /// after a `Joined` for every agent already online).
    Recovered {
        /// Why.
        reason: RecoveryReason,
        /// How many `Joined` / `Left` / `Updated` events the rebuild produced.
        changed: usize,
        /// How many agents are online now.
        online: usize,
    },
    /// The channel is down (reconnecting or rejoining).
    Interrupted {
        /// Why.
        reason: String,
    },
    /// Something failed; presence keeps running.
    Problem(FeedProblem),
    /// The stream was not read and `missed` changes were dropped; the list itself
    /// ([`AgentPresence::online_agents`]) is always current.
    Lagged {
        /// How many changes were dropped.
        missed: u64,
    },
}

/// A client-side limit on presence updates: at most `max_calls` track/untrack calls per
/// `window`. Supabase Realtime closes a channel that sends more than 5 presence messages in
/// 30 s (by default); the default here, 4 per 30 s, keeps one call in reserve for the automatic
/// re-track after a rejoin. Updates beyond the limit are not lost: the newest wanted state is
/// sent as soon as the window allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceThrottle {
    /// Calls allowed per window (at least 1).
    pub max_calls: u32,
    /// The window.
    pub window: Duration,
}

impl PresenceThrottle {
    /// At most `max_calls` per `window`.
    pub fn new(max_calls: u32, window: Duration) -> Self {
        PresenceThrottle {
            max_calls: max_calls.max(1),
            window,
        }
    }
}

impl Default for PresenceThrottle {
    fn default() -> Self {
        PresenceThrottle::new(4, Duration::from_secs(30))
    }
}

/// Sliding-window accounting of presence calls.
#[derive(Debug)]
struct Budget {
    limit: PresenceThrottle,
    sent: VecDeque<Instant>,
}

impl Budget {
    fn new(limit: PresenceThrottle) -> Self {
        Budget {
            limit,
            sent: VecDeque::new(),
        }
    }

    /// The earliest instant a call may be made.
    fn next_free(&mut self, now: Instant) -> Instant {
        while self
            .sent
            .front()
            .is_some_and(|t| *t + self.limit.window <= now)
        {
            self.sent.pop_front();
        }
        if self.sent.len() < self.limit.max_calls.max(1) as usize {
            now
        } else {
            self.sent
                .front()
                .map(|t| *t + self.limit.window)
                .unwrap_or(now)
        }
    }

    fn take(&mut self, now: Instant) {
        self.sent.push_back(now);
    }
}

/// The channel name of a site's agent presence: `presence:chat:<siteId>`.
pub fn presence_channel_name(site_id: Uuid) -> String {
    format!("presence:chat:{site_id}")
}

/// Options for joining a site's presence ([`Live::agent_presence`]).
#[derive(Debug)]
#[must_use = "a builder does nothing until join() is called"]
pub struct AgentPresenceBuilder {
    live: Live,
    site_id: Uuid,
    agent_id: String,
    status: AgentStatus,
    current_chats: u32,
    throttle: PresenceThrottle,
    snapshot: bool,
    buffer: usize,
}

impl AgentPresenceBuilder {
    pub(crate) fn new(live: Live, site_id: Uuid, agent_id: String, status: AgentStatus) -> Self {
        AgentPresenceBuilder {
            live,
            site_id,
            agent_id,
            status,
            current_chats: 0,
            throttle: PresenceThrottle::default(),
            snapshot: false,
            buffer: 256,
        }
    }

    /// The `currentChats` to track at first (default 0, as the hook).
    pub fn current_chats(mut self, n: u32) -> Self {
        self.current_chats = n;
        self
    }

    /// The client-side limit on presence calls (default 4 per 30 s).
    pub fn throttle(mut self, throttle: PresenceThrottle) -> Self {
        self.throttle = throttle;
        self
    }

    /// Report the agents already online as `Joined` events after the first presence state,
    /// followed by [`PresenceChange::Recovered`] with [`RecoveryReason::Initial`]. Default:
    /// off (only changes; [`AgentPresence::online_agents`] always has the full list).
    pub fn snapshot(mut self, on: bool) -> Self {
        self.snapshot = on;
        self
    }

    /// How many changes are queued for a reader before older ones are dropped (default 256).
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events.max(1);
        self
    }

    /// Joins `presence:chat:<siteId>` with presence key = agent id, tracks
    /// `{agentId, status, currentChats, lastSeen}`, and waits until the channel is joined.
    ///
    /// Fails with [`Error::NotVisible`] before joining anything when the caller cannot read
    /// the site (not a member of its agency).
    pub async fn join(self) -> Result<AgentPresence, Error> {
        self.live.ensure_site_visible(self.site_id).await?;
        let name = presence_channel_name(self.site_id);
        let channel = self
            .live
            .realtime
            .channel(
                &name,
                ChannelConfig::new()
                    .presence_key(self.agent_id.clone())
                    .private(self.live.private),
            )
            .await?;
        let sub = channel.on(EventFilter::All).await?;
        let mut budget = Budget::new(self.throttle);
        let wanted = Wanted {
            agent_id: self.agent_id.clone(),
            status: self.status,
            current_chats: self.current_chats,
        };
        // Tracked before the join: sent with it, and again after every rejoin.
        budget.take(Instant::now());
        channel.track(wanted.meta()).await?;
        channel.subscribe().await?;
        let (tx, events) = mpsc::channel(self.buffer);
        let (commands_tx, commands) = mpsc::channel(16);
        let (online_tx, online) = watch::channel(Vec::new());
        let driver = Driver {
            realtime: self.live.realtime.clone(),
            channel: channel.clone(),
            sub,
            sink: Sink { tx, missed: 0 },
            commands,
            online: online_tx,
            view: BTreeMap::new(),
            wanted,
            dirty: false,
            budget,
            snapshot: self.snapshot,
            synced: false,
            phase: Phase::Live,
            resync_after_subscribe: false,
        };
        tokio::spawn(driver.run());
        tracing::debug!(channel = %name, agent = %self.agent_id, "presence joined");
        Ok(AgentPresence {
            site_id: self.site_id,
            agent_id: self.agent_id,
            channel,
            events,
            commands: commands_tx,
            online,
        })
    }
}

/// This agent's presence on a site and the site's online agents (`useAgentPresence`): a
/// `Stream` of [`PresenceChange`], the current list, and status updates. Dropping it (or
/// [`leave`](AgentPresence::leave)) untracks and leaves the channel.
///
/// ```no_run
/// use futures::StreamExt;
/// use livechat::chat::models::AgentStatus;
/// use livechat::live::{Live, PresenceChange};
///
/// # async fn demo(live: Live, site: uuid::Uuid) -> Result<(), livechat::live::Error> {
/// let mut presence = live
///     .agent_presence(site, "e0000000-0000-4000-8000-000000000101", AgentStatus::Online)
///     .join()
///     .await?;
/// presence.update_status(AgentStatus::Away).await?;
/// for agent in presence.online_agents() {
///     println!("{} is {}", agent.agent_id, agent.status);
/// }
/// while let Some(change) = presence.next().await {
///     if let PresenceChange::Left(agent) = change {
///         println!("{} went offline", agent.agent_id);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AgentPresence {
    site_id: Uuid,
    agent_id: String,
    channel: Channel,
    events: mpsc::Receiver<PresenceChange>,
    commands: mpsc::Sender<PresenceCommand>,
    online: watch::Receiver<Vec<OnlineAgent>>,
}

#[derive(Debug)]
enum PresenceCommand {
    Update {
        status: Option<AgentStatus>,
        current_chats: Option<u32>,
    },
    Leave {
        done: oneshot::Sender<()>,
    },
}

impl AgentPresence {
    /// The site.
    pub fn site_id(&self) -> Uuid {
        self.site_id
    }

    /// This agent's id (the presence key).
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The online agents now (the hook's `onlineAgents`), by presence key; this agent included
    /// once the server has its presence.
    pub fn online_agents(&self) -> Vec<OnlineAgent> {
        self.online.borrow().clone()
    }

    /// The online agents, then the list after every change.
    pub fn online_watch(&self) -> watch::Receiver<Vec<OnlineAgent>> {
        self.online.clone()
    }

    async fn command(&self, cmd: PresenceCommand) -> Result<(), Error> {
        self.commands.send(cmd).await.map_err(|_| Error::Closed)
    }

    /// Sets this agent's status (the hook's `updateStatus`): re-tracks with a fresh
    /// `lastSeen`. Returns once the update is queued; it is sent at once, or as soon as the
    /// [`PresenceThrottle`] allows (several quick updates then collapse into the newest).
    pub async fn update_status(&self, status: AgentStatus) -> Result<(), Error> {
        self.command(PresenceCommand::Update {
            status: Some(status),
            current_chats: None,
        })
        .await
    }

    /// Sets the tracked `currentChats` (throttled like [`update_status`](Self::update_status)).
    pub async fn set_current_chats(&self, n: u32) -> Result<(), Error> {
        self.command(PresenceCommand::Update {
            status: None,
            current_chats: Some(n),
        })
        .await
    }

    /// Untracks (when the throttle allows; leaving removes the presence anyway) and leaves the
    /// channel, and waits for it.
    pub async fn leave(self) -> Result<(), Error> {
        let (done, wait) = oneshot::channel();
        self.command(PresenceCommand::Leave { done }).await?;
        wait.await.map_err(|_| Error::Closed)
    }

    /// The realtime channel (`presence:chat:<siteId>`).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

impl Stream for AgentPresence {
    type Item = PresenceChange;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PresenceChange>> {
        self.events.poll_recv(cx)
    }
}

#[derive(Clone, Debug)]
struct Wanted {
    agent_id: String,
    status: AgentStatus,
    current_chats: u32,
}

impl Wanted {
    fn meta(&self) -> Value {
        json!({
            "agentId": self.agent_id,
            "status": self.status.as_str(),
            "currentChats": self.current_chats,
            "lastSeen": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        })
    }
}

/// Non-blocking delivery: a reader that does not keep up loses changes, and is told.
struct Sink {
    tx: mpsc::Sender<PresenceChange>,
    missed: u64,
}

impl Sink {
    fn send(&mut self, ev: PresenceChange) {
        use mpsc::error::TrySendError;
        if self.missed > 0 {
            match self.tx.try_send(PresenceChange::Lagged {
                missed: self.missed,
            }) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {
                    self.missed += 1;
                    return;
                }
                Err(TrySendError::Closed(_)) => return,
            }
        }
        if let Err(TrySendError::Full(_)) = self.tx.try_send(ev) {
            self.missed += 1;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Live,
    Interrupted,
}

struct Driver {
    realtime: RealtimeClient,
    channel: Channel,
    sub: Subscription,
    sink: Sink,
    commands: mpsc::Receiver<PresenceCommand>,
    online: watch::Sender<Vec<OnlineAgent>>,
    view: BTreeMap<String, OnlineAgent>,
    wanted: Wanted,
    dirty: bool,
    budget: Budget,
    snapshot: bool,
    synced: bool,
    phase: Phase,
    resync_after_subscribe: bool,
}

impl Driver {
    async fn run(mut self) {
        loop {
            let send_at = if self.dirty {
                Some(self.budget.next_free(Instant::now()))
            } else {
                None
            };
            tokio::select! {
                ev = self.sub.next() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => break,
                },
                cmd = self.commands.recv() => match cmd {
                    Some(PresenceCommand::Update { status, current_chats }) => {
                        if let Some(s) = status {
                            self.wanted.status = s;
                        }
                        if let Some(n) = current_chats {
                            self.wanted.current_chats = n;
                        }
                        self.dirty = true;
                    }
                    Some(PresenceCommand::Leave { done }) => {
                        self.leave().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        // The handle was dropped: leave as `leave()` would.
                        self.leave().await;
                        return;
                    }
                },
                _ = sleep_until_opt(send_at) => self.track().await,
            }
        }
        tracing::debug!("presence: the channel was removed");
    }

    async fn track(&mut self) {
        let now = Instant::now();
        if self.budget.next_free(now) > now {
            return;
        }
        self.budget.take(now);
        self.dirty = false;
        if let Err(e) = self.channel.track(self.wanted.meta()).await {
            tracing::warn!(error = %e, "presence: track failed; will retry");
            self.dirty = true;
            self.sink
                .send(PresenceChange::Problem(FeedProblem::ChannelFailed {
                    reason: e.to_string(),
                }));
        }
    }

    async fn leave(&mut self) {
        let now = Instant::now();
        if self.budget.next_free(now) <= now {
            self.budget.take(now);
            if let Err(e) = self.channel.untrack().await {
                tracing::debug!(error = %e, "presence: untrack on leave failed");
            }
        }
        if let Err(e) = self.realtime.remove_channel(&self.channel).await {
            tracing::debug!(error = %e, "presence: leaving failed");
        }
        tracing::debug!(agent = %self.wanted.agent_id, "presence left");
    }

    fn on_event(&mut self, ev: ChannelEvent) {
        match ev {
            ChannelEvent::Presence(PresenceEvent::Sync) | ChannelEvent::Lagged { .. } => {
                self.on_sync()
            }
            ChannelEvent::Status(s) => self.on_status(s),
            _ => {}
        }
    }

    fn on_status(&mut self, s: ChannelStatus) {
        match s {
            ChannelStatus::Subscribed if self.phase == Phase::Interrupted => {
                self.phase = Phase::Live;
                self.resync_after_subscribe = true;
            }
            ChannelStatus::Failed { reason } => {
                self.interrupted(reason.clone());
                self.sink
                    .send(PresenceChange::Problem(FeedProblem::ChannelFailed {
                        reason,
                    }));
            }
            ChannelStatus::Errored { reason, .. } => self.interrupted(reason),
            ChannelStatus::Joining | ChannelStatus::Joined | ChannelStatus::Closed => {
                self.interrupted(format!("{s:?}"))
            }
            _ => {}
        }
    }

    fn interrupted(&mut self, reason: String) {
        // Statuses from before the first sync belong to the initial join.
        if self.phase == Phase::Interrupted || !self.synced {
            return;
        }
        self.phase = Phase::Interrupted;
        tracing::info!(%reason, "presence interrupted");
        self.sink.send(PresenceChange::Interrupted { reason });
    }

    fn on_sync(&mut self) {
        let next = agents_of(&self.channel.presence_state());
        let first = !self.synced;
        self.synced = true;
        let mut changes = Vec::new();
        if !first || self.snapshot {
            for (k, a) in &next {
                match self.view.get(k) {
                    None => changes.push(PresenceChange::Joined(a.clone())),
                    Some(old) if old != a => changes.push(PresenceChange::Updated(a.clone())),
                    Some(_) => {}
                }
            }
            for (k, a) in &self.view {
                if !next.contains_key(k) {
                    changes.push(PresenceChange::Left(a.clone()));
                }
            }
        }
        let changed = changes.len();
        for c in changes {
            self.sink.send(c);
        }
        self.view = next;
        self.online
            .send_replace(self.view.values().cloned().collect::<Vec<_>>());
        let reason = if first && self.snapshot {
            Some(RecoveryReason::Initial)
        } else if self.resync_after_subscribe && self.phase == Phase::Live {
            self.resync_after_subscribe = false;
            Some(RecoveryReason::Resubscribed)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.sink.send(PresenceChange::Recovered {
                reason,
                changed,
                online: self.view.len(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::Presence;

    #[test]
    fn the_budget_allows_max_calls_per_window() {
        let t0 = Instant::now();
        let w = Duration::from_secs(30);
        let mut b = Budget::new(PresenceThrottle::new(4, w));
        for i in 0..4 {
            let now = t0 + Duration::from_secs(i);
            assert_eq!(b.next_free(now), now);
            b.take(now);
        }
        assert_eq!(b.next_free(t0 + Duration::from_secs(5)), t0 + w);
        assert_eq!(b.next_free(t0 + w), t0 + w);
        b.take(t0 + w);
        assert_eq!(
            b.next_free(t0 + w),
            t0 + Duration::from_secs(1) + w,
            "the window slides"
        );
    }

    #[test]
    fn agents_are_read_from_the_newest_valid_meta() {
        let meta = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let mut state = PresenceState::new();
        state.insert(
            "a1".into(),
            vec![
                Presence {
                    presence_ref: "1".into(),
                    meta: meta(json!({"agentId": "a1", "status": "online", "currentChats": 2})),
                },
                Presence {
                    presence_ref: "2".into(),
                    meta: meta(
                        json!({"agentId": "a1", "status": "away", "lastSeen": "2026-05-01T10:00:00.000Z"}),
                    ),
                },
            ],
        );
        state.insert(
            "bad".into(),
            vec![Presence {
                presence_ref: "3".into(),
                meta: meta(json!({"status": "sleeping"})),
            }],
        );
        let agents = agents_of(&state);
        assert_eq!(agents.len(), 1);
        let a = &agents["a1"];
        assert_eq!(a.status, AgentStatus::Away);
        assert_eq!(a.current_chats, 0);
        assert_eq!(a.connections, 2);
        assert!(a.last_seen.is_some());
    }

    #[test]
    fn the_tracked_meta_has_the_hook_fields() {
        let w = Wanted {
            agent_id: "a".into(),
            status: AgentStatus::Busy,
            current_chats: 3,
        };
        let m = w.meta();
        assert_eq!(m["agentId"], "a");
        assert_eq!(m["status"], "busy");
        assert_eq!(m["currentChats"], 3);
        let seen = m["lastSeen"].as_str().unwrap_or_default();
        assert!(seen.ends_with('Z') && seen.len() == 24, "{seen}");
    }
}
