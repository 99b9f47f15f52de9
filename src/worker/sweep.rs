//! What a sweep is made of: the batch function's arguments and result (one call of
//! `mod_chat_worker_assign_pending` = one transaction), the report of a sweep, and the decision
//! logs.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The database function behind a batch (migration `20260101000600_worker.sql`).
pub(crate) const ASSIGN_FUNCTION: &str = "mod_chat_worker_assign_pending";

/// The arguments of [`ASSIGN_FUNCTION`].
#[derive(Serialize)]
pub(crate) struct BatchArgs<'a> {
    /// `null` for every site.
    pub(crate) p_site_ids: Option<&'a [Uuid]>,
    pub(crate) p_limit: u32,
}

/// What one batch did (the function's JSON result).
#[derive(Debug, Deserialize)]
pub(crate) struct Batch {
    pub(crate) assigned: Vec<Assignment>,
    #[serde(default)]
    pub(crate) waiting: Vec<WaitingPool>,
    pub(crate) backlog: u64,
    pub(crate) manual: u64,
    pub(crate) contended: u64,
    pub(crate) held: u64,
    pub(crate) more: bool,
}

/// One assignment decision: which agent got which conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Assignment {
    /// The conversation, now active.
    pub conversation_id: Uuid,
    /// Its site.
    pub site_id: Uuid,
    /// Its department (`None`: routed to any agent of the site).
    pub department_id: Option<Uuid>,
    /// The agent it went to: the least-loaded online, active agent with a free slot.
    pub agent_id: Uuid,
    /// The agent's display name.
    pub agent_name: String,
    /// The agent's `current_chat_count` after the assignment.
    pub agent_load: i32,
    /// The agent's `max_concurrent_chats`.
    pub agent_capacity: i32,
    /// The wait recorded on the conversation (`wait_time_seconds`: now − created_at).
    pub wait_time_seconds: i64,
    /// Creation → assignment, with sub-second precision.
    pub latency_seconds: f64,
}

/// A routing pool that had no free agent: its conversations keep waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WaitingPool {
    /// The site.
    pub site_id: Uuid,
    /// The department (`None`: conversations without a department, which any agent of the site
    /// may take).
    pub department_id: Option<Uuid>,
    /// How many of its conversations the sweep saw waiting.
    pub conversations: u64,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Every assignment made, in order.
    pub assignments: Vec<Assignment>,
    /// Pools without a free agent, as the last batch saw them.
    pub waiting: Vec<WaitingPool>,
    /// Pending, unassigned conversations routed by auto-assignment that are left waiting.
    pub backlog: u64,
    /// Pending, unassigned conversations of departments that do not auto-assign (left alone).
    pub manual: u64,
    /// Conversations left because their free agents were held by another transaction (after
    /// the sweep's retries); the run loop tries again shortly.
    pub contended: u64,
    /// Assignment batches (transactions) the sweep ran.
    pub batches: u32,
    /// The sweep stopped early because shutdown was requested.
    pub interrupted: bool,
}

impl SweepReport {
    pub(crate) fn absorb(&mut self, batch: Batch) {
        self.backlog = batch.backlog.saturating_sub(batch.assigned.len() as u64);
        self.manual = batch.manual;
        self.contended = batch.contended;
        self.waiting = batch.waiting;
        self.assignments.extend(batch.assigned);
        self.batches += 1;
    }
}

/// Logs one assignment decision.
pub(crate) fn log_assignment(a: &Assignment) {
    let department = a.department_id.map(|d| d.to_string());
    tracing::info!(
        conversation_id = %a.conversation_id,
        site_id = %a.site_id,
        department_id = %department.as_deref().unwrap_or("none"),
        agent_id = %a.agent_id,
        agent_name = %a.agent_name,
        agent_load = a.agent_load,
        agent_capacity = a.agent_capacity,
        wait_time_seconds = a.wait_time_seconds,
        "assigned conversation to the least-loaded available agent"
    );
}

/// Logs the pools that wait for a free agent: at info level when they changed since the
/// previous sweep, else at debug level (a backlog with no agent online would otherwise repeat
/// the same lines every interval).
pub(crate) fn log_waiting(waiting: &[WaitingPool], previous: &[WaitingPool]) {
    let changed = waiting != previous;
    for w in waiting {
        let department = w.department_id.map(|d| d.to_string());
        let department = department.as_deref().unwrap_or("none");
        if changed {
            tracing::info!(
                site_id = %w.site_id,
                department_id = %department,
                waiting = w.conversations,
                "conversations keep waiting: no online, active agent with a free slot"
            );
        } else {
            tracing::debug!(
                site_id = %w.site_id,
                department_id = %department,
                waiting = w.conversations,
                "conversations keep waiting: no online, active agent with a free slot"
            );
        }
    }
    if changed && waiting.is_empty() && !previous.is_empty() {
        tracing::info!("no conversation waits for a free agent any more");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batch_results_decode() {
        let b: Batch = serde_json::from_value(json!({
            "assigned": [{
                "conversation_id": "20000000-0000-4000-8000-000000000101",
                "site_id": "b0000000-0000-4000-8000-000000000001",
                "department_id": null,
                "agent_id": "e0000000-0000-4000-8000-000000000101",
                "agent_name": "Alice", "agent_load": 2, "agent_capacity": 5,
                "wait_time_seconds": 3, "latency_seconds": 3.25,
                "created_at": "2026-01-01T00:00:00+00:00"
            }],
            "waiting": [{"site_id": "b0000000-0000-4000-8000-000000000001",
                         "department_id": "d0000000-0000-4000-8000-000000000102", "conversations": 4}],
            "backlog": 6, "manual": 1, "contended": 0, "held": 0, "more": false
        }))
        .unwrap();
        let mut r = SweepReport::default();
        r.absorb(b);
        assert_eq!(r.assignments.len(), 1);
        assert_eq!(r.assignments[0].agent_name, "Alice");
        assert_eq!(r.backlog, 5);
        assert_eq!(r.waiting[0].conversations, 4);
        assert_eq!(r.batches, 1);
    }
}
