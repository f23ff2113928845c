//! End to end on real Docker: the supervise loop in a bottle (issue 14).
//! Squid outer proxy, the HTTPS test origin on the egress network. Inside
//! the agent a request to a new host is `403 host-not-allowed`; a small MCP
//! client (raw JSON-RPC over streamable HTTP with urllib) lists the routes
//! (no secret in them) and calls `request-egress`; the test approves with
//! `bottle supervise approve ID`; within seconds the same request gets the
//! origin's 200 through egress-proxy and squid, and no container restarted.
//!
//! Needs the images of docker/build-images.sh (bottle-supervise included).

mod e2e_support;

use e2e_support::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The MCP client the agent runs: initialize, notifications/initialized,
/// then one tools/call; prints the tool result's structured content as JSON.
const MCP_PY: &str = r#"
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

fn last_status(out: &str) -> Option<u16> {
    out.lines()
        .rev()
        .find(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
}

/// `bottle supervise ...` with the test's state root: (code, stdout, stderr).
fn supervise(state: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bottle_bin())
        .arg("supervise")
        .args(args)
        .env("BOTTLE_STATE_DIR", state)
        .env("USER", "e2e-operator")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every container of the bottle with its start time.
fn start_times(id: &str) -> Vec<String> {
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

#[test]
fn supervise_approval_applies_live_through_egress_proxy_and_squid() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("sup");
    let mut guard = Guard::new(&bottle);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let repo = dir.join("repo");
    git_repo(&repo);
    let state = dir.join("state");
    let names = ["api.origin.test", "pub.origin.test", "new.origin.test"];
    let pki = origin_pki(&names);
    std::fs::write(dir.join("origin-ca.pem"), &pki.ca_pem).unwrap();
    let token = format!("tok-{}", unique("s3cr3t"));
    let token_var = format!("E2E_TOKEN_{}", bottle.to_uppercase());
    let manifest = format!(
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
          path_allowlist: ["/allowed"]
          methods: [GET]
          auth: {{scheme: Bearer, token_ref: {token_var}}}
agents:
  a:
    bottle: {bottle}
    command: [bash, -c, "for i in $(seq 1200); do [ -e /tmp/done ] && exit 7; sleep 0.5; done; exit 1"]
"#
    );
    std::fs::write(dir.join("bottle.yaml"), manifest).unwrap();
    let child = spawn_bottle(
        dir,
        &repo,
        &state,
        &[(token_var.as_str(), token.as_str())],
        &[
            "run",
            "--manifest",
            dir.join("bottle.yaml").to_str().unwrap(),
            "--agent",
            "a",
        ],
    );
    guard.children.push(child);
    let id = wait_for(180, || bottle_id(&bottle)).unwrap_or_else(|| {
        panic!(
            "no bottle network; stderr:\n{}",
            file(&dir.join("bottle.err"))
        )
    });
    let origin = format!("bottle-{id}-test-origin");
    guard.containers.push(origin.clone());
    start_origin(&origin, &format!("bottle-{id}-egress"), &names, &pki, dir);
    let (_, agent) = running_agent(&bottle, 240).unwrap_or_else(|| {
        panic!(
            "agent never ran; stderr:\n{}",
            file(&dir.join("bottle.err"))
        )
    });
    // The sidecar: running, non-root, on the agent network only, no env value.
    let sup = format!("bottle-{id}-supervise");
    let info = docker_ok_out(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.Config.User}} {{json .NetworkSettings.Networks}} {{json .Config.Env}}",
        &sup,
    ]);
    assert!(info.starts_with("true 65534:65534 "), "{info}");
    assert!(info.contains(&format!("bottle-{id}-agent")), "{info}");
    assert!(
        !info.contains("-egress\"") && !info.contains("-relay\""),
        "{info}"
    );
    assert!(
        !info.contains(&token) && !info.contains("EGRESS_PROXY_TOKEN"),
        "{info}"
    );
    let before = start_times(&id);
    assert_eq!(
        before.len(),
        4,
        "outer-proxy, egress-proxy, supervise, agent: {before:?}"
    );

    // 1. A new host: 403 host-not-allowed.
    let curl_new = "curl -s -m 30 -o /dev/null -D - https://new.origin.test/fresh";
    let (_, out, _) = exec(&agent, curl_new);
    assert_eq!(last_status(&out), Some(403), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-egress-proxy-decision: host-not-allowed"),
        "{out}"
    );

    // 2. The MCP client: list-egress-routes carries no secret.
    exec(
        &agent,
        &format!("cat > /tmp/mcp.py <<'PYEOF'\n{MCP_PY}\nPYEOF"),
    );
    let (code, out, err) = exec(
        &agent,
        "for i in $(seq 20); do python3 /tmp/mcp.py list-egress-routes '{}' && exit 0; sleep 0.5; done; exit 1",
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let line = out.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("{out}"));
    let routes = v["content"]["routes"].as_array().unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r["host"] == "api.origin.test" && r["credential"] == true),
        "{v}"
    );
    assert!(
        !line.contains(&token)
            && !line.contains("EGRESS_PROXY_TOKEN")
            && !line.contains(&token_var),
        "{line}"
    );

    // 3. request-egress, waiting for the operator in the background.
    exec(
        &agent,
        r#"nohup python3 /tmp/mcp.py request-egress '{"host":"new.origin.test","paths":["/fresh"],"methods":["GET"],"justification":"e2e: fetch the fresh fixture"}' >/tmp/req.out 2>/tmp/req.err &"#,
    );
    let pending = wait_for(30, || {
        let (_, out, _) = supervise(&state, &["list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let p = v.as_array()?.first()?.clone();
        Some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "no pending proposal; req.err: {}",
            exec(&agent, "cat /tmp/req.err").1
        )
    });
    assert_eq!(pending["request"]["host"], "new.origin.test", "{pending}");
    let pid = pending["id"].as_str().unwrap().to_string();
    let (_, human, _) = supervise(&state, &["list"]);
    assert!(
        human.contains(&pid) && human.contains("e2e: fetch the fresh fixture"),
        "{human}"
    );

    // 4. Approve; measure until the same request is no longer refused.
    let t0 = Instant::now();
    let (code, out, err) = supervise(&state, &["approve", &pid]);
    let approve_took = t0.elapsed();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("outer proxy (squid) reconfigured"),
        "{out}\n{err}"
    );
    let status = wait_for(20, || {
        let (_, out, _) = exec(&agent, curl_new);
        (last_status(&out) == Some(200)).then_some(out)
    });
    let applied = t0.elapsed();
    eprintln!(
        "supervise: approve command {:.2}s; request answered 200 {:.2}s after the approval started",
        approve_took.as_secs_f64(),
        applied.as_secs_f64()
    );
    assert!(
        status.is_some(),
        "still refused: {}",
        exec(&agent, curl_new).1
    );
    assert!(applied < Duration::from_secs(10));
    // The agent's waiting tool call answered `approved`.
    let res = wait_for(30, || {
        let (_, out, _) = exec(&agent, "cat /tmp/req.out");
        out.contains("approved").then_some(out)
    });
    assert!(
        res.is_some(),
        "{}",
        exec(&agent, "cat /tmp/req.out /tmp/req.err").1
    );
    // Nothing restarted.
    assert_eq!(start_times(&id), before, "a container restarted");
    // The audit names the operator; the proposal is no longer pending.
    let audit = file(&state.join(&id).join("supervise/audit.jsonl"));
    assert!(
        audit.contains(&pid) && audit.contains("e2e-operator"),
        "{audit}"
    );
    let (_, out, _) = supervise(&state, &["list", "--json"]);
    assert_eq!(out.trim(), "[]");

    // 5. A rejection reaches the agent with its reason; routes unchanged.
    let routes_file = state.join(&id).join("supervise/routes/routes.json");
    let routes_before = file(&routes_file);
    exec(
        &agent,
        r#"nohup python3 /tmp/mcp.py request-egress '{"host":"api.origin.test","paths":["/secret"],"justification":"e2e: read the secret path"}' >/tmp/rej.out 2>/tmp/rej.err &"#,
    );
    let pending = wait_for(30, || {
        let (_, out, _) = supervise(&state, &["list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.as_array()?.first().cloned()
    })
    .unwrap_or_else(|| panic!("no second proposal: {}", exec(&agent, "cat /tmp/rej.err").1));
    assert_eq!(pending["widens_credential"], true, "{pending}");
    let rid = pending["id"].as_str().unwrap().to_string();
    let (code, out, err) = supervise(&state, &["reject", &rid, "--why", "not for this task"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let res = wait_for(30, || {
        let (_, out, _) = exec(&agent, "cat /tmp/rej.out");
        out.contains("rejected").then_some(out)
    })
    .unwrap_or_else(|| exec(&agent, "cat /tmp/rej.out /tmp/rej.err").1);
    assert!(res.contains("not for this task"), "{res}");
    assert_eq!(
        file(&routes_file),
        routes_before,
        "a rejection changed the routes"
    );
    let (code, _, err) = supervise(&state, &["approve", &rid]);
    assert_ne!(code, 0, "a decided proposal was approved again");
    assert!(err.contains("already"), "{err}");

    // 6. The agent exits; nothing remains (state directory included).
    docker_ok_out(&["rm", "-f", &origin]);
    exec(&agent, "touch /tmp/done");
    let mut child = guard.children.pop().unwrap();
    let status = wait_child(&mut child, 120).expect("bottle run did not exit");
    assert_eq!(
        status.code(),
        Some(7),
        "stderr:\n{}",
        file(&dir.join("bottle.err"))
    );
    let left = leftovers(&id);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!state.join(&id).exists(), "state directory remains");
}
