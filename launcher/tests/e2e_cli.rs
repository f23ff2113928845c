//! The `bottle` binary from the outside: `check`, `plan` (creates nothing,
//! prints no secret, JSON with the documented keys), `run` attached to a real
//! pseudo-terminal (`script`), and the git-gate wiring of a bottle with a
//! `git:` entry.
//!
//! Needs the images of docker/build-images.sh (CI: scripts/setup.sh builds them).

mod e2e_support;

use e2e_support::*;
use std::process::Command;

#[test]
fn check_and_plan_create_nothing_and_print_no_secret() {
    let bottle = unique("plan");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let secret = unique("value-");
    let var = format!("PLAN_{}", bottle.to_uppercase());
    std::fs::write(
        dir.join("m.md"),
        format!(
            "---\nbottles:\n  {bottle}:\n    outer_proxy: squid\n    allow: [pypi.org]\n    egress_proxy:\n      routes:\n        - host: api.example.com\n          auth: {{scheme: Bearer, token_ref: {var}}}\n        - host: up.example.com\n          auth: {{header: x-api-key, token_ref: {var}}}\nagents:\n  a: {{bottle: {bottle}}}\n---\n# notes\n"
        ),
    )
    .unwrap();
    let m = dir.join("m.md");
    let state = dir.join("state");
    let bottle_cmd = |args: &[&str]| {
        Command::new(bottle_bin())
            .args(args)
            .current_dir(dir)
            .env("BOTTLE_STATE_DIR", &state)
            .env(&var, &secret)
            .output()
            .unwrap()
    };
    let o = bottle_cmd(&["check", "--manifest", m.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = bottle_cmd(&[
        "plan",
        "--manifest",
        m.to_str().unwrap(),
        "--agent",
        "a",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains(&secret) && !String::from_utf8_lossy(&o.stderr).contains(&secret),
        "secret in plan output"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for k in [
        "id",
        "bottle",
        "agent",
        "networks",
        "containers",
        "token_slots",
        "outer_proxy",
        "git_remotes",
        "workspace",
        "rendered",
        "cas",
    ] {
        assert!(v.get(k).is_some(), "plan JSON lacks `{k}`");
    }
    assert_eq!(v["cas"], "minted at run");
    assert_eq!(
        v["token_slots"].as_array().unwrap().len(),
        1,
        "one slot for a shared token_ref"
    );
    assert_eq!(v["token_slots"][0]["routes"], serde_json::json!([0, 1]));
    let routes: serde_json::Value =
        serde_json::from_str(v["rendered"]["routes.json"].as_str().unwrap()).unwrap();
    assert_eq!(routes["unmatched"], "deny");
    assert_eq!(routes["routes"][1]["token_env"], "EGRESS_PROXY_TOKEN_0");
    assert_eq!(routes["routes"][2], serde_json::json!({"host": "pypi.org"}));
    let o = bottle_cmd(&["plan", "--manifest", m.to_str().unwrap(), "--agent", "a"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("EGRESS_PROXY_TOKEN_0 <- $") && !text.contains(&secret),
        "{text}"
    );
    // Nothing was created: no state directory, no network, no container.
    assert!(!state.exists(), "plan created a state directory");
    if docker_or_skip() {
        assert!(bottle_id(&bottle).is_none(), "plan created a network");
    }
    // Usage errors exit 2.
    let o = bottle_cmd(&[
        "plan",
        "--manifest",
        m.to_str().unwrap(),
        "--agent",
        "nobody",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = bottle_cmd(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn run_on_a_terminal_passes_the_tty_and_the_exit_code() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("tty");
    let _guard = Guard::new(&bottle);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git_repo(&dir.join("repo"));
    std::fs::write(dir.join("m.yaml"), format!("bottles:\n  {bottle}:\n    outer_proxy: squid\n    allow: [pypi.org]\nagents:\n  a: {{bottle: {bottle}}}\n")).unwrap();
    // `script` gives bottle a real pseudo-terminal on stdin and stdout;
    // `--yes` skips the preflight question asked on a terminal.
    let cmd = format!(
        "BOTTLE_STATE_DIR={} {} -q run --yes --manifest {} --agent a -- bash -c 'tty; test -t 0 && echo stdin-is-tty; exit 3'",
        dir.join("state").display(),
        bottle_bin().display(),
        dir.join("m.yaml").display()
    );
    let o = Command::new("timeout")
        .args(["300", "script", "-qefc", &cmd, "/dev/null"])
        .current_dir(dir.join("repo"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("/dev/pts/") && out.contains("stdin-is-tty"),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(3), "{out}");
}

#[test]
fn git_entries_wire_git_gate_into_the_agent() {
    if !docker_or_skip() {
        return;
    }
    // Quick when the image is up to date; a missing image is built, not skipped.
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/git-gate/build.sh");
    let o = Command::new("bash")
        .arg(&script)
        .arg("gate")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker/git-gate/build.sh gate: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bottle = unique("gitw");
    let _guard = Guard::new(&bottle);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let repo = dir.join("repo");
    git_repo(&repo);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("id"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        dir.join("m.yaml"),
        format!(
            r#"bottles:
  {bottle}:
    outer_proxy: squid
    allow: [pypi.org]
    git:
      - name: widget
        upstream: ssh://git@upstream.invalid/acme/widget.git
        identity_file: ./id
        known_host_key: "upstream.invalid ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
agents:
  a: {{bottle: {bottle}}}
"#
        ),
    )
    .unwrap();
    let o = Command::new(bottle_bin())
        .args(["-q", "run", "--manifest", dir.join("m.yaml").to_str().unwrap(), "--agent", "a", "--"])
        .args(["bash", "-c", "cd /workspace && git remote -v && git config --list --local && timeout 120 git ls-remote widget 2>&1; ls /etc/git-gate 2>&1; exit 0"])
        .current_dir(&repo)
        .env("BOTTLE_STATE_DIR", dir.join("state"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("widget\tgit://git-gate:9418/widget.git (push)"),
        "{out}"
    );
    assert!(!out.contains("credential"), "{out}");
    // The gate answered (it cannot fetch the unreachable upstream, and says so).
    assert!(out.contains("git-gate"), "{out}");
    assert!(out.contains("cannot fetch widget"), "{out}");
    // The identity never reaches the agent.
    assert!(out.contains("No such file or directory"), "{out}");
}
