//! git-gate through a whole bottle: `bottle run` with a manifest `git:` entry whose
//! upstream is the test sshd (`bottle-test-sshd`) on the bottle's egress network. Checks,
//! from inside the agent, that the remote the launcher wrote works for fetch and push,
//! that a secret is refused and lands nothing, that the upstream and the identity file
//! are out of the agent's reach, and that an HTTPS push to the same host through
//! egress-proxy is refused. The gate-only cases (force, deletion, host key, upstream
//! failure) are in git_gate.rs.
//!
//! Needs the images of docker/build-images.sh and docker/git-gate/build.sh (this test
//! runs the latter for the test sshd; it is quick when the images are up to date).

mod e2e_support;

use e2e_support::*;
use std::path::Path;
use std::process::Command;

const AWS_KEY_ID: &str = "AKIAQYLPMN5HHHFPZAM2";

fn keygen(path: &Path) {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "gg-bottle", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(
        o.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A script as user git in the upstream; panics on failure.
fn upstream(sshd: &str, script: &str) -> String {
    docker_ok_out(&[
        "exec",
        "-u",
        "git",
        "-e",
        "HOME=/srv/git",
        "-e",
        "GIT_AUTHOR_NAME=Up",
        "-e",
        "GIT_AUTHOR_EMAIL=up@bottle.invalid",
        "-e",
        "GIT_COMMITTER_NAME=Up",
        "-e",
        "GIT_COMMITTER_EMAIL=up@bottle.invalid",
        sshd,
        "sh",
        "-ec",
        script,
    ])
}

fn upstream_main(sshd: &str) -> String {
    upstream(sshd, "git -C /srv/git/widget.git rev-parse refs/heads/main")
        .trim()
        .to_owned()
}

#[test]
fn agent_fetches_and_pushes_through_the_gate_of_a_bottle() {
    if !docker_or_skip() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/git-gate/build.sh");
    let o = Command::new("bash")
        .arg(&script)
        .output()
        .expect("docker/git-gate/build.sh");
    assert!(
        o.status.success(),
        "git-gate build: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let bottle = unique("gg");
    let mut guard = Guard::new(&bottle);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let repo = dir.join("repo");
    git_repo(&repo);
    let state = dir.join("state");
    keygen(&dir.join("host_key"));
    keygen(&dir.join("client_key"));
    let host_pub: Vec<String> = file(&dir.join("host_key.pub"))
        .split_whitespace()
        .take(2)
        .map(str::to_owned)
        .collect();
    let private_key = file(&dir.join("client_key"));
    let key_body = private_key.lines().nth(1).unwrap_or("missing").to_owned();
    let manifest = format!(
        r#"
bottles:
  {bottle}:
    outer_proxy: squid
    allow: [upstream.test]
    git:
      - name: widget
        upstream: ssh://git@upstream.test/srv/git/widget.git
        identity_file: {key}
        known_host_key: "upstream.test {host_key}"
agents:
  a:
    bottle: {bottle}
    command: [bash, -c, "for i in $(seq 1200); do [ -e /tmp/done ] && exit 7; sleep 0.5; done; exit 1"]
"#,
        key = dir.join("client_key").display(),
        host_key = host_pub.join(" "),
    );
    std::fs::write(dir.join("bottle.yaml"), manifest).unwrap();
    let child = spawn_bottle(
        dir,
        &repo,
        &state,
        &[],
        &[
            "run",
            "--manifest",
            dir.join("bottle.yaml").to_str().unwrap(),
            "--agent",
            "a",
        ],
    );
    guard.children.push(child);

    // The upstream joins the bottle's egress network as soon as it exists. The gate may
    // start before it answers: it then fetches again before each agent fetch and push.
    let id = wait_for(180, || bottle_id(&bottle)).unwrap_or_else(|| {
        panic!(
            "no bottle network; bottle stderr:\n{}",
            file(&dir.join("bottle.err"))
        )
    });
    let egress_net = format!("bottle-{id}-egress");
    let sshd = format!("bottle-{id}-test-upstream");
    guard.containers.push(sshd.clone());
    docker_ok_out(&[
        "create",
        "--name",
        &sshd,
        "--label",
        "bottle.test=upstream",
        "--network",
        &egress_net,
        "--network-alias",
        "upstream.test",
        "bottle-test-sshd:latest",
    ]);
    docker_ok_out(&[
        "cp",
        dir.join("host_key").to_str().unwrap(),
        &format!("{sshd}:/etc/ssh/ssh_host_ed25519_key"),
    ]);
    docker_ok_out(&[
        "cp",
        dir.join("client_key.pub").to_str().unwrap(),
        &format!("{sshd}:/srv/git/.ssh/authorized_keys"),
    ]);
    docker_ok_out(&["start", &sshd]);
    wait_for(60, || {
        let o = docker(&["logs", &sshd]);
        String::from_utf8_lossy(&o.stderr)
            .contains("Server listening on")
            .then_some(())
    })
    .expect("test sshd did not start");
    upstream(
        &sshd,
        "git init -q --bare -b main /srv/git/widget.git && cd /tmp && git clone -q /srv/git/widget.git seed 2>/dev/null \
         && cd seed && echo hello > UPSTREAM && git add UPSTREAM && git commit -q -m 'initial commit' && git push -q origin main",
    );

    let (_, agent) = running_agent(&bottle, 240).unwrap_or_else(|| {
        panic!(
            "agent never ran; bottle stderr:\n{}",
            file(&dir.join("bottle.err"))
        )
    });

    // 1. Fetch through the remote the launcher wrote; a later upstream commit is seen.
    let (code, out, err) = exec(
        &agent,
        "cd /workspace && git remote -v && git fetch -q widget && git log --format=%s widget/main",
    );
    assert_eq!(code, 0, "fetch: {out}{err}");
    assert!(
        out.contains("git://git-gate:9418/widget.git") && out.contains("initial commit"),
        "{out}"
    );
    upstream(
        &sshd,
        "cd /tmp/seed && echo later >> UPSTREAM && git commit -qam 'made upstream later' && git push -q origin main",
    );
    let (code, out, err) = exec(
        &agent,
        "cd /workspace && git fetch -q widget && git log -1 --format=%s widget/main",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "made upstream later");

    // 2. A clean push lands upstream.
    let (code, out, err) = exec(
        &agent,
        "cd /workspace && git checkout -q -b work widget/main && echo ok > ok.txt && git add ok.txt && \
         git commit -qm 'agent work' && git push widget work:main 2>&1 && git rev-parse HEAD",
    );
    assert_eq!(code, 0, "clean push: {out}{err}");
    assert!(out.contains("scanned and pushed"), "{out}");
    let head = out.lines().last().unwrap_or_default().trim().to_owned();
    assert_eq!(upstream_main(&sshd), head);

    // 3. A secret is refused with commit, file and line, and lands nothing.
    let (code, out, _) = exec(
        &agent,
        &format!(
            "cd /workspace && printf 'region=eu\\nkey={AWS_KEY_ID}\\n' > leak.cfg && git add leak.cfg && \
             git commit -qm leak && git rev-parse HEAD && git push widget work:main 2>&1"
        ),
    );
    assert_ne!(code, 0, "secret push went through: {out}");
    let commit = out.lines().next().unwrap_or_default().trim().to_owned();
    assert!(commit.len() >= 12, "{out}");
    for needle in [
        "REFUSED",
        &commit[..12],
        "file leak.cfg line 2",
        "AWS Access Key",
    ] {
        assert!(out.contains(needle), "refusal lacks {needle}: {out}");
    }
    assert!(
        !out.contains(AWS_KEY_ID),
        "refusal echoes the secret: {out}"
    );
    assert_eq!(upstream_main(&sshd), head);

    // 4. The upstream is out of reach, by name and by address.
    let ip = docker_ok_out(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{egress_net}\").IPAddress}}}}"),
        &sshd,
    ]);
    for target in ["upstream.test", ip.trim()] {
        let (_, out, _) = exec(
            &agent,
            &format!(
                "timeout 20 bash -c 'exec 3<>/dev/tcp/{target}/22' 2>/dev/null && echo CONNECTED"
            ),
        );
        assert!(
            !out.contains("CONNECTED"),
            "agent reached the upstream's ssh port at {target}"
        );
    }

    // 5. An HTTPS push to the same host through egress-proxy is refused.
    let (code, out, err) = exec(
        &agent,
        "cd /workspace && git push https://upstream.test/srv/git/widget.git work:main 2>&1",
    );
    assert_ne!(code, 0, "HTTPS push went through: {out}{err}");
    assert!(
        out.contains("403"),
        "HTTPS push not refused with 403: {out}"
    );
    assert_eq!(upstream_main(&sshd), head);

    // 6. The identity file is nowhere in the agent: files, environment, inspect.
    let (_, found, _) = exec(
        &agent,
        &format!(
            "grep -rlF '{key_body}' /workspace /home /etc /tmp /root 2>/dev/null; env | grep -F '{key_body}'; true"
        ),
    );
    assert_eq!(found.trim(), "", "private key visible in the agent");
    let inspect = docker_ok_out(&["inspect", &agent]);
    assert!(
        !inspect.contains(&key_body),
        "private key in the agent's container config"
    );
    let gate_logs = docker(&["logs", &format!("bottle-{id}-git-gate")]);
    let gate_logs = format!(
        "{}{}",
        String::from_utf8_lossy(&gate_logs.stdout),
        String::from_utf8_lossy(&gate_logs.stderr)
    );
    assert!(
        !gate_logs.contains(&key_body) && !gate_logs.contains(AWS_KEY_ID),
        "gate log leaks"
    );

    exec(&agent, "touch /tmp/done");
    if let Some(c) = guard.children.first_mut() {
        wait_child(c, 120);
    }
}
