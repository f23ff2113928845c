//! The proxies as child processes: each started pinned to its CPUs (`taskset`), waited
//! for until it listens, its stderr drained into a short tail for the report.
//!
//! Owns process wiring only; what runs against a started proxy is `bench`'s. It must never
//! put the token on a command line: it reaches the children by environment only.

use crate::bench::{Config, Env};
use crate::routes;
use anyhow::{Context, Result, bail};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Keeps the last lines of a child's stderr, counting all of them.
#[derive(Default)]
pub(crate) struct Tail {
    pub(crate) lines: u64,
    pub(crate) last: VecDeque<String>,
}

pub(crate) type SharedTail = Arc<Mutex<Tail>>;

fn drain_stderr(child: &mut Child) -> SharedTail {
    let tail: SharedTail = Arc::default();
    if let Some(err) = child.stderr.take() {
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(err).lines();
            while let Ok(Some(line)) = r.next_line().await {
                if let Ok(mut t) = tail.lock() {
                    t.lines += 1;
                    if t.last.len() >= 10 {
                        t.last.pop_front();
                    }
                    let mut line = line;
                    line.truncate(400);
                    t.last.push_back(line);
                }
            }
        });
    }
    tail
}

/// Reads `READY <port>` from a child's stdout.
pub(crate) async fn ready_line(child: &mut Child, what: &str) -> Result<u16> {
    let out = child.stdout.take().context("child stdout not piped")?;
    let mut lines = BufReader::new(out).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .with_context(|| format!("{what}: not ready within 60 s"))??
        .with_context(|| format!("{what}: exited before it was ready"))?;
    let port = line
        .strip_prefix("READY ")
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("{what}: unexpected first line {line:?}"))?;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(port)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// Waits until `port` accepts; with `healthz`, until `GET /healthz` answers 200.
async fn wait_listening(child: &mut Child, port: u16, healthz: bool, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait()? {
            bail!("{what} exited during start-up ({st})");
        }
        if let Ok(mut s) = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
            if !healthz {
                return Ok(());
            }
            let probe = async {
                s.write_all(
                    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                )
                .await?;
                let mut buf = vec![0u8; 64];
                let n = s.read(&mut buf).await?;
                anyhow::Ok(buf[..n].starts_with(b"HTTP/1.1 200"))
            };
            if let Ok(Ok(true)) = tokio::time::timeout(Duration::from_secs(5), probe).await {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{what} did not become ready on port {port} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A proxy started and ready (`direct`: nothing to start).
pub(crate) struct Started {
    pub(crate) child: Option<Child>,
    pub(crate) via: Via,
    pub(crate) tail: SharedTail,
}

/// A child that prints `READY <port>` when it listens (the harness's own subcommands).
async fn announced(mut c: Child, what: &str, via: fn(u16) -> Via) -> Result<Started> {
    let tail = drain_stderr(&mut c);
    let port = ready_line(&mut c, what).await?;
    Ok(Started {
        child: Some(c),
        via: via(port),
        tail,
    })
}

/// A MITM proxy on a port chosen for it, once it listens (see `wait_listening`).
async fn listening(mut c: Child, port: u16, healthz: bool, what: &str) -> Result<Started> {
    let tail = drain_stderr(&mut c);
    if let Err(e) = wait_listening(&mut c, port, healthz, what).await {
        tokio::time::sleep(Duration::from_millis(200)).await;
        bail!("{e:#}; its stderr: {}", tail_text(&tail));
    }
    Ok(Started {
        child: Some(c),
        via: Via::Mitm(port),
        tail,
    })
}

pub(crate) async fn start(cfg: &Config, env: &Env, name: &str) -> Result<Started> {
    match name {
        "direct" => Ok(Started {
            child: None,
            via: Via::Direct,
            tail: Arc::default(),
        }),
        "tunnel" => {
            let exe = std::env::current_exe()?;
            let c = pinned(cfg, &exe)
                .arg("tunnel")
                .arg("--listen")
                .arg("127.0.0.1:0")
                .stdout(Stdio::piped())
                .spawn()
                .context("starting the tunnel")?;
            announced(c, "tunnel", Via::Tunnel).await
        }
        "egress-proxy" => {
            anyhow::ensure!(
                cfg.egress_proxy.is_file(),
                "{} not found: build it with `cargo build --release -p egress-proxy`",
                cfg.egress_proxy.display()
            );
            let port = free_port()?;
            let c = pinned(cfg, &cfg.egress_proxy)
                .arg("--routes")
                .arg(&env.routes)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--upstream-ca")
                .arg(&env.origin_ca)
                .arg("--allow-range")
                .arg("127.0.0.0/8")
                .arg("--ca-cert")
                .arg(&env.proxy_ca.cert)
                .arg("--ca-key")
                .arg(&env.proxy_ca.key)
                .env(routes::TOKEN_ENV, &env.token)
                .spawn()
                .context("starting egress-proxy")?;
            listening(c, port, true, "egress-proxy").await
        }
        "hudsucker" => {
            let exe = match &cfg.hudsucker_exec {
                Some(wrapper) => wrapper.clone(),
                None => std::env::current_exe()?,
            };
            let c = pinned(cfg, &exe)
                .arg("hudsucker")
                .arg("--listen")
                .arg("127.0.0.1:0")
                .arg("--ca-cert")
                .arg(&env.proxy_ca.cert)
                .arg("--ca-key")
                .arg(&env.proxy_ca.key)
                .arg("--upstream-ca")
                .arg(&env.origin_ca)
                .arg("--routes")
                .arg(&env.routes)
                .env(routes::TOKEN_ENV, &env.token)
                .stdout(Stdio::piped())
                .spawn()
                .context("starting the hudsucker proxy")?;
            announced(c, "hudsucker", Via::Mitm).await
        }
        "mitmproxy" => {
            anyhow::ensure!(
                cfg.mitmdump.is_file(),
                "{} not found: run benches/load/run.sh (it creates the venv)",
                cfg.mitmdump.display()
            );
            let port = free_port()?;
            let c = pinned(cfg, &cfg.mitmdump)
                .arg("--listen-host")
                .arg("127.0.0.1")
                .arg("--listen-port")
                .arg(port.to_string())
                .arg("--set")
                .arg(format!("confdir={}", env.proxy_ca.mitm_confdir.display()))
                .arg("--set")
                .arg(format!(
                    "ssl_verify_upstream_trusted_ca={}",
                    env.origin_ca.display()
                ))
                .arg("--set")
                .arg("termlog_verbosity=warn")
                .arg("--set")
                .arg("flow_detail=0")
                .arg("-s")
                .arg(&cfg.mitm_addon)
                .arg("--set")
                .arg(format!("bench_routes={}", env.routes.display()))
                .env(routes::TOKEN_ENV, &env.token)
                .spawn()
                .context("starting mitmdump")?;
            listening(c, port, false, "mitmdump").await
        }
        other => {
            bail!("unknown proxy {other:?}: use direct, tunnel, egress-proxy, hudsucker, mitmproxy")
        }
    }
}

fn tail_text(t: &SharedTail) -> String {
    t.lock()
        .map(|t| t.last.iter().cloned().collect::<Vec<_>>().join(" | "))
        .unwrap_or_default()
}

/// `taskset -c <cpus> <program>` with stdout/stderr piped and killed on drop.
fn pinned(cfg: &Config, program: &std::path::Path) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c")
        .arg(&cfg.proxy_cpus)
        .arg(program)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// How the load generator reaches the origin.
#[derive(Clone, Copy)]
pub(crate) enum Via {
    Direct,
    /// A CONNECT relay on this port; TLS end to end with the origin.
    Tunnel(u16),
    /// A MITM proxy on this port: TLS to its minted leaf.
    Mitm(u16),
}
