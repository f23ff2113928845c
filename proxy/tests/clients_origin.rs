//! Self-checks of the test fixtures, without egress-proxy: the origin serves
//! every endpoint the other suites rely on, its `git http-backend` really accepts a
//! push (so a push that slipped through the proxy would be seen), and squid works
//! as a CONNECT proxy and as an ssl_bump proxy. If these fail, the proxy suites'
//! verdicts mean nothing.

mod support;

use std::process::Command;

use support::origin::Origin;
use support::pki::TestCa;
use support::tools::{self, Squid, SquidBump, blocking, hermetic, require, run};

fn curl_direct(origin: &Origin, extra: &[&str], url: &str) -> std::process::Output {
    let mut c = Command::new(require("curl", "curl"));
    hermetic(&mut c);
    c.args(["-q", "-sS", "--max-time", "30", "--cacert"])
        .arg(&origin.ca_file)
        .args(extra)
        .arg(url);
    run(c, "curl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_echo_large_and_h2_work_directly() {
    let o = Origin::start().await;
    let url = format!("https://localhost:{}/echo/x?q=1", o.https.port());
    let out = curl_direct(&o, &["--http2", "-w", " %{http_version}"], &url);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echo GET /echo/x?q=1 body=0\n 2"
    );
    let url = format!("https://localhost:{}/large?bytes=300000", o.https.port());
    let out = curl_direct(&o, &[], &url);
    assert_eq!(out.stdout.len(), 300000);
    let url = format!("http://127.0.0.1:{}/echo/plain", o.http.port());
    let out = curl_direct(&o, &[], &url);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echo GET /echo/plain body=0\n"
    );
    let seen = o.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].version, http::Version::HTTP_2);
    assert_eq!(o.connections(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_git_backend_accepts_clone_and_push_directly() {
    let o = Origin::start().await;
    let bare = o.add_git_repo("direct");
    let work = tempfile::tempdir().expect("dir");
    let dest = work.path().join("direct");
    let url = format!("https://localhost:{}/git/direct.git", o.https.port());
    let ca = o.ca_file.clone();
    let mut c = tools::git_cmd();
    c.arg("-c")
        .arg(format!("http.sslCAInfo={}", ca.display()))
        .args(["clone", "-q", &url])
        .arg(&dest);
    let out = blocking(move || run(c, "git clone")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dest.join("NEW"), "x\n").expect("write");
    for args in [&["add", "NEW"][..], &["commit", "-q", "-m", "direct"][..]] {
        let mut c = tools::git_cmd();
        c.current_dir(&dest).args(args);
        assert!(run(c, "git").status.success());
    }
    let mut c = tools::git_cmd();
    c.current_dir(&dest)
        .arg("-c")
        .arg(format!("http.sslCAInfo={}", ca.display()))
        .args(["push", "-q", "origin", "main"]);
    let out = blocking(move || run(c, "git push")).await;
    assert!(
        out.status.success(),
        "direct push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        tools::git_cmd_out(&bare, &["rev-parse", "main"]),
        tools::git_cmd_out(&dest, &["rev-parse", "HEAD"]),
        "the push landed in the origin repo"
    );
    assert!(o.seen().iter().any(|s| s.path.contains("git-receive-pack")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squid_fixture_tunnels_and_bumps_and_refuses() {
    let o = Origin::start().await;
    let squid = blocking(|| Squid::start(&["localhost"], None)).await;
    let url = format!("https://localhost:{}/echo/via-squid", o.https.port());
    let out = curl_direct(&o, &["-x", &format!("http://{}", squid.addr)], &url);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echo GET /echo/via-squid body=0\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = curl_direct(
        &o,
        &[
            "-x",
            &format!("http://{}", squid.addr),
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect}",
        ],
        &format!("https://127.0.0.1:{}/", o.https.port()),
    );
    assert_eq!(
        String::from_utf8_lossy(&refused.stdout),
        "403",
        "squid refuses the CONNECT"
    );

    let squid_ca = TestCa::new("squid test CA");
    let origin_ca = o.ca_file.clone();
    let (cert, key) = (squid_ca.cert_pem.clone(), squid_ca.key_pem.clone());
    let bump = blocking(move || {
        Squid::start(
            &["localhost"],
            Some(SquidBump {
                ca: (&cert, &key),
                origin_ca: &origin_ca,
            }),
        )
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let sca = dir.path().join("squid-ca.pem");
    std::fs::write(&sca, &squid_ca.cert_pem).expect("write");
    let mut c = Command::new(require("curl", "curl"));
    hermetic(&mut c);
    c.args(["-q", "-sS", "--max-time", "30", "--cacert"])
        .arg(&sca)
        .arg("-x")
        .arg(format!("http://{}", bump.addr))
        .arg(format!("https://localhost:{}/echo/bumped", o.https.port()));
    let out = blocking(move || run(c, "curl via bump")).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echo GET /echo/bumped body=0\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
