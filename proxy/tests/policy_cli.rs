//! `egress-proxy check` and `egress-proxy explain`, run as the real binary.
//! (EGRESS_PROXY_BIN overrides the binary, for testing policy_cli.rs before
//! it is wired into main.rs.)

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> PathBuf {
    std::env::var_os("EGRESS_PROXY_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_egress-proxy")),
        PathBuf::from,
    )
}

fn testdata(name: &str) -> String {
    format!(
        "{}/../addon-rules/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        c.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run egress-proxy");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[test]
fn check_prints_every_mistake_with_route_and_fix_and_exits_2() {
    let file = testdata("broken/three_mistakes.yaml");
    let (code, out, err) = run(&["check", "--routes", &file], &[]);
    assert_eq!(code, 2, "stdout: {out}\nstderr: {err}");
    for want in [
        "routes[0].host: host \"Bücher.example\" is not ASCII: write it as \"xn--bcher-kva.example\"",
        "routes[1].path_allowlist[0]: pattern \"/repos/../x\"",
        "routes[1].auth_scheme: is required",
        "routes[2].host: host \"*.github.io\": \"github.io\" is a public suffix",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        err.lines()
            .all(|l| l.starts_with(&file) || l.starts_with("egress-proxy: ")),
        "{err}"
    );
}

#[test]
fn check_good_file_exits_0_with_summary() {
    let (code, out, err) = run(&["check", "--routes", &testdata("good/minimal.yaml")], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ok: 0 route(s)") && out.contains("unmatched: deny"),
        "{out}"
    );
}

#[test]
fn check_names_missing_or_empty_secrets_without_printing_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "  file-secret-value-123\n");
    let empty = write(&dir, "empty", " \n");
    let routes = write(
        &dir,
        "routes.yaml",
        &format!(
            "routes:\n  - {{host: a.example.com, auth_scheme: Bearer, token_env: CHECK_TOKEN_A}}\n  - {{host: b.example.com, auth_header: x-api-key, token_file: {token}}}\n  - {{host: c.example.com, auth_header: x-api-key, token_file: {empty}}}\n  - {{host: d.example.com, auth_header: x-api-key, token_file: {}/missing}}\n  - {{host: e.example.com, auth_scheme: Bearer, token_env: CHECK_TOKEN_E}}\n",
            dir.path().display()
        ),
    );
    let (code, out, err) = run(&["check", "--routes", &routes], &[("CHECK_TOKEN_E", "")]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("routes[0].token_env: variable CHECK_TOKEN_A is not set"),
        "{err}"
    );
    assert!(
        err.contains(&format!("routes[2].token_file: {empty} is empty")),
        "{err}"
    );
    assert!(err.contains("routes[3].token_file: cannot read"), "{err}");
    assert!(
        err.contains("routes[4].token_env: variable CHECK_TOKEN_E is empty"),
        "{err}"
    );
    assert!(!err.contains("routes[1]"), "{err}");

    let (code, out, err) = run(
        &["check", "--routes", &routes],
        &[
            ("CHECK_TOKEN_A", "env-secret-value-456"),
            ("CHECK_TOKEN_E", "x"),
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    std::fs::write(dir.path().join("empty"), "now-set-789").expect("write");
    std::fs::write(dir.path().join("missing"), "now-set-000").expect("write");
    let (code, out, err) = run(
        &["check", "--routes", &routes],
        &[
            ("CHECK_TOKEN_A", "env-secret-value-456"),
            ("CHECK_TOKEN_E", "x"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("credential authorization from env CHECK_TOKEN_A"),
        "{out}"
    );
    for secret in [
        "file-secret-value-123",
        "env-secret-value-456",
        "now-set-789",
        "now-set-000",
    ] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "secret leaked:\n{out}{err}"
        );
    }
}

#[test]
fn check_unreadable_file_exits_2() {
    let (code, _, err) = run(&["check", "--routes", "/nonexistent/routes.yaml"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read routes file /nonexistent/routes.yaml"),
        "{err}"
    );
}

#[test]
fn explain_https_shows_steps_route_and_credential_source_only() {
    let (code, out, err) = run(
        &[
            "explain",
            "--routes",
            &testdata("table.yaml"),
            "GET",
            "https://api.github.com/repos/acme/widget/issues?state=open",
        ],
        &[("EGRESS_PROXY_TOKEN_0", "never-printed-secret")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CONNECT api.github.com:443"), "{out}");
    assert!(
        out.contains("allow list: matches \"/repos/acme/widget/issues\""),
        "{out}"
    );
    assert!(out.contains("decision: allow, route routes[0] api.github.com, forward to api.github.com:443 /repos/acme/widget/issues?state=open"), "{out}");
    assert!(
        out.contains("<secret from env EGRESS_PROXY_TOKEN_0>"),
        "{out}"
    );
    assert!(!out.contains("never-printed-secret") && !err.contains("never-printed-secret"));
}

#[test]
fn explain_refusals_name_the_reason() {
    let table = testdata("table.yaml");
    for (method, url, want) in [
        (
            "POST",
            "http://api.github.com/repos/acme/widget/issues",
            "decision: refuse 403 cleartext-credentials",
        ),
        (
            "GET",
            "https://api.github.com/repos/acme/other",
            "decision: refuse 403 path-not-allowed",
        ),
        (
            "DELETE",
            "https://api.github.com/repos/acme/widget/issues",
            "decision: refuse 403 method-not-allowed",
        ),
        (
            "GET",
            "https://unrouted.example.org/",
            "decision: refuse 403 host-not-allowed",
        ),
        (
            "POST",
            "https://github.com/acme/widget.git/git-receive-pack",
            "decision: refuse 403 git-push",
        ),
        (
            "GET",
            "https://github.com/a/%2e%2e/b",
            "decision: refuse 400 bad-path",
        ),
        ("GET", "https://127.1/", "decision: refuse 400 bad-request"),
        (
            "TRACE",
            "https://github.com/",
            "decision: refuse 405 method-not-allowed",
        ),
    ] {
        let (code, out, err) = run(&["explain", "--routes", &table, method, url], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(want),
            "{method} {url}: want {want:?} in:\n{out}"
        );
    }
}

#[test]
fn explain_bad_usage_exits_2() {
    let table = testdata("table.yaml");
    for (method, url) in [
        ("GET", "ftp://x.example.com/"),
        ("GET", "api.github.com/x"),
        ("G T", "https://github.com/"),
    ] {
        let (code, _, err) = run(&["explain", "--routes", &table, method, url], &[]);
        assert_eq!(code, 2, "{method} {url}: {err}");
    }
    let (code, _, _) = run(
        &[
            "explain",
            "--routes",
            &testdata("broken/hosts.yaml"),
            "GET",
            "https://github.com/",
        ],
        &[],
    );
    assert_eq!(code, 2);
}
