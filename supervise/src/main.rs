//! `bottle-supervise`: the supervise sidecar (docs/supervise.md).
//!
//! Owns the command line and start-up; everything else is the library's
//! `server` module. Exit codes: 2 for bad usage or an unusable state
//! directory, 1 for a runtime failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The supervise sidecar: MCP over streamable HTTP at /mcp, for the agent to
/// see its egress routes and ask the operator for more.
#[derive(Debug, Parser)]
#[command(name = "bottle-supervise", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:9100", value_name = "ADDR")]
    listen: SocketAddr,
    /// The state directory: `view/` and `decisions/` (read-only) and `proposals/` (read-write).
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Seconds `request-egress` waits for the operator before answering "pending".
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    decision_wait: u64,
    /// Proposals waiting for a decision, at most.
    #[arg(long, default_value_t = 8, value_name = "N")]
    max_pending: usize,
    /// `request-egress` calls per rate window, at most.
    #[arg(long, default_value_t = 10, value_name = "N")]
    rate_limit: usize,
    /// The rate window, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    rate_window: u64,
    /// Print the proposals in the state directory as one JSON array and exit
    /// (the operator's side reads them this way where it cannot read the
    /// directory: `kubectl exec`, docs/kubernetes.md).
    #[arg(long)]
    print_proposals: bool,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn")),
        )
        .init();
    let cli = Cli::parse();
    if cli.print_proposals {
        let l = bottle_supervise::state::SidecarLayout {
            root: cli.state.clone(),
        };
        return match bottle_supervise::state::export_pending(&l) {
            Ok(ps) => {
                println!(
                    "{}",
                    serde_json::to_string(&ps).unwrap_or_else(|_| "[]".into())
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bottle-supervise: {}: {e}", l.proposals().display());
                std::process::ExitCode::from(1)
            }
        };
    }
    for sub in ["view", "proposals", "decisions"] {
        let d = cli.state.join(sub);
        if !d.is_dir() {
            eprintln!(
                "bottle-supervise: {}: not a directory; the state directory needs view/, proposals/ and decisions/ (see docs/supervise.md)",
                d.display()
            );
            return std::process::ExitCode::from(2);
        }
    }
    if cli.rate_limit == 0 || cli.max_pending == 0 || cli.rate_window == 0 {
        eprintln!(
            "bottle-supervise: --rate-limit, --rate-window and --max-pending must be at least 1"
        );
        return std::process::ExitCode::from(2);
    }
    let mut cfg = bottle_supervise::server::Config::new(cli.state);
    cfg.decision_wait = Duration::from_secs(cli.decision_wait);
    cfg.max_pending = cli.max_pending;
    cfg.rate_limit = cli.rate_limit;
    cfg.rate_window = Duration::from_secs(cli.rate_window);

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bottle-supervise: no runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(cli.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bottle-supervise: cannot listen on {}: {e}", cli.listen);
                return std::process::ExitCode::from(1);
            }
        };
        // `listening` is the readiness line `bottle run` waits for where the
        // host cannot probe the agent network (Engine 28+ isolated networks).
        match listener.local_addr() {
            Ok(a) => tracing::info!("listening on {a}, serving MCP at /mcp"),
            Err(_) => tracing::info!("listening, serving MCP at /mcp"),
        }
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            stop.cancel();
        });
        match bottle_supervise::server::serve(listener, cfg, shutdown).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bottle-supervise: {e}");
                std::process::ExitCode::from(1)
            }
        }
    })
}
