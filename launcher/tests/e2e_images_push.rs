//! `bottle images push` against a real registry (Debian's `docker-registry`,
//! the distribution registry v2) started here on a free loopback port with
//! its own config and storage in a temp dir. The engine treats
//! 127.0.0.0/8 registries as insecure by default, so plain HTTP works.
//!
//! Checked as a user would: the digests `push` prints are the ones the
//! registry serves (its own `Docker-Content-Digest`) and the ones the engine
//! records; after the local tag is removed, `docker pull` brings back the
//! same image (same id, same RepoDigest); the names are exactly those
//! `bottle render --image-registry R` writes; refusals name the registry
//! and the fix.
//!
//! A missing registry binary fails the test unless `BOTTLE_SKIP_REGISTRY=1`
//! (scripts/setup.sh installs `docker-registry`); no engine fails unless
//! `BOTTLE_SKIP_DOCKER=1`. Only tags under this test's own registry are
//! removed.

mod e2e_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use e2e_support::*;

/// The registry binary: `$BOTTLE_DOCKER_REGISTRY`, else `docker-registry`;
/// None (with a SKIP line) only when `BOTTLE_SKIP_REGISTRY=1`.
fn registry_bin() -> Option<String> {
    let bin = std::env::var("BOTTLE_DOCKER_REGISTRY").unwrap_or_else(|_| "docker-registry".into());
    if Command::new(&bin).arg("--version").output().is_ok() {
        return Some(bin);
    }
    if std::env::var("BOTTLE_SKIP_REGISTRY").is_ok_and(|v| v == "1") {
        eprintln!("SKIP: {bin} not found and BOTTLE_SKIP_REGISTRY=1");
        return None;
    }
    panic!(
        "{bin} not found: run scripts/setup.sh (apt-get install docker-registry), or set BOTTLE_SKIP_REGISTRY=1 to skip"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One plain HTTP/1.0 request to the registry: (status line + headers, body).
fn http(port: u16, path: &str, accept: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n\r\n"
    )
    .ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    let (head, body) = r.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

/// A registry on 127.0.0.1:<port>, its config and storage in a temp dir;
/// stopped (by its own pid) and its tags removed from the engine on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(bin: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut r = Registry {
            child,
            port,
            _dir: dir,
        };
        let up = wait_for(15, || {
            http(port, "/v2/", "application/json").filter(|(h, _)| h.contains(" 200 "))
        });
        if up.is_none() {
            let _ = r.child.kill();
            panic!("{bin} did not answer on 127.0.0.1:{port}/v2/ within 15 s");
        }
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Only tags under this registry (a port no other test uses) are ours.
        let prefix = format!("{}/", self.host());
        let listed = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        for t in String::from_utf8_lossy(&listed.stdout).lines() {
            if t.starts_with(&prefix) {
                let _ = docker(&["rmi", t]);
            }
        }
    }
}

fn bottle(args: &[&str]) -> Output {
    Command::new(bottle_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `R/name:tag@sha256:...` lines → (target, digest).
fn pushed(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .map(|l| {
            let (t, d) = l.split_once('@').unwrap_or_else(|| panic!("line {l:?}"));
            assert!(d.starts_with("sha256:") && d.len() == 71, "{l}");
            (t.to_string(), d.to_string())
        })
        .collect()
}

fn repo_digests(image: &str) -> Vec<String> {
    serde_json::from_str(
        docker_ok_out(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            image,
        ])
        .trim(),
    )
    .unwrap()
}

fn image_id(image: &str) -> String {
    docker_ok_out(&["image", "inspect", "--format", "{{.Id}}", image])
        .trim()
        .to_string()
}

#[test]
fn push_then_pull_back_gives_the_same_digests() {
    if !docker_or_skip() {
        return;
    }
    let Some(bin) = registry_bin() else { return };
    let reg = Registry::start(&bin);
    let r = format!("{}/bottle-test", reg.host());
    let o = bottle(&["images", "push", "--registry", &r]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let got = pushed(&out);
    let names: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    let want: Vec<String> = [
        "bottle-agent",
        "bottle-git-gate",
        "bottle-squid",
        "bottle-supervise",
        "egress-proxy",
    ]
    .iter()
    .map(|n| format!("{r}/{n}:latest"))
    .collect();
    assert_eq!(names, want, "{out}");
    assert!(err.contains("pushing ") && err.contains("layer "), "{err}");
    for (target, digest) in &got {
        let (repo, tag) = target.rsplit_once(':').unwrap();
        let source = target.strip_prefix(&format!("{r}/")).unwrap();
        // The registry's own word for the digest of the manifest it stores.
        let path = repo.strip_prefix(&format!("{}/", reg.host())).unwrap();
        let (head, _) = http(
            reg.port,
            &format!("/v2/{path}/manifests/{tag}"),
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("docker-content-digest: {digest}")),
            "{target}: {head}"
        );
        let want_rd = format!("{repo}@{digest}");
        assert!(repo_digests(target).contains(&want_rd), "{target}");
        // Remove the local tag (the source image stays: it has its own
        // tag), pull back from the registry, compare.
        let id = image_id(source);
        docker_ok_out(&["rmi", target]);
        assert!(!docker(&["image", "inspect", target]).status.success());
        docker_ok_out(&["pull", "-q", target]);
        assert!(
            repo_digests(target).contains(&want_rd),
            "{target} pulled back"
        );
        assert_eq!(
            image_id(target),
            id,
            "{target}: same image after the round trip"
        );
    }
}

/// With a manifest: exactly the images the render references with the same
/// registry, under the same names.
#[test]
fn push_with_a_manifest_pushes_what_the_render_references() {
    if !docker_or_skip() {
        return;
    }
    let Some(bin) = registry_bin() else { return };
    let reg = Registry::start(&bin);
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.yaml");
    std::fs::write(
        &m,
        "bottles:\n  dev:\n    outer_proxy: squid\n    allow: [pypi.org]\nagents:\n  coder:\n    bottle: dev\n",
    )
    .unwrap();
    let m = m.to_str().unwrap();
    let r = reg.host();
    let o = bottle(&["images", "push", "--registry", &r, "-m", m, "-a", "coder"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let mut pushed: Vec<String> = pushed(&out).into_iter().map(|(t, _)| t).collect();
    pushed.sort();
    let rendered = bottle(&[
        "render",
        "--format",
        "k8s",
        "-m",
        m,
        "-a",
        "coder",
        "--image-registry",
        &r,
    ]);
    assert!(rendered.status.success());
    let mut images: Vec<String> = text(&rendered)
        .0
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .map(String::from)
        .collect();
    images.sort();
    images.dedup();
    assert_eq!(pushed, images);
    assert_eq!(
        pushed,
        ["bottle-agent", "bottle-squid", "egress-proxy"].map(|n| format!("{r}/{n}:latest"))
    );
}

#[test]
fn push_refusals_name_the_registry_and_the_fix() {
    if !docker_or_skip() {
        return;
    }
    // Nothing listens on this port: the engine cannot reach the registry.
    let nobody = format!("127.0.0.1:{}", free_port());
    let o = bottle(&["images", "push", "--registry", &nobody]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("registry {nobody} refused")) && err.contains("fix:"),
        "{err}"
    );
    // Tags made before the refusal are ours to remove.
    let listed = docker_ok_out(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for t in listed
        .lines()
        .filter(|t| t.starts_with(&format!("{nobody}/")))
    {
        docker_ok_out(&["rmi", t]);
    }

    // Bad syntax: a usage error before any engine call.
    let o = bottle(&["images", "push", "--registry", "http://127.0.0.1:5000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("no scheme"));

    // An image that is not on the engine: refused before anything is pushed.
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.yaml");
    let missing = unique("bottle-test-missing-");
    std::fs::write(
        &m,
        format!(
            "bottles:\n  dev:\n    outer_proxy: squid\n    allow: [pypi.org]\nagents:\n  coder:\n    bottle: dev\n    image: {missing}:latest\n"
        ),
    )
    .unwrap();
    let o = bottle(&[
        "images",
        "push",
        "--registry",
        &nobody,
        "-m",
        m.to_str().unwrap(),
        "-a",
        "coder",
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{missing}:latest")) && err.contains("fix:"),
        "{err}"
    );
}
