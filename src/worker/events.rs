//! The worker's ears: realtime `postgres_changes` that can make a waiting conversation
//! assignable, turned into wake-ups of the sweep loop.
//!
//! Two channels, so that one failing does not silence the other:
//! * conversations (`INSERT`, `UPDATE` on `mod_chat_conversations`): a new pending conversation;
//!   one that became pending and unassigned again; one that gave its agent's slot back
//!   (resolved, closed, missed, transferred, unassigned);
//! * agents (`INSERT`, `UPDATE` on `mod_chat_agents`, published by the worker's migration): an
//!   agent that became available (came online, was re-activated, got a higher capacity, a
//!   slot back or another department).
//!
//! Wake-ups coalesce ([`Notify`] keeps at most one), so a burst of changes costs one sweep. After
//! every (re)subscription, and when events were dropped, the loop is woken too, to catch up on
//! whatever happened while the worker was not listening.

use std::collections::HashSet;
use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use uuid::Uuid;

use super::metrics::{ErrorSource, Metrics, Trigger};
use crate::chat::models::ConversationStatus;
use crate::realtime::{
    ChannelConfig, ChannelEvent, ChannelStatus, ConnectionState, EventFilter, PostgresChange,
    PostgresChangeEvent, PostgresChangesFilter, RealtimeClient,
};

const CONVERSATIONS: &str = "mod_chat_conversations";
const AGENTS: &str = "mod_chat_agents";
/// Realtime accepts at most 100 values in an `in` filter.
const MAX_IN_FILTER: usize = 100;

/// What the listener hears, from its three sources.
enum Heard {
    Conversations(ChannelEvent),
    Agents(ChannelEvent),
    Connection(ConnectionState),
}

/// Listens until dropped (the worker aborts the task on shutdown). Never fails: setup errors
/// are logged and counted, and the sweep keeps the worker going without realtime.
pub(crate) async fn listen(
    client: RealtimeClient,
    sites: Vec<Uuid>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    let site_filter = match sites.as_slice() {
        [] => None,
        [one] => Some(format!("site_id=eq.{one}")),
        some if some.len() <= MAX_IN_FILTER => Some(format!(
            "site_id=in.({})",
            some.iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )),
        // Too many for the server's filter: take every change and filter here.
        _ => None,
    };
    let site_set: HashSet<Uuid> = sites.into_iter().collect();
    let instance = Uuid::new_v4();

    let mut sources: Vec<BoxStream<'static, Heard>> = Vec::new();
    sources.push(client.connection_states().map(Heard::Connection).boxed());
    let mut channels = Vec::new();
    for table in [CONVERSATIONS, AGENTS] {
        let config = [PostgresChangeEvent::Insert, PostgresChangeEvent::Update]
            .into_iter()
            .fold(ChannelConfig::new(), |config, event| {
                let mut f = PostgresChangesFilter::new(event, "public").table(table);
                if let Some(sf) = &site_filter {
                    f = f.filter(sf.clone());
                }
                config.postgres_changes(f)
            });
        let name = format!("livechat-worker:{instance}:{table}");
        let channel = match client.channel(&name, config).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(table, error = %e, "realtime: could not create the channel; relying on the sweep");
                metrics.error(ErrorSource::Realtime);
                continue;
            }
        };
        // Listen before subscribing, so nothing is missed.
        match channel.on(EventFilter::All).await {
            Ok(events) => sources.push(if table == AGENTS {
                events.map(Heard::Agents).boxed()
            } else {
                events.map(Heard::Conversations).boxed()
            }),
            Err(e) => {
                tracing::warn!(table, error = %e, "realtime: could not listen; relying on the sweep");
                metrics.error(ErrorSource::Realtime);
                continue;
            }
        }
        channels.push((table, channel));
    }
    // Subscribing waits for the server; a failed first attempt is retried by the channel in
    // the background (its status events tell us when it succeeds).
    for (table, channel) in &channels {
        let (table, channel) = (*table, channel.clone());
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = channel.subscribe().await {
                tracing::warn!(table, error = %e, "realtime: subscribing failed; retrying in the background, sweeping meanwhile");
                metrics.error(ErrorSource::Realtime);
            }
        });
    }

    let mut heard = stream::select_all(sources);
    let mut was_connected = false;
    while let Some(h) = heard.next().await {
        match h {
            Heard::Connection(state) => on_connection(state, &mut was_connected, &metrics),
            Heard::Conversations(ev) => on_channel(ev, CONVERSATIONS, &site_set, &wake, &metrics),
            Heard::Agents(ev) => on_channel(ev, AGENTS, &site_set, &wake, &metrics),
        }
    }
    // Only reached if the client's task stopped: nothing more will come.
    tracing::warn!("realtime: the client stopped; relying on the sweep");
    metrics.set_connected(false);
}

fn on_connection(state: ConnectionState, was_connected: &mut bool, metrics: &Metrics) {
    match state {
        ConnectionState::Connected => {
            metrics.set_connected(true);
            if *was_connected {
                metrics.reconnected();
                tracing::info!("realtime: reconnected");
            } else {
                tracing::info!("realtime: connected");
            }
            *was_connected = true;
        }
        ConnectionState::Reconnecting { attempt, reason } => {
            metrics.set_connected(false);
            if attempt == 1 {
                metrics.error(ErrorSource::Realtime);
                tracing::warn!(%reason, "realtime: connection lost; reconnecting (sweeping meanwhile)");
            } else {
                tracing::debug!(attempt, %reason, "realtime: still reconnecting");
            }
        }
        ConnectionState::Failed { reason } => {
            metrics.set_connected(false);
            metrics.error(ErrorSource::Realtime);
            tracing::error!(%reason, "realtime: the server refused the connection for good; relying on the sweep");
        }
        ConnectionState::Disconnected | ConnectionState::Connecting => {
            metrics.set_connected(false);
        }
    }
}

fn on_channel(
    event: ChannelEvent,
    table: &'static str,
    sites: &HashSet<Uuid>,
    wake: &Notify,
    metrics: &Metrics,
) {
    let agents = table == AGENTS;
    match event {
        ChannelEvent::PostgresChange(change) => {
            if !change.errors.is_empty() {
                tracing::debug!(table, errors = ?change.errors, "realtime: change with errors; sweeping to be safe");
                wake.notify_one();
                return;
            }
            if let Some(trigger) = classify(&change, sites) {
                let id = change
                    .record
                    .as_ref()
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                tracing::debug!(
                    table,
                    id,
                    reason = trigger.as_str(),
                    "realtime: change calls for a sweep"
                );
                metrics.event(trigger);
                wake.notify_one();
            }
        }
        ChannelEvent::Status(status) => match status {
            ChannelStatus::Subscribed => {
                metrics.set_subscribed(agents, true);
                tracing::info!(table, "realtime: subscribed; catching up with a sweep");
                wake.notify_one();
            }
            ChannelStatus::PostgresChangesFailed { reason } => {
                metrics.set_subscribed(agents, false);
                metrics.error(ErrorSource::Realtime);
                if agents {
                    tracing::warn!(table, %reason, "realtime: agent changes unavailable (is mod_chat_agents in the supabase_realtime publication? see migration 20260101000600_worker.sql); agents coming online are noticed by the sweep");
                } else {
                    tracing::warn!(table, %reason, "realtime: conversation changes unavailable; relying on the sweep");
                }
            }
            ChannelStatus::Errored {
                reason, attempt, ..
            } => {
                metrics.set_subscribed(agents, false);
                if attempt <= 1 {
                    metrics.error(ErrorSource::Realtime);
                    tracing::warn!(table, %reason, "realtime: channel error; rejoining");
                }
            }
            ChannelStatus::Failed { reason } => {
                metrics.set_subscribed(agents, false);
                metrics.error(ErrorSource::Realtime);
                tracing::error!(table, %reason, "realtime: channel refused for good; relying on the sweep");
            }
            ChannelStatus::Closed | ChannelStatus::Joining | ChannelStatus::Leaving => {
                metrics.set_subscribed(agents, false);
            }
            _ => {}
        },
        ChannelEvent::Lagged { missed } => {
            tracing::warn!(
                table,
                missed,
                "realtime: events dropped; sweeping to catch up"
            );
            wake.notify_one();
        }
        _ => {}
    }
}

fn text<'a>(row: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    row.get(key).and_then(Value::as_str)
}

fn int(row: &Map<String, Value>, key: &str, default: i64) -> i64 {
    row.get(key).and_then(Value::as_i64).unwrap_or(default)
}

/// Whether a status holds an agent slot ([`ConversationStatus::holds_agent_slot`]); a missing
/// or unknown status does not.
fn holds_slot(status: Option<&str>) -> bool {
    status
        .and_then(|s| s.parse::<ConversationStatus>().ok())
        .is_some_and(|s| s.holds_agent_slot())
}

fn waits_for_agent(row: &Map<String, Value>) -> bool {
    text(row, "status") == Some("pending")
        && row.get("assigned_agent_id").is_some_and(Value::is_null)
}

fn agent_available(row: &Map<String, Value>) -> bool {
    row.get("is_active").and_then(Value::as_bool) == Some(true)
        && text(row, "status") == Some("online")
        && int(row, "current_chat_count", 0) < int(row, "max_concurrent_chats", 5)
}

/// Whether a change can make a waiting conversation assignable, and why.
///
/// Old rows are complete when the table has `REPLICA IDENTITY FULL` (both chat tables do after
/// the migrations); with only the primary key in the old row, the decision errs on the side of
/// sweeping.
pub(crate) fn classify(change: &PostgresChange, sites: &HashSet<Uuid>) -> Option<Trigger> {
    let new = change.record.as_ref()?;
    if !sites.is_empty() {
        let site = text(new, "site_id").and_then(|s| s.parse::<Uuid>().ok());
        if !site.is_some_and(|s| sites.contains(&s)) {
            return None;
        }
    }
    // Old values are known only for columns the old row carries.
    let old = change
        .old_record
        .as_ref()
        .filter(|o| o.contains_key("status"));
    match (change.table.as_str(), change.event) {
        (CONVERSATIONS, PostgresChangeEvent::Insert) => {
            waits_for_agent(new).then_some(Trigger::NewPending)
        }
        (CONVERSATIONS, PostgresChangeEvent::Update) => {
            if waits_for_agent(new) {
                return match old {
                    Some(o) if waits_for_agent(o) => None,
                    _ => Some(Trigger::Requeued),
                };
            }
            match old {
                Some(o) => {
                    let held = holds_slot(text(o, "status"))
                        && o.get("assigned_agent_id").is_some_and(|a| !a.is_null());
                    let still = holds_slot(text(new, "status"))
                        && new.get("assigned_agent_id") == o.get("assigned_agent_id");
                    (held && !still).then_some(Trigger::SlotFreed)
                }
                None => (!holds_slot(text(new, "status"))).then_some(Trigger::SlotFreed),
            }
        }
        (AGENTS, PostgresChangeEvent::Insert) => {
            agent_available(new).then_some(Trigger::AgentAvailable)
        }
        (AGENTS, PostgresChangeEvent::Update) => {
            if !agent_available(new) {
                return None;
            }
            let became = match old {
                None => true,
                Some(o) => {
                    !agent_available(o)
                        || int(o, "current_chat_count", 0) > int(new, "current_chat_count", 0)
                        || int(o, "max_concurrent_chats", 5) < int(new, "max_concurrent_chats", 5)
                        || o.get("department_id") != new.get("department_id")
                }
            };
            became.then_some(Trigger::AgentAvailable)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SITE: &str = "b0000000-0000-4000-8000-000000000001";
    const AGENT: &str = "e0000000-0000-4000-8000-000000000101";

    fn change(
        table: &str,
        event: PostgresChangeEvent,
        new: Value,
        old: Option<Value>,
    ) -> PostgresChange {
        let ids = [json!(1)];
        let filters = [PostgresChangesFilter::new(
            PostgresChangeEvent::All,
            "public",
        )];
        let kind = event.as_str();
        let mut data = json!({"schema": "public", "table": table, "type": kind, "record": new});
        if let Some(o) = old {
            data["old_record"] = o;
        }
        PostgresChange::parse(&json!({"ids": [1], "data": data}), &filters, &ids).unwrap()
    }

    fn conv(status: &str, agent: Option<&str>) -> Value {
        json!({"id": "c1", "site_id": SITE, "status": status, "assigned_agent_id": agent})
    }

    fn agent(status: &str, active: bool, count: i64, max: i64) -> Value {
        json!({"id": AGENT, "site_id": SITE, "status": status, "is_active": active,
               "current_chat_count": count, "max_concurrent_chats": max, "department_id": null})
    }

    fn all() -> HashSet<Uuid> {
        HashSet::new()
    }

    use PostgresChangeEvent::{Insert, Update};

    #[test]
    fn new_and_requeued_pending_conversations_wake_the_worker() {
        let c = change(CONVERSATIONS, Insert, conv("pending", None), None);
        assert_eq!(classify(&c, &all()), Some(Trigger::NewPending));
        let c = change(CONVERSATIONS, Insert, conv("pending", Some(AGENT)), None);
        assert_eq!(classify(&c, &all()), None);
        // Reopened without an agent.
        let c = change(
            CONVERSATIONS,
            Update,
            conv("pending", None),
            Some(conv("closed", Some(AGENT))),
        );
        assert_eq!(classify(&c, &all()), Some(Trigger::Requeued));
        // A message in a conversation that was already waiting: nothing new.
        let c = change(
            CONVERSATIONS,
            Update,
            conv("pending", None),
            Some(conv("pending", None)),
        );
        assert_eq!(classify(&c, &all()), None);
        // Without old values: sweep.
        let c = change(
            CONVERSATIONS,
            Update,
            conv("pending", None),
            Some(json!({"id": "c1"})),
        );
        assert_eq!(classify(&c, &all()), Some(Trigger::Requeued));
    }

    #[test]
    fn freed_slots_wake_the_worker() {
        for status in ["resolved", "closed", "missed"] {
            let c = change(
                CONVERSATIONS,
                Update,
                conv(status, Some(AGENT)),
                Some(conv("active", Some(AGENT))),
            );
            assert_eq!(classify(&c, &all()), Some(Trigger::SlotFreed), "{status}");
        }
        // Transferred: the previous agent freed a slot.
        let c = change(
            CONVERSATIONS,
            Update,
            conv("active", Some("other")),
            Some(conv("active", Some(AGENT))),
        );
        assert_eq!(classify(&c, &all()), Some(Trigger::SlotFreed));
        // Assignment (pending → active, same agent) and a new message: no slot freed.
        let c = change(
            CONVERSATIONS,
            Update,
            conv("active", Some(AGENT)),
            Some(conv("pending", Some(AGENT))),
        );
        assert_eq!(classify(&c, &all()), None);
        let c = change(
            CONVERSATIONS,
            Update,
            conv("active", Some(AGENT)),
            Some(conv("active", Some(AGENT))),
        );
        assert_eq!(classify(&c, &all()), None);
        // The worker's own assignment: pending/unassigned → active.
        let c = change(
            CONVERSATIONS,
            Update,
            conv("active", Some(AGENT)),
            Some(conv("pending", None)),
        );
        assert_eq!(classify(&c, &all()), None);
        // A resolved conversation edited again: nothing was held.
        let c = change(
            CONVERSATIONS,
            Update,
            conv("resolved", Some(AGENT)),
            Some(conv("resolved", Some(AGENT))),
        );
        assert_eq!(classify(&c, &all()), None);
    }

    #[test]
    fn agents_becoming_available_wake_the_worker() {
        let cases = [
            (
                agent("online", true, 1, 5),
                agent("offline", true, 1, 5),
                true,
            ),
            (
                agent("online", true, 1, 5),
                agent("online", false, 1, 5),
                true,
            ),
            (
                agent("online", true, 4, 5),
                agent("online", true, 5, 5),
                true,
            ),
            (
                agent("online", true, 2, 5),
                agent("online", true, 3, 5),
                true,
            ),
            (
                agent("online", true, 3, 6),
                agent("online", true, 3, 5),
                true,
            ),
            // The worker's own assignment: one more chat, still room. Not a new opportunity.
            (
                agent("online", true, 3, 5),
                agent("online", true, 2, 5),
                false,
            ),
            (
                agent("away", true, 0, 5),
                agent("offline", true, 0, 5),
                false,
            ),
            (
                agent("online", true, 5, 5),
                agent("online", true, 4, 5),
                false,
            ),
            (
                agent("online", false, 0, 5),
                agent("online", true, 0, 5),
                false,
            ),
        ];
        for (new, old, wakes) in cases {
            let c = change(AGENTS, Update, new.clone(), Some(old.clone()));
            assert_eq!(
                classify(&c, &all()) == Some(Trigger::AgentAvailable),
                wakes,
                "{new} after {old}"
            );
        }
        let c = change(AGENTS, Insert, agent("online", true, 0, 5), None);
        assert_eq!(classify(&c, &all()), Some(Trigger::AgentAvailable));
        let c = change(
            AGENTS,
            Update,
            agent("online", true, 0, 5),
            Some(json!({"id": AGENT})),
        );
        assert_eq!(classify(&c, &all()), Some(Trigger::AgentAvailable));
    }

    #[test]
    fn changes_of_other_sites_are_ignored() {
        let mine: HashSet<Uuid> = ["b0000000-0000-4000-8000-000000000002".parse().unwrap()].into();
        let c = change(CONVERSATIONS, Insert, conv("pending", None), None);
        assert_eq!(classify(&c, &mine), None);
        let theirs: HashSet<Uuid> = [SITE.parse().unwrap()].into();
        assert_eq!(classify(&c, &theirs), Some(Trigger::NewPending));
    }

    #[test]
    fn only_pending_active_and_waiting_hold_a_slot() {
        for held in ["pending", "active", "waiting"] {
            assert!(holds_slot(Some(held)), "{held}");
        }
        for free in ["resolved", "closed", "missed", "transferred", "Pending", ""] {
            assert!(!holds_slot(Some(free)), "{free}");
        }
        assert!(!holds_slot(None));
    }
}
