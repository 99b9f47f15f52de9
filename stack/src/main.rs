//! `livechat-stack`: run the Docker-free Supabase-compatible local stack, or mint tokens for it.

use clap::{Parser, Subcommand};
use livechat_stack::{jwt, Stack, StackOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "livechat-stack",
    version,
    about = "A Docker-free Supabase-compatible local stack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start PostgreSQL, apply the migrations (and seed), serve the API until SIGINT/SIGTERM.
    Up {
        /// HTTP port of the API (REST and realtime).
        #[arg(long, default_value_t = 54321)]
        port: u16,
        /// PostgreSQL port.
        #[arg(long, default_value_t = 54322)]
        db_port: u16,
        /// Apply supabase/seed.sql after the migrations.
        #[arg(long)]
        seed: bool,
        /// HS256 secret for the API keys (default: Supabase's local development secret).
        #[arg(long, default_value = jwt::DEFAULT_JWT_SECRET)]
        jwt_secret: String,
        /// The Supabase project folder (migrations/ and seed.sql).
        #[arg(long)]
        supabase_dir: Option<PathBuf>,
    },
    /// Print a signed user access token.
    Token {
        /// The user id (the `sub` claim).
        #[arg(long)]
        sub: String,
        /// The role claim.
        #[arg(long, default_value = "authenticated")]
        role: String,
        /// The email claim.
        #[arg(long)]
        email: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        expires_in: i64,
        /// HS256 secret (default: Supabase's local development secret).
        #[arg(long, default_value = jwt::DEFAULT_JWT_SECRET)]
        jwt_secret: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,livechat_stack=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Token {
            sub,
            role,
            email,
            expires_in,
            jwt_secret,
        } => {
            println!(
                "{}",
                jwt::user_token(&sub, &role, email.as_deref(), expires_in, &jwt_secret)
            );
            ExitCode::SUCCESS
        }
        Command::Up {
            port,
            db_port,
            seed,
            jwt_secret,
            supabase_dir,
        } => {
            let mut opts = StackOptions {
                port,
                db_port,
                seed,
                jwt_secret,
                ..StackOptions::default()
            };
            if let Some(d) = supabase_dir {
                opts.supabase_dir = d;
            }
            // Listen for signals before starting, so an early SIGTERM still cleans up.
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("error: cannot listen for SIGTERM: {e}");
                        return ExitCode::FAILURE;
                    }
                };
            let stack = tokio::select! {
                s = Stack::start(opts) => s,
                _ = tokio::signal::ctrl_c() => return ExitCode::from(130),
                _ = term.recv() => return ExitCode::from(143),
            };
            let stack = match stack {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            println!("SUPABASE_URL={}", stack.url());
            println!("SUPABASE_ANON_KEY={}", stack.anon_key());
            println!("SUPABASE_SERVICE_ROLE_KEY={}", stack.service_role_key());
            println!("SUPABASE_DB_URL={}", stack.db_url());
            println!("SUPABASE_JWT_SECRET={}", stack.jwt_secret());
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stopping");
            stack.shutdown().await;
            ExitCode::SUCCESS
        }
    }
}
