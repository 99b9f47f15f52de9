//! Every example of `examples/` runs to completion against the local stack (scripted mode,
//! no terminal), exits 0 and prints its transcript; `demo` starts a stack of its own.
//!
//! The examples are run as the binaries Cargo built: `cargo test --all-targets` (what
//! `scripts/test.sh` runs) builds them before the tests.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use livechat_stack::Stack;
use tokio::process::Command;

/// Generous: CI machines are slow and share their cores.
const DEADLINE: Duration = Duration::from_secs(180);

/// `target/<profile>/examples/<name>`, next to this test's `deps/` folder. Cargo builds the
/// examples for `cargo test --all-targets` (and `cargo build --examples`), not for
/// `cargo test --test examples_run` alone: a missing or stale binary fails with that advice
/// (building it from here would wait on the lock of the running `cargo test`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let advice = "run `cargo test --all-targets` (or `cargo build --examples` first)";
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("no example binary at {}: {advice}", path.display()));
    let sources = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    for source in [
        sources.join(format!("{name}.rs")),
        sources.join("common").join("mod.rs"),
    ] {
        let changed = std::fs::metadata(&source).and_then(|m| m.modified());
        if let Ok(changed) = changed {
            assert!(
                changed <= built,
                "{} is older than {}: {advice}",
                path.display(),
                source.display()
            );
        }
    }
    path
}

async fn run(mut cmd: Command, name: &str) -> (Output, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("the example starts");
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish within {DEADLINE:?}"))
        .expect("the example's output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

/// Runs an example against a fresh seeded test stack, scripted; returns its stdout.
async fn run_against_stack(name: &str, args: &[&str]) -> String {
    let stack = Stack::for_tests_seeded().await.expect("stack");
    let mut cmd = Command::new(example(name));
    cmd.args(args)
        .env("SUPABASE_URL", stack.url())
        .env("SUPABASE_ANON_KEY", stack.anon_key())
        .env("SUPABASE_SERVICE_ROLE_KEY", stack.service_role_key())
        .env("SUPABASE_JWT_SECRET", stack.jwt_secret())
        .env("LIVECHAT_EXAMPLE_SCRIPTED", "1")
        .env_remove("LIVECHAT_SITE_ID")
        .env_remove("LIVECHAT_ACCESS_TOKEN")
        .env_remove("LIVECHAT_AGENT_ID");
    let (output, stdout) = run(cmd, name).await;
    stack.shutdown().await;
    assert!(
        output.status.success(),
        "{name} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn assert_lines(name: &str, stdout: &str, expected: &[&str]) {
    for e in expected {
        assert!(stdout.contains(e), "{name}: no {e:?} in:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_runs() {
    let out = run_against_stack("quickstart", &[]).await;
    assert_lines(
        "quickstart",
        &out,
        &[
            "department \"Quickstart ",
            "is online",
            "is active, assigned to Quinn ",
            "Hello Mia! The Business plan covers up to five shops.",
            "resolved  status resolved",
            "Site statistics (today):",
            "conversations today",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_runs() {
    let out = run_against_stack("presence", &[]).await;
    assert_lines(
        "presence",
        &out,
        &[
            "online    [Alice (online)]",
            "online    [Alice (online), Bob (online), Carol (away)]",
            "online    [Alice (online), Bob (busy), Carol (online)]",
            "online    [Alice (online), Carol (online)]",
            "Alice Anderson leaves; done",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_runs() {
    let out = run_against_stack("visitor", &["--non-interactive"]).await;
    assert_lines(
        "visitor",
        &out,
        &[
            "widget    Acme Store is ",
            "started (pending)",
            "Vera      Hello, is anyone there?",
            "Sky is typing…",
            "Sky       Hi! Sky from support here. How can I help?",
            "leaving the chat",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_console_runs() {
    let out = run_against_stack("agent_console", &["--non-interactive"]).await;
    assert_lines(
        "agent_console",
        &out,
        &[
            "opened conversation ",
            "Alice Anderson on conversation ",
            "online    Alice (online)",
            "Alice     Hello from the agent console.",
            "Alice     Anything else I can do?",
            "console   bye",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_console_follows_a_seeded_conversation() {
    let out = run_against_stack(
        "agent_console",
        &["20000000-0000-4000-8000-000000000102", "--non-interactive"],
    )
    .await;
    // The snapshot shows the seeded history before the console's own lines.
    assert_lines(
        "agent_console",
        &out,
        &[
            "on conversation 20000000-0000-4000-8000-000000000102",
            "Anything else I can do?",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_explain_missing_configuration() {
    let mut cmd = Command::new(example("quickstart"));
    cmd.env_remove("SUPABASE_URL");
    let (output, _) = run(cmd, "quickstart").await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("scripts/stack-up.sh"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_plays_the_whole_exchange_and_shuts_down() {
    let mut cmd = Command::new(example("demo"));
    cmd.env("LIVECHAT_DEMO_FAST", "1");
    let (output, stdout) = run(cmd, "demo").await;
    assert!(
        output.status.success(),
        "demo failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_lines(
        "demo",
        &stdout,
        &[
            "stack     ready at http://127.0.0.1:",
            "presence  Bob Brown left",
            "opened a conversation",
            "assigned to Alice Anderson by the worker",
            "Alice is typing… (seen by visitor)",
            "Sam is typing… (seen by Alice)",
            "Alice     Hi Sam, I'm Alice.",
            "Sam       No, that's all. Thank you!",
            "Alice resolved the conversation",
            "stats     Acme Store today:",
            "presence  Alice Anderson left",
            "worker    stopped",
            "demo      done",
        ],
    );
}
