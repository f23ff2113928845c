//! The whole loop on loopback: the real egress-proxy (`--watch-routes` on
//! the state directory's routes file), the real sidecar, the agent's MCP
//! client (official Python SDK), and the host library deciding.
//!
//! egress-proxy is the workspace's binary: build it first with
//! `cargo build -p egress-proxy` (or point `EGRESS_PROXY_BIN` at one).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bottle_supervise::host;
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "s3cret-token-value-never-shown";

fn wait_pending(state: &[PathBuf], n: usize) -> Vec<host::Pending> {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let p = host::list(state).unwrap();
        if p.len() >= n {
            return p;
        }
        assert!(Instant::now() < until, "no proposal appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn audit_lines(st: &State) -> Vec<Value> {
    std::fs::read_to_string(st.root().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every file the sidecar can see, concatenated.
fn sidecar_visible(st: &State) -> String {
    let mut all = String::new();
    for sub in ["view", "proposals", "decisions"] {
        for e in std::fs::read_dir(st.root().join(sub)).unwrap() {
            all += &std::fs::read_to_string(e.unwrap().path()).unwrap();
        }
    }
    all
}

#[test]
fn approval_applies_live_through_egress_proxy_and_rejection_changes_nothing() {
    let routes = r#"{"unmatched": "deny", "routes": [
        {"host": "api.github.com", "path_allowlist": ["/repos/acme/widget/issues"],
         "auth_scheme": "Bearer", "token_env": "EGRESS_PROXY_TOKEN_0"}
    ]}"#;
    let st = State::new(routes);
    let dirs = [st.root()];
    let origin = origin();
    let (_proxy, proxy_addr) =
        watching_proxy(&st.root().join("routes/routes.json"), &st.root(), SECRET);
    let target = origin.to_string();

    // 1. A new host is refused.
    let (status, decision, _) = get_via(proxy_addr, &target, "/hello");
    assert_eq!(
        (status, decision.as_deref()),
        (403, Some("host-not-allowed"))
    );

    // 2. The agent asks; the sidecar waits for the decision.
    let sc = sidecar(&st.root(), &["--decision-wait", "30"]);
    let mut agent = Agent::connect(sc.addr);
    agent.send(json!({"op": "call", "tool": "request-egress", "args": {
        "host": "127.0.0.1", "paths": ["/hello"], "methods": ["GET"],
        "justification": "fetch the greeting the tests need"}}));

    // 3. The operator sees it and approves.
    let pending = wait_pending(&dirs, 1);
    let p = &pending[0];
    assert_eq!(p.request.host, "127.0.0.1");
    assert_eq!(p.client, "test-agent 1.0");
    assert!(!p.widens_credential);
    let id = p.id.to_string();
    let approved_at = Instant::now();
    let a = host::approve(&dirs, &id, "test-operator").unwrap();
    assert_eq!(
        a.route_after,
        json!({"host": "127.0.0.1", "path_allowlist": ["/hello"], "methods": ["GET"]})
    );

    // 4. The waiting tool call answers "approved" with the route.
    let r = agent.recv();
    let v = &r["structuredContent"];
    assert_eq!(v["status"], "approved", "{r}");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["route"]["host"], "127.0.0.1");

    // 5. Within seconds, with no restart, the proxy forwards it.
    let applied = wait_forwarded(proxy_addr, &target, "/hello", approved_at);
    eprintln!("approval applied through egress-proxy --watch-routes in {applied:?}");
    // Still only the approved path.
    let (status, decision, _) = get_via(proxy_addr, &target, "/other");
    assert_eq!(
        (status, decision.as_deref()),
        (403, Some("path-not-allowed"))
    );

    // 6. Audited and kept.
    let audit = audit_lines(&st);
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["id"], id.as_str());
    assert_eq!(audit[0]["decision"], "approved");
    assert_eq!(audit[0]["operator"], "test-operator");
    assert_eq!(audit[0]["client"], "test-agent 1.0");
    assert_eq!(audit[0]["request"]["host"], "127.0.0.1");
    assert_eq!(
        audit[0]["request"]["justification"],
        "fetch the greeting the tests need"
    );
    assert_eq!(audit[0]["route_after"]["host"], "127.0.0.1");
    let merged = host::merge_approved(routes, &st.root().join("approved.json")).unwrap();
    assert_eq!(merged.applied.len(), 1);
    let policy = addon_rules::Policy::from_text(&merged.text, "merged").unwrap();
    assert!(policy.route_for_host("127.0.0.1").is_some());
    // The agent's listing shows it now.
    let r = agent.call("list-egress-routes", json!({}));
    assert_eq!(
        r["structuredContent"]["routes"][1]["host"], "127.0.0.1",
        "{r}"
    );

    // 7. A rejection reaches the agent and leaves the routes file byte-identical.
    let before = std::fs::read(st.root().join("routes/routes.json")).unwrap();
    agent.send(json!({"op": "call", "tool": "request-egress", "args": {
        "host": "example.org", "justification": "browse"}}));
    let pending = wait_pending(&dirs, 1);
    let rid = pending[0].id.to_string();
    host::reject(&dirs, &rid, "not needed for this task", "test-operator").unwrap();
    let r = agent.recv();
    assert_eq!(r["structuredContent"]["status"], "rejected", "{r}");
    assert_eq!(r["structuredContent"]["reason"], "not needed for this task");
    assert_eq!(
        std::fs::read(st.root().join("routes/routes.json")).unwrap(),
        before
    );
    let r = agent.call("proposal-status", json!({"id": rid}));
    assert_eq!(r["structuredContent"]["status"], "rejected", "{r}");
    let audit = audit_lines(&st);
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[1]["decision"], "rejected");
    assert_eq!(audit[1]["reason"], "not needed for this task");
    // Decided once: a second decision on either is refused.
    assert!(matches!(
        host::approve(&dirs, &rid, "x"),
        Err(host::HostError::AlreadyDecided(..))
    ));
    assert!(matches!(
        host::reject(&dirs, &id, "late", "x"),
        Err(host::HostError::AlreadyDecided(..))
    ));
    assert_eq!(
        std::fs::read(st.root().join("routes/routes.json")).unwrap(),
        before
    );

    // 8. Nothing the sidecar can read holds the secret or its slot name.
    let seen = sidecar_visible(&st);
    assert!(
        !seen.contains(SECRET) && !seen.contains("EGRESS_PROXY_TOKEN"),
        "{seen}"
    );

    // 9. Revoked: the next run starts without it.
    host::revoke(&st.root().join("approved.json"), &id).unwrap();
    let merged = host::merge_approved(routes, &st.root().join("approved.json")).unwrap();
    assert!(merged.applied.is_empty());
    assert_eq!(merged.text, routes);
}

/// A directory as kubelet writes a ConfigMap volume (its atomic writer):
/// the files live in a hidden timestamped directory, `..data` points at
/// it, and each key is a symlink `key -> ..data/key`. An update writes a
/// new hidden directory and renames a new `..data` symlink over the old
/// one, so a reader sees the old set of files or the new one.
struct ConfigMapDir {
    dir: PathBuf,
    version: u32,
}

impl ConfigMapDir {
    fn new(dir: PathBuf) -> ConfigMapDir {
        std::fs::create_dir_all(&dir).unwrap();
        ConfigMapDir { dir, version: 0 }
    }

    /// Publishes the regular files of `from` (the operator's copy) as the
    /// ConfigMap's new data.
    fn publish(&mut self, from: &std::path::Path) {
        use std::os::unix::fs::symlink;
        self.version += 1;
        let data = self.dir.join(format!("..2026_12_06_{:04}", self.version));
        std::fs::create_dir(&data).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            if name.starts_with('.') || !e.file_type().unwrap().is_file() {
                continue;
            }
            std::fs::copy(e.path(), data.join(&name)).unwrap();
            let link = self.dir.join(&name);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
        let tmp = self.dir.join("..data_tmp");
        symlink(data.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if self.version > 1 {
            let old = self
                .dir
                .join(format!("..2026_12_06_{:04}", self.version - 1));
            std::fs::remove_dir_all(old).unwrap();
        }
    }
}

/// The same loop with the state laid out as Kubernetes delivers it
/// (docs/kubernetes.md, "supervise"): egress-proxy reads its routes from a
/// ConfigMap volume, the sidecar its view and decisions from two more and
/// writes proposals to its own emptyDir; the operator's copy of the state
/// is elsewhere. The proposals come out as `kubectl exec` would run it
/// (the sidecar's `--print-proposals`, then `host::import`); a copy into
/// kubelet's layout stands in for `kubectl apply` + kubelet (there is no
/// cluster here). What this checks for real: both programs follow
/// kubelet's symlinks and its `..data` swap, with no restart.
#[test]
fn approval_applies_through_configmap_volumes_as_kubelet_swaps_them() {
    let routes = r#"{"unmatched": "deny", "routes": [
        {"host": "api.github.com", "auth_scheme": "Bearer", "token_env": "EGRESS_PROXY_TOKEN_0"}
    ]}"#;
    // The operator's side: an ordinary state directory.
    let st = State::new(routes);
    let dirs = [st.root()];
    let cluster = tempfile::tempdir().unwrap();
    // egress-proxy's Pod: the live-routes ConfigMap.
    let mut live = ConfigMapDir::new(cluster.path().join("egress-proxy/live"));
    live.publish(&st.root().join("routes"));
    // The sidecar's Pod: view and decisions ConfigMaps, proposals emptyDir.
    let pod = cluster.path().join("supervise/state");
    let mut view = ConfigMapDir::new(pod.join("view"));
    view.publish(&st.root().join("view"));
    let mut decisions = ConfigMapDir::new(pod.join("decisions"));
    decisions.publish(&st.root().join("decisions"));
    std::fs::create_dir_all(pod.join("proposals")).unwrap();

    let origin = origin();
    let (_proxy, proxy_addr) =
        watching_proxy(&live.dir.join("routes.json"), cluster.path(), SECRET);
    let target = origin.to_string();
    let (status, decision, _) = get_via(proxy_addr, &target, "/hello");
    assert_eq!(
        (status, decision.as_deref()),
        (403, Some("host-not-allowed"))
    );

    let sc = sidecar(&pod, &["--decision-wait", "30"]);
    let mut agent = Agent::connect(sc.addr);
    let r = agent.call("list-egress-routes", json!({}));
    assert_eq!(
        r["structuredContent"]["routes"][0]["credential"], true,
        "{r}"
    );
    agent.send(json!({"op": "call", "tool": "request-egress", "args": {
        "host": "127.0.0.1", "paths": ["/hello"], "methods": ["GET"],
        "justification": "fetch the greeting the tests need"}}));

    // The proposal out of the sidecar's emptyDir as `kubectl exec` runs it
    // there: the sidecar binary's `--print-proposals`, imported on the
    // operator's side. A stray file in the emptyDir is not exported.
    std::fs::write(pod.join("proposals/p0000000000000000.json"), "{}").unwrap();
    let print_proposals = || {
        let o = Command::new(env!("CARGO_BIN_EXE_bottle-supervise"))
            .arg("--state")
            .arg(&pod)
            .arg("--print-proposals")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let until = Instant::now() + Duration::from_secs(15);
    let exported = loop {
        let out = print_proposals();
        let v: Value = serde_json::from_slice(&out).unwrap();
        if !v.as_array().unwrap().is_empty() {
            break out;
        }
        assert!(Instant::now() < until, "no proposal appeared");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(host::import(&st.root(), &exported).unwrap(), 1);
    assert_eq!(
        host::import(&st.root(), &exported).unwrap(),
        0,
        "written once"
    );
    let pending = wait_pending(&dirs, 1);
    assert_eq!(pending.len(), 1);
    let id = pending[0].id.to_string();
    host::approve(&dirs, &id, "test-operator").unwrap();

    // `kubectl apply` + kubelet stand-in: the three ConfigMaps swapped in.
    let applied_at = Instant::now();
    live.publish(&st.root().join("routes"));
    view.publish(&st.root().join("view"));
    decisions.publish(&st.root().join("decisions"));

    let r = agent.recv();
    assert_eq!(r["structuredContent"]["status"], "approved", "{r}");
    assert_eq!(r["structuredContent"]["route"]["host"], "127.0.0.1");
    // Decided: no longer exported (only what waits is).
    assert_eq!(print_proposals(), b"[]\n");
    wait_forwarded(proxy_addr, &target, "/hello", applied_at);
    let (status, decision, _) = get_via(proxy_addr, &target, "/other");
    assert_eq!(
        (status, decision.as_deref()),
        (403, Some("path-not-allowed"))
    );
    let r = agent.call("list-egress-routes", json!({}));
    assert_eq!(
        r["structuredContent"]["routes"][1]["host"], "127.0.0.1",
        "{r}"
    );
    // What the sidecar's Pod holds names no secret.
    for d in [&view.dir, &decisions.dir] {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                let t = std::fs::read_to_string(&p).unwrap();
                assert!(
                    !t.contains(SECRET) && !t.contains("EGRESS_PROXY_TOKEN"),
                    "{t}"
                );
            }
        }
    }
}
