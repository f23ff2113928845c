//! Orchestrates one side-by-side run: starts the origin and every proxy (`children`),
//! runs each scenario against every proxy in turn, stops them, and collects the results.
//!
//! Owns the run's order and the children's lifetime (killed on drop, also on error). It
//! must never put the token on a command line or in a log: it reaches the children by
//! environment only.

use crate::children::{Started, Via, ready_line, start};
use crate::client::{self, Target};
use crate::scenarios::{self, Download, FirstContact, Memory, Merge, Probe, RatePoint, Sse, fold};
use crate::{pki, procstat, routes};
use anyhow::{Context, Result};
use http::HeaderValue;
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Everything one run needs.
pub struct Config {
    pub out_dir: PathBuf,
    pub proxies: Vec<String>,
    pub egress_proxy: PathBuf,
    /// Started instead of this harness for the hudsucker proxy (a wrapper).
    pub hudsucker_exec: Option<PathBuf>,
    pub mitmdump: PathBuf,
    pub mitm_addon: PathBuf,
    /// CPU list for the proxies (`taskset -c`).
    pub proxy_cpus: String,
    pub s1_concurrency: Vec<usize>,
    pub s1_seconds: f64,
    pub s2_concurrency: usize,
    pub s2_seconds: f64,
    pub max_requests: u64,
    pub s3_hosts: u8,
    pub s4_bytes: u64,
    pub s4_runs: usize,
    pub s5_events: u64,
    pub s5_interval_ms: u64,
    pub s6_conns: usize,
    /// Rounds each of S1, S2, S3 and S5 is split into (S4's runs are its rounds).
    pub rounds: usize,
    /// Scenarios to run (`s1`..`s6`, `s4w`, `s4s`, `s4u`); empty: all.
    pub only: Vec<String>,
}

/// The scenarios `--only` can name (`measure` runs them in its own order).
pub const SCENARIOS: [&str; 9] = ["s1", "s2", "s3", "s4", "s4w", "s4s", "s4u", "s5", "s6"];

impl Config {
    fn wants(&self, s: &str) -> bool {
        debug_assert!(SCENARIOS.contains(&s), "{s} is not in SCENARIOS");
        self.only.is_empty() || self.only.iter().any(|o| o == s)
    }
}

#[derive(Serialize, Debug)]
pub struct ProxyResult {
    pub name: String,
    /// `ok`, or why the proxy could not be measured.
    pub status: String,
    pub s1: Vec<RatePoint>,
    pub s2: Option<RatePoint>,
    pub s3: Option<FirstContact>,
    pub s4: Option<Download>,
    /// S4 with the origin writing each 64 KiB slice on its own (`/bytes/<n>?paced=1`).
    pub s4w: Option<Download>,
    /// S4 with the origin sending 16 KiB h2 frames (`/bytes/<n>?slice=16384`).
    pub s4s: Option<Download>,
    /// The upload counterpart of S4 (`POST /sink`).
    pub s4u: Option<Download>,
    pub s5: Option<Sse>,
    pub s6: Option<Memory>,
    pub peak_rss_kib: Option<u64>,
    /// Lines the proxy wrote to stderr during the run (its access log included).
    pub stderr_lines: u64,
    pub stderr_tail: Vec<String>,
}

/// What one scenario's result says of itself: valid or not, and its errors.
pub struct Checked<'a> {
    pub label: String,
    pub valid: bool,
    pub errors: u64,
    pub first_error: Option<&'a str>,
}

impl ProxyResult {
    /// Every scenario this result holds, once each, in the report's order:
    /// the run's validity check and the report's error list both read it, so
    /// a new scenario is added here only.
    pub fn checked(&self) -> Vec<Checked<'_>> {
        let mut v: Vec<Checked<'_>> = self
            .s1
            .iter()
            .map(|p| Checked {
                label: format!("S1 C={}", p.concurrency),
                valid: p.valid,
                errors: p.errors,
                first_error: p.first_error.as_deref(),
            })
            .collect();
        macro_rules! one {
            ($($label:literal $field:ident),*) => {$(
                if let Some(p) = &self.$field {
                    v.push(Checked {
                        label: $label.into(),
                        valid: p.valid,
                        errors: p.errors,
                        first_error: p.first_error.as_deref(),
                    });
                }
            )*};
        }
        one!("S2" s2, "S3" s3, "S4" s4, "S4w" s4w, "S4s" s4s, "S4u" s4u, "S5" s5, "S6" s6);
        v
    }

    pub(crate) fn failed(name: &str, why: String) -> Self {
        ProxyResult {
            name: name.into(),
            status: why,
            s1: vec![],
            s2: None,
            s3: None,
            s4: None,
            s4w: None,
            s4s: None,
            s4u: None,
            s5: None,
            s6: None,
            peak_rss_kib: None,
            stderr_lines: 0,
            stderr_tail: vec![],
        }
    }
}

/// What every proxy of a run is started with.
pub(crate) struct Env {
    pub(crate) token: String,
    pub(crate) origin_port: u16,
    pub(crate) origin_ca: PathBuf,
    pub(crate) proxy_ca: pki::ProxyCaFiles,
    pub(crate) routes: PathBuf,
}

/// Runs every configured proxy in turn; `direct` first (S5's added delay needs it).
pub async fn run(cfg: &Config) -> Result<Vec<ProxyResult>> {
    std::fs::create_dir_all(&cfg.out_dir)
        .with_context(|| format!("creating {}", cfg.out_dir.display()))?;
    // A random token unless the caller supplies one (tests do, to prove it never leaks).
    let token: String = match std::env::var(routes::TOKEN_ENV) {
        Ok(t) if !t.is_empty() => t,
        _ => {
            use rand::Rng;
            let mut r = rand::rng();
            (0..32)
                .map(|_| format!("{:x}", r.random::<u8>() & 15))
                .collect()
        }
    };
    anyhow::ensure!(
        HeaderValue::from_str(&format!("Bearer {token}")).is_ok(),
        "{} is not usable in a header (use letters and digits)",
        routes::TOKEN_ENV
    );

    let exe = std::env::current_exe().context("locating the harness binary")?;
    let mut origin = Command::new(&exe)
        .arg("origin")
        .arg("--dir")
        .arg(&cfg.out_dir)
        .arg("--hosts")
        .arg((cfg.s3_hosts as u32 + 1).min(254).to_string())
        .env(routes::TOKEN_ENV, &token)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the origin")?;
    let origin_port = ready_line(&mut origin, "origin").await?;
    eprintln!("origin listening on 127.0.0.1:{origin_port}");

    let ca = pki::mint_ca("bench proxies CA")?;
    let proxy_ca = pki::write_proxy_ca(&cfg.out_dir.join("ca"), &ca)?;
    let routes_path = cfg.out_dir.join("routes.json");
    routes::write(
        &routes_path,
        &routes::bench_routes((cfg.s3_hosts as u16 + 1).min(254) as u8),
    )?;
    let env = Env {
        token,
        origin_port,
        origin_ca: cfg.out_dir.join("origin-ca.pem"),
        proxy_ca,
        routes: routes_path,
    };

    // Every proxy runs from the start, idle but for the scenario in hand, and each
    // scenario goes through all of them in turn: a noisy minute on this machine then
    // falls on one scenario of every proxy, not on every scenario of one proxy.
    let mut order: Vec<&String> = cfg.proxies.iter().filter(|p| *p == "direct").collect();
    order.extend(cfg.proxies.iter().filter(|p| *p != "direct"));
    let mut running = Vec::new();
    let mut results = Vec::new();
    for name in order {
        eprintln!("== starting {name}");
        match async { Measuring::new(&env, name, start(cfg, &env, name).await?) }.await {
            Ok(m) => running.push(m),
            Err(e) => {
                eprintln!("{name}: not measured: {e:#}");
                results.push(ProxyResult::failed(name, format!("not measured: {e:#}")));
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for m in &mut running {
        m.rest_kib = m.probe.rss_kib();
    }
    // Each scenario in rounds, every proxy once a round, the order reversed every other
    // round: each proxy's figure adds up its rounds, so it samples the fast and the slow
    // seconds of this machine alike (its vCPU's speed moves by up to 37%, docs/benchmarks.md).
    for step in steps(cfg) {
        let of = step.rounds(cfg);
        for index in 0..of {
            let round = Round { index, of };
            let mut turn: Vec<&mut Measuring> =
                running.iter_mut().filter(|m| m.measures(step)).collect();
            if index % 2 == 1 {
                turn.reverse();
            }
            for m in turn {
                eprintln!(
                    "  {} {} (round {} of {of})",
                    m.r.name,
                    step.describe(cfg),
                    index + 1
                );
                m.run(cfg, step, round).await;
            }
        }
    }
    for m in running {
        results.push(m.finish().await?);
    }
    // In the order they started: direct first, then as named.
    results.sort_by_key(|r| {
        let named = cfg.proxies.iter().position(|p| *p == r.name);
        (r.name != "direct", named)
    });
    // S5 added delay: against the direct run.
    let direct = results
        .iter()
        .find(|r| r.name == "direct")
        .and_then(|r| r.s5.clone());
    if let Some(d) = direct {
        for r in results.iter_mut() {
            if let Some(s) = r.s5.as_mut() {
                s.added_p50_ms = s.p50_ms.zip(d.p50_ms).map(|(a, b)| a - b);
                s.added_p99_ms = s.p99_ms.zip(d.p99_ms).map(|(a, b)| a - b);
            }
        }
    }
    drop(origin);
    Ok(results)
}

/// One proxy under measurement: how the load reaches it and what it measured so far.
struct Measuring {
    started: Started,
    t: Target,
    probe: Probe,
    rest_kib: Option<u64>,
    r: ProxyResult,
}

/// One scenario (one S1 level each), in the order they run.
#[derive(Clone, Copy)]
enum Step {
    S6,
    S3,
    S1(usize),
    S2,
    S4,
    S4w,
    S4s,
    S4u,
    S5,
}

fn steps(cfg: &Config) -> Vec<Step> {
    let mut v = Vec::new();
    for (name, step) in [("s6", Step::S6), ("s3", Step::S3)] {
        if cfg.wants(name) {
            v.push(step);
        }
    }
    if cfg.wants("s1") {
        v.extend(cfg.s1_concurrency.iter().map(|&c| Step::S1(c)));
    }
    for (name, step) in [
        ("s2", Step::S2),
        ("s4", Step::S4),
        ("s4w", Step::S4w),
        ("s4s", Step::S4s),
        ("s4u", Step::S4u),
        ("s5", Step::S5),
    ] {
        if cfg.wants(name) {
            v.push(step);
        }
    }
    v
}

/// One round of a scenario: the `index`th of `of`.
#[derive(Clone, Copy, Debug)]
struct Round {
    index: usize,
    of: usize,
}

impl Round {
    /// This round's part of `0..total`: the parts of all rounds tile it, in order.
    fn part(self, total: u64) -> std::ops::Range<u64> {
        let at = |i: usize| total * i as u64 / self.of as u64;
        at(self.index)..at(self.index + 1)
    }

    /// How many of `total` fall to this round.
    fn share(self, total: u64) -> u64 {
        let p = self.part(total);
        p.end - p.start
    }
}

impl Step {
    /// S6 measures memory once; S4's runs are its rounds; the rest `--rounds`.
    fn rounds(self, cfg: &Config) -> usize {
        match self {
            Step::S6 => 1,
            Step::S4 | Step::S4w | Step::S4s | Step::S4u => cfg.s4_runs,
            Step::S3 | Step::S1(_) | Step::S2 | Step::S5 => cfg.rounds,
        }
        .max(1)
    }

    fn describe(self, cfg: &Config) -> String {
        let mb = cfg.s4_bytes / 1_000_000;
        match self {
            Step::S6 => format!("S6 memory, {} idle connections", cfg.s6_conns),
            Step::S3 => format!("S3 first contact, {} hosts", cfg.s3_hosts),
            Step::S1(c) => format!("S1 keep-alive, C={c}"),
            Step::S2 => format!("S2 new connection per request, C={}", cfg.s2_concurrency),
            Step::S4 => format!("S4 download {mb} MB"),
            Step::S4w => format!("S4w download {mb} MB, one origin write per 64 KiB"),
            Step::S4s => format!("S4s download {mb} MB, origin h2 frames of 16 KiB"),
            Step::S4u => format!("S4u upload {mb} MB"),
            Step::S5 => format!("S5 SSE {} events", cfg.s5_events),
        }
    }
}

impl Measuring {
    fn new(env: &Env, name: &str, started: Started) -> Result<Measuring> {
        let via = started.via;
        let roots = pki::root_store(match via {
            Via::Mitm(_) => &env.proxy_ca.cert,
            Via::Direct | Via::Tunnel(_) => &env.origin_ca,
        })?;
        // The real credential where the client talks TLS with the origin itself.
        let auth = match via {
            Via::Mitm(_) => HeaderValue::from_static("Bearer placeholder-the-proxy-must-replace"),
            Via::Direct | Via::Tunnel(_) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", env.token))?;
                v.set_sensitive(true);
                v
            }
        };
        let proxy = match via {
            Via::Direct => None,
            Via::Tunnel(p) | Via::Mitm(p) => Some(SocketAddr::from((Ipv4Addr::LOCALHOST, p))),
        };
        let t = Target {
            proxy,
            origin_port: env.origin_port,
            tls: client::tls_config(roots),
            auth,
            cred_host: Ipv4Addr::LOCALHOST,
        };
        let probe = Probe {
            pid: started.child.as_ref().and_then(|c| c.id()),
            tck: procstat::clk_tck(),
        };
        Ok(Measuring {
            started,
            t,
            probe,
            rest_kib: None,
            r: ProxyResult::failed(name, "ok".into()),
        })
    }

    /// S6 is a MITM proxy's memory per connection; a relay's buffers are no floor of it.
    fn measures(&self, step: Step) -> bool {
        !matches!(step, Step::S6) || matches!(self.started.via, Via::Mitm(_))
    }

    /// Runs one round of `step` and adds it to what this proxy measured so far.
    async fn run(&mut self, cfg: &Config, step: Step, round: Round) {
        let (t, probe) = (&self.t, self.probe);
        let r = &mut self.r;
        let download = |q: &'static str| scenarios::download(t, probe, cfg.s4_bytes, q);
        let seconds = |s: f64| Duration::from_secs_f64(s / round.of as f64);
        let requests = round.share(cfg.max_requests);
        match step {
            Step::S6 => {
                r.s6 = Some(scenarios::memory(t, probe, self.rest_kib, cfg.s6_conns).await);
            }
            Step::S3 => {
                let hosts: Vec<Ipv4Addr> = round
                    .part(cfg.s3_hosts as u64)
                    .map(|i| i + 2)
                    .filter(|&h| h <= 254)
                    .map(|h| Ipv4Addr::new(127, 0, 0, h as u8))
                    .collect();
                if !hosts.is_empty() {
                    fold(&mut r.s3, scenarios::first_contact(t, probe, &hosts).await);
                }
            }
            Step::S1(c) => {
                let p =
                    scenarios::rate(t, probe, c, seconds(cfg.s1_seconds), requests, false).await;
                match r.s1.iter_mut().find(|q| q.concurrency == c) {
                    Some(q) => q.merge(p),
                    None => r.s1.push(p),
                }
            }
            Step::S2 => {
                let c = cfg.s2_concurrency;
                let p = scenarios::rate(t, probe, c, seconds(cfg.s2_seconds), requests, true).await;
                fold(&mut r.s2, p);
            }
            Step::S4 => fold(&mut r.s4, download("").await),
            Step::S4w => fold(&mut r.s4w, download("paced=1").await),
            Step::S4s => fold(&mut r.s4s, download("slice=16384").await),
            Step::S4u => fold(&mut r.s4u, scenarios::upload(t, probe, cfg.s4_bytes).await),
            Step::S5 => {
                let events = round.share(cfg.s5_events);
                if events > 0 {
                    let s = scenarios::sse(t, probe, events, cfg.s5_interval_ms).await;
                    fold(&mut r.s5, s);
                }
            }
        }
    }

    /// Peak memory, then the proxy stopped and its stderr's tail kept.
    async fn finish(mut self) -> Result<ProxyResult> {
        let mut r = self.r;
        r.peak_rss_kib = self.probe.hwm_kib();
        if let Some(c) = self.started.child.as_mut() {
            if let Some(st) = c.try_wait()? {
                r.status = format!("exited during the run ({st})");
            }
            let _ = c.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(t) = self.started.tail.lock() {
            r.stderr_lines = t.lines;
            r.stderr_tail = t.last.iter().cloned().collect();
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rounds_parts_tile_the_whole_in_order() {
        for (total, of) in [(200, 4), (10, 3), (3, 4), (1000, 1), (5_000_000, 7)] {
            let parts: Vec<_> = (0..of)
                .map(|index| Round { index, of }.part(total))
                .collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[of - 1].end, total);
            assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
            let shares: u64 = (0..of).map(|index| Round { index, of }.share(total)).sum();
            assert_eq!(shares, total);
        }
    }
}
