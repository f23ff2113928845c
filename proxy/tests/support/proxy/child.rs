//! egress-proxy as a child process, driven only through its SPEC CLI: the
//! black-box tests and the operation tests (signals, reload, drain, logs, RSS).
//!
//! It owns the routes file, the per-test proxy CA, the child's environment
//! (cleared, so no proxy variable of the machine leaks in) and its lifecycle
//! (killed on drop, even when a test fails). It must never print a token: output
//! shown in a failure has every test token replaced.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::pki::{CaFiles, TestCa};

/// How the proxy gets its CA (SPEC §4).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CaMode {
    /// `--ca-cert CERT --ca-key KEY` (the test's CA).
    Split,
    /// `--ca PEM` holding certificate and key (mitmproxy layout).
    Combined,
    /// No CA flag: the proxy mints one and writes it to `--ca-out`;
    /// `Proxy::ca_files.cert` and `Proxy::ca_pem` are then that CA (`Proxy::ca` is unused).
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
    /// Further arguments; `--listen 127.0.0.1:0` is added unless they hold a `--listen`.
    pub args: Vec<String>,
    /// Extra environment of the proxy process (the env fallbacks of SPEC §4).
    pub env: Vec<(String, String)>,
    /// `--admin-listen 127.0.0.1:0`; [`Proxy::admin`] is then its address.
    pub admin: bool,
}

/// The value of the sample whose line starts with `series ` in `metrics`
/// (0 if absent).
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
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
            args: Vec::new(),
            env: Vec::new(),
            admin: false,
        }
    }
    /// What the operation tests start: an ephemeral CA (`--ca-out`), as a
    /// deployment without a CA file does.
    pub fn ephemeral(routes: impl Into<String>) -> ProxyOpts {
        ProxyOpts::new(routes).ca_mode(CaMode::Ephemeral)
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
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
}

/// The binary running as a child, its stderr and stdout captured line by line.
pub struct Proxy {
    pub addr: SocketAddr,
    /// The admin listener, when [`ProxyOpts::admin`] asked for one.
    pub admin: Option<SocketAddr>,
    pub ca: TestCa,
    pub ca_files: CaFiles,
    /// The CA certificate clients must trust (the test CA, or the ephemeral one).
    pub ca_pem: String,
    pub dir: tempfile::TempDir,
    /// The routes file (rewritten by [`Proxy::reload_with`]).
    pub routes: PathBuf,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    secrets: Vec<String>,
    /// `EGRESS_PROXY_CA*` set: no `--ca-out` file is written.
    ca_from_env: bool,
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
    /// Starts the proxy and waits (30 s) for the line naming its listen address
    /// (and, with `admin`, for the admin line).
    pub fn start(opts: ProxyOpts) -> Proxy {
        let admin = opts.admin;
        let mut p = Proxy::spawn(opts);
        let deadline = Instant::now() + Duration::from_secs(30);
        p.addr = loop {
            if let Some(addr) = p.lines().iter().find_map(|l| listen_addr(l)) {
                break addr;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "egress-proxy exited with {status} before listening; stderr:\n{}",
                    p.redacted()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "egress-proxy printed no listen address in 30 s; stderr:\n{}",
                    p.redacted()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if admin {
            let a = p.wait_line(
                |v| {
                    v["msg"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("admin listening"))
                },
                "admin line",
            );
            p.admin = a["admin"].as_str().and_then(|a| a.parse().ok());
        }
        p.read_ca();
        p
    }

    /// Starts the proxy (its `--listen` given in `opts` as 127.0.0.1:`port`) and
    /// waits until the port accepts: for log formats that name no address.
    pub fn start_on(opts: ProxyOpts, port: u16) -> Proxy {
        let mut p = Proxy::spawn(opts);
        p.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + crate::support::STEP;
        while std::net::TcpStream::connect(p.addr).is_err() {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("egress-proxy exited ({st}):\n{}", p.redacted());
            }
            assert!(
                Instant::now() < deadline,
                "proxy not listening on {}",
                p.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p.read_ca();
        p
    }

    /// The CA clients trust. An ephemeral CA must have been written, unless the
    /// test handed the proxy a CA through its environment instead.
    fn read_ca(&mut self) {
        match std::fs::read_to_string(&self.ca_files.cert) {
            Ok(pem) => self.ca_pem = pem,
            Err(_) if self.ca_from_env => {}
            Err(e) => panic!("proxy CA written to {}: {e}", self.ca_files.cert.display()),
        }
    }

    fn spawn(opts: ProxyOpts) -> Proxy {
        let dir = tempfile::tempdir().expect("proxy temp dir");
        let ca = TestCa::new("egress test proxy CA");
        let mut ca_files = ca.write(dir.path(), "proxy-ca");
        let routes = dir.path().join("routes.yaml");
        std::fs::write(&routes, &opts.routes).expect("write routes");
        let mut cmd = Command::new(binary());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg("--routes")
            .arg(&routes);
        if !opts.args.iter().any(|a| a == "--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
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
        if opts.admin {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        cmd.args(&opts.args);
        for (k, v) in opts.tokens.iter().chain(&opts.env) {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn egress-proxy");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let pipes = [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            let lines = lines.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().expect("lines lock").push(line);
                }
            });
        }
        let secrets = opts.tokens.iter().map(|(_, v)| v.clone()).collect();
        let ca_from_env = opts
            .env
            .iter()
            .any(|(k, _)| k.starts_with("EGRESS_PROXY_CA"));
        Proxy {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: None,
            ca,
            ca_files,
            ca_pem: String::new(),
            dir,
            routes,
            child,
            lines,
            secrets,
            ca_from_env,
        }
    }

    /// The proxy's process id (for reading its RSS in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /metrics` on the admin port (`opts.admin`), the OpenMetrics text.
    pub async fn metrics(&self) -> String {
        let admin = self
            .admin
            .expect("the proxy was started with an admin port");
        let (status, body) = crate::support::raw::plain_get(admin, "/metrics")
            .await
            .expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        body
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

    /// Every line written so far, stderr and stdout (may contain a leaked
    /// secret: compare, never print).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// The lines parsed as JSON (non-JSON lines are skipped).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The access-log records (JSON format).
    pub fn access(&self) -> Vec<serde_json::Value> {
        self.json_lines()
            .into_iter()
            .filter(|v| v["msg"] == "request")
            .collect()
    }

    /// The output with the test tokens redacted, for failure messages.
    pub fn redacted(&self) -> String {
        redact(&self.lines().join("\n"), &self.secrets)
    }

    /// Asserts the proxy's output so far holds none of the test tokens.
    pub fn assert_no_secret_in_logs(&self) {
        let all = self.lines().join("\n");
        for s in &self.secrets {
            assert!(
                !all.contains(s.as_str()),
                "a test token appeared in egress-proxy's output (value withheld)"
            );
        }
    }

    /// Waits (bounded by `STEP`) for a JSON line matching `pred`.
    pub fn wait_line(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
        what: &str,
    ) -> serde_json::Value {
        let step = crate::support::STEP;
        let deadline = Instant::now() + step;
        loop {
            if let Some(v) = self.json_lines().into_iter().find(|v| pred(v)) {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "egress-proxy exited ({status}) before {what}:\n{}",
                    self.redacted()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {step:?}:\n{}",
                self.redacted()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Counts JSON lines matching `pred`.
    pub fn count(&self, pred: impl Fn(&serde_json::Value) -> bool) -> usize {
        self.json_lines().iter().filter(|v| pred(v)).count()
    }

    /// Sends `sig` (e.g. `HUP`, `TERM`) to this child only, by its id.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -s {sig} failed");
    }

    /// Waits up to `limit` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rewrites the routes file and sends SIGHUP.
    pub fn reload_with(&self, routes: &str) {
        // Write then rename: the proxy never reads a half-written file.
        let tmp = self.dir.path().join("routes.yaml.new");
        std::fs::write(&tmp, routes).expect("write routes");
        std::fs::rename(&tmp, &self.routes).expect("rename routes");
        self.signal("HUP");
    }

    /// A rustls root store holding the CA clients must trust.
    pub fn roots(&self) -> rustls::RootCertStore {
        crate::support::pki::root_store_from_pem(self.ca_pem.as_bytes())
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

/// Finds the proxy's listen address in a start-up line: a JSON `listening`
/// record's `addr`, or in text a `addr=127.0.0.1:PORT` (any `127.0.0.1:PORT` on a
/// line that mentions listening). The admin line is never taken for it.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        if v["msg"] != "listening" {
            return None;
        }
        let addr: SocketAddr = v["addr"].as_str()?.parse().ok()?;
        return (addr.port() != 0).then_some(addr);
    }
    let lower = line.to_ascii_lowercase();
    if lower.contains("admin listening") {
        return None;
    }
    let start = lower.find("addr=").or_else(|| lower.find("listen"))?;
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
    pub origin: crate::support::origin::Origin,
    pub proxy: Proxy,
    pub token: String,
}

impl Fixture {
    pub async fn start() -> Fixture {
        Self::with_routes(DEFAULT_ROUTES).await
    }

    pub async fn with_routes(routes: &str) -> Fixture {
        Self::with_origin(routes, crate::support::origin::Origin::start().await)
    }

    /// A proxy on `routes` in front of an already started origin.
    pub fn with_origin(routes: &str, origin: crate::support::origin::Origin) -> Fixture {
        let token = format!("tok-{}", crate::support::random_hex(24));
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
    pub fn assert_credential_injected(&self, seen: &crate::support::origin::Seen) {
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
