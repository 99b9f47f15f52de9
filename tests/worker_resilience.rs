//! The worker survives what a long-running process meets: the realtime server dropping every
//! connection, and PostgreSQL restarting under it.

use crate::worker_support;

use std::time::Duration;

use livechat::realtime::Backoff;
use livechat::worker::{Worker, WorkerConfig};
use livechat_stack::{Stack, StackOptions};
use tokio::sync::watch;
use worker_support::{connect, init_tracing, service_client, wait_until, Db, DEADLINE};

fn spawn_worker(
    worker: &Worker,
    stop: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<livechat::Result<()>> {
    let (w, mut stop) = (worker.clone(), stop.clone());
    tokio::spawn(async move {
        w.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
    })
}

#[tokio::test]
async fn assignments_continue_after_the_realtime_server_drops_every_connection() {
    init_tracing();
    let stack = Stack::for_tests().await.expect("stack");
    let db = Db::new(&stack).await;
    let (site, visitor) = db.site("Flaky network").await;
    db.agent(site, visitor, "ann", None, "online", true, Some(100), 0)
        .await;

    // No safety-net sweep within the test: after each drop, only the reconnect (and the catch-up
    // sweep after resubscribing) can get the conversations assigned.
    let quick = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    let worker = Worker::new(
        service_client(&stack),
        WorkerConfig::new()
            .sweep_interval(Duration::from_secs(3600))
            .reconnect_backoff(quick),
    )
    .expect("worker");
    let m = worker.metrics().clone();
    let (stop_tx, stop) = watch::channel(false);
    let task = spawn_worker(&worker, &stop);
    wait_until(DEADLINE, "subscribed", || async { m.realtime_subscribed() }).await;

    let realtime = stack.realtime().expect("realtime");
    for round in 1..=3u64 {
        let before = db.pending(site, visitor, None, 2, 0.0).await;
        wait_until(DEADLINE, "assigned before the drop", || async {
            db.assigned_count(&before).await == 2
        })
        .await;
        realtime.drop_all_connections();
        // Created while the worker is (probably) disconnected: caught up after the rejoin.
        let during = db.pending(site, visitor, None, 2, 0.0).await;
        wait_until(DEADLINE, "reconnected", || async {
            m.reconnects() >= round && m.realtime_subscribed()
        })
        .await;
        wait_until(DEADLINE, "assigned after the drop", || async {
            db.assigned_count(&during).await == 2
        })
        .await;
        // And live events flow again.
        let after = db.pending(site, visitor, None, 1, 0.0).await;
        wait_until(DEADLINE, "assigned from a live event", || async {
            db.assigned_count(&after).await == 1
        })
        .await;
    }
    assert!(m.errors() >= 3, "each drop is counted: {}", m.errors());
    assert_eq!(m.failed_sweeps(), 0);

    let _ = stop_tx.send(true);
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("stops")
        .expect("task")
        .expect("run");
    assert_eq!(db.violations().await, Vec::<String>::new());
    stack.shutdown().await;
}

#[tokio::test]
async fn assignments_continue_after_postgres_restarts() {
    init_tracing();
    let stack = Stack::start(StackOptions::ephemeral())
        .await
        .expect("stack with its own cluster");
    let db = Db::new(&stack).await;
    let (site, visitor) = db.site("Restarting database").await;
    db.agent(site, visitor, "ann", None, "online", true, Some(100), 0)
        .await;

    let worker = Worker::new(
        service_client(&stack),
        WorkerConfig::new().sweep_interval(Duration::from_millis(500)),
    )
    .expect("worker");
    let m = worker.metrics().clone();
    let (stop_tx, stop) = watch::channel(false);
    let task = spawn_worker(&worker, &stop);

    let first = db.pending(site, visitor, None, 3, 0.0).await;
    wait_until(DEADLINE, "assigned before the restart", || async {
        db.assigned_count(&first).await == 3
    })
    .await;

    for round in 0..2u64 {
        stack.restart_postgres().await.expect("restart");
        // The test's own connection died with the server, as the worker's API calls did.
        let db = Db {
            client: connect(&stack.db_url()).await,
        };
        let later = db.pending(site, visitor, None, 3, 0.0).await;
        wait_until(DEADLINE, "assigned after the restart", || async {
            db.assigned_count(&later).await == 3
        })
        .await;
        // The commit is visible before the worker has read the response: wait for it too.
        wait_until(DEADLINE, "the worker saw its assignments", || async {
            m.ready() && m.assignments() == 3 * (round + 2)
        })
        .await;
    }

    let _ = stop_tx.send(true);
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("stops")
        .expect("task")
        .expect("run");
    let db = Db {
        client: connect(&stack.db_url()).await,
    };
    assert_eq!(db.violations().await, Vec::<String>::new());
    stack.shutdown().await;
}
