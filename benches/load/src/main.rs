//! load-harness: the side-by-side load comparison of issue 6 (direct, a relaying tunnel,
//! egress-proxy, hudsucker, mitmproxy) and the pieces it runs as child processes (origin,
//! tunnel, hudsucker proxy). `benches/load/run.sh` is the entry point a person uses.
//!
//! The binary owns process wiring and exit codes only; it must never print the bench
//! token, which reaches children by environment.

mod bench;
mod children;
mod client;
mod hud;
mod origin;
mod pki;
mod procstat;
mod report;
mod routes;
mod scenarios;
mod slices;
mod tunnel;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Side-by-side load harness for egress-proxy (issue 6)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios against each proxy and write the results JSON.
    Bench(BenchArgs),
    /// The HTTPS origin (prints `READY <port>`; token in env BENCH_TOKEN).
    Origin {
        #[arg(long)]
        dir: PathBuf,
        /// Listen on 127.0.0.1..=127.0.0.<hosts>.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
        hosts: u8,
    },
    /// Mint a proxy CA into DIR (the files `bench` writes for the proxies).
    Ca {
        #[arg(long)]
        out: PathBuf,
    },
    /// The floor: a CONNECT relay to loopback that leaves TLS to the client and the
    /// origin (prints `READY <port>`).
    Tunnel {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// The hudsucker-based comparison proxy (prints `READY <port>`).
    Hudsucker {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        #[arg(long)]
        ca_cert: PathBuf,
        #[arg(long)]
        ca_key: PathBuf,
        #[arg(long)]
        upstream_ca: PathBuf,
        #[arg(long)]
        routes: PathBuf,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// A few seconds per scenario, direct and egress-proxy only; exit 1 on any error.
    #[arg(long)]
    smoke: bool,
    /// Comma-separated: direct, tunnel, egress-proxy, hudsucker, mitmproxy.
    #[arg(long, value_delimiter = ',')]
    proxies: Option<Vec<String>>,
    #[arg(long, default_value = "benches/load/out")]
    out_dir: PathBuf,
    #[arg(long, default_value = "docs/bench/results.json")]
    results: PathBuf,
    #[arg(long, default_value = "target/release/egress-proxy")]
    egress_proxy: PathBuf,
    /// Program started as the hudsucker proxy with this harness's `hudsucker ...`
    /// arguments (default: this harness): a wrapper, e.g. one that runs it under
    /// callgrind (`benches/load/callgrind.sh`).
    #[arg(long)]
    hudsucker_exec: Option<PathBuf>,
    #[arg(long, default_value = "benches/load/.venv/bin/mitmdump")]
    mitmdump: PathBuf,
    #[arg(long, default_value = "benches/load/mitm_addon.py")]
    mitm_addon: PathBuf,
    /// CPUs the proxies are pinned to (`taskset -c`).
    #[arg(long, default_value = "1")]
    proxy_cpus: String,
    /// Seconds per S1 concurrency level and for S2 (default 10, smoke 2).
    #[arg(long)]
    seconds: Option<f64>,
    /// Comma-separated scenarios to run (s1, s2, s3, s4, s4w, s4s, s4u, s5, s6); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// S4/S4w/S4s/S4u transfer size in MB (default 200, smoke 20).
    #[arg(long)]
    s4_mb: Option<u64>,
    /// Comma-separated S1 concurrency levels (default 1,8,64; smoke 1,8), e.g.
    /// `1` to profile one level alone.
    #[arg(long, value_delimiter = ',')]
    s1_concurrency: Vec<usize>,
    /// Rounds S1, S2, S3 and S5 are each split into, every proxy once a round (default 4,
    /// smoke 2); each figure adds up its proxy's rounds.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=20))]
    rounds: Option<u8>,
    /// S5 events in all, 5 ms apart, shared among the rounds (default 4000, smoke 100;
    /// at most 100000): more events, a steadier p99.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    s5_events: Option<u64>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Cmd::Bench(a) = &cli.cmd {
        match off_proxy_cpus(&a.proxy_cpus) {
            Ok(None) => {}
            Ok(Some(code)) => return code,
            Err(e) => {
                eprintln!("load-harness: {e:#}");
                return ExitCode::from(2);
            }
        }
    }
    // A workspace build unifies rustls features (the proxy enables `ring`), so
    // rustls cannot pick a process default by itself: name the one this
    // harness is written for.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load-harness: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let r = rt.block_on(async {
        match cli.cmd {
            Cmd::Origin { dir, hosts } => origin::run(&dir, hosts).await.map(|_| ExitCode::SUCCESS),
            Cmd::Hudsucker {
                listen,
                ca_cert,
                ca_key,
                upstream_ca,
                routes,
            } => hud::run(listen, &ca_cert, &ca_key, &upstream_ca, &routes)
                .await
                .map(|_| ExitCode::SUCCESS),
            Cmd::Tunnel { listen } => tunnel::run(listen).await.map(|_| ExitCode::SUCCESS),
            Cmd::Ca { out } => {
                let ca = pki::mint_ca("load harness proxy CA")?;
                pki::write_proxy_ca(&out, &ca)?;
                println!("CA written to {}", out.display());
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Bench(a) => bench_cmd(a).await,
        }
    });
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("load-harness: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The load generator and the origin (its child) must not share the proxies' CPUs, or
/// every ratio measures the contention. When this process may run on one of them, it runs
/// itself again under `taskset -c <the other CPUs it may use>` and returns that run's
/// exit code; `None`: already off them, or no other CPU is left (a note says so).
fn off_proxy_cpus(proxy_cpus: &str) -> Result<Option<ExitCode>> {
    let proxy = cpu_list(proxy_cpus).context("--proxy-cpus")?;
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .context("/proc/self/status has no Cpus_allowed_list")?;
    let allowed = cpu_list(allowed.trim()).context("Cpus_allowed_list")?;
    if allowed.is_disjoint(&proxy) {
        return Ok(None);
    }
    let rest: Vec<String> = allowed.difference(&proxy).map(u32::to_string).collect();
    if rest.is_empty() {
        // Asked for (the tests do, to run anywhere): say what it means.
        eprintln!(
            "load-harness: NOTE --proxy-cpus {proxy_cpus} covers every CPU this process may \
             use; the load generator shares them, so the ratios measure that contention too"
        );
        return Ok(None);
    }
    let rest = rest.join(",");
    eprintln!("load-harness: running on CPUs {rest}, off the proxies' CPUs {proxy_cpus}");
    let me = std::env::current_exe().context("finding this executable")?;
    let st = std::process::Command::new("taskset")
        .arg("-c")
        .arg(&rest)
        .arg(me)
        .args(std::env::args_os().skip(1))
        .status()
        .context("running taskset (apt-get install util-linux)")?;
    Ok(Some(match st.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(1),
    }))
}

/// A CPU list as `taskset -c` and `/proc` write it: `0`, `0-3`, `0,2-3`.
fn cpu_list(s: &str) -> Result<std::collections::BTreeSet<u32>> {
    let mut set = std::collections::BTreeSet::new();
    for part in s.split(',').map(str::trim) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (
            a.parse()
                .with_context(|| format!("{part:?} in CPU list {s:?}"))?,
            b.parse()
                .with_context(|| format!("{part:?} in CPU list {s:?}"))?,
        );
        anyhow::ensure!(
            a <= b && b < 4096,
            "{part:?} in CPU list {s:?} is not a range of CPUs"
        );
        set.extend(a..=b);
    }
    Ok(set)
}

async fn bench_cmd(a: BenchArgs) -> Result<ExitCode> {
    let smoke = a.smoke;
    let secs = a.seconds.unwrap_or(if smoke { 2.0 } else { 10.0 });
    let proxies = a.proxies.clone().unwrap_or_else(|| {
        if smoke {
            vec!["direct".into(), "egress-proxy".into()]
        } else {
            ["direct", "egress-proxy", "hudsucker", "mitmproxy"]
                .map(String::from)
                .to_vec()
        }
    });
    let cfg = bench::Config {
        out_dir: a.out_dir.clone(),
        proxies: proxies.clone(),
        egress_proxy: a.egress_proxy.clone(),
        hudsucker_exec: a.hudsucker_exec.clone(),
        mitmdump: a.mitmdump.clone(),
        mitm_addon: a.mitm_addon.clone(),
        proxy_cpus: a.proxy_cpus.clone(),
        s1_concurrency: match a.s1_concurrency.as_slice() {
            [] if smoke => vec![1, 8],
            [] => vec![1, 8, 64],
            levels if levels.contains(&0) => {
                bail!("--s1-concurrency: every level must be at least 1")
            }
            levels => levels.to_vec(),
        },
        s1_seconds: secs,
        s2_concurrency: 8,
        s2_seconds: secs,
        max_requests: 5_000_000,
        s3_hosts: if smoke { 10 } else { 200 },
        s4_bytes: a
            .s4_mb
            .unwrap_or(if smoke { 20 } else { 200 })
            .saturating_mul(1_000_000),
        s4_runs: if smoke { 1 } else { 3 },
        s5_events: a.s5_events.unwrap_or(if smoke { 100 } else { 4000 }),
        s5_interval_ms: 5,
        s6_conns: if smoke { 100 } else { 1000 },
        rounds: a.rounds.map_or(if smoke { 2 } else { 4 }, usize::from),
        only: a.only.clone(),
    };
    for o in &cfg.only {
        anyhow::ensure!(
            bench::SCENARIOS.contains(&o.as_str()),
            "--only: unknown scenario {o:?} (use {})",
            bench::SCENARIOS.join(", ")
        );
    }
    let started = std::time::SystemTime::now();
    let load_before = loadavg();
    let results = bench::run(&cfg).await?;
    let mut table = report::markdown(&results);
    if smoke {
        table.insert_str(
            0,
            "(smoke run: short windows, usually a debug build; it proves the harness works, \
             its figures are not measurements)\n\n",
        );
    }
    let meta = serde_json::json!({
        "mode": if smoke { "smoke" } else { "full" },
        "started_unix": started.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "machine": machine(),
        // Other work on the machine skews every figure: recorded so a reader can tell.
        "loadavg_before": load_before,
        "proxy_cpus": cfg.proxy_cpus,
        "mitmproxy_version": cfg.proxies.iter().any(|p| p == "mitmproxy").then(|| {
            std::process::Command::new(&cfg.mitmdump)
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|s| s.lines().next().map(str::to_owned))
        }),
        "scenarios": {
            "s1_concurrency": cfg.s1_concurrency, "s1_seconds": cfg.s1_seconds,
            "s2_concurrency": cfg.s2_concurrency, "s2_seconds": cfg.s2_seconds,
            "s3_hosts": cfg.s3_hosts, "s4_bytes": cfg.s4_bytes, "s4_runs": cfg.s4_runs,
            "s5_events": cfg.s5_events, "s5_interval_ms": cfg.s5_interval_ms,
            "s6_conns": cfg.s6_conns, "rounds": cfg.rounds, "only": cfg.only,
        },
    });
    let mut meta = meta;
    meta["loadavg_after"] = loadavg().into();
    let doc = serde_json::json!({ "meta": meta, "results": results, "table_markdown": table });
    if let Some(dir) = a.results.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.results, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", a.results.display()))?;
    println!("{table}");
    println!("results: {}", a.results.display());

    let bad: Vec<String> = results
        .iter()
        .filter_map(|r| {
            let invalid = r.status != "ok" || r.checked().iter().any(|c| !c.valid);
            invalid.then(|| r.name.clone())
        })
        .collect();
    if !bad.is_empty() {
        eprintln!(
            "load-harness: INVALID results for {} (errors or not measured; see the table)",
            bad.join(", ")
        );
        if smoke {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.to_owned()))
        .unwrap_or_default();
    serde_json::json!({
        "cpu": cpu,
        "cpus": std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
            .unwrap_or(0),
        "kernel": kernel,
        "memory": mem,
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpu_lists_as_taskset_writes_them() {
        let l = |s| cpu_list(s).map(|set| set.into_iter().collect::<Vec<_>>());
        assert_eq!(l("1").unwrap(), [1]);
        assert_eq!(l("0-3").unwrap(), [0, 1, 2, 3]);
        assert_eq!(l("0,2-3, 5").unwrap(), [0, 2, 3, 5]);
        for bad in ["", "a", "3-1", "1-", "-1", "0-99999", "1,,2"] {
            assert!(l(bad).is_err(), "{bad:?} must be refused");
        }
    }

    proptest! {
        #[test]
        fn a_cpu_set_written_as_ranges_reads_back(set in proptest::collection::btree_set(0u32..512, 1..40)) {
            // Written the way the kernel does: runs of consecutive CPUs as `a-b`.
            let v: Vec<u32> = set.iter().copied().collect();
            let mut parts = Vec::new();
            let mut i = 0;
            while i < v.len() {
                let mut j = i;
                while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
                    j += 1;
                }
                parts.push(if i == j { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
                i = j + 1;
            }
            prop_assert_eq!(cpu_list(&parts.join(",")).unwrap(), set);
        }

        #[test]
        fn any_text_is_a_list_or_an_error(s in ".{0,40}") {
            let _ = cpu_list(&s);
        }
    }
}
