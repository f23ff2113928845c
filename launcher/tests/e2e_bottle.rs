//! End to end: `bottle run` with the squid outer proxy and an HTTPS test origin
//! on the bottle's egress network (its CA in `outer_proxy_trust`). Everything
//! real: Docker, the egress-proxy and squid images, curl/git/node/python3 in
//! the agent. Checks from the outside with `docker exec` while the agent waits,
//! then lets the agent exit and checks that nothing of the bottle remains.
//!
//! Needs the images of docker/build-images.sh (CI: scripts/setup.sh builds them).

mod e2e_support;

use e2e_support::*;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn sha256_hex(s: &str) -> String {
    use std::io::Write;
    let mut c = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The status of the last response head in `curl -D -` output (after the
/// proxy's own `200` to the CONNECT).
fn last_status(out: &str) -> Option<u16> {
    out.lines()
        .rev()
        .find(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
}

fn presence(haystack: &str, needle: &str) -> &'static str {
    if haystack.contains(needle) {
        "present"
    } else {
        "absent"
    }
}

#[test]
fn bottle_run_end_to_end_with_squid() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("e2e");
    let mut guard = Guard::new(&bottle);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let repo = dir.join("repo");
    git_repo(&repo);
    let state = dir.join("state");
    let pki = origin_pki(&["api.origin.test", "pub.origin.test", "other.origin.test"]);
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
    // A listener on the host: the agent must not reach it via its bridge gateway.
    let host_listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = host_listener.local_addr().unwrap().port();
    host_listener.set_nonblocking(true).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let acc = accepted.clone();
    std::thread::spawn(move || {
        for _ in 0..2400 {
            if host_listener.accept().is_ok() {
                acc.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });

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

    // The origin joins the bottle's egress network as soon as it exists.
    let id = wait_for(180, || bottle_id(&bottle)).unwrap_or_else(|| {
        panic!(
            "no bottle network; bottle stderr:\n{}",
            file(&dir.join("bottle.err"))
        )
    });
    let egress_net = format!("bottle-{id}-egress");
    let origin = format!("bottle-{id}-test-origin");
    guard.containers.push(origin.clone());
    start_origin(
        &origin,
        &egress_net,
        &["api.origin.test", "pub.origin.test", "other.origin.test"],
        &pki,
        dir,
    );

    let (_, agent) = running_agent(&bottle, 240).unwrap_or_else(|| {
        panic!(
            "agent never ran; bottle stderr:\n{}",
            file(&dir.join("bottle.err"))
        )
    });

    // 1. An allowed path: 200, and the origin saw the injected credential.
    let (code, out, err) = exec(
        &agent,
        "curl -sS -m 30 --retry 5 --retry-all-errors --retry-delay 1 https://api.origin.test/allowed/x",
    );
    assert_eq!(code, 0, "curl allowed: {err}");
    let seen: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|_| panic!("origin answer is not JSON: {out}"));
    let want = sha256_hex(&format!("Bearer {token}"));
    let got = seen["auth_sha256"].as_str().unwrap_or_default();
    eprintln!(
        "injected credential at origin: {}",
        if got == want { "present" } else { "absent" }
    );
    assert!(
        got == want,
        "the origin did not see the injected credential"
    );
    assert_eq!(seen["path"], "/allowed/x");

    // 2. A disallowed path and an unrouted host: 403 with the SPEC reason.
    let (_, out, _) = exec(
        &agent,
        "curl -s -m 30 -o /dev/null -D - https://api.origin.test/secret",
    );
    assert_eq!(last_status(&out), Some(403), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-egress-proxy-decision: path-not-allowed"),
        "{out}"
    );
    let (_, out, _) = exec(
        &agent,
        "curl -s -m 30 -o /dev/null -D - https://other.origin.test/",
    );
    assert_eq!(last_status(&out), Some(403), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-egress-proxy-decision: host-not-allowed"),
        "{out}"
    );

    // 3. An `allow` host works, without credentials.
    let (code, out, err) = exec(&agent, "curl -sS -m 30 https://pub.origin.test/open");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"auth_sha256\": \"none\""), "{out}");

    // 4. Bypasses fail: direct to the origin (name and address), to the outer
    // proxy, to a listener on the host's bridge gateway.
    let ip_on = |c: &str, net: &str| {
        docker_ok_out(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            c,
        ])
        .trim()
        .to_string()
    };
    let origin_ip = ip_on(&origin, &egress_net);
    let outer_ip = ip_on(
        &format!("bottle-{id}-outer-proxy"),
        &format!("bottle-{id}-relay"),
    );
    let gateway = docker_ok_out(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        &format!("bottle-{id}-agent"),
    ])
    .trim()
    .to_string();
    let egress_gateway = docker_ok_out(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        &egress_net,
    ])
    .trim()
    .to_string();
    for (what, cmd) in [
        (
            "origin by name",
            "curl -sS -m 8 --noproxy '*' https://api.origin.test/allowed/x".to_string(),
        ),
        (
            "origin by address",
            format!("curl -sS -m 8 --noproxy '*' -k https://{origin_ip}/allowed/x"),
        ),
        (
            "outer proxy",
            format!(
                "curl -sS -m 8 --noproxy '*' -x http://{outer_ip}:3128 -k https://pub.origin.test/"
            ),
        ),
        (
            "outer proxy by alias",
            "curl -sS -m 15 --noproxy '*' -x http://outer-proxy:3128 -k https://pub.origin.test/"
                .to_string(),
        ),
        (
            "host via agent gateway",
            format!("curl -sS -m 8 --noproxy '*' http://{gateway}:{host_port}/"),
        ),
        (
            "host via egress gateway",
            format!("curl -sS -m 8 --noproxy '*' http://{egress_gateway}:{host_port}/"),
        ),
        (
            "egress-proxy tunnel to host",
            format!(
                "curl -sS -m 20 -o /dev/null -w '%{{http_code}}' http://{gateway}:{host_port}/ ; exit 0"
            ),
        ),
    ] {
        let (code, out, _) = exec(&agent, &cmd);
        if what == "egress-proxy tunnel to host" {
            assert_ne!(out.trim(), "200", "{what}: reached");
        } else {
            assert_ne!(code, 0, "bypass `{what}` succeeded: {out}");
        }
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the host listener accepted a connection from the bottle"
    );

    // 5. git push over HTTPS is refused (and a raw receive-pack POST).
    let (code, out, _) = exec(
        &agent,
        "cd /workspace && git push https://pub.origin.test/acme/widget.git HEAD:refs/heads/x 2>&1",
    );
    assert_ne!(code, 0, "git push went through: {out}");
    assert!(
        out.contains("403"),
        "git push was not refused by the proxy: {out}"
    );
    let (_, out, _) = exec(
        &agent,
        "curl -s -m 30 -o /dev/null -D - -X POST -H 'Content-Type: application/x-git-receive-pack-request' --data x https://pub.origin.test/acme/widget.git/git-receive-pack",
    );
    assert!(
        out.to_ascii_lowercase()
            .contains("x-egress-proxy-decision: git-push"),
        "{out}"
    );

    // 6. The workspace came in with a scrubbed .git/config.
    let (code, out, _) = exec(
        &agent,
        "cd /workspace && cat README && git config --list --local && git log --oneline | wc -l",
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("hello") && !out.contains("credential") && out.trim_end().ends_with('1'),
        "{out}"
    );

    // 7. Node and Python trust the bottle CA.
    let node = r#"node -e '
const http=require("http"),tls=require("tls");
const r=http.request({host:"egress-proxy",port:9099,method:"CONNECT",path:"pub.origin.test:443"});
r.on("connect",(res,sock)=>{const t=tls.connect({socket:sock,servername:"pub.origin.test"},()=>{
  t.write("GET /node HTTP/1.1\r\nHost: pub.origin.test\r\nConnection: close\r\n\r\n");});
  let b="";t.on("data",d=>b+=d);t.on("end",()=>{console.log(b.split("\r\n")[0]);process.exit(0)});
  t.on("error",e=>{console.log("ERR "+e.message);process.exit(1)});});
r.on("error",e=>{console.log("ERR "+e.message);process.exit(1)});r.end();'"#;
    let (code, out, _) = exec(&agent, node);
    assert!(code == 0 && out.contains("200"), "node: {out}");
    let (code, out, err) = exec(
        &agent,
        "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"https://pub.origin.test/py\", timeout=30).status)'",
    );
    assert!(code == 0 && out.trim() == "200", "python: {out} {err}");

    // 8. Non-root, no capabilities, hardened.
    let (_, out, _) = exec(
        &agent,
        "id -u; grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; grep NoNewPrivs /proc/self/status",
    );
    assert!(out.starts_with("1000\n"), "{out}");
    for cap in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            out.contains(&format!("{cap}:\t0000000000000000")),
            "{cap}: {out}"
        );
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    let hc = docker_ok_out(&[
        "inspect",
        "-f",
        "{{.HostConfig.Privileged}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.NetworkMode}} {{.HostConfig.PidMode}} {{.HostConfig.IpcMode}} |{{range .Mounts}}{{.Type}}:{{.Name}}:{{.Destination}} {{end}}",
        &agent,
    ]);
    assert!(
        hc.starts_with("false [ALL] [no-new-privileges:true] bottle-"),
        "{hc}"
    );
    // No mount but the agent's own two volumes (no Docker socket, no host path).
    let mut mounts: Vec<&str> = hc
        .split('|')
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    mounts.sort();
    assert_eq!(
        mounts,
        [
            format!("volume:bottle-{id}-home:/home/agent"),
            format!("volume:bottle-{id}-workspace:/workspace"),
        ],
        "{hc}"
    );

    // 9. The token is nowhere the agent or a log can see.
    let (_, env_out, _) = exec(
        &agent,
        "env; echo; tr '\\0' '\\n' < /proc/1/environ; ls /etc/bottle; cat /etc/bottle/ca.pem",
    );
    let inspect = docker_ok_out(&["inspect", &agent]);
    let mut logs = String::new();
    for role in ["agent", "egress-proxy", "outer-proxy"] {
        let o = docker(&["logs", &format!("bottle-{id}-{role}")]);
        logs.push_str(&String::from_utf8_lossy(&o.stdout));
        logs.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    logs.push_str(&file(&dir.join("bottle.out")));
    logs.push_str(&file(&dir.join("bottle.err")));
    let (_, ps, _) = exec(&agent, "cat /proc/*/cmdline 2>/dev/null | tr '\\0' ' '");
    let places = [
        ("agent env and /proc/1/environ", &env_out),
        ("docker inspect agent", &inspect),
        ("logs", &logs),
        ("agent processes", &ps),
    ];
    for (what, text) in places {
        eprintln!("token in {what}: {}", presence(text, &token));
        assert!(!text.contains(&token), "the token leaked into {what}");
    }
    assert!(
        !env_out.contains("PRIVATE KEY"),
        "a CA key reached the agent"
    );
    // On an AMD CPU egress-proxy starts itself again with glibc's slow
    // `rep movsb` off (docs/operations.md): in its container too.
    let restart_failed = logs
        .lines()
        .find(|l| l.contains("could not restart with glibc"));
    assert_eq!(restart_failed, None, "egress-proxy in its container");
    let proxy_env = docker_ok_out(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &format!("bottle-{id}-egress-proxy"),
    ]);
    eprintln!(
        "token in egress-proxy env: {}",
        presence(&proxy_env, &token)
    );
    assert!(
        proxy_env.contains("EGRESS_PROXY_TOKEN_0="),
        "the slot is egress-proxy's env"
    );
    let proxy_cmd = docker_ok_out(&[
        "inspect",
        "-f",
        "{{json .Config.Cmd}} {{json .Config.Labels}}",
        &format!("bottle-{id}-egress-proxy"),
    ]);
    assert!(
        !proxy_cmd.contains(&token),
        "token in egress-proxy argv or labels"
    );

    // 10. The agent exits normally; its code comes back; nothing remains.
    docker_ok_out(&["rm", "-f", &origin]);
    exec(&agent, "touch /tmp/done");
    let mut child = guard.children.pop().unwrap();
    let status = wait_child(&mut child, 120).expect("bottle run did not exit");
    assert_eq!(
        status.code(),
        Some(7),
        "exit code passes through; stderr:\n{}",
        file(&dir.join("bottle.err"))
    );
    let left = leftovers(&id);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!state.join(&id).exists(), "state directory remains");
}
