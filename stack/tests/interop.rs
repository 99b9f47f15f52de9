//! Runs the Node interop suite (`tests/interop/*.test.mjs`, the official `@supabase/supabase-js`)
//! against the stack: one fresh seeded database and server per test file.
//!
//! Needs Node.js and `npm ci` in `tests/interop` (the README's test command does both).

use livechat_stack::Stack;
use std::path::PathBuf;
use std::process::Command;

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("interop")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_js_interop_suite_passes_against_the_stack() {
    let dir = interop_dir();
    assert!(
        dir.join("node_modules/@supabase/supabase-js").exists(),
        "run `npm ci` in {} first (the README's test command does it)",
        dir.display()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    // For development: LIVECHAT_INTEROP_ONLY=<part of a file name> runs the matching files.
    if let Ok(only) = std::env::var("LIVECHAT_INTEROP_ONLY") {
        files.retain(|p| p.to_string_lossy().contains(only.as_str()));
    }
    files.sort();
    assert!(!files.is_empty(), "no interop test files found");
    let mut failures = Vec::new();
    for file in files {
        let stack = Stack::for_tests_seeded().await.unwrap();
        let f = file.clone();
        let (url, anon, service, db, secret) = (
            stack.url(),
            stack.anon_key().to_string(),
            stack.service_role_key().to_string(),
            stack.db_url(),
            stack.jwt_secret().to_string(),
        );
        let d = dir.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("node")
                .args(["--test", "--test-reporter=spec", "--test-concurrency=1"])
                .arg(&f)
                .current_dir(&d)
                .env("SUPABASE_URL", url)
                .env("SUPABASE_ANON_KEY", anon)
                .env("SUPABASE_SERVICE_ROLE_KEY", service)
                .env("SUPABASE_DB_URL", db)
                .env("SUPABASE_JWT_SECRET", secret)
                .output()
        })
        .await
        .unwrap()
        .expect("node must be installed to run the interop suite");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        println!("=== {name}\n{text}");
        if !out.status.success() {
            failures.push(name);
        }
        stack.shutdown().await;
    }
    assert!(failures.is_empty(), "interop files failed: {failures:?}");
}
