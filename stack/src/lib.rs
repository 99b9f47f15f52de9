//! `livechat-stack`: a Docker-free, Supabase-compatible local stack on a real PostgreSQL 15.
//!
//! It starts an ephemeral PostgreSQL cluster, creates what Supabase provides (roles, the `auth`
//! schema, the `supabase_realtime` publication), applies the project's `supabase/migrations`, and
//! serves a PostgREST-compatible API at `/rest/v1` and a Realtime-compatible WebSocket server at
//! `/realtime/v1`.
//!
//! For tests, [`Stack::for_tests`] shares one cluster per test process and gives every test a
//! fresh database copied from a migrated template, with its own HTTP server on a free port:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let stack = livechat_stack::Stack::for_tests_seeded().await?;
//! println!("{} {}", stack.url(), stack.anon_key());
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod db;
pub mod jwt;
pub mod realtime;
pub mod rest;
mod server;

pub use cluster::Cluster;
pub use realtime::RealtimeHandle;

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// How to start a stack of its own (see [`Stack::start`]).
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// HTTP port of the API (REST and realtime); 0 picks a free port.
    pub port: u16,
    /// PostgreSQL port; 0 picks a free port.
    pub db_port: u16,
    /// Apply `supabase/seed.sql` after the migrations.
    pub seed: bool,
    /// The HS256 secret for API keys and user tokens.
    pub jwt_secret: String,
    /// The Supabase CLI project folder holding `migrations/` and `seed.sql`.
    pub supabase_dir: PathBuf,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            port: 54321,
            db_port: 54322,
            seed: false,
            jwt_secret: jwt::DEFAULT_JWT_SECRET.to_string(),
            supabase_dir: db::default_supabase_dir(),
        }
    }
}

impl StackOptions {
    /// Options for a stack on free ports (for tests that need a cluster of their own, e.g. to
    /// restart PostgreSQL).
    pub fn ephemeral() -> Self {
        StackOptions {
            port: 0,
            db_port: 0,
            ..StackOptions::default()
        }
    }
}

/// A running stack: PostgreSQL plus the REST and realtime API on one HTTP port.
///
/// Dropping it stops the HTTP server; a stack started with [`Stack::start`] also stops
/// PostgreSQL and removes its temporary directory; a test stack drops its database.
/// Its `Debug` output names the URL and database, never the keys or the secret.
pub struct Stack {
    cluster: Arc<Cluster>,
    owns_cluster: bool,
    db_name: String,
    jwt_secret: String,
    anon_key: String,
    service_role_key: String,
    server: Option<server::Server>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("url", &self.url())
            .field("db_name", &self.db_name)
            .field("owns_cluster", &self.owns_cluster)
            .finish_non_exhaustive()
    }
}

static SHARED: tokio::sync::OnceCell<Arc<Cluster>> = tokio::sync::OnceCell::const_new();
static NEXT_DB: AtomicU32 = AtomicU32::new(1);

const TEMPLATE: &str = "livechat_template";
const TEMPLATE_SEEDED: &str = "livechat_template_seeded";

async fn start_cluster(port: u16) -> Result<Arc<Cluster>> {
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(port))
        .await
        .context("cluster start task")??;
    db::create_roles(&cluster.superuser_url("postgres")).await?;
    Ok(Arc::new(cluster))
}

async fn shared_cluster() -> Result<Arc<Cluster>> {
    SHARED
        .get_or_try_init(|| async {
            let cluster = start_cluster(0).await?;
            let admin = db::connect(&cluster.superuser_url("postgres")).await?;
            let dir = db::default_supabase_dir();
            for (name, seed) in [(TEMPLATE, false), (TEMPLATE_SEEDED, true)] {
                admin
                    .batch_execute(&format!("CREATE DATABASE {}", db::quote_ident(name)))
                    .await?;
                db::migrate(&cluster.superuser_url(name), &dir, seed)
                    .await
                    .with_context(|| format!("migrating template {name}"))?;
                admin
                    .batch_execute(&format!(
                        "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                        db::quote_ident(name)
                    ))
                    .await?;
            }
            Ok::<_, anyhow::Error>(cluster)
        })
        .await
        .cloned()
}

impl Stack {
    /// Starts a stack with a cluster of its own: the project's migrations (and seed, if asked)
    /// are applied to the `postgres` database, as `supabase start` does.
    pub async fn start(opts: StackOptions) -> Result<Stack> {
        let cluster = start_cluster(opts.db_port).await?;
        db::migrate(
            &cluster.superuser_url("postgres"),
            &opts.supabase_dir,
            opts.seed,
        )
        .await?;
        let admin = db::connect(&cluster.superuser_url("postgres")).await?;
        db::set_search_path(&admin, "postgres").await?;
        drop(admin);
        let mut stack = Stack::new(cluster, true, "postgres".into(), opts.jwt_secret);
        stack.server = Some(server::Server::start(&stack, opts.port).await?);
        Ok(stack)
    }

    /// A stack for one test: a fresh migrated database (no seed) in the process's shared
    /// cluster, served on a free port.
    pub async fn for_tests() -> Result<Stack> {
        Self::for_tests_from(TEMPLATE).await
    }

    /// Like [`Stack::for_tests`], with `supabase/seed.sql` applied.
    pub async fn for_tests_seeded() -> Result<Stack> {
        Self::for_tests_from(TEMPLATE_SEEDED).await
    }

    async fn for_tests_from(template: &str) -> Result<Stack> {
        let cluster = shared_cluster().await?;
        let name = format!(
            "lc_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        let admin = db::connect(&cluster.superuser_url("postgres")).await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE {}",
                db::quote_ident(&name),
                db::quote_ident(template)
            ))
            .await
            .with_context(|| format!("creating test database {name}"))?;
        db::set_search_path(&admin, &name).await?;
        drop(admin);
        let mut stack = Stack::new(cluster, false, name, jwt::DEFAULT_JWT_SECRET.into());
        stack.server = Some(server::Server::start(&stack, 0).await?);
        Ok(stack)
    }

    fn new(cluster: Arc<Cluster>, owns_cluster: bool, db_name: String, secret: String) -> Stack {
        Stack {
            anon_key: jwt::anon_key(&secret),
            service_role_key: jwt::service_role_key(&secret),
            cluster,
            owns_cluster,
            db_name,
            jwt_secret: secret,
            server: None,
        }
    }

    /// The API URL, e.g. `http://127.0.0.1:54321` (what `SUPABASE_URL` holds).
    pub fn url(&self) -> String {
        self.server
            .as_ref()
            .map(|s| format!("http://127.0.0.1:{}", s.port))
            .unwrap_or_default()
    }

    /// The HTTP port of the API.
    pub fn port(&self) -> u16 {
        self.server.as_ref().map(|s| s.port).unwrap_or(0)
    }

    /// The anon API key.
    pub fn anon_key(&self) -> &str {
        &self.anon_key
    }

    /// The service-role API key.
    pub fn service_role_key(&self) -> &str {
        &self.service_role_key
    }

    /// The JWT secret.
    pub fn jwt_secret(&self) -> &str {
        &self.jwt_secret
    }

    /// The superuser connection URL of this stack's database.
    pub fn db_url(&self) -> String {
        self.cluster.superuser_url(&self.db_name)
    }

    /// The name of this stack's database.
    pub fn db_name(&self) -> &str {
        &self.db_name
    }

    /// A signed user access token (role `authenticated`) for the given user id, valid for an
    /// hour.
    pub fn user_token(&self, sub: &str, email: Option<&str>) -> String {
        jwt::user_token(sub, "authenticated", email, 3600, &self.jwt_secret)
    }

    /// The realtime server's fault switches.
    pub fn realtime(&self) -> Option<&RealtimeHandle> {
        self.server.as_ref().map(|s| &s.realtime)
    }

    /// Restarts PostgreSQL: every database connection drops, as in a real restart.
    /// Only for a stack with a cluster of its own ([`Stack::start`] with
    /// [`StackOptions::ephemeral`]), since a shared test cluster serves other tests too.
    pub async fn restart_postgres(&self) -> Result<()> {
        if !self.owns_cluster {
            bail!("restart_postgres needs a stack with its own cluster (Stack::start)");
        }
        let c = self.cluster.clone();
        tokio::task::spawn_blocking(move || c.restart())
            .await
            .context("restart task")?
    }

    /// Stops the server, removes the replication slot and, for a test stack, the database;
    /// for a stack with its own cluster, stops PostgreSQL and removes its files.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
        if !self.owns_cluster {
            let _ = drop_database(&self.cluster, &self.db_name).await;
        }
    }
}

async fn drop_database(cluster: &Cluster, name: &str) -> Result<()> {
    let admin = db::connect(&cluster.superuser_url("postgres")).await?;
    for _ in 0..50 {
        let slots = admin
            .batch_execute(&format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE database = '{}' AND NOT active",
                name.replace('\'', "''")
            ))
            .await;
        let dropped = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                db::quote_ident(name)
            ))
            .await;
        if slots.is_ok() && dropped.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("could not drop database {name}")
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
        if !self.owns_cluster {
            // Best effort, off the caller's runtime: drop the test database and its slot.
            let cluster = self.cluster.clone();
            let name = self.db_name.clone();
            let _ = std::thread::Builder::new()
                .name("livechat-stack-cleanup".into())
                .spawn(move || {
                    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        let _ = rt.block_on(drop_database(&cluster, &name));
                    }
                });
        }
    }
}
