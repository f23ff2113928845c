//! `bottle supervise --k8s` end to end, without a cluster: the real
//! `bottle` (render, then supervise list/approve/reject), the real sidecar
//! and egress-proxy reading their state from directories laid out as
//! kubelet lays out ConfigMap volumes, the agent's real MCP client; and
//! `kubectl_standin.py` in place of kubectl + API server + kubelet (there
//! is none here; docs/kubernetes.md lists what this does not verify).
//!
//! Needs the workspace's `bottle` and `egress-proxy` binaries (built by
//! `cargo nextest run --workspace`, or `cargo build`), and PyYAML (it comes
//! with kubernetes-validate, scripts/setup.sh).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "ghp_k8s_operator_secret_value_42";
const ID: &str = "k8s-op";

const MANIFEST: &str = r#"
bottles:
  dev:
    allow: [pypi.org]
    supervise: true
    egress_proxy:
      routes:
        - host: api.github.com
          auth: {scheme: Bearer, token_ref: K8S_OP_GH_PAT}
agents:
  coder:
    bottle: dev
    image: debian:bookworm
"#;

fn bottle_bin() -> PathBuf {
    let p = target_dir().join("debug/bottle");
    assert!(
        p.is_file(),
        "{} missing: run `cargo build -p bottle` first",
        p.display()
    );
    p
}

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn map(&self, suffix: &str) -> PathBuf {
        self.root().join(format!("configmaps/bottle-{ID}-{suffix}"))
    }
    /// `bottle ARGS` with the stand-in as kubectl and a state root of its own.
    fn bottle(&self, args: &[&str]) -> Output {
        Command::new(bottle_bin())
            .args(args)
            .env("BOTTLE_STATE_DIR", self.root().join("state"))
            .env("BOTTLE_KUBECTL", standin())
            .env("STANDIN_ROOT", self.root())
            .env("STANDIN_SIDECAR", env!("CARGO_BIN_EXE_bottle-supervise"))
            .env("K8S_OP_GH_PAT", SECRET)
            .env("USER", "test-operator")
            .output()
            .unwrap()
    }
    /// `bottle render --format k8s -m m.yaml -a coder EXTRA...`.
    fn render(&self, extra: &[&str]) -> Output {
        let m = self.root().join("m.yaml");
        let mut all = vec!["render", "--format", "k8s", "-m", m.to_str().unwrap()];
        all.extend(["-a", "coder"]);
        all.extend(extra);
        self.bottle(&all)
    }
    fn supervise(&self, args: &[&str]) -> Output {
        let m = self.root().join("m.yaml");
        let mut all = vec!["supervise", "--k8s", "-m", m.to_str().unwrap()];
        all.extend(["-a", "coder", "--id", ID]);
        all.extend(args);
        self.bottle(&all)
    }
    fn kubectl_log(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.root().join("kubectl.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubectl_standin.py")
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "exit {:?}\n{out}\n{err}", o.status);
    assert!(!out.contains(SECRET) && !err.contains(SECRET));
    out
}

/// Renders the bottle and applies its ConfigMaps through the stand-in, as
/// `kubectl apply -f k8s/configmap.yaml` would.
fn rendered_and_applied() -> World {
    let w = World {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(w.root().join("m.yaml"), MANIFEST).unwrap();
    let out = w.root().join("k8s");
    ok(&w.render(&["--id", ID, "--out", out.to_str().unwrap()]));
    let mut apply = Command::new(standin())
        .args(["apply", "-f", "-"])
        .env("STANDIN_ROOT", w.root())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let maps = std::fs::read(out.join("configmap.yaml")).unwrap();
    std::io::Write::write_all(apply.stdin.as_mut().unwrap(), &maps).unwrap();
    drop(apply.stdin.take());
    assert!(apply.wait().unwrap().success());
    // The sidecar's Pod: its two ConfigMap volumes and its emptyDir.
    let pod = w.root().join("pod");
    std::fs::create_dir_all(pod.join("proposals")).unwrap();
    std::os::unix::fs::symlink(w.map("supervise-view"), pod.join("view")).unwrap();
    std::os::unix::fs::symlink(w.map("supervise-decisions"), pod.join("decisions")).unwrap();
    std::fs::remove_file(w.root().join("kubectl.log")).unwrap();
    w
}

fn wait_proposals(pod: &Path, n: usize) {
    let until = Instant::now() + Duration::from_secs(15);
    while std::fs::read_dir(pod.join("proposals")).unwrap().count() < n {
        assert!(Instant::now() < until, "no proposal appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn supervise_k8s_approves_and_rejects_through_kubectl_and_configmaps() {
    let w = rendered_and_applied();
    let routes = w.map("live-routes").join("routes.json");
    let origin = origin();
    let (_proxy, proxy_addr) = watching_proxy(&routes, w.root(), SECRET);
    let target = origin.to_string();
    let (status, decision, _) = get_via(proxy_addr, &target, "/hello");
    assert_eq!(
        (status, decision.as_deref()),
        (403, Some("host-not-allowed"))
    );

    let pod = w.root().join("pod");
    let sc = sidecar(&pod, &["--decision-wait", "60"]);
    let mut agent = Agent::connect(sc.addr);
    agent.send(json!({"op": "call", "tool": "request-egress", "args": {
        "host": "127.0.0.1", "paths": ["/hello"], "methods": ["GET"],
        "justification": "fetch the greeting the tests need"}}));
    wait_proposals(&pod, 1);

    // The operator lists: the proposal came out of the Pod by kubectl exec.
    let listed: Value = serde_json::from_str(&ok(&w.supervise(&["list", "--json"]))).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["request"]["host"], "127.0.0.1");
    assert_eq!(listed[0]["client"], "test-agent 1.0");
    let id = listed[0]["id"].as_str().unwrap().to_string();

    // Approves: the ConfigMaps are applied, the outer proxy restarted for
    // its new allowlist, and nothing else is asked of the cluster.
    let out = ok(&w.supervise(&["approve", &id]));
    assert!(out.contains(&format!("approved {id}")), "{out}");
    assert!(out.contains("restarted"), "{out}");
    let log = w.kubectl_log();
    let sidecar_exec = [
        "-n",
        "bottle-k8s-op",
        "exec",
        "deploy/bottle-k8s-op-supervise",
        "--",
        "/bottle-supervise",
        "--state",
        "/state",
        "--print-proposals",
    ];
    let apply = ["apply", "-f", "-"];
    let restart = [
        "-n",
        "bottle-k8s-op",
        "rollout",
        "restart",
        "deploy/bottle-k8s-op-outer-proxy",
    ];
    assert_eq!(
        log,
        [
            &sidecar_exec[..],
            &sidecar_exec[..],
            &apply[..],
            &restart[..]
        ],
        "list: exec; approve: exec, apply, restart"
    );

    // The agent's waiting call answers, and egress-proxy forwards within
    // seconds of the swapped ConfigMap, no restart.
    let r = agent.recv();
    assert_eq!(r["structuredContent"]["status"], "approved", "{r}");
    assert_eq!(r["structuredContent"]["route"]["host"], "127.0.0.1");
    let applied_at = Instant::now();
    wait_forwarded(proxy_addr, &target, "/hello", applied_at);
    let (status, decision, _) = get_via(proxy_addr, &target, "/other");
    assert_eq!(
        (status, decision.as_deref()),
        (403, Some("path-not-allowed"))
    );
    // The outer proxy's config in the applied ConfigMap allows the host now.
    // (pipelock, the default outer proxy: its allowlist).
    let outer = std::fs::read_to_string(w.map("config").join("pipelock.yaml")).unwrap();
    assert!(outer.contains("- 127.0.0.1\n"), "{outer}");

    // A rejection reaches the agent with its reason; routes unchanged.
    let before = std::fs::read(&routes).unwrap();
    agent.send(json!({"op": "call", "tool": "request-egress", "args": {
        "host": "example.org", "justification": "browse"}}));
    wait_proposals(&pod, 2);
    let listed: Value = serde_json::from_str(&ok(&w.supervise(&["list", "--json"]))).unwrap();
    let rid = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["request"]["host"], "example.org");
    ok(&w.supervise(&["reject", &rid, "--why", "not needed for this task"]));
    let r = agent.recv();
    assert_eq!(r["structuredContent"]["status"], "rejected", "{r}");
    assert_eq!(r["structuredContent"]["reason"], "not needed for this task");
    assert_eq!(std::fs::read(&routes).unwrap(), before);
    assert_eq!(
        w.kubectl_log().last().unwrap(),
        &apply,
        "no restart for a rejection"
    );

    // Kept for the bottle's name: the next render starts with the approval.
    let o = w.render(&[]);
    let y = ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("includes approval {id}")));
    assert!(y.contains("\"host\": \"127.0.0.1\""), "{y}");

    // Nothing the cluster was given holds the token.
    for e in walk(&w.root().join("configmaps")) {
        let t = std::fs::read_to_string(&e).unwrap();
        assert!(!t.contains(SECRET), "{}", e.display());
    }
    let log = std::fs::read_to_string(w.root().join("kubectl.log")).unwrap();
    assert!(!log.contains(SECRET));
}

/// Refusals before anything reaches the cluster: an unknown proposal, a
/// rejection without a reason, `--edit` (no editor round trip here), a
/// bottle without supervise, -m without --k8s, and a kubectl that is not
/// there.
#[test]
fn supervise_k8s_refusals() {
    let w = rendered_and_applied();
    let o = w.supervise(&["approve", "p0123456789abcdef"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no pending or decided proposal"));
    let o = w.supervise(&["approve", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    let o = w.supervise(&["reject", "p0123456789abcdef", "--why", " "]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = w.supervise(&["approve", "p0123456789abcdef", "--edit"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--paths"));
    // Only the sidecar was asked (for its proposals); nothing was applied.
    assert!(
        w.kubectl_log()
            .iter()
            .all(|a| a.contains(&"exec".to_string()))
    );

    let o = w.bottle(&["supervise", "-m", "m.yaml", "-a", "coder", "list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--k8s"));

    std::fs::write(
        w.root().join("plain.yaml"),
        MANIFEST.replace("    supervise: true\n", ""),
    )
    .unwrap();
    let p = w.root().join("plain.yaml");
    let o = w.bottle(&[
        "supervise",
        "--k8s",
        "-m",
        p.to_str().unwrap(),
        "-a",
        "coder",
        "list",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("supervise: false"));

    let m = w.root().join("m.yaml");
    let with_kubectl = |kubectl: &Path| {
        Command::new(bottle_bin())
            .args([
                "supervise",
                "--k8s",
                "-m",
                m.to_str().unwrap(),
                "-a",
                "coder",
                "list",
            ])
            .env("BOTTLE_STATE_DIR", w.root().join("state"))
            .env("BOTTLE_KUBECTL", kubectl)
            .output()
            .unwrap()
    };
    let o = with_kubectl(&w.root().join("no-such-kubectl"));
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("no-such-kubectl") && e.contains("BOTTLE_KUBECTL"),
        "{e}"
    );
    // A sidecar that floods its output is cut off, not read into memory.
    let script = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = w.root().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let o = with_kubectl(&script("flooding-kubectl", "head -c 20000000 /dev/zero"));
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("more than 16777216 bytes"), "{e}");
    // A failing kubectl's own message is passed on.
    let o = with_kubectl(&script(
        "failing-kubectl",
        "echo 'Error from server (Forbidden): pods/exec' >&2; exit 1",
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Forbidden"));
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out
}
