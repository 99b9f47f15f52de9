//! Database setup: what Supabase provides (roles, `auth`, publication), then the project's
//! `supabase/migrations` in filename order, then optionally `supabase/seed.sql`.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tokio_postgres::{Client, NoTls};

/// Cluster-wide objects Supabase provides (roles).
pub const ROLES_SQL: &str = include_str!("../sql/roles.sql");
/// Per-database objects Supabase provides before a project's migrations.
pub const BOOTSTRAP_SQL: &str = include_str!("../sql/bootstrap.sql");

/// The `supabase/` folder of this repository (migrations and seed), as found at build time.
pub fn default_supabase_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("supabase")
}

/// Connects and drives the connection on the current runtime.
pub async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("database connection closed: {e}");
        }
    });
    Ok(client)
}

/// A URL with its password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn run_sql(client: &Client, sql: &str, what: &str) -> Result<()> {
    client.batch_execute(sql).await.map_err(|e| {
        let detail = e
            .as_db_error()
            .map(|d| {
                format!(
                    "{} ({}){}",
                    d.message(),
                    d.code().code(),
                    d.position()
                        .map(|p| format!(" at {p:?}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_else(|| e.to_string());
        anyhow::anyhow!("applying {what}: {detail}")
    })
}

/// Creates the cluster-wide roles (idempotent).
pub async fn create_roles(superuser_url: &str) -> Result<()> {
    let c = connect(superuser_url).await?;
    run_sql(&c, ROLES_SQL, "stack/sql/roles.sql").await
}

/// The migration files of `supabase_dir`, in filename order.
pub fn migration_files(supabase_dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = supabase_dir.join("migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    Ok(files)
}

/// Applies the Supabase bootstrap, every migration and, when `seed`, the seed to the database.
pub async fn migrate(db_superuser_url: &str, supabase_dir: &Path, seed: bool) -> Result<()> {
    let c = connect(db_superuser_url).await?;
    run_sql(&c, BOOTSTRAP_SQL, "stack/sql/bootstrap.sql").await?;
    for f in migration_files(supabase_dir)? {
        let sql =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        run_sql(&c, &sql, &f.display().to_string()).await?;
    }
    if seed {
        let f = supabase_dir.join("seed.sql");
        let sql =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        run_sql(&c, &sql, &f.display().to_string()).await?;
    }
    Ok(())
}

/// Quotes an identifier for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Sets the Supabase search path on a database (database-level settings are not copied from a
/// template, so this runs for every new database).
pub async fn set_search_path(admin: &Client, db: &str) -> Result<()> {
    run_sql(
        admin,
        &format!(
            "ALTER DATABASE {} SET search_path TO \"$user\", public, extensions",
            quote_ident(db)
        ),
        "search_path",
    )
    .await
}
