//! Several workers against one database, and the realtime changes that drive a worker.
//!
//! * Four workers (separate tasks, each with its own client, different batch sizes, two with
//!   realtime and two sweeping only) over hundreds of pending conversations and a few dozen
//!   agents of mixed departments, statuses and capacities, while conversations keep arriving,
//!   agents come online and slots are freed: every assignable conversation is assigned exactly
//!   once, nobody above capacity, routing rules kept, the invariant holds.
//! * With the safety-net sweep out of the picture (an hour), realtime alone gets a new
//!   conversation, an agent coming online and a freed slot assigned.

use crate::worker_support;

use std::time::Duration;

use livechat::worker::{Worker, WorkerConfig};
use livechat_stack::Stack;
use tokio::sync::watch;
use uuid::Uuid;
use worker_support::{init_tracing, service_client, wait_until, Db, DEADLINE};

/// A small deterministic generator, so that a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

struct Running {
    worker: Worker,
    task: tokio::task::JoinHandle<livechat::Result<()>>,
}

fn start(worker: Worker, stop: &watch::Receiver<bool>) -> Running {
    let mut stop = stop.clone();
    let w = worker.clone();
    let task = tokio::spawn(async move {
        w.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
    });
    Running { worker, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_assign_every_assignable_conversation_exactly_once() {
    init_tracing();
    let stack = Stack::for_tests().await.expect("stack");
    let db = Db::new(&stack).await;
    let mut rng = Lcg(0x5eed);

    let (site_a, visitor_a) = db.site("Site A").await;
    let (site_b, visitor_b) = db.site("Site B").await;
    let d1 = db.department(site_a, "Sales", Some(true)).await;
    let d2 = db.department(site_a, "Support", None).await;
    let dm = db.department(site_a, "Manual", Some(false)).await;
    let de = db.department(site_a, "Night shift", Some(true)).await;

    // A few dozen agents: departments, statuses, activity and capacities mixed.
    let statuses = [
        "online", "online", "online", "online", "away", "busy", "offline",
    ];
    let capacities = [0, 2, 5, 10, 20, 30];
    let mut offline = Vec::new();
    let pools: [(Uuid, Uuid, Option<Uuid>, usize); 5] = [
        (site_a, visitor_a, Some(d1), 9),
        (site_a, visitor_a, Some(d2), 9),
        (site_a, visitor_a, None, 4),
        (site_a, visitor_a, Some(dm), 2),
        (site_b, visitor_b, None, 8),
    ];
    for (site, visitor, dept, n) in pools {
        for i in 0..n {
            let status = statuses[rng.next(statuses.len() as u64) as usize];
            let active = rng.next(10) != 0;
            let max = capacities[rng.next(capacities.len() as u64) as usize];
            let load = rng.next(max as u64 / 2 + 1) as i32;
            let id = db
                .agent(
                    site,
                    visitor,
                    &format!("agent {i}"),
                    dept,
                    status,
                    active,
                    Some(max),
                    load,
                )
                .await;
            if status == "offline" && active && max > load {
                offline.push(id);
            }
        }
    }
    // The night shift is all offline.
    for i in 0..2 {
        db.agent(
            site_a,
            visitor_a,
            &format!("night {i}"),
            Some(de),
            "offline",
            true,
            Some(5),
            0,
        )
        .await;
    }

    // Hundreds of pending conversations, oldest first in random pools.
    let targets: [(Uuid, Uuid, Option<Uuid>); 6] = [
        (site_a, visitor_a, Some(d1)),
        (site_a, visitor_a, Some(d2)),
        (site_a, visitor_a, None),
        (site_a, visitor_a, Some(dm)),
        (site_a, visitor_a, Some(de)),
        (site_b, visitor_b, None),
    ];
    for i in 0..60 {
        let (site, visitor, dept) = targets[rng.next(targets.len() as u64) as usize];
        db.pending(site, visitor, dept, 6, 600.0 - i as f64).await;
    }

    // Four workers, each with its own client.
    let (stop_tx, stop) = watch::channel(false);
    let running: Vec<Running> = [(5, true), (7, false), (11, true), (50, false)]
        .into_iter()
        .map(|(batch, realtime)| {
            let config = WorkerConfig::new()
                .batch_size(batch)
                .realtime(realtime)
                .sweep_interval(Duration::from_millis(300));
            start(
                Worker::new(service_client(&stack), config).expect("worker"),
                &stop,
            )
        })
        .collect();

    // Meanwhile: more conversations arrive, agents come online, slots are freed.
    for i in 0..10 {
        let (site, visitor, dept) = targets[rng.next(targets.len() as u64) as usize];
        db.pending(site, visitor, dept, 10, 0.0).await;
        if let Some(agent) = offline.get(i) {
            db.client
                .execute(
                    "update public.mod_chat_agents set status = 'online' where id = $1::text::uuid",
                    &[&agent.to_string()],
                )
                .await
                .expect("agent online");
        }
        db.client
            .batch_execute(
                "select public.mod_chat_resolve_conversation(id) from (
                   select id from public.mod_chat_conversations
                   where subject = 'preloaded' and status = 'active' order by id limit 3) c",
            )
            .await
            .expect("resolve");
    }

    wait_until(
        DEADLINE,
        "every assignable conversation assigned",
        || async { db.assignable_left().await == 0 },
    )
    .await;
    let _ = stop_tx.send(true);
    let mut made = 0;
    for r in running {
        tokio::time::timeout(DEADLINE, r.task)
            .await
            .expect("worker stops")
            .expect("task")
            .expect("run");
        made += r.worker.metrics().assignments();
        assert_eq!(r.worker.metrics().failed_sweeps(), 0);
    }

    // Exactly once: the workers' assignments add up to the assigned conversations, and the
    // database could not have recorded a second assignment of one conversation without breaking
    // the invariant checked below.
    let assigned = db
        .count(
            "select count(*) from public.mod_chat_conversations
             where subject is null and assigned_agent_id is not null",
        )
        .await;
    assert_eq!(made as i64, assigned);
    assert!(assigned > 100, "only {assigned} assigned");
    assert_eq!(db.assignable_left().await, 0);
    let wrong = db
        .count(&format!(
            "select count(*) from public.mod_chat_conversations c
             join public.mod_chat_agents a on a.id = c.assigned_agent_id
             where c.subject is null
               and (c.department_id in ('{dm}', '{de}') or not a.is_active or a.status <> 'online'
                    or c.status <> 'active' or c.wait_time_seconds is null)"
        ))
        .await;
    assert_eq!(wrong, 0, "assignments against the routing rules");
    assert_eq!(db.violations().await, Vec::<String>::new());
    stack.shutdown().await;
}

#[tokio::test]
async fn realtime_changes_get_conversations_assigned_without_waiting_for_the_sweep() {
    init_tracing();
    let stack = Stack::for_tests().await.expect("stack");
    let db = Db::new(&stack).await;
    let (site, visitor) = db.site("Events").await;
    let agent = db
        .agent(site, visitor, "ann", None, "offline", true, Some(1), 0)
        .await;

    // The safety net is an hour away: only realtime can trigger the sweeps below.
    let (stop_tx, stop) = watch::channel(false);
    let config = WorkerConfig::new()
        .sites([site])
        .sweep_interval(Duration::from_secs(3600));
    let r = start(
        Worker::new(service_client(&stack), config).expect("worker"),
        &stop,
    );
    let m = r.worker.metrics().clone();
    wait_until(DEADLINE, "subscribed, first sweep done", || async {
        m.realtime_subscribed() && m.agent_changes_subscribed() && m.sweeps() >= 1
    })
    .await;

    // A new conversation wakes the worker, but nobody is online: it is seen waiting.
    let first = db.pending(site, visitor, None, 1, 0.0).await[0];
    wait_until(DEADLINE, "the new conversation seen waiting", || async {
        m.backlog() == 1
    })
    .await;
    assert_eq!(db.agent_of(first).await, None);

    // The agent comes online: assigned.
    db.client
        .execute(
            "update public.mod_chat_agents set status = 'online' where id = $1::text::uuid",
            &[&agent.to_string()],
        )
        .await
        .expect("online");
    wait_until(DEADLINE, "assigned once the agent is online", || async {
        db.agent_of(first).await == Some(agent)
    })
    .await;

    // Full (1 of 1): a second conversation waits until the first is resolved.
    let second = db.pending(site, visitor, None, 1, 0.0).await[0];
    wait_until(DEADLINE, "the second one seen", || async {
        m.backlog() == 1
    })
    .await;
    assert_eq!(db.agent_of(second).await, None);
    db.client
        .execute(
            "select public.mod_chat_resolve_conversation($1::text::uuid)",
            &[&first.to_string()],
        )
        .await
        .expect("resolve");
    wait_until(DEADLINE, "assigned once a slot is free", || async {
        db.agent_of(second).await == Some(agent)
    })
    .await;

    // A conversation of another site is not this worker's business.
    let (other, other_visitor) = db.site("Other").await;
    db.agent(
        other,
        other_visitor,
        "bob",
        None,
        "online",
        true,
        Some(5),
        0,
    )
    .await;
    let foreign = db.pending(other, other_visitor, None, 1, 0.0).await[0];

    // New pending conversations are assigned as they arrive (a fresh agent with room).
    db.client
        .execute(
            "update public.mod_chat_agents set max_concurrent_chats = 4 where id = $1::text::uuid",
            &[&agent.to_string()],
        )
        .await
        .expect("capacity");
    let burst = db.pending(site, visitor, None, 3, 0.0).await;
    wait_until(DEADLINE, "the burst assigned", || async {
        db.assigned_count(&burst).await == 3
    })
    .await;
    assert_eq!(db.agent_of(foreign).await, None);
    assert!(m.events() >= 4, "events {}", m.events());

    let _ = stop_tx.send(true);
    tokio::time::timeout(DEADLINE, r.task)
        .await
        .expect("stops")
        .expect("task")
        .expect("run");
    assert_eq!(db.violations().await, Vec::<String>::new());
    stack.shutdown().await;
}
