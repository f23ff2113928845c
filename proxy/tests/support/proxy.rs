//! egress-proxy as a child process, driven only through its SPEC CLI.
//!
//! It owns the routes file, the per-test proxy CA and the child's environment
//! (cleared, so no proxy variable of the machine leaks in). It must never print a
//! token: stderr shown in a failure has every test token replaced.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::pki::{CaFiles, TestCa};

/// How the proxy gets its CA (SPEC §4).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CaMode {
    /// `--ca-cert CERT --ca-key KEY` (the test's CA).
    Split,
    /// `--ca PEM` holding certificate and key (mitmproxy layout).
    Combined,
    /// No CA flag: the proxy mints one and writes it to `--ca-out`;
    /// `Proxy::ca_files.cert` then points there (`Proxy::ca` is unused).
    Ephemeral,
}

/// What to start the proxy with. Routes are YAML text.
pub struct ProxyOpts {
    pub ca_mode: CaMode,
    pub routes: String,
    /// (name, value) of token env vars; values are secrets.
    pub tokens: Vec<(String, String)>,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_proxy: Option<String>,
    /// `--allow-range` values; default `127.0.0.0/8`.
    pub allow_ranges: Vec<String>,
    pub extra_args: Vec<String>,
    /// Extra environment of the proxy process (the env fallbacks of SPEC §4).
    pub env: Vec<(String, String)>,
}

impl ProxyOpts {
    pub fn new(routes: impl Into<String>) -> ProxyOpts {
        ProxyOpts {
            routes: routes.into(),
            ca_mode: CaMode::Split,
            tokens: Vec::new(),
            upstream_ca: None,
            upstream_proxy: None,
            allow_ranges: vec!["127.0.0.0/8".into()],
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }
    pub fn token(mut self, name: &str, value: &str) -> Self {
        self.tokens.push((name.into(), value.into()));
        self
    }
    pub fn upstream_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.upstream_ca = Some(path.into());
        self
    }
    pub fn upstream_proxy(mut self, url: impl Into<String>) -> Self {
        self.upstream_proxy = Some(url.into());
        self
    }
    pub fn ca_mode(mut self, mode: CaMode) -> Self {
        self.ca_mode = mode;
        self
    }
    pub fn no_allow_range(mut self) -> Self {
        self.allow_ranges.clear();
        self
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub ca: TestCa,
    pub ca_files: CaFiles,
    pub dir: tempfile::TempDir,
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    secrets: Vec<String>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_egress-proxy"))
}

impl Proxy {
    pub fn start(opts: ProxyOpts) -> Proxy {
        let dir = tempfile::tempdir().expect("proxy temp dir");
        let ca = TestCa::new("egress test proxy CA");
        let mut ca_files = ca.write(dir.path(), "proxy-ca");
        let routes = dir.path().join("routes.yaml");
        std::fs::write(&routes, &opts.routes).expect("write routes");
        let mut cmd = Command::new(binary());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg("--routes")
            .arg(&routes)
            .arg("--listen")
            .arg("127.0.0.1:0");
        match opts.ca_mode {
            CaMode::Split => {
                cmd.arg("--ca-cert")
                    .arg(&ca_files.cert)
                    .arg("--ca-key")
                    .arg(&ca_files.key);
            }
            CaMode::Combined => {
                cmd.arg("--ca").arg(&ca_files.combined);
            }
            CaMode::Ephemeral => {
                ca_files.cert = dir.path().join("ephemeral-ca.pem");
                cmd.arg("--ca-out").arg(&ca_files.cert);
            }
        }
        if let Some(ca) = &opts.upstream_ca {
            cmd.arg("--upstream-ca").arg(ca);
        }
        if let Some(up) = &opts.upstream_proxy {
            cmd.arg("--upstream-proxy").arg(up);
        }
        for r in &opts.allow_ranges {
            cmd.arg("--allow-range").arg(r);
        }
        cmd.args(&opts.extra_args);
        for (k, v) in opts.tokens.iter().chain(&opts.env) {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn egress-proxy");
        let secrets: Vec<String> = opts.tokens.iter().map(|(_, v)| v.clone()).collect();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("stderr pipe");
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                let mut sent = false;
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if !sent && let Some(addr) = listen_addr(&line) {
                        let _ = tx.send(addr);
                        sent = true;
                    }
                    stderr.lock().expect("stderr lock").push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(100)) {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "egress-proxy exited with {status} before listening; stderr:\n{}",
                    redact(&stderr.lock().expect("lock").join("\n"), &secrets)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "egress-proxy printed no listen address in 30 s; stderr:\n{}",
                    redact(&stderr.lock().expect("lock").join("\n"), &secrets)
                );
            }
        };
        Proxy {
            addr,
            ca,
            ca_files,
            dir,
            child,
            stderr,
            secrets,
        }
    }

    /// The proxy's process id (for reading its RSS in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every stderr line so far (may contain a leaked secret: compare, never print).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().expect("lock").clone()
    }

    /// Stderr with the test tokens redacted, for failure messages.
    pub fn stderr_redacted(&self) -> String {
        redact(&self.stderr_lines().join("\n"), &self.secrets)
    }

    /// Asserts the proxy's stderr so far holds none of the test tokens.
    pub fn assert_no_secret_in_logs(&self) {
        let all = self.stderr_lines().join("\n");
        for s in &self.secrets {
            assert!(
                !all.contains(s.as_str()),
                "a test token appeared in egress-proxy's stderr (value withheld)"
            );
        }
    }
}

fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "<REDACTED-TOKEN>");
        }
    }
    out
}

/// Finds the listen address in a start-up line: JSON `"addr":"127.0.0.1:PORT"` or a
/// text `addr=127.0.0.1:PORT`; falls back to any `127.0.0.1:PORT` on a line that
/// mentions listening.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    let lower = line.to_ascii_lowercase();
    let start = lower
        .find("\"addr\"")
        .or_else(|| lower.find("addr="))
        .or_else(|| lower.find("listen"))?;
    let rest = &line[start..];
    let at = rest.find("127.0.0.1:")?;
    let tail = &rest[at..];
    let end = tail
        .char_indices()
        .skip("127.0.0.1:".len())
        .find(|(_, c)| !c.is_ascii_digit())
        .map(|(i, _)| i)
        .unwrap_or(tail.len());
    let addr: SocketAddr = tail[..end].parse().ok()?;
    (addr.port() != 0).then_some(addr)
}

/// The routes most tests use: `localhost` carries a Bearer credential from
/// `EGRESS_PROXY_TOKEN_0` with an allow list and a deny list; `127.0.0.1` is a plain
/// route with every path allowed.
pub const DEFAULT_ROUTES: &str = r#"unmatched: deny
routes:
  - host: localhost
    path_allowlist: ["/echo/**", "/sse", "/large", "/ws", "/ws-denied", "/no-101", "/dirty", "/git/**"]
    path_denylist: ["/echo/secret/**", "/ws-denied"]
    auth_scheme: Bearer
    token_env: EGRESS_PROXY_TOKEN_0
  - host: 127.0.0.1
"#;

pub const TOKEN_VAR: &str = "EGRESS_PROXY_TOKEN_0";

/// A started origin plus a proxy on [`DEFAULT_ROUTES`] trusting it, and the token.
pub struct Fixture {
    pub origin: super::origin::Origin,
    pub proxy: Proxy,
    pub token: String,
}

impl Fixture {
    pub async fn start() -> Fixture {
        Self::with_routes(DEFAULT_ROUTES).await
    }

    pub async fn with_routes(routes: &str) -> Fixture {
        Self::with_origin(routes, super::origin::Origin::start().await)
    }

    /// A proxy on `routes` in front of an already started origin.
    pub fn with_origin(routes: &str, origin: super::origin::Origin) -> Fixture {
        let token = format!("tok-{}", super::random_hex(24));
        let proxy = Proxy::start(
            ProxyOpts::new(routes)
                .token(TOKEN_VAR, &token)
                .upstream_ca(&origin.ca_file),
        );
        Fixture {
            origin,
            proxy,
            token,
        }
    }

    /// `localhost:PORT` of the HTTPS origin.
    pub fn tls_host(&self) -> String {
        format!("localhost:{}", self.origin.https.port())
    }

    /// `https://localhost:PORT` + `path`.
    pub fn tls_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.origin.https.port())
    }

    /// Asserts the origin saw exactly the injected credential on every request it
    /// got (without printing it).
    pub fn assert_credential_injected(&self, seen: &super::origin::Seen) {
        let want = format!("Bearer {}", self.token);
        assert_eq!(
            seen.header_count("authorization"),
            1,
            "origin must see exactly one Authorization header"
        );
        assert!(
            seen.header("authorization") == Some(want.as_bytes()),
            "origin must see the injected `Bearer <token>` (value withheld)"
        );
    }

    /// Asserts a text a client saw does not contain the token.
    pub fn assert_no_token(&self, text: &[u8], what: &str) {
        let tok = self.token.as_bytes();
        assert!(
            !text.windows(tok.len()).any(|w| w == tok),
            "{what}: the token leaked to the client (value withheld)"
        );
    }
}
