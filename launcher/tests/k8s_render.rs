//! `bottle render --format k8s` as a user runs it: no Docker, same bytes
//! twice, no token value even with the token variable set, the Secret line on
//! stderr, `--out` writes one file per kind.

use std::process::Command;

const SECRET: &str = "ghp_CLI_SECRET_VALUE_987654";

const M: &str = r#"
bottles:
  dev:
    allow: [pypi.org]
    outer_proxy: pipelock
    egress_proxy:
      routes:
        - host: api.github.com
          auth: {scheme: Bearer, token_ref: K8S_TEST_GH_PAT}
agents:
  coder:
    bottle: dev
    image: debian:bookworm
"#;

fn render(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let m = dir.join("m.yaml");
    std::fs::write(&m, M).unwrap();
    Command::new(env!("CARGO_BIN_EXE_bottle"))
        // Kept approvals would be folded in: none here.
        .env("BOTTLE_STATE_DIR", "/nonexistent/bottle-state")
        .args([
            "render",
            "--format",
            "k8s",
            "--agent",
            "coder",
            "--manifest",
        ])
        .arg(&m)
        .args(extra)
        .env("K8S_TEST_GH_PAT", SECRET)
        // No engine is consulted: a bogus Docker host changes nothing.
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .output()
        .unwrap()
}

#[test]
fn render_k8s_is_stable_secret_free_and_prints_the_secret_command() {
    let dir = tempfile::tempdir().unwrap();
    let a = render(dir.path(), &[]);
    let b = render(dir.path(), &[]);
    let (out, err) = (
        String::from_utf8(a.stdout.clone()).unwrap(),
        String::from_utf8(a.stderr.clone()).unwrap(),
    );
    assert!(a.status.success(), "{err}");
    assert_eq!(a.stdout, b.stdout, "same inputs, same bytes");
    assert!(!out.contains(SECRET) && !err.contains(SECRET));
    for kind in [
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
    ] {
        assert!(out.contains(&format!("kind: {kind}\n")), "{kind}");
    }
    assert!(!out.contains("kind: Secret\n"));
    assert!(out.contains("pipelock.yaml"));
    assert!(out.contains("secretKeyRef"));
    assert!(
        err.contains("create secret generic bottle-dev-")
            && err.contains("--from-literal=EGRESS_PROXY_TOKEN_0=\"$K8S_TEST_GH_PAT\""),
        "{err}"
    );
}

#[test]
fn render_k8s_out_writes_one_file_per_kind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k8s");
    let o = render(
        dir.path(),
        &["--namespace", "team-a", "--out", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty());
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "configmap.yaml",
            "deployment.yaml",
            "networkpolicy.yaml",
            "service.yaml"
        ]
    );
    for n in &names {
        let y = std::fs::read_to_string(out.join(n)).unwrap();
        assert!(
            y.contains("namespace: team-a") && !y.contains(SECRET),
            "{n}"
        );
    }
}

#[test]
fn render_k8s_refuses_a_bad_service_cidr() {
    let dir = tempfile::tempdir().unwrap();
    let o = render(dir.path(), &["--service-cidr", "10.96.0.0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--service-cidr"));
}

/// Schema check against Kubernetes 1.37's OpenAPI schema, offline, with
/// `kubernetes-validate --strict` (PyPI). Runs when the validator is on PATH
/// or named by `BOTTLE_KUBERNETES_VALIDATE` (`scripts/setup.sh` installs it);
/// a missing validator fails the test unless `BOTTLE_SKIP_K8S_VALIDATE=1`
/// asks for the skip.
#[test]
fn render_k8s_passes_kubernetes_validate_strict() {
    let kv = std::env::var("BOTTLE_KUBERNETES_VALIDATE")
        .unwrap_or_else(|_| "kubernetes-validate".into());
    if Command::new(&kv).arg("--version").output().is_err() {
        if std::env::var_os("BOTTLE_SKIP_K8S_VALIDATE").is_some_and(|v| v == "1") {
            eprintln!("SKIP: {kv} not found and BOTTLE_SKIP_K8S_VALIDATE=1");
            return;
        }
        panic!(
            "{kv} not found: run scripts/setup.sh (pip install kubernetes-validate), or set BOTTLE_SKIP_K8S_VALIDATE=1 to skip"
        );
    }
    // The third case carries a prompt file and a skill (text, an
    // executable script, a binary file) into ConfigMaps; the fourth is a
    // supervised bottle (its state ConfigMaps and the sidecar).
    for (outer, trees, supervise) in [
        ("squid", false, false),
        ("pipelock", false, false),
        ("squid", true, false),
        ("pipelock", false, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k8s");
        let mut m = M.replace("outer_proxy: pipelock", &format!("outer_proxy: {outer}"));
        if trees {
            let skill = dir.path().join(".claude/skills/review");
            std::fs::create_dir_all(skill.join("bin")).unwrap();
            std::fs::write(skill.join("SKILL.md"), "# review\n").unwrap();
            std::fs::write(skill.join("bin/run.sh"), "#!/bin/sh\n").unwrap();
            std::fs::write(skill.join("icon.bin"), [0u8, 255, 1]).unwrap();
            std::fs::write(dir.path().join("task.md"), "Fix it.\n").unwrap();
            m.push_str("    prompt_file: task.md\n    skills: [review]\n");
        }
        if supervise {
            m = m.replace(
                "    allow: [pypi.org]\n",
                "    allow: [pypi.org]\n    supervise: true\n",
            );
        }
        std::fs::write(dir.path().join("m.yaml"), m).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_bottle"))
            // Kept approvals would be folded in: none here.
            .env("BOTTLE_STATE_DIR", "/nonexistent/bottle-state")
            .args([
                "render",
                "--format",
                "k8s",
                "--agent",
                "coder",
                "--manifest",
            ])
            .arg(dir.path().join("m.yaml"))
            .args(["--out", out.to_str().unwrap()])
            .env("K8S_TEST_GH_PAT", SECRET)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        if supervise {
            let cm = std::fs::read_to_string(out.join("configmap.yaml")).unwrap();
            assert!(cm.contains("-live-routes") && cm.contains("-supervise-view"));
            let dep = std::fs::read_to_string(out.join("deployment.yaml")).unwrap();
            assert!(dep.contains("image: bottle-supervise:latest"));
        }
        if trees {
            let cm = std::fs::read_to_string(out.join("configmap.yaml")).unwrap();
            assert!(cm.contains("name: bottle-dev-") && cm.contains("-skill-review"));
            assert!(cm.contains("prompt.md: |\n    Fix it."), "{cm}");
            assert!(!String::from_utf8_lossy(&o.stderr).contains("not carried"));
        }
        let mut files: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let v = Command::new(&kv)
            .args(["--strict", "-k", "1.37.0"])
            .args(&files)
            .output()
            .unwrap();
        let log =
            String::from_utf8_lossy(&v.stdout).to_string() + &String::from_utf8_lossy(&v.stderr);
        assert!(v.status.success(), "{outer}: {log}");
        let docs: usize = files
            .iter()
            .map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .filter(|l| l.starts_with("apiVersion: "))
                    .count()
            })
            .sum();
        assert!(docs >= 11);
        assert_eq!(
            log.matches("passed for resource").count(),
            docs,
            "{outer}: {log}"
        );
    }
}

fn docs(y: &str) -> Vec<serde_yaml_ng::Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(y)
        .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap())
        .collect()
}

/// `--mint-cas DIR`: a 0600 file of Secrets that covers every CA Secret and
/// key the render mounts; no key material on stdout or stderr.
#[test]
fn render_k8s_mint_cas_writes_the_referenced_ca_secrets_only_to_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cas = dir.path().join("cas");
    let o = render(dir.path(), &["--mint-cas", cas.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (out, err) = (
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    );
    assert!(!out.contains("PRIVATE KEY") && !err.contains("PRIVATE KEY"));
    assert!(!out.contains("kind: Secret\n"));
    let file = cas.join("ca-secrets.yaml");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let minted: Vec<(String, Vec<String>)> = docs(&std::fs::read_to_string(&file).unwrap())
        .iter()
        .map(|d| {
            assert_eq!(d["kind"].as_str(), Some("Secret"));
            let keys = d["data"]
                .as_mapping()
                .unwrap()
                .keys()
                .map(|k| k.as_str().unwrap().to_string())
                .collect();
            (d["metadata"]["name"].as_str().unwrap().to_string(), keys)
        })
        .collect();
    assert_eq!(minted.len(), 4);
    let mut referenced = 0;
    for d in docs(&out)
        .iter()
        .filter(|d| d["kind"].as_str() == Some("Deployment"))
    {
        for v in d["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .unwrap()
        {
            let Some(s) = v.get("secret") else { continue };
            let name = s["secretName"].as_str().unwrap();
            if name.ends_with("-files") {
                continue; // host files (git keys): the user's own
            }
            for item in s["items"].as_sequence().unwrap() {
                let key = item["key"].as_str().unwrap();
                assert!(
                    minted
                        .iter()
                        .any(|(n, ks)| n == name && ks.iter().any(|k| k == key)),
                    "{name}/{key} is mounted but not minted"
                );
                referenced += 1;
            }
        }
    }
    assert!(referenced >= 4, "{referenced}");
}

/// `--include-secrets`: the same objects, then Secrets with the token value
/// and the CAs; a missing token variable is a usage error.
#[test]
fn render_k8s_include_secrets_appends_secrets_and_changes_nothing_else() {
    use k8s_openapi::api::core::v1::Secret;
    let dir = tempfile::tempdir().unwrap();
    let plain = render(dir.path(), &[]);
    let with = render(dir.path(), &["--include-secrets"]);
    assert!(with.status.success());
    let (plain, with_out) = (
        String::from_utf8(plain.stdout).unwrap(),
        String::from_utf8(with.stdout).unwrap(),
    );
    assert!(String::from_utf8_lossy(&with.stderr).contains("throwaway clusters only"));
    let extra = with_out.strip_prefix(&plain).expect("same objects first");
    let secrets: Vec<Secret> = docs(extra)
        .into_iter()
        .map(|d| serde_yaml_ng::from_value(d).unwrap())
        .collect();
    assert_eq!(secrets.len(), 5);
    let tokens = secrets[0].data.as_ref().unwrap();
    assert_eq!(tokens["EGRESS_PROXY_TOKEN_0"].0, SECRET.as_bytes());
    assert!(
        secrets[0]
            .metadata
            .name
            .as_deref()
            .unwrap()
            .ends_with("-tokens")
    );

    let m = dir.path().join("m.yaml");
    let o = Command::new(env!("CARGO_BIN_EXE_bottle"))
        // Kept approvals would be folded in: none here.
        .env("BOTTLE_STATE_DIR", "/nonexistent/bottle-state")
        .args([
            "render",
            "--format",
            "k8s",
            "--agent",
            "coder",
            "--include-secrets",
            "--manifest",
        ])
        .arg(&m)
        .env_remove("K8S_TEST_GH_PAT")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("K8S_TEST_GH_PAT"));
}

/// CA keys never go into a file someone planted at the name beforehand: the
/// planted file (mode 0644, here also a hard link another name still reads)
/// is replaced by a new 0600 file, and the other name never sees a key.
#[test]
fn render_k8s_mint_cas_never_writes_through_a_planted_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cas = dir.path().join("cas");
    std::fs::create_dir_all(&cas).unwrap();
    let file = cas.join("ca-secrets.yaml");
    std::fs::write(&file, "planted\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let watcher = dir.path().join("watcher");
    std::fs::hard_link(&file, &watcher).unwrap();
    let o = render(dir.path(), &["--mint-cas", cas.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&watcher).unwrap(), "planted\n");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("kind: Secret")
    );
}
