//! The `egress-proxy` binary: CLI, start-up, signals, exit codes.
//!
//! Owns: turning the CLI into a `Config`, printing one clear line per error,
//! exit codes (2 bad configuration/usage, 1 runtime failure), SIGHUP reload and
//! SIGTERM/SIGINT drain. Must never: print a secret.

use std::process::ExitCode;
use std::time::Duration;

mod policy_cli;
mod tuning;

use bottle_pki::{Existing, WriteError};
use clap::Parser;
use egress_proxy::cli::{CaCommand, Cli, Command, parse_upstream_proxy};
use egress_proxy::limits::Limits;
use egress_proxy::tls::{Ca, CaError};
use egress_proxy::{CaSource, Config};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Some(Command::Ca {
            command: CaCommand::New { out, force },
        }) => match Ca::write_new(
            &out,
            if force {
                Existing::Replace
            } else {
                Existing::Refuse
            },
        ) {
            Ok((both, cert)) => {
                println!(
                    "wrote {} (certificate and key, mode 0600) and {}",
                    both.display(),
                    cert.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("egress-proxy: ca new: {e}");
                let usage = matches!(e, CaError::Create(WriteError::Exists { .. }));
                ExitCode::from(if usage { 2 } else { 1 })
            }
        },
        Some(Command::Check { routes }) => policy_cli::check(&routes),
        Some(Command::Explain {
            routes,
            method,
            url,
        }) => policy_cli::explain(&routes, &method, &url),
        None => run(cli),
    }
}

fn run(cli: Cli) -> ExitCode {
    // First: it may start this program again, which must happen before any
    // thread does.
    let not_restarted = tuning::restart_without_slow_rep_movsb();
    egress_proxy::log::init(cli.log_format);
    if let Some(e) = not_restarted {
        tracing::warn!(error = %e, "could not restart with glibc's rep movsb off; copies may run slowly on this AMD CPU");
    }
    // Dropped last, on every way out: the waiting access lines are written.
    let _batcher = egress_proxy::log::Batcher::start();
    let Some(routes) = cli.routes.clone() else {
        eprintln!("egress-proxy: --routes PATH is required (or a subcommand); see --help");
        return ExitCode::from(2);
    };
    let upstream_proxy = match cli
        .upstream_proxy
        .as_deref()
        .map(parse_upstream_proxy)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("egress-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    // The ephemeral CA's certificate goes to a fresh private directory (0700,
    // random name), never to a name another user of /tmp can predict and plant
    // first. It lives as long as this process; `_ca_dir` removes it on exit.
    let mut _ca_dir = None;
    let ca = match (&cli.ca, &cli.ca_cert, &cli.ca_key) {
        (Some(p), _, _) => CaSource::Combined(p.clone()),
        (None, Some(c), Some(k)) => CaSource::Separate {
            cert: c.clone(),
            key: k.clone(),
        },
        _ => CaSource::Ephemeral {
            cert_out: match cli.ca_out.clone() {
                Some(p) => p,
                None => match bottle_pki::private_dir("egress-proxy-") {
                    Ok(d) => {
                        let p = d.path().join("ca-cert.pem");
                        _ca_dir = Some(d);
                        p
                    }
                    Err(e) => {
                        eprintln!(
                            "egress-proxy: cannot create a private directory for the ephemeral CA certificate under {}: {e}; set TMPDIR or pass --ca-out PATH",
                            std::env::temp_dir().display()
                        );
                        return ExitCode::from(1);
                    }
                },
            },
        },
    };
    let limits = Limits {
        upstream_response_timeout: Duration::from_secs(cli.upstream_timeout.max(1)),
        max_connections: cli.max_connections as usize,
        max_h2_streams: cli.max_h2_streams,
        header_read_timeout: Duration::from_secs(cli.header_read_timeout),
        handshake_timeout: Duration::from_secs(cli.handshake_timeout),
        idle_timeout: Duration::from_secs(cli.idle_timeout),
        leaf_cache_size: cli.leaf_cache_size as usize,
        ..Limits::default()
    };
    let config = Config {
        routes,
        listen: cli.listen,
        ca: ca.clone(),
        upstream_ca: cli.upstream_ca.clone(),
        upstream_proxy,
        allow_ranges: cli.allow_range.clone(),
        limits,
        env: std::env::vars().collect(),
        resolver: Default::default(),
    };
    tuning::raise_malloc_trim_threshold();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("egress-proxy: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let running = match egress_proxy::start(config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("egress-proxy: {e}");
                return ExitCode::from(if e.is_config() { 2 } else { 1 });
            }
        };
        if let CaSource::Ephemeral { cert_out } = &ca {
            tracing::info!(ca_cert = %cert_out.display(), "ephemeral CA minted; clients must trust this certificate");
        }
        egress_proxy::reload::started(&running);
        let ca_sha256 = egress_proxy::reload::ca_fingerprint(&running.ca_cert_pem).unwrap_or_default();
        tracing::info!(ca_sha256 = %ca_sha256, "CA loaded; leaves are signed by it");
        let _admin = match cli.admin_listen {
            Some(a) => match egress_proxy::admin::start(a, running.shared.clone()).await {
                Ok(admin) => {
                    tracing::info!(admin = %admin.addr, "admin listening (/healthz, /metrics)");
                    Some(admin)
                }
                Err(e) => {
                    eprintln!("egress-proxy: {e}");
                    return ExitCode::from(1);
                }
            },
            None => None,
        };
        tracing::info!(addr = %running.addr, "listening");
        let watch = cli.watch_routes.then(|| cli.routes.clone()).flatten();
        signals(running, Duration::from_secs(cli.grace), watch).await
    })
}

async fn signals(
    running: egress_proxy::Running,
    grace: Duration,
    watch: Option<std::path::PathBuf>,
) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("egress-proxy: cannot install signal handlers");
        return ExitCode::from(1);
    };
    let mut watch = watch.map(|p| egress_proxy::reload::Watch::new(p, &running));
    let mut tick = tokio::time::interval(egress_proxy::reload::WATCH_EVERY);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                egress_proxy::reload::on_sighup(&running);
                if let Some(w) = watch.as_mut() {
                    w.refresh(&running);
                }
            }
            _ = tick.tick(), if watch.is_some() => {
                if let Some(w) = watch.as_mut()
                    && w.changed(&running)
                {
                    tracing::info!("routes or token file changed");
                    egress_proxy::reload::on_sighup(&running);
                    w.refresh(&running);
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!(grace_s = grace.as_secs(), "draining");
    running.shutdown(grace).await;
    tracing::info!("drained; exiting");
    ExitCode::SUCCESS
}
