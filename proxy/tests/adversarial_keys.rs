//! CA keys and files (issue 12, item 6 and the `--ca` conformance bullet; SPEC
//! §4). Two kinds of user are served here:
//!
//! - the victim of a shared machine: `ca new --out DIR` must never write a new
//!   key into a file someone else planted (and so owns and can read), nor
//!   through a symlink they planted; `--force` replaces by rename, so a reader
//!   holding the old file open never sees the new key; the ephemeral CA
//!   certificate does not go to a name in `/tmp` anyone can predict;
//! - a user migrating from mitmproxy: its own `mitmproxy-ca.pem` (an RSA key in
//!   PKCS#1, then the certificate) and keys as `openssl genrsa -traditional` and
//!   `openssl genpkey` write them are accepted, and curl and Python trust the
//!   leaves an RSA CA signs.
//!
//! Everything is real: the proxy binary, openssl, curl, python3 `requests`.
//! No test prints key material: assertions compare in memory.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::origin::Origin;
use support::proxy::{CaMode, Proxy, ProxyOpts, binary};
use support::tools::{blocking, hermetic, require, run};

const ROUTES: &str = "unmatched: deny\nroutes:\n  - host: localhost\n";

fn ca_new(dir: &Path, force: bool) -> Output {
    let mut c = Command::new(binary());
    c.env_clear().args(["ca", "new", "--out"]).arg(dir);
    if force {
        c.arg("--force");
    }
    run(c, "egress-proxy ca new")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o777
}

/// What a refused `ca new` must show: exit 2, the path, the way out, and no key.
fn assert_refused_existing(out: &Output, path: &Path) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains(&path.display().to_string()),
        "names the file: {t}"
    );
    assert!(t.contains("already exists") && t.contains("--force"), "{t}");
    assert!(!t.contains("PRIVATE KEY"), "no key in the output");
}

#[test]
fn ca_new_writes_a_0600_key_and_a_loadable_ca() {
    let d = tempfile::tempdir().unwrap();
    let out = ca_new(d.path(), false);
    assert!(out.status.success(), "{}", text(&out));
    let both = d.path().join("ca.pem");
    let cert = d.path().join("ca-cert.pem");
    assert_eq!(mode(&both), 0o600);
    assert_eq!(mode(&cert), 0o644);
    let pem = std::fs::read_to_string(&both).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("BEGIN PRIVATE KEY"));
    assert!(!std::fs::read_to_string(&cert).unwrap().contains("PRIVATE"));
    assert!(!text(&out).contains("PRIVATE KEY"));
}

/// Another user creates `ca.pem` first (world-readable, theirs). The old code
/// opened it with create+truncate and wrote the key into it.
#[test]
fn ca_new_refuses_a_planted_key_file_and_leaves_it_as_it_was() {
    let d = tempfile::tempdir().unwrap();
    let planted = d.path().join("ca.pem");
    std::fs::write(&planted, "planted by someone else\n").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = ca_new(d.path(), false);
    assert_refused_existing(&out, &planted);
    assert_eq!(
        std::fs::read_to_string(&planted).unwrap(),
        "planted by someone else\n"
    );
    assert_eq!(mode(&planted), 0o666, "not chmodded either");
    assert!(
        !d.path().join("ca-cert.pem").exists(),
        "a refusal writes nothing"
    );
}

/// A symlink at either name, pointing at a file or at nothing yet (the
/// attacker's own directory): refused, and nothing is written through it.
#[test]
fn ca_new_refuses_a_planted_symlink_and_writes_nothing_through_it() {
    for name in ["ca.pem", "ca-cert.pem"] {
        for dangling in [false, true] {
            let d = tempfile::tempdir().unwrap();
            let elsewhere = tempfile::tempdir().unwrap();
            let target = elsewhere.path().join("loot.pem");
            if !dangling {
                std::fs::write(&target, "target\n").unwrap();
            }
            let link = d.path().join(name);
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let out = ca_new(d.path(), false);
            assert_refused_existing(&out, &link);
            if dangling {
                assert!(!target.exists(), "{name}: created through a dangling link");
            } else {
                assert_eq!(std::fs::read_to_string(&target).unwrap(), "target\n");
            }
            assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        }
    }
}

/// `--force` replaces by rename: a new inode, 0600 from the start, and whoever
/// held the planted file open (or owns the symlink's target) sees no key.
#[test]
fn ca_new_force_replaces_by_rename_never_through_the_old_file() {
    use std::io::Read;
    let d = tempfile::tempdir().unwrap();
    let planted = d.path().join("ca.pem");
    std::fs::write(&planted, "planted\n").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    let old_ino = std::fs::metadata(&planted).unwrap().ino();
    let mut held = std::fs::File::open(&planted).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("loot.pem");
    std::fs::write(&target, "target\n").unwrap();
    std::os::unix::fs::symlink(&target, d.path().join("ca-cert.pem")).unwrap();

    let out = ca_new(d.path(), true);
    assert!(out.status.success(), "{}", text(&out));
    let m = std::fs::symlink_metadata(&planted).unwrap();
    assert_ne!(
        m.ino(),
        old_ino,
        "a new file, not the planted one rewritten"
    );
    assert_eq!(m.mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&planted)
            .unwrap()
            .contains("BEGIN PRIVATE KEY")
    );
    let mut seen = String::new();
    held.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "planted\n", "the held descriptor sees the old bytes");
    let cert = d.path().join("ca-cert.pem");
    assert!(
        !std::fs::symlink_metadata(&cert).unwrap().is_symlink(),
        "the link itself is replaced"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "target\n");
    // No temp file is left behind.
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// Starts the binary with no CA flag and `TMPDIR` = `tmp`; returns the child
/// and the certificate path it logged.
fn start_ephemeral(tmp: &Path, routes: &Path) -> (std::process::Child, PathBuf) {
    use std::io::BufRead;
    let mut child = Command::new(binary())
        .env_clear()
        .env("TMPDIR", tmp)
        .arg("--routes")
        .arg(routes)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let path = loop {
        let line = lines
            .next()
            .expect("the proxy logs the ephemeral CA path before exiting")
            .unwrap();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(p) = v["ca_cert"].as_str()
        {
            break PathBuf::from(p);
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, path)
}

fn stop(child: &mut std::process::Child) {
    // SIGTERM to the child this test started, by its id: a graceful exit.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

/// The old default was `$TMPDIR/egress-proxy-ca-<pid>.pem`: anyone could plant
/// that name (pids are guessable) and have the proxy write through it.
#[test]
fn ephemeral_ca_certificate_goes_to_a_fresh_private_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let routes = conf.path().join("routes.yaml");
    std::fs::write(&routes, ROUTES).unwrap();
    let (mut a, pa) = start_ephemeral(tmp.path(), &routes);
    let (mut b, pb) = start_ephemeral(tmp.path(), &routes);
    for (child, p) in [(&a, &pa), (&b, &pb)] {
        let dir = p.parent().unwrap();
        assert_eq!(dir.parent().unwrap(), tmp.path(), "{}", p.display());
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("egress-proxy-"), "{name}");
        assert!(
            !name.contains(&child.id().to_string()),
            "not the pid: {name}"
        );
        assert!(
            name.len() >= "egress-proxy-".len() + 6,
            "random part: {name}"
        );
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        let pem = std::fs::read_to_string(p).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!pem.contains("PRIVATE"));
    }
    assert_ne!(pa.parent(), pb.parent(), "each run has its own directory");
    stop(&mut a);
    stop(&mut b);
    assert!(!pa.exists() && !pb.exists(), "removed on exit");
}

// --- `--ca` / `--ca-key` with the keys migrating users have ---------------

/// A proxy whose CA comes from the environment (`EGRESS_PROXY_CA` or
/// `EGRESS_PROXY_CA_CERT`/`_KEY`, SPEC §4) in front of `origin`.
fn proxy_with_ca(origin: &Origin, env: &[(&str, &Path)]) -> Proxy {
    let mut opts = ProxyOpts::new(ROUTES)
        .upstream_ca(&origin.ca_file)
        .ca_mode(CaMode::Ephemeral);
    for (k, v) in env {
        opts.env.push((k.to_string(), v.display().to_string()));
    }
    Proxy::start(opts)
}

/// curl and Python `requests` through the proxy, trusting only `ca_cert`:
/// both get the origin's answer.
async fn assert_clients_trust(proxy: &Proxy, origin: &Origin, ca_cert: &Path, what: &str) {
    let url = format!("https://localhost:{}/echo/{what}", origin.https.port());
    let mut c = Command::new(require("curl", "curl"));
    hermetic(&mut c);
    c.args(["-q", "-sS", "--max-time", "30", "-x"])
        .arg(proxy.url())
        .arg("--cacert")
        .arg(ca_cert)
        .arg(&url);
    let out = blocking(move || run(c, "curl")).await;
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body.starts_with(&format!("echo GET /echo/{what}")),
        "curl, {what}: {body} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut c = Command::new(require("python3", "python3-requests"));
    hermetic(&mut c);
    c.arg(support::tools::support_dir().join("py/client.py"))
        .arg(proxy.url())
        .arg(ca_cert)
        .arg("GET")
        .arg(&url);
    let out = blocking(move || run(c, "python client")).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("python, {what}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["status"], 200, "python, {what}: {v}");
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The certificate blocks of a PEM file, alone (what a client trusts).
fn cert_only(pem_file: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(pem_file).unwrap();
    let start = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let p = dir.join("trust.pem");
    std::fs::write(&p, &text[start..]).unwrap();
    p
}

/// The file mitmproxy 11 wrote (key first, RSA PKCS#1, then the certificate).
/// Before: "RSA PRIVATE KEY (PKCS#1) is not supported".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mitmproxys_own_ca_file_is_accepted_and_its_leaves_trusted() {
    let mitm = data("mitmproxy-ca.pem");
    assert!(
        std::fs::read_to_string(&mitm)
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "the test data is mitmproxy's layout"
    );
    let origin = Origin::start().await;
    let proxy = proxy_with_ca(&origin, &[("EGRESS_PROXY_CA", &mitm)]);
    let dir = tempfile::tempdir().unwrap();
    let trust = cert_only(&mitm, dir.path());
    assert_clients_trust(&proxy, &origin, &trust, "mitmproxy-ca").await;
}

fn openssl(args: &[&str]) {
    let mut c = Command::new(require("openssl", "openssl"));
    c.args(args);
    let out = run(c, "openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA certificate for `key`, as a user makes one with openssl.
fn openssl_ca_cert(key: &Path, dir: &Path) -> PathBuf {
    let cert = dir.join("ca-cert.pem");
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        "/CN=openssl test CA",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        cert.to_str().unwrap(),
    ]);
    cert
}

/// Every key form and algorithm the proxy can sign with, generated by openssl
/// now, given with `--ca-cert`/`--ca-key`; curl and Python accept the leaves.
/// Before: PKCS#1 was refused as "not supported".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_keys_in_pkcs1_pkcs8_and_sec1_are_accepted() {
    let origin = Origin::start().await;
    let rows: &[(&str, &[&[&str]], &str)] = &[
        (
            "rsa-pkcs1-genrsa-traditional",
            &[&["genrsa", "-traditional", "-out", "KEY", "2048"]],
            "-----BEGIN RSA PRIVATE KEY-----",
        ),
        (
            "rsa-pkcs8-genpkey",
            &[&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:3072",
                "-out",
                "KEY",
            ]],
            "-----BEGIN PRIVATE KEY-----",
        ),
        (
            "p256-pkcs8-genpkey",
            &[&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "KEY",
            ]],
            "-----BEGIN PRIVATE KEY-----",
        ),
        (
            "p384-sec1-ecparam",
            &[&[
                "ecparam",
                "-genkey",
                "-name",
                "secp384r1",
                "-noout",
                "-out",
                "KEY",
            ]],
            "-----BEGIN EC PRIVATE KEY-----",
        ),
        (
            "p256-sec1-from-pkcs8",
            &[
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    "KEY.p8",
                ],
                &["ec", "-in", "KEY.p8", "-out", "KEY"],
            ],
            "-----BEGIN EC PRIVATE KEY-----",
        ),
        (
            "ed25519-genpkey",
            &[&["genpkey", "-algorithm", "ed25519", "-out", "KEY"]],
            "-----BEGIN PRIVATE KEY-----",
        ),
    ];
    for (name, steps, begins) in rows {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ca-key.pem");
        for step in *steps {
            let args: Vec<String> = step
                .iter()
                .map(|a| a.replace("KEY", key.to_str().unwrap()))
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            openssl(&args);
        }
        assert!(
            std::fs::read_to_string(&key).unwrap().starts_with(begins),
            "{name}: the key is in the form under test"
        );
        let cert = openssl_ca_cert(&key, dir.path());
        let proxy = proxy_with_ca(
            &origin,
            &[
                ("EGRESS_PROXY_CA_CERT", &cert),
                ("EGRESS_PROXY_CA_KEY", &key),
            ],
        );
        assert_clients_trust(&proxy, &origin, &cert, name).await;
    }
}

/// Starts the proxy on a CA it must refuse; returns (exit code, all output).
fn refused_start(args: &[&str], files: &[&Path]) -> (Option<i32>, String) {
    let conf = tempfile::tempdir().unwrap();
    let routes = conf.path().join("routes.yaml");
    std::fs::write(&routes, ROUTES).unwrap();
    let mut c = Command::new(binary());
    c.env_clear()
        .arg("--routes")
        .arg(&routes)
        .args(["--listen", "127.0.0.1:0"]);
    for (a, f) in args.iter().zip(files) {
        c.arg(a).arg(f);
    }
    let out = run(c, "egress-proxy");
    (out.status.code(), text(&out))
}

/// Keys the proxy cannot use get exit 2 and one line naming the file and the
/// fix, and never echo key material.
#[test]
fn unusable_ca_keys_are_refused_with_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    // P-521: ring cannot sign with it.
    openssl(&[
        "ecparam",
        "-genkey",
        "-name",
        "secp521r1",
        "-noout",
        "-out",
        d("p521.pem").to_str().unwrap(),
    ]);
    let p521_cert = openssl_ca_cert(&d("p521.pem"), dir.path());
    std::fs::rename(&p521_cert, d("p521-cert.pem")).unwrap();
    // An encrypted PKCS#8 key.
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-aes256",
        "-pass",
        "pass:x",
        "-out",
        d("enc.pem").to_str().unwrap(),
    ]);
    // A valid key that is not the certificate's.
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        d("other.pem").to_str().unwrap(),
        "2048",
    ]);
    let mitm_cert = cert_only(&data("mitmproxy-ca.pem"), dir.path());

    let cases: [(&str, PathBuf, PathBuf, &[&str]); 3] = [
        (
            "p521",
            d("p521-cert.pem"),
            d("p521.pem"),
            &["curve 1.3.132.0.35", "P-256 or P-384"],
        ),
        (
            "encrypted",
            mitm_cert.clone(),
            d("enc.pem"),
            &["encrypted", "openssl pkey"],
        ),
        (
            "mismatch",
            mitm_cert.clone(),
            d("other.pem"),
            &["does not belong to the CA certificate"],
        ),
    ];
    for (name, cert, key, wants) in cases {
        let (code, out) = refused_start(&["--ca-cert", "--ca-key"], &[&cert, &key]);
        assert_eq!(code, Some(2), "{name}: {out}");
        assert!(
            out.contains(&key.display().to_string()),
            "{name}: names the key file: {out}"
        );
        for w in wants {
            assert!(out.contains(w), "{name}: wants {w:?}: {out}");
        }
        let key_text = std::fs::read_to_string(&key).unwrap();
        for line in key_text.lines().filter(|l| !l.starts_with("-----")) {
            assert!(
                line.len() < 16 || !out.contains(line),
                "{name}: key material in the output"
            );
        }
        assert_eq!(out.trim().lines().count(), 1, "{name}: one line: {out}");
    }
}
