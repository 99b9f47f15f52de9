//! Helpers shared by the examples (this folder is not an example itself): configuration from the
//! environment, the scripted (non-interactive) switch, and a transcript printer with timestamps
//! relative to the start of the program.
#![allow(dead_code)]

use std::fmt::Display;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;
use uuid::Uuid;

/// The seeded site "Acme Store" (`supabase/seed.sql`), used unless `LIVECHAT_SITE_ID` is set.
pub const ACME_STORE: Uuid = Uuid::from_u128(0xb0000000_0000_4000_8000_000000000001);
/// The seeded agent Alice Anderson of Acme Store.
pub const ALICE_AGENT: Uuid = Uuid::from_u128(0xe0000000_0000_4000_8000_000000000101);
/// The seeded agent Bob Brown of Acme Store.
pub const BOB_AGENT: Uuid = Uuid::from_u128(0xe0000000_0000_4000_8000_000000000102);
/// The seeded agent Carol Chen of Acme Store.
pub const CAROL_AGENT: Uuid = Uuid::from_u128(0xe0000000_0000_4000_8000_000000000103);
/// The seeded users behind those agents.
pub const ALICE_USER: &str = "c0000000-0000-4000-8000-000000000001";
pub const BOB_USER: &str = "c0000000-0000-4000-8000-000000000002";
pub const CAROL_USER: &str = "c0000000-0000-4000-8000-000000000003";

/// How long any single step waits for the server before the example gives up.
pub const WAIT: Duration = Duration::from_secs(30);

/// Exits with status 2 and instructions when the connection variables are missing.
pub fn require_env(extra: &[&str]) {
    let mut missing: Vec<&str> = ["SUPABASE_URL", "SUPABASE_ANON_KEY"]
        .into_iter()
        .chain(extra.iter().copied())
        .filter(|name| std::env::var(name).map_or(true, |v| v.trim().is_empty()))
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return;
    }
    eprintln!("missing environment variables: {}", missing.join(", "));
    eprintln!();
    eprintln!("Start the local stack in another terminal and export what it prints:");
    eprintln!("    scripts/stack-up.sh");
    eprintln!("or set them from a Supabase project's API settings (SUPABASE_URL,");
    eprintln!("SUPABASE_ANON_KEY, SUPABASE_SERVICE_ROLE_KEY, SUPABASE_JWT_SECRET).");
    std::process::exit(2);
}

/// A required environment variable.
pub fn env(name: &str) -> Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .with_context(|| format!("environment variable {name} is not set"))
}

/// The site the example works on: `LIVECHAT_SITE_ID`, or the seeded Acme Store.
pub fn site_id() -> Result<Uuid> {
    match std::env::var("LIVECHAT_SITE_ID") {
        Ok(s) if !s.trim().is_empty() => s.trim().parse().context("LIVECHAT_SITE_ID is not a uuid"),
        _ => Ok(ACME_STORE),
    }
}

/// Whether to run without a terminal: `--non-interactive` or `LIVECHAT_EXAMPLE_SCRIPTED=1`.
pub fn scripted() -> bool {
    std::env::args().any(|a| a == "--non-interactive")
        || std::env::var("LIVECHAT_EXAMPLE_SCRIPTED")
            .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

/// Logs to stderr, `warn` and above unless `RUST_LOG` says otherwise.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints transcript lines `[  1.23s] who       text`, time relative to the start.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    pub fn line(&self, who: &str, text: impl Display) {
        println!(
            "[{:>7.2}s] {:<9} {}",
            self.0.elapsed().as_secs_f64(),
            who,
            text
        );
    }
}

/// The first word of a display name ("Alice Anderson" → "Alice").
pub fn first_name(name: &str) -> &str {
    name.split_whitespace().next().unwrap_or(name)
}

/// Waits for the next item of `rx` that `want` accepts (others are skipped), at most [`WAIT`].
pub async fn next_matching<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    what: &str,
    mut want: impl FnMut(&T) -> bool,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) if want(&item) => return Ok(item),
            Ok(Some(_)) => continue,
            Ok(None) => bail!("{what}: the feed stopped"),
            Err(_) => bail!("{what}: nothing within {WAIT:?}"),
        }
    }
}
