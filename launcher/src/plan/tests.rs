//! The plan's table and golden tests (goldens in `tests/golden/`).

use super::*;

use crate::manifest;
use std::path::Path;

const M: &str = r#"
bottles:
  dev:
    allow: [pypi.org]
    outer_proxy: squid
    egress_proxy:
      routes:
        - host: api.github.com
          path_allowlist: ["/repos/acme/widget/issues"]
          methods: [GET, POST]
          auth: {scheme: Bearer, token_ref: GH_PAT}
        - host: uploads.github.com
          auth: {scheme: Bearer, token_ref: GH_PAT}
        - host: api.anthropic.com
          auth: {header: x-api-key, token_ref: ANTHROPIC}
          role: claude_code_oauth
        - host: "*.npmjs.org"
    git:
      - name: widget
        upstream: ssh://git@github.com/acme/widget.git
        identity_file: /keys/id
        known_host_key: "github.com ssh-ed25519 AAAA"
agents:
  coder:
    bottle: dev
    env: {TERM: xterm}
"#;

pub(super) fn manifest() -> Manifest {
    manifest::parse(M, Path::new("m.yaml"), Path::new("/"), None).unwrap()
}

pub(super) fn env_all(k: &str) -> Option<String> {
    match k {
        "GH_PAT" => Some("ghp_supersecretvalue".into()),
        "ANTHROPIC" => Some("sk-ant-secret".into()),
        _ => None,
    }
}

fn the_plan() -> Plan {
    plan(&manifest(), "coder", "dev-0001", &env_all, &|_| true, None).unwrap()
}

#[test]
fn ids_are_unique_and_docker_safe() {
    let a = new_id("dev").unwrap();
    assert_ne!(a, new_id("dev").unwrap());
    assert!(a.starts_with("dev-") && a.len() == 12);
}

#[test]
fn slots_are_shared_and_numbered_in_first_use_order() {
    let p = the_plan();
    let s: Vec<(&str, &str, Vec<usize>)> = p
        .token_slots
        .iter()
        .map(|s| (s.slot.as_str(), s.token_ref.as_str(), s.routes.clone()))
        .collect();
    assert_eq!(
        s,
        vec![
            ("EGRESS_PROXY_TOKEN_0", "GH_PAT", vec![0, 1]),
            ("EGRESS_PROXY_TOKEN_1", "ANTHROPIC", vec![2])
        ]
    );
    let ep = p.container(RoleName::EgressProxy).unwrap();
    assert_eq!(
        ep.secret_env
            .get("EGRESS_PROXY_TOKEN_0")
            .map(String::as_str),
        Some("GH_PAT")
    );
}

#[test]
fn secrets_never_appear_in_the_plan() {
    let p = the_plan();
    let json = serde_json::to_string(&p).unwrap();
    let text = p.summary();
    for secret in ["ghp_supersecretvalue", "sk-ant-secret"] {
        assert!(!json.contains(secret) && !text.contains(secret));
    }
}

#[test]
fn unset_and_empty_token_refs_fail_naming_the_variable() {
    let env = |k: &str| {
        if k == "GH_PAT" {
            Some("  ".to_string())
        } else {
            None
        }
    };
    let e = plan(&manifest(), "coder", "x", &env, &|_| true, None).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(
            "bottles.dev.egress_proxy.routes[0].auth.token_ref: host variable `GH_PAT` is empty"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("routes[2].auth.token_ref: host variable `ANTHROPIC` is not set"),
        "{msg}"
    );
    assert_eq!(e.0.len(), 2, "a shared token_ref is reported once");
}

#[test]
fn unknown_agent_and_missing_files() {
    let e = plan(&manifest(), "nobody", "x", &env_all, &|_| true, None).unwrap_err();
    assert!(
        e.to_string()
            .contains("no agent `nobody`; fix: use one of: coder")
    );
    let e = plan(&manifest(), "coder", "x", &env_all, &|_| false, None).unwrap_err();
    assert!(
        e.to_string()
            .contains("bottles.dev.git[0].identity_file: file /keys/id does not exist")
    );
}

#[test]
fn agent_env_and_hardening() {
    let p = the_plan();
    let a = p.container(RoleName::Agent).unwrap();
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        assert_eq!(a.env[k], "http://egress-proxy:9099");
    }
    assert!(a.env["NO_PROXY"].contains("git-gate") && a.env["no_proxy"].contains("localhost"));
    assert_eq!(a.env["NODE_EXTRA_CA_CERTS"], "/etc/bottle/ca.pem");
    assert_eq!(a.env["CLAUDE_CODE_OAUTH_TOKEN"], OAUTH_PLACEHOLDER);
    assert_eq!(a.env["DISABLE_ERROR_REPORTING"], "1");
    assert_eq!(a.env["TERM"], "xterm");
    assert!(a.secret_env.is_empty());
    assert_eq!(a.security.user.as_deref(), Some("1000:1000"));
    assert_eq!(a.security.cap_drop, vec!["ALL"]);
    assert!(a.security.cap_add.is_empty() && a.security.no_new_privileges);
    assert_eq!(a.networks.len(), 1);
    for c in &p.containers {
        assert!(!c.security.privileged && !c.security.docker_socket && !c.security.host_namespaces);
        if c.role != RoleName::EgressProxy {
            assert!(c.secret_env.is_empty());
        }
    }
    assert!(
        !a.files.iter().any(|f| matches!(
            f.source,
            Source::InnerCaBundle | Source::OuterCaBundle | Source::OuterCaKeySec1
        )),
        "no key enters the agent"
    );
}

#[test]
fn plan_json_golden() {
    let p = the_plan();
    let got = serde_json::to_string_pretty(&p).unwrap() + "\n";
    golden("plan.json", &got);
    golden("routes.json", &p.rendered["routes.json"]);
    golden("squid.conf", &p.rendered["squid.conf"]);
    golden("git-gate.json", &p.rendered["git-gate.json"]);
    golden("plan.txt", &p.summary());
}

#[test]
fn pipelock_render_golden() {
    let m = manifest::parse(
        &M.replace("outer_proxy: squid", "outer_proxy: pipelock"),
        Path::new("m.yaml"),
        Path::new("/"),
        None,
    )
    .unwrap();
    let p = plan(&m, "coder", "dev-0001", &env_all, &|_| true, None).unwrap();
    golden("pipelock.yaml", &p.rendered["pipelock.yaml"]);
    assert_eq!(p.outer_proxy.port, 8888);
    let ep = p.container(RoleName::EgressProxy).unwrap();
    assert!(ep.command.contains(&"http://outer-proxy:8888".to_string()));
}

/// Compares with `tests/golden/<name>`; `BOTTLE_BLESS=1` rewrites it.
pub(crate) fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BOTTLE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden {}: run with BOTTLE_BLESS=1", path.display()));
    assert_eq!(
        got, want,
        "golden {name} differs (BOTTLE_BLESS=1 to accept)"
    );
}

/// The prompt (0400, the agent's), `{prompt_file}` in the command, skills
/// (the agent's), the MCP file, `BOTTLE_MCP_CONFIG` and `supervise` in
/// `NO_PROXY` appear in the plan, and `bottle plan` shows them with the runtime.
#[test]
fn agent_prompt_skills_and_supervise_in_plan_and_summary() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join(".claude/skills/review")).unwrap();
    let text = "bottles:\n  dev: {allow: [pypi.org], supervise: true, runtime: runc}\nagents:\n  a:\n    bottle: dev\n    prompt: fix the tests\n    skills: [review]\n    command: [claude, --append-system-prompt-file, \"{prompt_file}\"]\n";
    let m = manifest::parse(text, Path::new("m.yaml"), d.path(), Some(d.path())).unwrap();
    let p = plan(&m, "a", "dev-0001", &env_all, &|_| true, None).unwrap();
    let a = p.container(RoleName::Agent).unwrap();
    assert_eq!(
        a.command,
        [
            "claude",
            "--append-system-prompt-file",
            "/home/agent/.bottle/prompt.md"
        ]
    );
    let f = |path: &str| a.files.iter().find(|f| f.path == path).unwrap();
    let prompt = f("/home/agent/.bottle/prompt.md");
    assert_eq!((prompt.mode, prompt.uid), (0o400, AGENT_UID));
    assert_eq!(p.rendered["prompt.md"], "fix the tests");
    let skill = f("/home/agent/.claude/skills/review");
    assert_eq!(skill.uid, AGENT_UID);
    assert_eq!(
        skill.source,
        Source::HostTree(d.path().join(".claude/skills/review"))
    );
    assert_eq!(f("/etc/bottle/mcp.json").mode, 0o644);
    assert!(p.rendered["mcp.json"].contains("http://supervise:9100/mcp"));
    assert_eq!(a.env["BOTTLE_MCP_CONFIG"], "/etc/bottle/mcp.json");
    assert!(a.env["NO_PROXY"].split(',').any(|h| h == "supervise"));
    let s = p.summary();
    for want in [
        "agent runtime: runc\n",
        "agent prompt: text (13 bytes) -> /home/agent/.bottle/prompt.md\n",
        "  review (",
        "agent MCP config: /etc/bottle/mcp.json (supervise at http://supervise:9100/mcp)",
    ] {
        assert!(s.contains(want), "{want}\n{s}");
    }
    // Without supervise: no MCP file, no variable, `supervise` not exempt from the proxy.
    let p = the_plan();
    let a = p.container(RoleName::Agent).unwrap();
    assert!(!a.files.iter().any(|f| f.path == "/etc/bottle/mcp.json"));
    assert!(!a.env.contains_key("BOTTLE_MCP_CONFIG"));
    assert!(!a.env["NO_PROXY"].contains("supervise"));
    assert!(p.summary().contains("agent runtime: auto (resolved at run"));
}

/// `supervise: true` adds the sidecar (agent network only, non-root, no
/// capability, no environment, state mounts as docs/supervise.md says) and
/// gives egress-proxy the live routes directory read-only with
/// `--watch-routes`; without it neither exists.
#[test]
fn supervise_sidecar_and_live_routes_in_plan() {
    let d = tempfile::tempdir().unwrap();
    let text =
        "bottles:\n  dev: {allow: [pypi.org], supervise: true}\nagents:\n  a: {bottle: dev}\n";
    let m = manifest::parse(text, Path::new("m.yaml"), d.path(), Some(d.path())).unwrap();
    let p = plan(&m, "a", "dev-0001", &env_all, &|_| true, None).unwrap();
    let roles: Vec<&str> = p.containers.iter().map(|c| c.role.as_str()).collect();
    assert_eq!(
        roles,
        ["outer-proxy", "egress-proxy", "supervise", "agent"],
        "the sidecar starts before the agent"
    );
    let s = p.container(RoleName::Supervise).unwrap();
    assert_eq!(s.image, "bottle-supervise:latest");
    assert_eq!(s.networks.len(), 1);
    assert_eq!(s.networks[0].network, "bottle-dev-0001-agent");
    assert_eq!(s.networks[0].aliases, ["supervise"]);
    assert_eq!(s.security.user.as_deref(), Some("65534:65534"));
    assert_eq!(s.security.cap_drop, ["ALL"]);
    assert!(s.security.cap_add.is_empty() && s.security.no_new_privileges);
    assert!(s.env.is_empty() && s.secret_env.is_empty() && s.files.is_empty());
    let mounts: Vec<(&str, &str, bool)> = s
        .mounts
        .iter()
        .map(|m| (m.source.as_str(), m.target.as_str(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            ("supervise/view", "/state/view", true),
            ("supervise/proposals", "/state/proposals", false),
            ("supervise/decisions", "/state/decisions", true),
        ]
    );
    let ep = p.container(RoleName::EgressProxy).unwrap();
    assert!(ep.command.iter().any(|c| c == "--watch-routes"));
    assert!(
        ep.command
            .windows(2)
            .any(|w| w[0] == "--routes" && w[1] == "/etc/egress-proxy/live/routes.json")
    );
    assert_eq!(ep.mounts.len(), 1);
    assert_eq!(
        (ep.mounts[0].source.as_str(), ep.mounts[0].read_only),
        ("supervise/routes", true)
    );
    assert!(
        !ep.files
            .iter()
            .any(|f| f.path == "/etc/egress-proxy/routes.json")
    );
    assert_eq!(p.allow, ["pypi.org"]);
    assert!(p.summary().contains("  supervise    bottle-dev-0001-supervise  image bottle-supervise:latest  on agent as supervise\n"), "{}", p.summary());
    // Without supervise: no sidecar, no mount, no watch.
    let p = the_plan();
    assert!(p.container(RoleName::Supervise).is_none());
    let ep = p.container(RoleName::EgressProxy).unwrap();
    assert!(ep.mounts.is_empty() && !ep.command.iter().any(|c| c == "--watch-routes"));
}

/// The preflight names every reachable host with its path rules and the
/// credential slot (with its host variable, never a value), git remotes,
/// the workspace and the runtime.
#[test]
fn preflight_shows_hosts_rules_slots_remotes_workspace_runtime() {
    let mut p = the_plan();
    p.workspace = Some(WorkspacePlan {
        source: "/src/widget".into(),
        files: 12,
        warnings: vec!["`.env` looks like a secret".into()],
    });
    let s = p.preflight("runsc");
    for want in [
        "reachable (everything else is refused):\n",
        "  api.github.com               methods GET,POST; paths /repos/acme/widget/issues  credential EGRESS_PROXY_TOKEN_0 from $GH_PAT\n",
        "  uploads.github.com           any path  credential EGRESS_PROXY_TOKEN_0 from $GH_PAT\n",
        "  api.anthropic.com            any path  credential EGRESS_PROXY_TOKEN_1 from $ANTHROPIC\n",
        "  pypi.org                     any path\n",
        "git remote widget -> ssh://git@github.com/acme/widget.git\n",
        "workspace: 12 files from /src/widget\n  warning: `.env` looks like a secret\n",
        "runtime: runsc\n",
    ] {
        assert!(s.contains(want), "{want}\n{s}");
    }
}
