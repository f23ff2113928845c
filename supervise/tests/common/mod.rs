//! Shared test helpers: a state directory, the real sidecar binary on
//! loopback, the official Python MCP SDK as the agent's client, raw HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const ROUTES: &str = r#"{
  "unmatched": "deny",
  "routes": [
    {"host": "api.github.com", "path_allowlist": ["/repos/acme/widget/issues"], "methods": ["GET"],
     "auth_scheme": "Bearer", "token_env": "EGRESS_PROXY_TOKEN_0"},
    {"host": "api.anthropic.com", "auth_header": "x-api-key", "token_file": "/run/secrets/anthropic"},
    {"host": "pypi.org"}
  ]
}
"#;

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// A venv with the official MCP Python SDK under the target directory,
/// created on first use (needs PyPI once).
pub fn python() -> PathBuf {
    let venv = target_dir().join("supervise-py");
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import mcp"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(st.success(), "python3 -m venv failed");
        let st = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "mcp==2.3.0"])
            .status()
            .expect("pip");
        assert!(st.success(), "pip install mcp failed (PyPI needed once)");
    }
    py
}

pub struct State {
    pub dir: tempfile::TempDir,
}

impl State {
    pub fn new(routes: &str) -> State {
        let dir = tempfile::tempdir().unwrap();
        bottle_supervise::host::init(dir.path(), "dev", routes, &["pypi.org".to_string()]).unwrap();
        State { dir }
    }
    pub fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
    pub fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.dir.path().join(sub))
            .unwrap()
            .count()
    }
}

pub struct Sidecar {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_connectable(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < until, "{addr} never accepted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The real `bottle-supervise` binary on a loopback port.
pub fn sidecar(state: &Path, extra: &[&str]) -> Sidecar {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_bottle-supervise"))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--state")
        .arg(state)
        .args(extra)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    wait_connectable(addr);
    Sidecar { child, addr }
}

/// The agent's MCP client: the official Python SDK over streamable HTTP.
pub struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Agent {
    pub fn connect(addr: SocketAddr) -> Agent {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(format!("http://{addr}/mcp"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut a = Agent {
            child,
            stdin,
            stdout,
        };
        assert_eq!(a.read(), json!({"ready": true}));
        a
    }
    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("client said {line:?}: {e}"))
    }
    pub fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }
    pub fn recv(&mut self) -> Value {
        self.read()
    }
    pub fn list_tools(&mut self) -> Value {
        self.send(json!({"op": "list_tools"}));
        self.read()
    }
    pub fn call(&mut self, tool: &str, args: Value) -> Value {
        self.send(json!({"op": "call", "tool": tool, "args": args}));
        self.read()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of a tool result, and whether it is an error.
pub fn text_of(r: &Value) -> (bool, String) {
    let is_err = r["isError"].as_bool().unwrap_or(false);
    let text = r["content"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    (is_err, text)
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); the
/// status line and the whole answer.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A JSON-RPC POST to `/mcp` with the given `Host` header.
pub fn post_mcp(addr: SocketAddr, host: &str, body: &str, session: Option<&str>) -> (u16, String) {
    let sess = session
        .map(|s| format!("mcp-session-id: {s}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{sess}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw_http(addr, req.as_bytes())
}

pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

pub fn egress_proxy_bin() -> PathBuf {
    let p = std::env::var_os("EGRESS_PROXY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/egress-proxy"));
    assert!(
        p.is_file(),
        "{} missing: run `cargo build -p egress-proxy` first (or set EGRESS_PROXY_BIN)",
        p.display()
    );
    p
}

pub struct Proxy(pub Child);
impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An origin on loopback that answers every request `200 hello`.
pub fn origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                );
            });
        }
    });
    addr
}

/// A plain `http://` GET through the proxy: (status, decision header, body).
pub fn get_via(proxy: SocketAddr, url_host: &str, path: &str) -> (u16, Option<String>, String) {
    let request = format!(
        "GET http://{url_host}{path} HTTP/1.1\r\nHost: {url_host}\r\nConnection: close\r\n\r\n"
    );
    let (status, text) = raw_http(proxy, request.as_bytes());
    let decision = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-egress-proxy-decision")
            .then(|| v.trim().to_string())
    });
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, decision, body)
}

/// The workspace's egress-proxy on a free loopback port with
/// `--watch-routes` on `routes`, its CA written into `dir`, and `token` as
/// `EGRESS_PROXY_TOKEN_0`.
pub fn watching_proxy(routes: &Path, dir: &Path, token: &str) -> (Proxy, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy(
        Command::new(egress_proxy_bin())
            .arg("--routes")
            .arg(routes)
            .arg("--watch-routes")
            .args(["--listen", &addr.to_string(), "--log-format", "text"])
            .arg("--ca-out")
            .arg(dir.join("ca.pem"))
            .env("EGRESS_PROXY_TOKEN_0", token)
            .spawn()
            .unwrap(),
    );
    wait_connectable(addr);
    (proxy, addr)
}

/// Polls until the proxy forwards `GET <path>` to the origin (no longer
/// `host-not-allowed`), at most 10 s from `since`; it must answer `200 hello`.
/// Returns how long it took from `since`.
pub fn wait_forwarded(proxy: SocketAddr, target: &str, path: &str, since: Instant) -> Duration {
    loop {
        let (status, decision, body) = get_via(proxy, target, path);
        if decision.as_deref() != Some("host-not-allowed") {
            assert_eq!((status, decision, body.as_str()), (200, None, "hello"));
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the approval never reached egress-proxy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
