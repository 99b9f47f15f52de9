//! The worker's routing decisions against the real stack, one sweep at a time
//! (`Worker::run_once`): department rules, least-loaded choice with ties by id, capacity,
//! agent status and activity, site filters, wait time, and what the sweep reports.

use crate::worker_support;

use livechat::worker::{Worker, WorkerConfig};
use livechat_stack::Stack;
use uuid::Uuid;
use worker_support::{init_tracing, service_client, Db};

#[tokio::test]
async fn one_sweep_routes_by_department_to_the_least_loaded_available_agent() {
    init_tracing();
    let stack = Stack::for_tests().await.expect("stack");
    let db = Db::new(&stack).await;
    let (site, visitor) = db.site("Routing").await;
    let (other_site, other_visitor) = db.site("Elsewhere").await;

    let sales = db.department(site, "Sales", Some(true)).await;
    let manual = db.department(site, "Manual", Some(false)).await;
    let unset = db.department(site, "Auto by default", None).await;
    let empty = db.department(site, "Nobody free", Some(true)).await;

    // Sales: only `sales_free` and `sales_busy` may take work.
    let sales_busy = db
        .agent(
            site,
            visitor,
            "sales busy",
            Some(sales),
            "online",
            true,
            Some(5),
            2,
        )
        .await;
    let sales_free = db
        .agent(
            site,
            visitor,
            "sales free",
            Some(sales),
            "online",
            true,
            Some(1),
            0,
        )
        .await;
    let sales_away = db
        .agent(
            site,
            visitor,
            "sales away",
            Some(sales),
            "away",
            true,
            Some(5),
            0,
        )
        .await;
    let sales_off = db
        .agent(
            site,
            visitor,
            "sales off",
            Some(sales),
            "offline",
            true,
            Some(5),
            0,
        )
        .await;
    let sales_gone = db
        .agent(
            site,
            visitor,
            "sales gone",
            Some(sales),
            "online",
            false,
            Some(5),
            0,
        )
        .await;
    let sales_full = db
        .agent(
            site,
            visitor,
            "sales full",
            Some(sales),
            "online",
            true,
            Some(2),
            2,
        )
        .await;
    let manual_agent = db
        .agent(
            site,
            visitor,
            "manual",
            Some(manual),
            "online",
            true,
            Some(5),
            0,
        )
        .await;
    let unset_agent = db
        .agent(
            site,
            visitor,
            "unset",
            Some(unset),
            "online",
            true,
            Some(1),
            0,
        )
        .await;
    let _empty_off = db
        .agent(
            site,
            visitor,
            "empty off",
            Some(empty),
            "busy",
            true,
            Some(5),
            0,
        )
        .await;
    let general = db
        .agent(site, visitor, "general", None, "online", true, Some(3), 1)
        .await;
    let elsewhere = db
        .agent(
            other_site,
            other_visitor,
            "elsewhere",
            None,
            "online",
            true,
            Some(5),
            0,
        )
        .await;

    // Oldest first: c1 … c7 in this order.
    let c1 = db.pending(site, visitor, Some(sales), 1, 100.0).await[0];
    let c2 = db.pending(site, visitor, Some(sales), 1, 90.0).await[0];
    let c3 = db.pending(site, visitor, Some(manual), 1, 80.0).await[0];
    let c4 = db.pending(site, visitor, Some(unset), 1, 70.0).await[0];
    let c5 = db.pending(site, visitor, Some(empty), 1, 60.0).await[0];
    let c6 = db.pending(site, visitor, None, 1, 50.0).await[0];
    let c7 = db.pending(site, visitor, None, 1, 40.0).await[0];
    let c8 = db.pending(other_site, other_visitor, None, 1, 30.0).await[0];

    // A worker for the first site only, in batches of two (so the sweep runs several).
    let worker = Worker::new(
        service_client(&stack),
        WorkerConfig::new().sites([site]).batch_size(2),
    )
    .expect("worker");
    let report = worker.run_once().await.expect("sweep");

    // c1: Sales' least loaded is `sales free` (0 of 1); c2: then `sales busy` (2 of 5), as
    // `sales free` is full now and the others are away, offline, deleted or full.
    assert_eq!(db.agent_of(c1).await, Some(sales_free));
    assert_eq!(db.agent_of(c2).await, Some(sales_busy));
    // c3: its department does not auto-assign.
    assert_eq!(db.agent_of(c3).await, None);
    // c4: auto_assign null counts as true.
    assert_eq!(db.agent_of(c4).await, Some(unset_agent));
    // c5: nobody in its department is online.
    assert_eq!(db.agent_of(c5).await, None);
    // c6: no department, so any agent of the site: the least loaded is `manual` (0), even though
    // its own department does not auto-assign.
    assert_eq!(db.agent_of(c6).await, Some(manual_agent));
    // c7: `manual` and `general` both have 1 now: the lower id wins.
    assert_eq!(db.agent_of(c7).await, Some(manual_agent.min(general)));
    // c8: another site, not served by this worker.
    assert_eq!(db.agent_of(c8).await, None);
    for idle in [sales_away, sales_off, sales_gone, sales_full, elsewhere] {
        let n = db
            .count(&format!(
                "select count(*) from public.mod_chat_conversations
                 where assigned_agent_id = '{idle}' and subject is null"
            ))
            .await;
        assert_eq!(n, 0, "agent {idle} must not get work");
    }

    // The wait is recorded, and what the sweep reports matches.
    let waited = db
        .count(&format!(
            "select wait_time_seconds::bigint from public.mod_chat_conversations where id = '{c1}'"
        ))
        .await;
    assert!((100..110).contains(&waited), "wait_time_seconds {waited}");
    let assigned: Vec<Uuid> = report
        .assignments
        .iter()
        .map(|a| a.conversation_id)
        .collect();
    assert_eq!(assigned, vec![c1, c2, c4, c6, c7]);
    let first = &report.assignments[0];
    assert_eq!(
        (first.agent_id, first.agent_load, first.agent_capacity),
        (sales_free, 1, 1)
    );
    assert!(first.latency_seconds >= 100.0, "{first:?}");
    assert_eq!(report.backlog, 1, "c5 waits for a free agent");
    assert_eq!(report.manual, 1, "c3 waits for manual routing");
    assert_eq!(report.waiting.len(), 1, "{:?}", report.waiting);
    assert_eq!(
        (
            report.waiting[0].site_id,
            report.waiting[0].department_id,
            report.waiting[0].conversations
        ),
        (site, Some(empty), 1)
    );
    assert!(report.batches >= 3, "batches of two: {}", report.batches);
    assert_eq!(worker.metrics().assignments(), 5);
    assert_eq!(worker.metrics().backlog(), 1);

    // A second sweep has nothing to do; a worker for every site takes c8.
    let again = worker.run_once().await.expect("second sweep");
    assert!(again.assignments.is_empty(), "{again:?}");
    let everywhere = Worker::new(service_client(&stack), WorkerConfig::new()).expect("worker");
    let report = everywhere.run_once().await.expect("sweep of every site");
    assert_eq!(report.assignments.len(), 1);
    assert_eq!(db.agent_of(c8).await, Some(elsewhere));

    assert_eq!(db.violations().await, Vec::<String>::new());
    stack.shutdown().await;
}

#[tokio::test]
async fn an_agent_is_never_given_more_than_max_concurrent_chats() {
    init_tracing();
    let stack = Stack::for_tests().await.expect("stack");
    let db = Db::new(&stack).await;
    let (site, visitor) = db.site("Capacity").await;
    let a = db
        .agent(site, visitor, "a", None, "online", true, Some(3), 1)
        .await;
    let b = db
        .agent(site, visitor, "b", None, "online", true, Some(2), 0)
        .await;
    let _zero = db
        .agent(site, visitor, "zero", None, "online", true, Some(0), 0)
        .await;
    let pending = db.pending(site, visitor, None, 10, 5.0).await;

    let worker = Worker::new(service_client(&stack), WorkerConfig::new()).expect("worker");
    let report = worker.run_once().await.expect("sweep");
    // a had 1 of 3, b 0 of 2: four free slots in all.
    assert_eq!(report.assignments.len(), 4);
    assert_eq!(db.assigned_count(&pending).await, 4);
    assert_eq!(report.backlog, 6);
    for (agent, max) in [(a, 3), (b, 2)] {
        let n = db
            .count(&format!(
                "select current_chat_count::bigint from public.mod_chat_agents where id = '{agent}'"
            ))
            .await;
        assert_eq!(n, max);
    }
    // Loads stay balanced on the way: b (0) first, then a and b alternate by load and id.
    let loads: Vec<i32> = report.assignments.iter().map(|x| x.agent_load).collect();
    assert_eq!(loads.iter().filter(|l| **l == 1).count(), 1, "{loads:?}");
    assert_eq!(db.violations().await, Vec::<String>::new());
    stack.shutdown().await;
}
