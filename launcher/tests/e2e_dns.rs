//! DNS from the agent on real Docker (SPEC §6: the agent resolves only the
//! bottle's own names; no resolver it can reach forwards a query outside).
//!
//! Docker's embedded resolver (127.0.0.11) forwards names it does not own to
//! the host's resolvers; engines before 26.0 do it even from internal networks
//! (CVE-2024-29018), and from the host's namespace when the host's resolver
//! is on loopback. The stand-in for "the host's resolver receives a query"
//! here is a raw packet listener in the agent's network namespace, on every
//! interface but loopback: a forwarded query has to cross one of them to
//! reach any resolver outside the agent. A control request to egress-proxy
//! proves the listener sees what crosses. The agent must still resolve
//! egress-proxy and git-gate, and must not resolve an outside name.
//!
//! Needs the images of docker/build-images.sh and docker/git-gate/build.sh.

mod e2e_support;

use e2e_support::*;
use std::process::Command;

/// Prints `SEEN <needle> <iface>` for every frame holding a needle, on every
/// interface but `lo`; `sniffing` once it listens.
const SNIFF_PY: &str = r#"
import os, select, socket, sys
needles = [n.encode() for n in sys.argv[1:]]
socks = []
for i in sorted(os.listdir("/sys/class/net")):
    if i == "lo":
        continue
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
    s.bind((i, 0))
    socks.append((i, s))
print("sniffing on", " ".join(i for i, _ in socks), flush=True)
while True:
    ready, _, _ = select.select([s for _, s in socks], [], [], 1)
    for i, s in socks:
        if s in ready:
            data = s.recv(65535)
            for n in needles:
                if n in data:
                    print("SEEN", n.decode(), i, flush=True)
"#;

#[test]
fn agent_resolves_only_bottle_names_and_no_query_leaves_it() {
    if !docker_or_skip() {
        return;
    }
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
    let bottle = unique("dns");
    let mut guard = Guard::new(&bottle);
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
  a:
    bottle: {bottle}
    command: [bash, -c, "for i in $(seq 1200); do [ -e /tmp/done ] && exit 0; sleep 0.5; done; exit 1"]
"#
        ),
    )
    .unwrap();
    let child = spawn_bottle(
        dir,
        &repo,
        &dir.join("state"),
        &[],
        &[
            "run",
            "--manifest",
            dir.join("m.yaml").to_str().unwrap(),
            "--agent",
            "a",
        ],
    );
    guard.children.push(child);
    let (id, agent) = running_agent(&bottle, 240).unwrap_or_else(|| {
        panic!(
            "agent never ran; bottle stderr:\n{}",
            file(&dir.join("bottle.err"))
        )
    });

    // The listener shares the agent's network namespace (root and NET_RAW are
    // its own, not the agent's).
    let leak = unique("leak");
    let control = unique("ctl");
    let sniffer = format!("bottle-{id}-test-sniff");
    guard.containers.push(sniffer.clone());
    docker_ok_out(&[
        "run",
        "-d",
        "--name",
        &sniffer,
        "--network",
        &format!("container:{agent}"),
        "--user",
        "0:0",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_RAW",
        "bottle-agent:latest",
        "python3",
        "-c",
        SNIFF_PY,
        &leak,
        &control,
    ]);
    let logs = || {
        let o = docker(&["logs", &sniffer]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    wait_for(60, || logs().contains("sniffing on eth").then_some(()))
        .unwrap_or_else(|| panic!("the listener did not start: {}", logs()));

    // The bottle's own names resolve.
    for name in ["egress-proxy", "git-gate"] {
        let (code, out, err) = exec(&agent, &format!("getent hosts {name}"));
        assert_eq!(code, 0, "{name} does not resolve in the agent: {out}{err}");
    }
    // The control crosses the agent's interface, so the listener can see.
    exec(
        &agent,
        &format!(
            "curl -s -m 10 --noproxy '*' -o /dev/null http://egress-proxy:9099/{control}; true"
        ),
    );
    // Outside names do not resolve: a real one, and a unique one the
    // listener looks for (both tried at once; a failed lookup takes ~20 s).
    let (_, out, _) = exec(
        &agent,
        &format!(
            "(timeout 60 getent ahosts pypi.org; echo real=$?) > /tmp/r1 2>&1 & \
             (timeout 60 getent ahosts {leak}.pypi.org; echo unique=$?) > /tmp/r2 2>&1 & \
             wait; cat /tmp/r1 /tmp/r2"
        ),
    );
    assert!(
        out.lines().any(|l| l.starts_with("real=") && l != "real=0"),
        "pypi.org resolved in the agent: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("unique=") && l != "unique=0"),
        "{out}"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let seen = logs();
    assert!(
        seen.contains(&format!("SEEN {control}")),
        "the listener saw not even the control request: {seen}"
    );
    assert!(
        !seen.contains(&format!("SEEN {leak}")),
        "a DNS query left the agent's network namespace: {seen}"
    );

    // The sniffer goes before the agent it shares a namespace with.
    docker_ok_out(&["rm", "-f", &sniffer]);
    exec(&agent, "touch /tmp/done");
    let mut child = guard.children.pop().unwrap();
    let status = wait_child(&mut child, 120).expect("bottle run did not exit");
    assert_eq!(
        status.code(),
        Some(0),
        "stderr:\n{}",
        file(&dir.join("bottle.err"))
    );
    let left = leftovers(&id);
    assert!(left.is_empty(), "left behind: {left:?}");
}
