//! The rendered squid Pod, run with Docker as a kubelet would run it (no
//! cluster here): proof that the outer proxy works as the non-root uid the
//! render gives it, with a read-only root and only its emptyDirs writable.
//! Needs the engine unless `BOTTLE_SKIP_DOCKER=1`, and `bottle-squid:latest`
//! (docker/build-images.sh).

mod e2e_support;

use std::process::Command;

const M: &str = r#"
bottles:
  dev:
    allow: [pypi.org]
    outer_proxy: squid
agents:
  coder:
    bottle: dev
"#;

fn docs(y: &str) -> Vec<serde_yaml_ng::Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(y)
        .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap())
        .collect()
}

/// The outer-proxy Pod as rendered, run with Docker the way a kubelet would
/// run it: the rendered uid, read-only root, no capability, tmpfs at every
/// emptyDir mount, the rendered squid.conf and the CA bundle minted by
/// `--mint-cas` (group-readable, as `fsGroup` makes it), the init command
/// then the main command. squid must come up as that uid and refuse a host
/// outside its allowlist. A missing writable path in the render breaks it.
#[test]
fn rendered_squid_pod_runs_as_nobody_with_a_read_only_root() {
    use std::io::{Read, Write};
    if !e2e_support::docker_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k8s");
    let cas = dir.path().join("cas");
    std::fs::write(dir.path().join("m.yaml"), M).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bottle"))
        .args(["render", "--format", "k8s", "-a", "coder", "-m"])
        .arg(dir.path().join("m.yaml"))
        .args(["--out", out.to_str().unwrap()])
        .args(["--mint-cas", cas.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deps = docs(&std::fs::read_to_string(out.join("deployment.yaml")).unwrap());
    let d = deps
        .iter()
        .find(|d| d["metadata"]["labels"]["bottle.role"].as_str() == Some("outer-proxy"))
        .unwrap();
    let spec = &d["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let strs = |v: &serde_yaml_ng::Value| -> Vec<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let uid = c["securityContext"]["runAsUser"].as_i64().unwrap();
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    let empty: Vec<&str> = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|v| v.get("emptyDir").is_some())
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let conf = docs(&std::fs::read_to_string(out.join("configmap.yaml")).unwrap())[0]["data"]
        ["squid.conf"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(dir.path().join("squid.conf"), conf).unwrap();
    let minted = docs(&std::fs::read_to_string(cas.join("ca-secrets.yaml")).unwrap());
    let outer = minted
        .iter()
        .find(|s| {
            s["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with("-outer-ca")
        })
        .unwrap();
    let bundle: k8s_openapi::ByteString =
        serde_yaml_ng::from_value(outer["data"]["bundle.pem"].clone()).unwrap();
    std::fs::write(dir.path().join("bundle.pem"), &bundle.0).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let p = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(dir.path().join("bundle.pem"), p.clone()).unwrap();
        std::fs::set_permissions(dir.path().join("squid.conf"), p).unwrap();
    }
    let quote = |v: Vec<String>| {
        v.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let init = quote(strs(&spec["initContainers"][0]["command"]));
    let main = quote(strs(&c["command"]));
    let name = e2e_support::unique("bottle-test-k8s-squid-");
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = e2e_support::docker(&["rm", "-f", &self.0]);
        }
    }
    let _rm = Rm(name.clone());
    let mut args: Vec<String> = [
        "run",
        "-d",
        "--name",
        &name,
        "--user",
        &format!("{uid}:{uid}"),
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    .map(String::from)
    .to_vec();
    for m in c["volumeMounts"].as_sequence().unwrap() {
        let path = m["mountPath"].as_str().unwrap();
        if empty.contains(&m["name"].as_str().unwrap()) {
            args.extend(["--tmpfs".into(), format!("{path}:uid={uid},gid={uid}")]);
        } else {
            let file = path.rsplit('/').next().unwrap();
            let host = match file {
                "squid.conf" => dir.path().join("squid.conf"),
                "bottle-ca.pem" => dir.path().join("bundle.pem"),
                other => panic!("unexpected mount {other}"),
            };
            args.extend(["-v".into(), format!("{}:{path}:ro", host.display())]);
        }
    }
    args.extend(
        [
            "--entrypoint",
            "/bin/sh",
            "bottle-squid:latest",
            "-c",
            &format!("{init} && exec {main}"),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    e2e_support::docker_ok_out(&args);
    let ip = e2e_support::docker_ok_out(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &name,
    ])
    .trim()
    .to_string();
    let answer = e2e_support::wait_for(30, || {
        let mut s = std::net::TcpStream::connect((ip.as_str(), 3128)).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .ok()?;
        s.write_all(b"GET http://example.com/ HTTP/1.0\r\nHost: example.com\r\n\r\n")
            .ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        (!r.is_empty()).then_some(r)
    });
    let logs = e2e_support::docker(&["logs", &name]);
    let logs =
        String::from_utf8_lossy(&logs.stdout).to_string() + &String::from_utf8_lossy(&logs.stderr);
    let answer = answer.unwrap_or_else(|| panic!("squid did not answer: {logs}"));
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}\n{logs}");
    let status = e2e_support::docker_ok_out(&["exec", &name, "cat", "/proc/1/status"]);
    assert!(
        status.contains(&format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}")),
        "{status}"
    );
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(logs.contains("TCP_DENIED/403"), "{logs}");
}
