//! Helpers of `e2e_supervise`: the MCP client the agent runs, the
//! pipelock stand-in, the `bottle` commands with the test's state root, and
//! one bottle (`Setup`) run as many times as the test needs. Also used by
//! `e2e_supervise_tui` (the MCP client).
#![allow(dead_code)]

use crate::e2e_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
/// The MCP client the agent runs: initialize, notifications/initialized,
/// then one tools/call; prints the tool result's structured content as JSON.
pub const MCP_PY: &str = r#"
import json, sys, urllib.request
URL = "http://supervise:9100/mcp"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
session = None
def post(msg):
    global session
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if session:
        h["mcp-session-id"] = session
    req = urllib.request.Request(URL, data=json.dumps(msg).encode(), headers=h, method="POST")
    with opener.open(req, timeout=120) as r:
        session = r.headers.get("mcp-session-id") or session
        body = r.read().decode()
    if "id" not in msg:
        return None
    for line in body.splitlines():
        if line.startswith("data:") and line[5:].strip():
            m = json.loads(line[5:])
            if m.get("id") == msg["id"]:
                return m
    return json.loads(body) if body.strip().startswith("{") else None
init = post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-03-26", "capabilities": {},
    "clientInfo": {"name": "e2e-mcp", "version": "1"}}})
assert init and "result" in init, init
assert session, "no mcp-session-id header"
post({"jsonrpc": "2.0", "method": "notifications/initialized"})
name, args = sys.argv[1], json.loads(sys.argv[2])
r = post({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": args}})
res = r["result"]
print(json.dumps({"isError": res.get("isError", False), "content": res.get("structuredContent"),
                  "text": [c.get("text") for c in res.get("content", [])]}))
"#;

pub fn last_status(out: &str) -> Option<u16> {
    out.lines()
        .rev()
        .find(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
}

/// `bottle supervise ...` with the test's state root: (code, stdout, stderr).
pub fn supervise(state: &Path, args: &[&str]) -> (i32, String, String) {
    let mut a = vec!["supervise"];
    a.extend_from_slice(args);
    bottle(state, &[], &a)
}

/// `bottle ARGS` with the test's state root and env: (code, stdout, stderr).
pub fn bottle(state: &Path, envs: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bottle_bin())
        .args(args)
        .env("BOTTLE_STATE_DIR", state)
        .env("USER", "e2e-operator")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The origin's answer body (`{"path", "host", "auth_sha256"}`) when the
/// request got 200.
pub fn origin_json(out: &str) -> Option<serde_json::Value> {
    (last_status(out) == Some(200))
        .then(|| {
            out.lines()
                .last()
                .and_then(|l| serde_json::from_str(l).ok())
        })
        .flatten()
}

pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts `request-egress` in the agent in the background (it waits for the
/// operator); its answer lands in /tmp/NAME.out. Returns the pending
/// proposal the operator sees for `host`.
pub fn propose(state: &Path, agent: &str, name: &str, args: &str, host: &str) -> serde_json::Value {
    exec(
        agent,
        &format!(
            "nohup python3 /tmp/mcp.py request-egress '{args}' >/tmp/{name}.out 2>/tmp/{name}.err &"
        ),
    );
    wait_for(30, || {
        let (_, out, _) = supervise(state, &["list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.as_array()?
            .iter()
            .find(|p| p["request"]["host"] == host)
            .cloned()
    })
    .unwrap_or_else(|| {
        panic!(
            "no pending proposal for {host}: {}",
            exec(agent, &format!("cat /tmp/{name}.err")).1
        )
    })
}

/// Everything the agent can read that could carry a token: its environment,
/// PID 1's, and the files under its config, home, workspace and temp dirs.
pub fn agent_readable(agent: &str) -> String {
    exec(
        agent,
        "env; tr '\\0' '\\n' </proc/1/environ; find /etc /home /tmp /workspace /run -xdev -type f -size -2M -readable -exec cat {} + 2>/dev/null; true",
    )
    .1
}

/// Every container of the bottle with its start time.
pub fn start_times(id: &str) -> Vec<String> {
    let names = docker_ok_out(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=bottle.id={id}"),
        "--format",
        "{{.Names}}",
    ]);
    let mut v: Vec<String> = names
        .lines()
        .map(|n| {
            format!(
                "{n} {}",
                docker_ok_out(&["inspect", "-f", "{{.State.StartedAt}}", n]).trim()
            )
        })
        .collect();
    v.sort();
    v
}

/// One bottle of the test: its manifest, state root and token.
pub struct Setup {
    pub bottle: String,
    pub dir: PathBuf,
    pub repo: PathBuf,
    pub state: PathBuf,
    pub pki: OriginPki,
    pub token: String,
    pub token_var: String,
}

pub const NAMES: [&str; 3] = ["api.origin.test", "pub.origin.test", "new.origin.test"];

impl Setup {
    pub fn new(dir: &Path) -> Setup {
        let bottle = unique("sup");
        let repo = dir.join("repo");
        git_repo(&repo);
        let pki = origin_pki(&NAMES);
        std::fs::write(dir.join("origin-ca.pem"), &pki.ca_pem).unwrap();
        let token = format!("tok-{}", unique("s3cr3t"));
        let token_var = format!("E2E_TOKEN_{}", bottle.to_uppercase());
        let s = Setup {
            bottle,
            dir: dir.to_path_buf(),
            repo,
            state: dir.join("state"),
            pki,
            token,
            token_var,
        };
        std::fs::write(dir.join("bottle.yaml"), s.manifest(&["/allowed"])).unwrap();
        s
    }

    pub fn manifest(&self, api_paths: &[&str]) -> String {
        let bottle = &self.bottle;
        let token_var = &self.token_var;
        let paths = serde_json::to_string(api_paths).unwrap();
        format!(
            r#"
bottles:
  {bottle}:
    outer_proxy: squid
    outer_proxy_trust: [./origin-ca.pem]
    allow: [pub.origin.test]
    supervise: true
    egress_proxy:
      routes:
        - host: api.origin.test
          path_allowlist: {paths}
          methods: [GET]
          auth: {{scheme: Bearer, token_ref: {token_var}}}
agents:
  a:
    bottle: {bottle}
    command: [bash, -c, "for i in $(seq 1200); do [ -e /tmp/done ] && exit 7; sleep 0.5; done; exit 1"]
"#
        )
    }

    pub fn env(&self) -> [(&str, &str); 1] {
        [(self.token_var.as_str(), self.token.as_str())]
    }

    /// `bottle run` in the background, the origin on its egress network,
    /// and the running agent: (id, agent container, origin container).
    pub fn run(&self, guard: &mut Guard, extra: &[&str]) -> (String, String, String) {
        let _ = std::fs::remove_file(self.dir.join("bottle.err"));
        let manifest = self.dir.join("bottle.yaml");
        let mut args = vec![
            "run",
            "--manifest",
            manifest.to_str().unwrap(),
            "--agent",
            "a",
        ];
        args.extend_from_slice(extra);
        let child = spawn_bottle(&self.dir, &self.repo, &self.state, &self.env(), &args);
        guard.children.push(child);
        let id = wait_for(180, || bottle_id(&self.bottle)).unwrap_or_else(|| {
            panic!(
                "no bottle network; stderr:\n{}",
                file(&self.dir.join("bottle.err"))
            )
        });
        let origin = format!("bottle-{id}-test-origin");
        guard.containers.push(origin.clone());
        start_origin(
            &origin,
            &format!("bottle-{id}-egress"),
            &NAMES,
            &self.pki,
            &self.dir,
        );
        let (_, agent) = running_agent(&self.bottle, 240).unwrap_or_else(|| {
            panic!(
                "agent never ran; stderr:\n{}",
                file(&self.dir.join("bottle.err"))
            )
        });
        exec(
            &agent,
            &format!("cat > /tmp/mcp.py <<'PYEOF'\n{MCP_PY}\nPYEOF"),
        );
        (id, agent, origin)
    }

    /// Ends the run: the agent exits 7, nothing remains.
    pub fn finish(&self, guard: &mut Guard, id: &str, agent: &str, origin: &str) {
        docker_ok_out(&["rm", "-f", origin]);
        exec(agent, "touch /tmp/done");
        let mut child = guard.children.pop().unwrap();
        let status = wait_child(&mut child, 120).expect("bottle run did not exit");
        assert_eq!(
            status.code(),
            Some(7),
            "stderr:\n{}",
            file(&self.dir.join("bottle.err"))
        );
        let left = leftovers(id);
        assert!(left.is_empty(), "left behind: {left:?}");
        assert!(!self.state.join(id).exists(), "state directory remains");
    }
}

/// The watcher stands in for pipelock (no pipelock image here): PID 1,
/// reloading on SIGHUP, and watching the config file's *directory* with
/// inotify as pipelock's fsnotify does (internal/config/reload.go).
pub const WATCH_PY: &str = r#"
import ctypes, os, signal, struct, sys
def hup(*a):
    print("HUP", flush=True)
signal.signal(signal.SIGHUP, hup)
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
# IN_MODIFY|IN_CLOSE_WRITE|IN_MOVED_TO|IN_CREATE|IN_DELETE
libc.inotify_add_watch(fd, b"/etc/pipelock", 0x2 | 0x8 | 0x80 | 0x100 | 0x200)
print("watching", flush=True)
while True:
    try:
        buf = os.read(fd, 4096)
    except InterruptedError:
        continue
    i = 0
    while i < len(buf):
        wd, mask, cookie, n = struct.unpack_from("iIII", buf, i)
        name = buf[i + 16:i + 16 + n].rstrip(b"\0").decode()
        print("event", name, hex(mask), flush=True)
        i += 16 + n
"#;
