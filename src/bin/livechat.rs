//! `livechat`: the command line of the live-chat library. `livechat worker` auto-assigns pending
//! conversations (see `livechat worker --help` and the `livechat::worker` module).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use livechat::worker::{MetricsServer, Worker, WorkerConfig, MAX_BATCH_SIZE};
use livechat::{Client, Config};
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

/// Command line of the `livechat` library for the platform's live-chat module.
///
/// No `Debug` here nor on [`Command`] / [`WorkerArgs`] (clap does not need it): they hold the
/// service-role key, which must never reach a log.
#[derive(Parser)]
#[command(name = "livechat", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Assign pending conversations to agents, continuously (or once with --once).
    #[command(long_about = WORKER_ABOUT, after_long_help = WORKER_AFTER)]
    Worker(WorkerArgs),
}

const WORKER_ABOUT: &str = "\
Assign pending, unassigned conversations to agents, continuously (or once with --once).

Routing: a conversation with a department is assigned only if that department auto-assigns, and \
only to its agents; one without a department to any agent of its site; always to the \
least-loaded online, active agent with a free slot, never above max_concurrent_chats, oldest \
conversations first. The assignment makes the conversation active and records its wait time.

It sweeps when realtime changes call for it (a new pending conversation, a freed slot, an agent \
coming online) and every --sweep-interval as a safety net. Each batch of assignments is one \
database transaction that skips rows other workers hold, so any number of workers can run side by \
side. SIGINT/SIGTERM: the batch in flight finishes, then the process exits 0 (a second signal \
exits at once).";

const WORKER_AFTER: &str = "\
Environment:
  SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY  as --url / --key
  RUST_LOG                                 log filter (default: info), e.g. livechat=debug

Exit status: 0 after a clean shutdown or a successful --once sweep; 1 when --once fails, the \
configuration is unusable or --metrics-addr cannot be bound; 2 for a usage error.

Metrics endpoint (--metrics-addr): GET /metrics (Prometheus text format), /healthz (200 while the \
loop makes progress), /readyz (200 when the last sweep succeeded).";

#[derive(Args)]
struct WorkerArgs {
    /// Project URL, e.g. https://<ref>.supabase.co or http://127.0.0.1:54321.
    #[arg(long, env = "SUPABASE_URL", value_name = "URL")]
    url: String,

    /// Service-role API key (a user's key would limit the worker to that user's sites).
    #[arg(
        long,
        env = "SUPABASE_SERVICE_ROLE_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    key: String,

    /// Only serve this site (repeat for several); default: every site.
    #[arg(long = "site", value_name = "UUID")]
    sites: Vec<Uuid>,

    /// Seconds between safety-net sweeps (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    sweep_interval: Duration,

    /// Sweep once, then exit (no realtime); exit status 1 if the sweep fails.
    #[arg(long)]
    once: bool,

    /// At most this many assignments per transaction (1-1000).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_SIZE as i64))]
    batch_size: u32,

    /// Do not listen to realtime changes; only sweep every --sweep-interval.
    #[arg(long)]
    no_realtime: bool,

    /// Serve /metrics (Prometheus), /healthz and /readyz on this address (port 0: any free
    /// port, logged at start).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,

    /// Log format on stderr: human-readable text, or one JSON object per line.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Seconds before a request to the API times out.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
    request_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (fields at the top level).
    Json,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(format!(
            "{s:?}: must be more than 0 and at most 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Completes on the first SIGINT or SIGTERM; a second one exits the process at once.
async fn shutdown_signal() {
    let first = wait_for_signal().await;
    tracing::info!(
        signal = first,
        "signal received; finishing the batch in flight, then exiting (send again to exit now)"
    );
    tokio::spawn(async {
        let second = wait_for_signal().await;
        tracing::warn!(signal = second, "second signal; exiting now");
        std::process::exit(130);
    });
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the worker");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

async fn worker(args: WorkerArgs) -> ExitCode {
    let client = match Config::new(&args.url, args.key.trim())
        .map(|c| c.with_timeout(args.request_timeout))
        .and_then(Client::new)
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "unusable configuration");
            return ExitCode::FAILURE;
        }
    };
    let config = WorkerConfig::new()
        .sites(args.sites)
        .sweep_interval(args.sweep_interval)
        .batch_size(args.batch_size)
        .realtime(!args.no_realtime && !args.once);
    let worker = match Worker::new(client, config) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "unusable configuration");
            return ExitCode::FAILURE;
        }
    };
    let _metrics_server = match &args.metrics_addr {
        None => None,
        Some(addr) => {
            match MetricsServer::bind(addr, worker.metrics().clone(), worker.liveness_window())
                .await
            {
                Ok(server) => {
                    tracing::info!(
                        addr = %server.local_addr(),
                        "serving /metrics, /healthz and /readyz"
                    );
                    Some(server)
                }
                Err(e) => {
                    tracing::error!(addr = %addr, error = %e, "cannot serve metrics");
                    return ExitCode::FAILURE;
                }
            }
        }
    };

    if args.once {
        return match worker.run_once_until(shutdown_signal()).await {
            Ok(report) => {
                tracing::info!(
                    assigned = report.assignments.len(),
                    backlog = report.backlog,
                    manual = report.manual,
                    interrupted = report.interrupted,
                    "one sweep done; exiting"
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, kind = %e.kind(), "the sweep failed");
                ExitCode::FAILURE
            }
        };
    }
    match worker.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the worker could not start");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Worker(args) => {
            init_logging(args.log_format);
            worker(args).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_parse_with_fractions_and_refuse_nonsense() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("10"), Ok(Duration::from_secs(10)));
        for bad in ["0", "-1", "x", "NaN", "inf", "100000"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
