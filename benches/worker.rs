//! Benchmark of `livechat worker` on the local stack: assignments per second and the
//! insert → assignment latency, for 1, 2 and 4 worker processes. Printed, not asserted.
//!
//! ```sh
//! cargo bench -p livechat --bench worker                      # N = 2000
//! LIVECHAT_BENCH_N=10000 cargo bench -p livechat --bench worker
//! ```
//!
//! For each number of workers, on a fresh database with 20 online agents that have room for
//! everything:
//! * **stream**: the workers run (realtime on, the safety-net sweep an hour away); N pending
//!   conversations are inserted, 20 per statement, as fast as one connection can; each one's
//!   latency is `updated_at − created_at` (the assignment's transaction time minus the insert's),
//!   throughput is N over the span from the first insert to the last assignment;
//! * **drain**: N pending conversations are loaded first, then the workers start; throughput is
//!   N over the time from their start to the last assignment.

use std::process::Stdio;
use std::time::{Duration, Instant};

use livechat_stack::Stack;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_postgres::NoTls;

const BIN: &str = env!("CARGO_BIN_EXE_livechat");
const AGENTS: i64 = 20;
const CHUNK: i64 = 20;
const DEADLINE: Duration = Duration::from_secs(600);

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Fixture {
    db: tokio_postgres::Client,
    site: String,
    visitor: String,
}

async fn fixture(stack: &Stack, n: i64) -> Res<Fixture> {
    let (db, conn) = tokio_postgres::connect(&stack.db_url(), NoTls).await?;
    tokio::spawn(conn);
    let row = db
        .query_one(
            "with a as (insert into public.agencies (name) values ('Bench') returning id),
                  s as (insert into public.sites (agency_id, name) select id, 'Bench' from a returning id),
                  v as (insert into public.mod_chat_visitors (site_id, name) select id, 'Visitor' from s returning id, site_id)
             select site_id::text, id::text from v",
            &[],
        )
        .await?;
    let (site, visitor): (String, String) = (row.get(0), row.get(1));
    let capacity = (n / AGENTS + 1) as i32;
    db.execute(
        "insert into public.mod_chat_agents (site_id, user_id, display_name, status, max_concurrent_chats)
         select $1::text::uuid, gen_random_uuid(), 'agent ' || g, 'online', $2
         from generate_series(1, $3::bigint) g",
        &[&site, &capacity, &AGENTS],
    )
    .await?;
    Ok(Fixture { db, site, visitor })
}

impl Fixture {
    async fn insert_pending(&self, n: i64) -> Res<()> {
        let mut left = n;
        while left > 0 {
            let k = left.min(CHUNK);
            self.db
                .execute(
                    "insert into public.mod_chat_conversations (site_id, visitor_id, status)
                     select $1::text::uuid, $2::text::uuid, 'pending' from generate_series(1, $3::bigint)",
                    &[&self.site, &self.visitor, &k],
                )
                .await?;
            left -= k;
        }
        Ok(())
    }

    async fn assigned(&self) -> Res<i64> {
        Ok(self
            .db
            .query_one(
                "select count(*) from public.mod_chat_conversations where assigned_agent_id is not null",
                &[],
            )
            .await?
            .get(0))
    }

    async fn wait_all_assigned(&self, n: i64) -> Res<()> {
        let until = Instant::now() + DEADLINE;
        while self.assigned().await? < n {
            if Instant::now() > until {
                return Err(format!("not all {n} assigned within {DEADLINE:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Latencies in milliseconds (sorted) and the span from the first insert to the last
    /// assignment, in seconds.
    async fn latencies(&self) -> Res<(Vec<f64>, f64)> {
        let rows = self
            .db
            .query(
                "select (extract(epoch from (updated_at - created_at)) * 1000)::float8,
                        extract(epoch from (max(updated_at) over () - min(created_at) over ()))::float8
                 from public.mod_chat_conversations order by 1",
                &[],
            )
            .await?;
        let span = rows.first().map(|r| r.get::<_, f64>(1)).unwrap_or(0.0);
        Ok((rows.iter().map(|r| r.get::<_, f64>(0)).collect(), span))
    }
}

/// Starts `k` worker processes at once and waits until each is subscribed to conversation
/// changes.
async fn start_workers(stack: &Stack, k: usize) -> Res<Vec<Child>> {
    let mut children = Vec::new();
    let mut ready = Vec::new();
    for _ in 0..k {
        let mut child = Command::new(BIN)
            .args(["worker", "--sweep-interval", "3600", "--log-format", "json"])
            .env("SUPABASE_URL", stack.url())
            .env("SUPABASE_SERVICE_ROLE_KEY", stack.service_role_key())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("realtime: subscribed") && line.contains("mod_chat_conversations")
                {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        ready.push(rx);
        children.push(child);
    }
    for rx in ready {
        tokio::time::timeout(Duration::from_secs(60), rx).await??;
    }
    Ok(children)
}

async fn stop_workers(children: Vec<Child>) -> Res<()> {
    for c in &children {
        if let Some(pid) = c.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
    }
    for mut c in children {
        tokio::time::timeout(Duration::from_secs(60), c.wait()).await??;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn stream(k: usize, n: i64) -> Res<()> {
    let stack = Stack::for_tests().await?;
    let f = fixture(&stack, n).await?;
    let workers = start_workers(&stack, k).await?;
    f.insert_pending(n).await?;
    f.wait_all_assigned(n).await?;
    stop_workers(workers).await?;
    let (lat, span) = f.latencies().await?;
    println!(
        "stream  {k} worker(s)  {n:>6} conversations  {:>8.0} assignments/s  latency median {:>7.1} ms  p99 {:>7.1} ms",
        n as f64 / span.max(1e-9),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    );
    stack.shutdown().await;
    Ok(())
}

async fn drain(k: usize, n: i64) -> Res<()> {
    let stack = Stack::for_tests().await?;
    let f = fixture(&stack, n).await?;
    f.insert_pending(n).await?;
    let started = Instant::now();
    let workers = start_workers(&stack, k).await?;
    f.wait_all_assigned(n).await?;
    let took = started.elapsed();
    stop_workers(workers).await?;
    println!(
        "drain   {k} worker(s)  {n:>6} conversations  {:>8.0} assignments/s  (backlog of {n} assigned in {:.2} s, process start included)",
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    );
    stack.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and a test run must not spend minutes benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        println!("livechat worker benchmark: run it with `cargo bench --bench worker`");
        return Ok(());
    }
    let n: i64 = std::env::var("LIVECHAT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(2000);
    println!("livechat worker benchmark: {AGENTS} online agents, inserts of {CHUNK} per statement");
    for k in [1, 2, 4] {
        stream(k, n).await?;
    }
    for k in [1, 2, 4] {
        drain(k, n).await?;
    }
    Ok(())
}
