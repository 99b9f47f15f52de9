//! `livechat worker` as an operator runs it: the real binary in child processes against the
//! real stack. `--help` documents every option; `--once` sweeps and exits 0 (1 when it cannot);
//! SIGTERM in the middle of work exits 0 and leaves nothing half-assigned, every assignment in
//! the database logged exactly once; `--metrics-addr` serves health checks and Prometheus
//! metrics.

use crate::worker_support;

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livechat_stack::Stack;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;
use worker_support::{wait_until, Db, DEADLINE};

const BIN: &str = env!("CARGO_BIN_EXE_livechat");

/// A worker process whose stderr (the logs) is collected line by line.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

fn spawn(stack: &Stack, args: &[&str]) -> Proc {
    let mut child = Command::new(BIN)
        .arg("worker")
        .args(args)
        .env("SUPABASE_URL", stack.url())
        .env("SUPABASE_SERVICE_ROLE_KEY", stack.service_role_key())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn livechat");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr");
    let sink = lines.clone();
    let reader = tokio::spawn(async move {
        let mut r = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = r.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    Proc {
        child,
        lines,
        reader,
    }
}

impl Proc {
    fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    async fn wait_for_log(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        wait_until(DEADLINE, what, || {
            found = self.logs().into_iter().find(|l| pred(l));
            let ok = found.is_some();
            async move { ok }
        })
        .await;
        found.unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the exit (with a deadline) and for the last log lines.
    async fn exit_code(mut self) -> (Option<i32>, Vec<String>) {
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("the worker exits in time")
            .expect("wait");
        let _ = tokio::time::timeout(DEADLINE, &mut self.reader).await;
        let logs = self.logs();
        (status.code(), logs)
    }
}

/// The JSON log records (with `--log-format json`): every line must be one.
fn json_records(logs: &[String]) -> Vec<Value> {
    logs.iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn assigned_ids(records: &[Value]) -> Vec<Uuid> {
    records
        .iter()
        .filter(|r| {
            r["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("assigned conversation"))
        })
        .map(|r| {
            r["conversation_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no conversation_id in {r}"))
        })
        .collect()
}

#[test]
fn help_documents_every_option() {
    let out = std::process::Command::new(BIN)
        .args(["worker", "--help"])
        .env("SUPABASE_SERVICE_ROLE_KEY", "very-secret-key")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--url <URL>",
        "--key <KEY>",
        "--site <UUID>",
        "--sweep-interval <SECS>",
        "--once",
        "--batch-size <N>",
        "--no-realtime",
        "--metrics-addr <HOST:PORT>",
        "--log-format <FORMAT>",
        "--request-timeout <SECS>",
        "SUPABASE_URL",
        "SUPABASE_SERVICE_ROLE_KEY",
        "RUST_LOG",
        "SIGTERM",
        "/metrics",
        "/healthz",
        "/readyz",
        "Exit status",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    assert!(
        !help.contains("very-secret-key"),
        "the key leaks into --help"
    );

    let top = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(String::from_utf8_lossy(&top.stdout).contains("worker"));

    // A usage error exits 2 and says what is wrong.
    let bad = std::process::Command::new(BIN)
        .args([
            "worker", "--url", "http://x", "--key", "k", "--site", "nope",
        ])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--site"));
}

#[tokio::test]
async fn once_sweeps_then_exits_zero() {
    let stack = Stack::for_tests().await.expect("stack");
    let db = Db::new(&stack).await;
    let (site, visitor) = db.site("Once").await;
    let (other, other_visitor) = db.site("Not this one").await;
    db.agent(site, visitor, "ann", None, "online", true, Some(5), 0)
        .await;
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
    let mine = db.pending(site, visitor, None, 7, 1.0).await;
    let theirs = db.pending(other, other_visitor, None, 2, 1.0).await;

    let site_arg = site.to_string();
    let p = spawn(
        &stack,
        &["--once", "--site", &site_arg, "--batch-size", "3"],
    );
    let (code, logs) = p.exit_code().await;
    assert_eq!(code, Some(0), "{logs:#?}");
    // Five slots: the oldest five are assigned, two wait; the other site is untouched.
    assert_eq!(db.assigned_count(&mine).await, 5);
    assert_eq!(db.assigned_count(&theirs).await, 0);
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains("assigned conversation"))
            .count(),
        5,
        "{logs:#?}"
    );
    assert!(
        logs.iter().any(|l| l.contains("one sweep done")),
        "{logs:#?}"
    );
    assert_eq!(db.violations().await, Vec::<String>::new());

    // Nothing to reach: the sweep fails and says so, exit 1.
    let mut child = Command::new(BIN)
        .args([
            "worker",
            "--once",
            "--url",
            "http://127.0.0.1:9",
            "--key",
            "k",
        ])
        .args(["--request-timeout", "2"])
        .env_remove("SUPABASE_URL")
        .env_remove("SUPABASE_SERVICE_ROLE_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(status.code(), Some(1));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_work_leaves_no_conversation_half_assigned() {
    let stack = Stack::for_tests().await.expect("stack");
    let db = Db::new(&stack).await;
    let (site, visitor) = db.site("Busy").await;
    for i in 0..20 {
        db.agent(
            site,
            visitor,
            &format!("agent {i}"),
            None,
            "online",
            true,
            Some(500),
            0,
        )
        .await;
    }
    let total = 3000;
    let pending = db.pending(site, visitor, None, total, 60.0).await;

    // Two processes, tiny batches, so that the signal lands in the middle of the work.
    let a = spawn(&stack, &["--batch-size", "2", "--log-format", "json"]);
    let b = spawn(
        &stack,
        &["--batch-size", "3", "--log-format", "json", "--no-realtime"],
    );
    wait_until(DEADLINE, "work under way", || async {
        db.assigned_count(&pending).await >= 40
    })
    .await;
    a.signal("TERM");
    b.signal("TERM");
    let (code_a, logs_a) = a.exit_code().await;
    let (code_b, logs_b) = b.exit_code().await;
    assert_eq!(code_a, Some(0), "{logs_a:#?}");
    assert_eq!(code_b, Some(0), "{logs_b:#?}");

    let assigned = db.assigned_count(&pending).await;
    eprintln!("{assigned} of {total} assigned when the workers stopped");
    assert!(
        assigned < total as i64,
        "the signal should land mid-work; all {assigned} were assigned first"
    );
    // Every assignment in the database was logged by exactly one process, and nothing else.
    let (records_a, records_b) = (json_records(&logs_a), json_records(&logs_b));
    let mut logged = assigned_ids(&records_a);
    logged.extend(assigned_ids(&records_b));
    let unique: HashSet<Uuid> = logged.iter().copied().collect();
    assert_eq!(
        unique.len(),
        logged.len(),
        "a conversation was assigned twice"
    );
    assert_eq!(logged.len() as i64, assigned);
    let logged: Vec<Uuid> = unique.into_iter().collect();
    assert_eq!(db.assigned_count(&logged).await, assigned);
    for (records, name) in [(&records_a, "a"), (&records_b, "b")] {
        assert!(
            records.iter().any(|r| r["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("signal received"))),
            "{name} logged the signal"
        );
    }
    assert_eq!(db.violations().await, Vec::<String>::new());
    stack.shutdown().await;
}

#[tokio::test]
async fn metrics_endpoint_serves_health_checks_and_prometheus_metrics() {
    let stack = Stack::for_tests().await.expect("stack");
    let db = Db::new(&stack).await;
    let (site, visitor) = db.site("Observed").await;
    db.agent(site, visitor, "ann", None, "online", true, Some(2), 0)
        .await;
    let pending = db.pending(site, visitor, None, 3, 2.0).await;

    let p = spawn(
        &stack,
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--sweep-interval",
            "0.5",
        ],
    );
    let line = p
        .wait_for_log("metrics address logged", |l| l.contains("serving /metrics"))
        .await;
    let record: Value = serde_json::from_str(&line).expect("JSON log");
    let addr = record["addr"].as_str().expect("addr").to_string();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("http://{addr}{path}");
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.expect("request");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };

    wait_until(DEADLINE, "two assigned", || async {
        db.assigned_count(&pending).await == 2
    })
    .await;
    wait_until(DEADLINE, "ready", || async {
        get("/readyz").await.0 == 200
    })
    .await;
    assert_eq!(get("/healthz").await, (200, "ok\n".to_string()));
    let until = tokio::time::Instant::now() + DEADLINE;
    let metrics = loop {
        let (status, body) = get("/metrics").await;
        if status == 200
            && body.contains("livechat_worker_assignments_total 2\n")
            && body.contains("livechat_worker_pending_backlog 1\n")
        {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the metrics never showed the work:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for needle in [
        "# TYPE livechat_worker_assignments_total counter",
        "livechat_worker_assignment_latency_seconds_count 2",
        "livechat_worker_realtime_reconnects_total 0",
        "livechat_worker_errors_total{source=\"sweep\"} 0",
        "livechat_worker_sweeps_total{result=\"ok\"}",
    ] {
        assert!(metrics.contains(needle), "{needle:?} missing:\n{metrics}");
    }
    assert_eq!(get("/nope").await.0, 404);

    p.signal("INT");
    let (code, logs) = p.exit_code().await;
    assert_eq!(code, Some(0), "{logs:#?}");
    stack.shutdown().await;
}
