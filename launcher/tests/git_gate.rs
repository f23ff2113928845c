//! Integration tests of the `bottle-git-gate` image against a real ssh upstream, with real
//! Docker, real git and real ssh. Each test builds its own small world: an `egress` network
//! holding the test sshd upstream (`bottle-test-sshd`) and the gate, and an internal `agent`
//! network holding the gate (alias `git-gate`) and a client container that plays the agent.
//!
//! These tests own nothing but the Docker resources they create (all named with a unique
//! prefix and removed by a Drop guard, also on panic); they never touch other containers.
//! The images come from `docker/git-gate/build.sh`, which skips when they are up to date.

mod e2e_support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const GATE_IMAGE: &str = "bottle-git-gate:latest";
const SSHD_IMAGE: &str = "bottle-test-sshd:latest";
const GATE_UID: u32 = 9418;
const REPO: &str = "widget";

/// Names of the files and values a test plants; their content must never be echoed.
const AWS_KEY_ID: &str = "AKIAQYLPMN5HHHFPZAM2";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const ANTHROPIC_TOKEN: &str = "sk-ant-api03-Zq8v4XnR2mLk7TwB9yHcE3uJ6pSdFg1aQ0oIi5VbNxMzCeRtYuWsLkJhGf-AbCdEfGhIjKlMnOpQrStUvWx-Q1w2E3r4T5y6U7i8O9pAA";

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI ({e}); these tests need Docker"))
}

/// Runs docker, panics with its stderr when it fails, returns stdout.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds (or finds up to date) both images once per test process; the script serializes
/// concurrent builds with a lock, so parallel test processes are safe.
fn ensure_images() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/git-gate/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("cannot run docker/git-gate/build.sh");
        assert!(
            out.status.success(),
            "docker/git-gate/build.sh failed:\n{}",
            text(&out)
        );
    });
}

fn ssh_keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "git-gate-test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen is missing (apt-get install openssh-client)");
    assert!(out.status.success(), "ssh-keygen failed: {}", text(&out));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Options of one test world.
#[derive(Default)]
struct Options {
    allow_force: bool,
    /// Pin a host key other than the upstream's.
    wrong_host_key: bool,
    /// The upstream's ssh port (default 22); another port tests the `[host]:port` pin.
    port: Option<u16>,
}

/// One test world; dropping it removes every container and network it made.
struct World {
    prefix: String,
    dir: tempfile::TempDir,
    containers: Vec<String>,
    networks: Vec<String>,
    /// The identity file's private key text (to prove it never leaks).
    private_key: String,
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Leave a trace of the gate's side in the test output to debug a failure.
            let logs = docker(&["logs", "--tail", "60", &self.gate()]);
            eprintln!("--- gate logs ---\n{}", text(&logs));
        }
        for c in &self.containers {
            let _ = docker(&["rm", "-f", "-v", c]);
        }
        for n in &self.networks {
            let _ = docker(&["network", "rm", n]);
        }
    }
}

impl World {
    fn start(test: &str, opts: Options) -> World {
        ensure_images();
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let prefix = format!(
            "ggt-{test}-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = World {
            prefix,
            dir,
            containers: vec![],
            networks: vec![],
            private_key: String::new(),
        };
        let d = w.dir.path().to_path_buf();
        ssh_keygen(&d.join("host_key"));
        ssh_keygen(&d.join("client_key"));
        ssh_keygen(&d.join("other_host_key"));
        w.private_key = read(&d.join("client_key"));

        // Networks: egress (gate + upstream) and agent (internal: gate + client).
        for (suffix, internal) in [("egress", false), ("agent", true)] {
            let name = format!("{}-{suffix}", w.prefix);
            let mut args = vec!["network", "create", "--label", "org.bottle.test=git-gate"];
            if internal {
                args.push("--internal");
            }
            args.push(&name);
            docker_ok(&args);
            w.networks.push(name);
        }

        // The upstream: sshd with the host key, the client key authorized, a bare repo.
        let sshd = w.sshd();
        let port = opts.port.unwrap_or(22);
        let port_env = format!("SSHD_PORT={port}");
        docker_ok(&[
            "create",
            "--name",
            &sshd,
            "-e",
            &port_env,
            "--label",
            "org.bottle.test=git-gate",
            "--network",
            &w.networks[0],
            SSHD_IMAGE,
        ]);
        w.containers.push(sshd.clone());
        let host_key = d.join("host_key");
        docker_ok(&[
            "cp",
            host_key.to_str().unwrap(),
            &format!("{sshd}:/etc/ssh/ssh_host_ed25519_key"),
        ]);
        let pub_key = d.join("client_key.pub");
        docker_ok(&[
            "cp",
            pub_key.to_str().unwrap(),
            &format!("{sshd}:/srv/git/.ssh/authorized_keys"),
        ]);
        docker_ok(&["start", &sshd]);
        w.wait_for_log(&sshd, "Server listening on", Duration::from_secs(60));
        w.upstream_sh(&format!(
            "git init -q --bare -b main /srv/git/{REPO}.git && cd /tmp && rm -rf seed && \
             git clone -q /srv/git/{REPO}.git seed 2>/dev/null && cd seed && \
             echo hello > README && git add README && git commit -q -m 'initial commit' && \
             git push -q origin main"
        ));

        // The gate: config, identity and pinned host key copied in before start, owned by
        // the gate's uid (the contract in docker/git-gate/README.md).
        let gate = w.gate();
        let etc = d.join("etc");
        std::fs::create_dir_all(etc.join("keys")).unwrap();
        std::fs::create_dir_all(etc.join("known_hosts")).unwrap();
        let pinned = if opts.wrong_host_key {
            "other_host_key.pub"
        } else {
            "host_key.pub"
        };
        let pinned_key: Vec<String> = read(&d.join(pinned))
            .split_whitespace()
            .take(2)
            .map(str::to_owned)
            .collect();
        std::fs::write(
            etc.join("known_hosts").join(REPO),
            format!("{sshd} {}\n", pinned_key.join(" ")),
        )
        .unwrap();
        std::fs::copy(d.join("client_key"), etc.join("keys").join(REPO)).unwrap();
        let config = serde_json::json!({"repos": [{
            "name": REPO,
            "upstream": format!("ssh://git@{sshd}:{port}/srv/git/{REPO}.git"),
            "identity_file": format!("/etc/git-gate/keys/{REPO}"),
            "known_hosts_file": format!("/etc/git-gate/known_hosts/{REPO}"),
            "allow_force": opts.allow_force,
        }]});
        std::fs::write(etc.join("config.json"), config.to_string()).unwrap();
        docker_ok(&[
            "create",
            "--name",
            &gate,
            "--label",
            "org.bottle.test=git-gate",
            "--network",
            &w.networks[0],
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            GATE_IMAGE,
        ]);
        w.containers.push(gate.clone());
        docker_ok(&[
            "network",
            "connect",
            "--alias",
            "git-gate",
            &w.networks[1],
            &gate,
        ]);
        // As the launcher does it: the archive API, files owned by the gate's uid, no
        // directory entries (they would re-own the image's directories).
        put_archive(
            &gate,
            "/etc/git-gate",
            &[
                ("config.json", read(&etc.join("config.json")), 0o600),
                (
                    &format!("keys/{REPO}"),
                    read(&etc.join("keys").join(REPO)),
                    0o600,
                ),
                (
                    &format!("known_hosts/{REPO}"),
                    read(&etc.join("known_hosts").join(REPO)),
                    0o644,
                ),
            ],
        );
        docker_ok(&["start", &gate]);
        w.wait_for_log(
            &gate,
            "serving widget on port 9418",
            Duration::from_secs(120),
        );

        // The client plays the agent: only on the agent network.
        let client = w.client();
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &client,
            "--label",
            "org.bottle.test=git-gate",
            "--network",
            &w.networks[1],
            "--entrypoint",
            "sleep",
            GATE_IMAGE,
            "infinity",
        ]);
        w.containers.push(client);
        w
    }

    fn sshd(&self) -> String {
        format!("{}-sshd", self.prefix)
    }
    fn gate(&self) -> String {
        format!("{}-gate", self.prefix)
    }
    fn client(&self) -> String {
        format!("{}-client", self.prefix)
    }

    fn wait_for_log(&self, container: &str, needle: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let out = docker(&["logs", container]);
            if text(&out).contains(needle) {
                return;
            }
            let state = docker_ok(&["inspect", "-f", "{{.State.Running}}", container]);
            assert!(
                state.trim() == "true",
                "{container} exited before '{needle}':\n{}",
                text(&out)
            );
            assert!(
                start.elapsed() < limit,
                "{container}: no '{needle}' after {limit:?}:\n{}",
                text(&out)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// A shell script as user git in the upstream; panics on failure.
    fn upstream_sh(&self, script: &str) -> String {
        docker_ok(&[
            "exec",
            "-u",
            "git",
            "-e",
            "HOME=/srv/git",
            "-e",
            "GIT_AUTHOR_NAME=Upstream",
            "-e",
            "GIT_AUTHOR_EMAIL=upstream@bottle.invalid",
            "-e",
            "GIT_COMMITTER_NAME=Upstream",
            "-e",
            "GIT_COMMITTER_EMAIL=upstream@bottle.invalid",
            &self.sshd(),
            "sh",
            "-ec",
            script,
        ])
    }

    /// The upstream's commit for a branch, or None if the branch does not exist.
    fn upstream_ref(&self, branch: &str) -> Option<String> {
        let out = docker(&[
            "exec",
            "-u",
            "git",
            &self.sshd(),
            "git",
            "-C",
            &format!("/srv/git/{REPO}.git"),
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Makes a commit directly in the upstream (someone else pushing there).
    fn upstream_commit(&self, file: &str, message: &str) -> String {
        self.upstream_sh(&format!(
            "cd /tmp/seed && git pull -q origin main && echo change >> {file} && git add {file} \
             && git commit -q -m '{message}' && git push -q origin main && git rev-parse HEAD"
        ))
        .trim()
        .to_owned()
    }

    /// A shell script in the client (the agent), in /tmp/w, with a git identity set.
    fn client_sh(&self, script: &str) -> Output {
        docker(&[
            "exec",
            "-e",
            "GIT_AUTHOR_NAME=Agent",
            "-e",
            "GIT_AUTHOR_EMAIL=agent@bottle.invalid",
            "-e",
            "GIT_COMMITTER_NAME=Agent",
            "-e",
            "GIT_COMMITTER_EMAIL=agent@bottle.invalid",
            "-e",
            "GIT_TERMINAL_PROMPT=0",
            &self.client(),
            "sh",
            "-ec",
            &format!("mkdir -p /tmp/w && cd /tmp/w && {script}"),
        ])
    }

    fn client_ok(&self, script: &str) -> String {
        let out = self.client_sh(script);
        assert!(
            out.status.success(),
            "client script failed: {script}\n{}",
            text(&out)
        );
        text(&out)
    }

    fn clone(&self) {
        self.client_ok(&format!(
            "git clone -q git://git-gate:9418/{REPO}.git repo && test -f repo/README"
        ));
    }

    /// The client's HEAD commit id.
    fn client_head(&self) -> String {
        self.client_ok("cd repo && git rev-parse HEAD")
            .trim()
            .to_owned()
    }
}

/// PUT /containers/{id}/archive through the Docker socket (what bollard's
/// upload_to_container does): `docker cp` cannot copy into a created container whose image
/// has a numeric USER on Engine 20.10 (it fails looking the user up).
fn put_archive(container: &str, dir: &str, files: &[(&str, String, u32)]) {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(*mode);
        header.set_uid(GATE_UID.into());
        header.set_gid(GATE_UID.into());
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, content.as_bytes())
            .expect("tar entry");
    }
    let archive = builder.into_inner().expect("tar");
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "--unix-socket",
            &socket,
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/x-tar",
            "--data-binary",
            "@-",
            &format!("http://localhost/containers/{container}/archive?path={dir}"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("curl is missing (apt-get install curl)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("curl stdin");
        stdin.write_all(&archive).expect("write tar to curl");
    }
    let out = child.wait_with_output().expect("curl");
    assert!(out.status.success(), "PUT archive failed: {}", text(&out));
}

/// Asserts a refused push: names the rule, commit, file and line, lands nothing upstream,
/// and never echoes the whole secret.
fn assert_refused(out: &Output, needles: &[&str], secret: &str) {
    let all = text(out);
    assert!(!out.status.success(), "push should fail:\n{all}");
    assert!(all.contains("REFUSED"), "no refusal in:\n{all}");
    for n in needles {
        assert!(all.contains(n), "refusal does not mention '{n}':\n{all}");
    }
    assert!(
        !all.contains(secret),
        "the refusal echoes the whole secret:\n{all}"
    );
}

#[test]
fn clone_fetch_and_clean_push_reach_the_upstream() {
    if !e2e_support::docker_or_skip() {
        return;
    }
    let w = World::start("clean", Options::default());
    w.clone();
    assert_eq!(Some(w.client_head()), w.upstream_ref("main"));

    // A commit made upstream after the gate started is seen by the next fetch.
    let later = w.upstream_commit("NEWS", "made upstream later");
    w.client_ok("cd repo && git pull -q --ff-only origin main");
    assert_eq!(w.client_head(), later);

    // A clean push lands upstream, and the agent is told so.
    let out = w.client_ok(
        "cd repo && mkdir -p src && printf 'fn main() {}\\n' > src/main.rs && \
         git add src && git commit -q -m 'add main' && git push origin main 2>&1",
    );
    assert!(out.contains("scanned and pushed"), "{out}");
    assert_eq!(w.upstream_ref("main"), Some(w.client_head()));

    // A new branch and a tag land too.
    w.client_ok(
        "cd repo && git checkout -q -b topic && echo more >> README && git commit -qam more && \
         git tag -a v1 -m 'release v1' && git push -q origin topic v1",
    );
    assert_eq!(w.upstream_ref("topic"), Some(w.client_head()));
    let tag = w.upstream_sh(&format!(
        "git -C /srv/git/{REPO}.git rev-parse 'refs/tags/v1^{{commit}}'"
    ));
    assert_eq!(tag.trim(), w.client_head());
}

#[test]
fn pushes_with_secrets_are_refused_and_land_nothing() {
    if !e2e_support::docker_or_skip() {
        return;
    }
    let w = World::start("secrets", Options::default());
    w.clone();
    let before = w.upstream_ref("main");

    // An AWS key id and secret in a config file, on lines 2 and 3.
    let out = w.client_sh(&format!(
        "cd repo && git reset -q --hard origin/main && mkdir -p config && \
         printf '# prod\\nAWS_ACCESS_KEY_ID={AWS_KEY_ID}\\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\\n' \
         > config/prod.env && git add config && git commit -q -m 'add config' && \
         git rev-parse HEAD > /tmp/commit && git push origin main"
    ));
    let commit = w.client_ok("cat /tmp/commit").trim().to_owned();
    assert_refused(
        &out,
        &[
            &commit[..12],
            "file config/prod.env line 2",
            "AWS Access Key",
            "file config/prod.env line 3",
            "AWS Secret Access Key",
        ],
        AWS_SECRET,
    );
    assert!(!text(&out).contains(AWS_KEY_ID), "{}", text(&out));
    assert_eq!(w.upstream_ref("main"), before);

    // A real private key, added in one commit and deleted in the next: the tip is clean
    // but the history carries it, so the push is still refused, naming the first commit.
    let out = w.client_sh(
        "cd repo && git reset -q --hard origin/main && mkdir -p deploy && \
         ssh-keygen -q -t ed25519 -N '' -f deploy/id_ed25519 && git add deploy && \
         git commit -q -m 'deploy key' && git rev-parse HEAD > /tmp/commit && \
         git rm -q deploy/id_ed25519 && git commit -q -m 'oops, remove key' && \
         git push origin main",
    );
    let commit = w.client_ok("cat /tmp/commit").trim().to_owned();
    let key = w.client_ok("cd repo && git show HEAD~1:deploy/id_ed25519");
    let key_body = key.lines().nth(1).unwrap_or("missing").to_owned();
    assert_refused(
        &out,
        &[
            &commit[..12],
            "file deploy/id_ed25519 line 1",
            "Private Key",
        ],
        &key_body,
    );
    assert_eq!(w.upstream_ref("main"), before);

    // A token in the commit message (line 3 of the message).
    let out = w.client_sh(&format!(
        "cd repo && git reset -q --hard origin/main && echo docs >> README && git add README && \
         git commit -q -m 'update docs' -m 'debug with {ANTHROPIC_TOKEN}' && \
         git rev-parse HEAD > /tmp/commit && git push origin main"
    ));
    let commit = w.client_ok("cat /tmp/commit").trim().to_owned();
    assert_refused(
        &out,
        &[&commit[..12], "commit message line 3", "Anthropic Key"],
        ANTHROPIC_TOKEN,
    );
    assert_eq!(w.upstream_ref("main"), before);

    // A detect-secrets allowlist pragma written by the agent does not switch the scan off.
    let out = w.client_sh(&format!(
        "cd repo && git reset -q --hard origin/main && \
         echo 'key = \"{AWS_KEY_ID}\"  # pragma: allowlist secret' > creds.py && \
         git add creds.py && git commit -q -m creds && git push origin main"
    ));
    assert_refused(
        &out,
        &["file creds.py line 1", "AWS Access Key"],
        AWS_KEY_ID,
    );
    assert_eq!(w.upstream_ref("main"), before);

    // An annotated tag whose message holds a token is refused as well.
    let out = w.client_sh(&format!(
        "cd repo && git reset -q --hard origin/main && \
         git tag -a leaky -m 'token {ANTHROPIC_TOKEN}' && git push origin leaky"
    ));
    assert_refused(
        &out,
        &["tag message line 1", "Anthropic Key"],
        ANTHROPIC_TOKEN,
    );
    let tags = w.upstream_sh(&format!("git -C /srv/git/{REPO}.git tag -l"));
    assert!(!tags.contains("leaky"), "tag landed upstream: {tags}");

    // The gate's own log never holds the secrets either.
    let logs = text(&docker(&["logs", &w.gate()]));
    for s in [AWS_SECRET, AWS_KEY_ID, ANTHROPIC_TOKEN, key_body.as_str()] {
        assert!(!logs.contains(s), "gate log holds a secret");
    }
}

/// The whole commit and tag object is scanned, not only the message: a key in an extra
/// header (hand-made with `git hash-object --literally`, on a continuation line), in the
/// author name, and in a tagger name are each refused, and the upstream does not move.
#[test]
fn secrets_in_commit_headers_and_names_are_refused() {
    if !e2e_support::docker_or_skip() {
        return;
    }
    let w = World::start("headers", Options::default());
    w.clone();
    let before = w.upstream_ref("main");

    // An extra header `x-note` whose second (continuation) line holds the key.
    let out = w.client_sh(&format!(
        "cd repo && git reset -q --hard origin/main && echo a >> README && git commit -qam plain && \
         c=$(git cat-file commit HEAD | awk '{{print}} /^committer /{{print \"x-note harmless\"; \
         print \" {ANTHROPIC_TOKEN}\"}}' | git hash-object -t commit -w --stdin --literally) && \
         git reset -q --hard $c && git cat-file commit HEAD | grep -c '^x-note' && \
         echo $c > /tmp/commit && git push origin main"
    ));
    let commit = w.client_ok("cat /tmp/commit").trim().to_owned();
    assert_refused(
        &out,
        &[&commit[..12], "commit header line 6", "Anthropic Key"],
        ANTHROPIC_TOKEN,
    );
    assert_eq!(w.upstream_ref("main"), before);

    // A key as the author's name.
    let out = w.client_sh(&format!(
        "cd repo && git reset -q --hard origin/main && echo b >> README && \
         GIT_AUTHOR_NAME='Dev {AWS_KEY_ID}' git commit -qam plain && \
         git rev-parse HEAD > /tmp/commit && git push origin main"
    ));
    let commit = w.client_ok("cat /tmp/commit").trim().to_owned();
    assert_refused(
        &out,
        &[&commit[..12], "commit header line 3", "AWS Access Key"],
        AWS_KEY_ID,
    );
    assert_eq!(w.upstream_ref("main"), before);

    // A key as the tagger's name of an annotated tag on a clean commit.
    let out = w.client_sh(&format!(
        "cd repo && git reset -q --hard origin/main && \
         GIT_COMMITTER_NAME='Rel {AWS_KEY_ID}' git tag -a named -m release && git push origin named"
    ));
    assert_refused(&out, &["tag header line 4", "AWS Access Key"], AWS_KEY_ID);
    let tags = w.upstream_sh(&format!("git -C /srv/git/{REPO}.git tag -l"));
    assert!(!tags.contains("named"), "tag landed upstream: {tags}");
    assert_eq!(w.upstream_ref("main"), before);
    let logs = text(&docker(&["logs", &w.gate()]));
    for s in [AWS_KEY_ID, ANTHROPIC_TOKEN] {
        assert!(!logs.contains(s), "gate log holds a secret");
    }
}

#[test]
fn force_push_and_deletion_are_refused_by_default() {
    if !e2e_support::docker_or_skip() {
        return;
    }
    let w = World::start("noforce", Options::default());
    w.clone();
    w.client_ok(
        "cd repo && git checkout -q -b feature && echo a > a && git add a && \
         git commit -q -m a && git push -q origin feature",
    );
    let landed = w.upstream_ref("feature");
    assert_eq!(landed, Some(w.client_head()));

    let out =
        w.client_sh("cd repo && git commit -q --amend -m rewritten && git push -f origin feature");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("non-fast-forward"), "{}", text(&out));
    assert_eq!(w.upstream_ref("feature"), landed);

    let out = w.client_sh("cd repo && git push origin :feature");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("deleting a ref is refused"),
        "{}",
        text(&out)
    );
    assert_eq!(w.upstream_ref("feature"), landed);
}

#[test]
fn force_push_and_deletion_land_with_allow_force() {
    if !e2e_support::docker_or_skip() {
        return;
    }
    let w = World::start(
        "force",
        Options {
            allow_force: true,
            port: Some(2222),
            ..Options::default()
        },
    );
    w.clone();
    w.client_ok(
        "cd repo && git checkout -q -b feature && echo a > a && git add a && \
         git commit -q -m a && git push -q origin feature && \
         git commit -q --amend -m rewritten && git push -q -f origin feature",
    );
    assert_eq!(w.upstream_ref("feature"), Some(w.client_head()));
    w.client_ok("cd repo && git push -q origin :feature");
    assert_eq!(w.upstream_ref("feature"), None);
}

#[test]
fn wrong_pinned_host_key_fails_clearly_and_lands_nothing() {
    if !e2e_support::docker_or_skip() {
        return;
    }
    let w = World::start(
        "hostkey",
        Options {
            wrong_host_key: true,
            ..Options::default()
        },
    );
    let before = w.upstream_ref("main");
    let out = w.client_sh(&format!("git clone git://git-gate:9418/{REPO}.git repo"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("does not match the pinned known_host_key"),
        "{}",
        text(&out)
    );
    let out = w.client_sh(&format!(
        "git init -q -b main local && cd local && echo x > x && git add x && \
         git commit -q -m x && git push git://git-gate:9418/{REPO}.git main"
    ));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("git-gate: cannot fetch widget from its upstream"),
        "{}",
        text(&out)
    );
    assert_eq!(w.upstream_ref("main"), before);
    let logs = text(&docker(&["logs", &w.gate()]));
    assert!(
        logs.contains(
            "WARNING: cannot fetch widget from its upstream: the upstream's ssh host key"
        ),
        "{logs}"
    );
}

#[test]
fn upstream_refusal_fails_the_agents_push() {
    if !e2e_support::docker_or_skip() {
        return;
    }
    let w = World::start("upfail", Options::default());
    w.clone();
    // The upstream now refuses every push (as a protected branch would).
    w.upstream_sh(&format!(
        "printf '#!/bin/sh\\necho protected branch >&2\\nexit 1\\n' > \
         /srv/git/{REPO}.git/hooks/pre-receive && chmod +x /srv/git/{REPO}.git/hooks/pre-receive"
    ));
    let before = w.upstream_ref("main");
    let out =
        w.client_sh("cd repo && echo y >> README && git commit -qam y && git push origin main");
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("the upstream push failed"), "{all}");
    assert_eq!(w.upstream_ref("main"), before);
    // The gate did not keep the commit either: its main is still the upstream's.
    let remote = w.client_ok(&format!(
        "git ls-remote git://git-gate:9418/{REPO}.git refs/heads/main"
    ));
    assert!(
        remote.starts_with(before.as_deref().unwrap_or("none")),
        "{remote}"
    );
}

#[test]
fn client_cannot_reach_the_upstream_nor_the_key() {
    if !e2e_support::docker_or_skip() {
        return;
    }
    let w = World::start("isolation", Options::default());
    w.clone();
    // Not by name (no DNS for the egress network) ...
    let sshd = w.sshd();
    let out = w.client_sh(&format!("getent hosts {sshd}"));
    assert!(
        !out.status.success(),
        "client resolves the upstream: {}",
        text(&out)
    );
    // ... nor by address.
    let ip = docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &sshd,
    ]);
    let out = w.client_sh(&format!(
        "timeout 15 bash -c 'exec 3<>/dev/tcp/{}/22' && echo CONNECTED",
        ip.trim()
    ));
    assert!(
        !text(&out).contains("CONNECTED"),
        "client reached the upstream's ssh port"
    );
    // git daemon serves the configured repo only, nothing around it.
    for path in [
        "/../keys/widget",
        "/srv/git-gate/keys/widget",
        "/etc/git-gate/keys/widget",
        "/other.git",
        "/widget.git/../../keys",
    ] {
        let out = w.client_sh(&format!("git ls-remote git://git-gate:9418{path}"));
        assert!(!out.status.success(), "{path} served: {}", text(&out));
    }
    // The key is nowhere in the client, and the gate keeps it private to its own user.
    let body = w.private_key.lines().nth(1).unwrap_or("missing").to_owned();
    let out = w.client_sh(&format!(
        "grep -rlF '{body}' /etc /srv /tmp /opt 2>/dev/null || true"
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "key found in client"
    );
    let stat = docker_ok(&[
        "exec",
        &w.gate(),
        "stat",
        "-c",
        "%u %a",
        "/srv/git-gate/keys/widget",
        "/srv/git-gate",
    ]);
    assert_eq!(
        stat.split_whitespace().collect::<Vec<_>>(),
        ["9418", "600", "9418", "700"]
    );
    let user = docker_ok(&["exec", &w.gate(), "id", "-u"]);
    assert_eq!(
        user.trim(),
        "9418",
        "the gate runs as its own non-root user"
    );
    let logs = text(&docker(&["logs", &w.gate()]));
    assert!(!logs.contains(&body), "gate log holds the private key");
}

/// The gate's own unit and property tests (patch parser against real git, path unquoting,
/// config errors, scanner rules and redaction), run inside the image with its real git and
/// detect-secrets.
#[test]
fn gate_unit_and_property_tests_pass_in_the_image() {
    if !e2e_support::docker_or_skip() {
        return;
    }
    ensure_images();
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        "org.bottle.test=git-gate",
        "--entrypoint",
        "python3",
        GATE_IMAGE,
        "-m",
        "unittest",
        "discover",
        "-s",
        "/opt/git-gate/tests",
        "-v",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Start-up refusals: the container exits 2 with a line naming the problem, and never
/// prints the key.
#[test]
fn gate_refuses_bad_config_at_start() {
    if !e2e_support::docker_or_skip() {
        return;
    }
    ensure_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ssh_keygen(&d.join("good"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
        .arg(d.join("locked"))
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{}", text(&out));
    let host_key = read(&d.join("good.pub"));
    let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
    let config = |upstream: &str| {
        serde_json::json!({"repos": [{
            "name": REPO, "upstream": upstream,
            "identity_file": format!("/etc/git-gate/keys/{REPO}"),
            "known_hosts_file": format!("/etc/git-gate/known_hosts/{REPO}"),
        }]})
        .to_string()
    };
    let cases = [
        (
            "passphrase",
            config("ssh://git@upstream.test/r.git"),
            read(&d.join("locked")),
            format!("upstream.test {}", host_key.join(" ")),
            "cannot be used without a passphrase",
        ),
        (
            "hostname",
            config("ssh://git@upstream.test/r.git"),
            read(&d.join("good")),
            format!("elsewhere.test {}", host_key.join(" ")),
            "has no key for upstream.test",
        ),
        (
            "url",
            config("https://upstream.test/r.git"),
            read(&d.join("good")),
            format!("upstream.test {}", host_key.join(" ")),
            "repos[0].upstream",
        ),
        (
            "json",
            "{\"repos\": [".to_string(),
            read(&d.join("good")),
            String::new(),
            "not readable JSON",
        ),
    ];
    for (what, config, key, known_hosts, needle) in cases {
        let name = format!("ggt-badconf-{what}-{}", std::process::id());
        struct Rm(String);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = docker(&["rm", "-f", &self.0]);
            }
        }
        let _rm = Rm(name.clone());
        docker_ok(&[
            "create",
            "--name",
            &name,
            "--label",
            "org.bottle.test=git-gate",
            "--network",
            "none",
            GATE_IMAGE,
        ]);
        put_archive(
            &name,
            "/etc/git-gate",
            &[
                ("config.json", config, 0o644),
                (&format!("keys/{REPO}"), key.clone(), 0o600),
                (&format!("known_hosts/{REPO}"), known_hosts, 0o644),
            ],
        );
        docker_ok(&["start", &name]);
        let code = docker_ok(&["wait", &name]);
        let logs = text(&docker(&["logs", &name]));
        assert_eq!(code.trim(), "2", "{what}: exit code; logs:\n{logs}");
        assert!(logs.contains("git-gate: config error:"), "{what}: {logs}");
        assert!(
            logs.contains(needle),
            "{what}: wants '{needle}' in:\n{logs}"
        );
        let body = key.lines().nth(1).unwrap_or("missing");
        assert!(!logs.contains(body), "{what}: the key is in the log");
    }
}
