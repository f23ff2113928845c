//! Teardown end to end: after SIGINT to `bottle run`, and after `kill -9` of
//! `bottle run` followed by `bottle cleanup --yes`, no container, network,
//! firewall rule or state directory of the bottle remains; its home and
//! workspace volumes stay (a stopped bottle) until `bottle rm` or `bottle
//! cleanup --volumes`. Also: refusals that must stop a launch before
//! anything is created.
//!
//! Needs the images of docker/build-images.sh (CI: scripts/setup.sh builds them).

mod e2e_support;

use e2e_support::*;
use std::process::Command;

fn manifest(dir: &std::path::Path, bottle: &str, outer: &str) -> std::path::PathBuf {
    let m = format!(
        r#"
bottles:
  {bottle}:
    outer_proxy: {outer}
    allow: [pypi.org]
agents:
  a:
    bottle: {bottle}
    command: [sleep, "600"]
"#
    );
    let p = dir.join("bottle.yaml");
    std::fs::write(&p, m).unwrap();
    p
}

fn up(bottle: &str, guard: &mut Guard, dir: &std::path::Path) -> (String, u32) {
    let repo = dir.join("repo");
    git_repo(&repo);
    let m = manifest(dir, bottle, "squid");
    let child = spawn_bottle(
        dir,
        &repo,
        &dir.join("state"),
        &[],
        &["run", "--manifest", m.to_str().unwrap(), "--agent", "a"],
    );
    let pid = child.id();
    guard.children.push(child);
    let (id, _) = running_agent(bottle, 240).unwrap_or_else(|| {
        panic!(
            "agent never ran; bottle stderr:\n{}",
            file(&dir.join("bottle.err"))
        )
    });
    // Everything is there while it runs, the firewall rules included.
    let left = leftovers(&id);
    assert!(
        left.iter().filter(|l| l.starts_with("container")).count() >= 3,
        "{left:?}"
    );
    assert_eq!(
        left.iter().filter(|l| l.starts_with("network")).count(),
        3,
        "{left:?}"
    );
    assert_eq!(
        left.iter().filter(|l| l.starts_with("rule")).count(),
        2,
        "{left:?}"
    );
    assert!(dir.join("state").join(&id).join("record.json").exists());
    (id, pid)
}

#[test]
fn sigint_tears_everything_down() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("sigint");
    let mut guard = Guard::new(&bottle);
    let tmp = tempfile::tempdir().unwrap();
    let (id, pid) = up(&bottle, &mut guard, tmp.path());
    assert!(
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut child = guard.children.pop().unwrap();
    let st = wait_child(&mut child, 120).expect("bottle run did not exit after SIGINT");
    assert_eq!(
        st.code(),
        Some(130),
        "stderr:\n{}",
        file(&tmp.path().join("bottle.err"))
    );
    let left = leftovers(&id);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!tmp.path().join("state").join(&id).exists());
    // The volumes stay for `bottle resume`, and `bottle rm` removes them.
    assert_eq!(volumes_of(&id).len(), 2);
    let rm = Command::new(bottle_bin())
        .args(["rm", &id])
        .env("BOTTLE_STATE_DIR", tmp.path().join("state"))
        .output()
        .unwrap();
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    assert!(volumes_of(&id).is_empty());
}

#[test]
fn kill_9_then_cleanup_removes_the_orphan() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("kill");
    let mut guard = Guard::new(&bottle);
    let tmp = tempfile::tempdir().unwrap();
    let (id, _) = up(&bottle, &mut guard, tmp.path());
    let mut child = guard.children.pop().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!leftovers(&id).is_empty(), "kill -9 cannot tear down");
    let state = tmp.path().join("state");
    let cleanup = |args: &[&str]| {
        Command::new(bottle_bin())
            .arg("cleanup")
            .args(args)
            .env("BOTTLE_STATE_DIR", &state)
            .output()
            .unwrap()
    };
    // A dry run lists it and removes nothing.
    let dry = cleanup(&["--id", &id]);
    assert!(dry.status.success());
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains(&format!("would remove {id}")),
        "{}",
        String::from_utf8_lossy(&dry.stdout)
    );
    assert!(!leftovers(&id).is_empty());
    let list = Command::new(bottle_bin())
        .arg("list")
        .env("BOTTLE_STATE_DIR", &state)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains(&format!("{id}  orphan")));
    let done = cleanup(&["--yes", "--id", &id]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let left = leftovers(&id);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!state.join(&id).exists(), "state directory remains");
    // Orphan gone, volumes kept: a stopped bottle. `--volumes` removes them too.
    assert_eq!(volumes_of(&id).len(), 2);
    let list = Command::new(bottle_bin())
        .arg("list")
        .env("BOTTLE_STATE_DIR", &state)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains(&format!("{id}  stopped")));
    let done = cleanup(&["--yes", "--volumes", "--id", &id]);
    assert!(done.status.success());
    assert!(volumes_of(&id).is_empty(), "{:?}", volumes_of(&id));
    assert!(leftovers(&id).is_empty());
}

#[test]
fn refusals_stop_the_launch_before_anything_exists() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("refuse");
    let _guard = Guard::new(&bottle);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = |m: &std::path::Path, envs: &[(&str, &str)]| {
        let mut c = Command::new(bottle_bin());
        c.args(["run", "--manifest", m.to_str().unwrap(), "--agent", "a"])
            .current_dir(dir)
            .env("BOTTLE_STATE_DIR", dir.join("state"));
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // pipelock image missing: exit 2, says how to load it.
    let m = manifest(dir, &bottle, "pipelock");
    let o = run(&m, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    if docker(&["image", "inspect", "ghcr.io/luckypipewrench/pipelock:2.3.0"])
        .status
        .success()
    {
        eprintln!("pipelock image present: missing-image refusal not exercised");
    } else {
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("docker load"), "{err}");
    }
    // An unset token_ref: exit 2 naming it, nothing created.
    let var = format!("UNSET_{}", bottle.to_uppercase());
    std::fs::write(
        &m,
        format!("bottles:\n  {bottle}:\n    outer_proxy: squid\n    egress_proxy:\n      routes:\n        - host: api.example.com\n          auth: {{scheme: Bearer, token_ref: {var}}}\nagents:\n  a: {{bottle: {bottle}}}\n"),
    )
    .unwrap();
    let o = run(&m, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&var) && err.contains("not set"), "{err}");
    let o = run(&m, &[(&var, "")]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is empty"));
    assert!(bottle_id(&bottle).is_none(), "a network was created");
    assert!(
        !dir.join("state").exists()
            || std::fs::read_dir(dir.join("state"))
                .unwrap()
                .next()
                .is_none(),
        "a state directory was created"
    );
    // A bad manifest: exit 2, every problem with its key path.
    std::fs::write(
        &m,
        "bottles:\n  b:\n    alow: []\nagents:\n  a: {bottle: b, imgae: x}\n",
    )
    .unwrap();
    let o = run(&m, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("bottles.b.alow") && err.contains("agents.a.imgae"),
        "{err}"
    );
}

#[test]
fn a_sidecar_failing_at_start_is_reported_and_torn_down() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("fail");
    let _guard = Guard::new(&bottle);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git_repo(&dir.join("repo"));
    let secret = unique("never-shown-");
    let var = format!("FAIL_{}", bottle.to_uppercase());
    // An outer proxy image that exits at once (egress-proxy without
    // `--routes`): the failure comes after networks and containers exist.
    // (Route errors no longer get this far: `check`/`plan` validate the
    // rendered routes with addon-rules; see the test below.)
    std::fs::write(
        dir.join("m.yaml"),
        format!("bottles:\n  {bottle}:\n    outer_proxy: squid\n    outer_proxy_image: egress-proxy:latest\n    egress_proxy:\n      routes:\n        - host: api.example.com\n          auth: {{scheme: Bearer, token_ref: {var}}}\nagents:\n  a: {{bottle: {bottle}}}\n"),
    )
    .unwrap();
    let state = dir.join("state");
    let o = Command::new(bottle_bin())
        .args([
            "run",
            "--manifest",
            dir.join("m.yaml").to_str().unwrap(),
            "--agent",
            "a",
            "--",
            "true",
        ])
        .current_dir(dir.join("repo"))
        .env("BOTTLE_STATE_DIR", &state)
        .env(&var, &secret)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("outer-proxy") && err.contains("--routes PATH is required"),
        "the sidecar's own error is shown: {err}"
    );
    assert!(!err.contains(&secret) && !String::from_utf8_lossy(&o.stdout).contains(&secret));
    assert!(bottle_id(&bottle).is_none(), "networks left behind");
    let left = docker_ok_out(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=bottle.bottle={bottle}"),
        "--format",
        "{{.Names}}",
    ]);
    assert!(left.trim().is_empty(), "containers left behind: {left}");
    assert!(
        std::fs::read_dir(&state)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "state directory left behind"
    );
}

/// SPEC §6: the launcher validates the rendered routes with addon-rules, so a
/// pattern egress-proxy would refuse stops `run` before anything starts.
#[test]
fn a_route_the_engine_refuses_stops_run_before_anything_starts() {
    let bottle = unique("eng");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git_repo(&dir.join("repo"));
    let secret = unique("never-shown-");
    let var = format!("ENG_{}", bottle.to_uppercase());
    std::fs::write(
        dir.join("m.yaml"),
        format!("bottles:\n  {bottle}:\n    outer_proxy: squid\n    egress_proxy:\n      routes:\n        - host: api.example.com\n          path_allowlist: [\"/a/../b\"]\n          auth: {{scheme: Bearer, token_ref: {var}}}\nagents:\n  a: {{bottle: {bottle}}}\n"),
    )
    .unwrap();
    let state = dir.join("state");
    let o = Command::new(bottle_bin())
        .args([
            "run",
            "--manifest",
            dir.join("m.yaml").to_str().unwrap(),
            "--agent",
            "a",
            "--",
            "true",
        ])
        .current_dir(dir.join("repo"))
        .env("BOTTLE_STATE_DIR", &state)
        .env(&var, &secret)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "bottles.{bottle}.egress_proxy.routes[0].path_allowlist[0]"
        )),
        "{err}"
    );
    assert!(!err.contains(&secret));
    assert!(
        !state.exists(),
        "nothing is created before the manifest is valid"
    );
    if docker_or_skip() {
        assert!(bottle_id(&bottle).is_none(), "no network was created");
    }
}
