//! The Docker tests never pass silently without an engine: with no engine
//! answering they fail with a message naming `BOTTLE_SKIP_DOCKER=1`, and only
//! that variable makes them skip (with a SKIP line). Runs this test binary's
//! own `docker_gate_probe` with `DOCKER_HOST` pointed at a socket that does
//! not exist, so it needs no engine itself.

mod e2e_support;

use e2e_support::*;
use std::process::Command;

/// The gate every Docker test starts with, and nothing else.
#[test]
fn docker_gate_probe() {
    if !docker_or_skip() {
        return;
    }
    println!("probe: docker answered");
}

fn probe(skip: Option<&str>) -> (bool, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut c = Command::new(exe);
    c.args([
        "--exact",
        "docker_gate_probe",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("DOCKER_HOST", "unix:///nonexistent/bottle-no-engine.sock")
    .env_remove(SKIP_VAR);
    if let Some(v) = skip {
        c.env(SKIP_VAR, v);
    }
    let o = c.output().expect("run the test binary");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn without_an_engine_docker_tests_fail_unless_the_skip_is_asked_for() {
    let (ok, out) = probe(None);
    assert!(!ok, "a Docker test passed with no engine answering:\n{out}");
    assert!(
        out.contains("needs a Docker engine and none answers")
            && out.contains("BOTTLE_SKIP_DOCKER=1"),
        "the failure does not say how to skip:\n{out}"
    );
    // Only `1` asks for the skip.
    let (ok, out) = probe(Some("yes"));
    assert!(!ok, "BOTTLE_SKIP_DOCKER=yes skipped:\n{out}");
    let (ok, out) = probe(Some("1"));
    assert!(ok, "BOTTLE_SKIP_DOCKER=1 did not skip:\n{out}");
    assert!(out.contains("SKIP: BOTTLE_SKIP_DOCKER=1"), "{out}");
    assert!(!out.contains("probe: docker answered"), "{out}");
}
