//! Real clients through egress-proxy (issue 4): curl (HTTP/1.1 and h2), git clone
//! and push, Python requests, Node stdlib, the Go stdlib client and
//! `openssl s_client`. Each test asserts what a user would check: the status, the
//! body, the reason header `x-egress-proxy-decision`, and what the origin saw.
//!
//! A missing client program fails the test with the apt package to install; none
//! is skipped. No test prints a token: comparisons happen in memory.

mod support;

use std::process::Command;

use support::proxy::Fixture;
use support::tools::{self, blocking, hermetic, require, run};

/// curl through the proxy with only the proxy CA trusted; `-i` output returned.
fn curl(f: &Fixture, extra: &[&str], url: &str) -> (String, std::process::Output) {
    let mut c = Command::new(require("curl", "curl"));
    hermetic(&mut c);
    c.args(["-q", "-sS", "-i", "--max-time", "30", "-x"])
        .arg(f.proxy.url())
        .arg("--cacert")
        .arg(&f.proxy.ca_files.cert)
        .args(extra)
        .arg(url);
    let out = run(c, "curl");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out)
}

fn status_and_decision(text: &str) -> (u16, Option<String>) {
    // With -i and a proxy, curl prints the CONNECT answer head first; the last
    // head is the request's.
    let heads: Vec<&str> = text.split("\r\n\r\n").collect();
    let mut last = (0, None);
    for h in heads {
        let mut lines = h.lines();
        let Some(first) = lines.next() else { continue };
        if !first.starts_with("HTTP/") {
            continue;
        }
        let code = first
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let decision = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("x-egress-proxy-decision"))
            .map(|(_, v)| v.trim().to_string());
        last = (code, decision);
    }
    last
}

fn body_of(text: &str) -> &str {
    text.rsplit("\r\n\r\n").next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http1_allowed_gets_body_and_origin_sees_injected_credential() {
    let f = Fixture::start().await;
    let url = f.tls_url("/echo/hello?x=query-marker-7731");
    let (text, out) = {
        let f = &f;
        let args: &[&str] = &["--http1.1", "-H", "Authorization: Bearer client-own-value"];
        curl(f, args, &url)
    };
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        status_and_decision(&text),
        (200, None),
        "allowed request: {text}"
    );
    assert!(
        body_of(&text).starts_with("echo GET /echo/hello?x=query-marker-7731"),
        "body: {text}"
    );
    let seen = f.origin.seen();
    assert_eq!(seen.len(), 1, "one request reaches the origin");
    f.assert_credential_injected(&seen[0]);
    f.assert_no_token(text.as_bytes(), "curl output");
    f.proxy.assert_no_secret_in_logs();
    assert!(
        !f.proxy.redacted().contains("query-marker-7731"),
        "the access log must not carry the query string"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http2_allowed_speaks_h2_to_the_proxy() {
    let f = Fixture::start().await;
    let mut c = Command::new(require("curl", "curl"));
    hermetic(&mut c);
    c.args([
        "-q",
        "-sS",
        "--max-time",
        "30",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        "-x",
    ])
    .arg(f.proxy.url())
    .arg("--cacert")
    .arg(&f.proxy.ca_files.cert)
    .arg(f.tls_url("/echo/h2"));
    let out = blocking(move || run(c, "curl --http2")).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "curl --http2 must negotiate h2 with the proxy and get 200: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = f.origin.seen();
    assert_eq!(seen.len(), 1);
    f.assert_credential_injected(&seen[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_denied_path_is_refused_and_origin_sees_nothing() {
    let f = Fixture::start().await;
    let (text, _) = curl(&f, &["--http1.1"], &f.tls_url("/echo/secret/keys"));
    assert_eq!(
        status_and_decision(&text),
        (403, Some("path-not-allowed".into())),
        "deny list: {text}"
    );
    let (text, _) = curl(&f, &["--http2"], &f.tls_url("/not-listed"));
    assert_eq!(
        status_and_decision(&text),
        (403, Some("path-not-allowed".into())),
        "allow list miss over h2: {text}"
    );
    f.assert_no_token(text.as_bytes(), "refusal");
    f.origin.assert_untouched("refused paths");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_unrouted_host_is_intercepted_then_refused() {
    let f = Fixture::start().await;
    // The CONNECT is answered 200 and TLS terminated with a minted leaf (curl
    // verifies it for this name), then the request inside is refused (SPEC §7).
    let (text, out) = curl(&f, &[], "https://unrouted.example:443/");
    assert_eq!(
        status_and_decision(&text),
        (403, Some("host-not-allowed".into())),
        "unrouted host: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.origin.assert_untouched("unrouted host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_plain_http_allowed_on_plain_route_refused_on_credential_route() {
    let f = Fixture::start().await;
    let (text, _) = curl(
        &f,
        &[],
        &format!("http://127.0.0.1:{}/echo/plain", f.origin.http.port()),
    );
    assert_eq!(
        status_and_decision(&text),
        (200, None),
        "plain route: {text}"
    );
    assert!(body_of(&text).starts_with("echo GET /echo/plain"), "{text}");
    let before = f.origin.seen().len();
    let (text, _) = curl(
        &f,
        &[],
        &format!("http://localhost:{}/echo/plain", f.origin.http.port()),
    );
    assert_eq!(
        status_and_decision(&text),
        (403, Some("cleartext-credentials".into())),
        "credential route over cleartext: {text}"
    );
    assert_eq!(
        f.origin.seen().len(),
        before,
        "the refused request reached the origin"
    );
    assert!(
        f.origin
            .seen()
            .iter()
            .all(|s| s.header("authorization").is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sse_events_stream_before_the_response_ends() {
    use std::io::Read;
    let f = Fixture::start().await;
    let mut c = Command::new(require("curl", "curl"));
    hermetic(&mut c);
    c.args(["-q", "-sS", "-N", "--max-time", "40", "-x"])
        .arg(f.proxy.url())
        .arg("--cacert")
        .arg(&f.proxy.ca_files.cert)
        .arg(f.tls_url("/sse"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().expect("spawn curl");
    let mut stdout = child.stdout.take().expect("stdout");
    // The origin holds its last event until released: the first must arrive alone.
    let first = blocking(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.windows(2).any(|w| w == b"\n\n") {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        (got, stdout)
    })
    .await;
    let (got, mut stdout) = first;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "data: first\n\n",
        "the first SSE event must reach curl while the stream is still open"
    );
    f.origin.release_sse();
    let rest = blocking(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    })
    .await;
    let _ = child.wait();
    assert_eq!(rest, "data: last\n\n");
}

fn git_env(c: &mut Command, f: &Fixture) {
    c.arg("-c")
        .arg(format!("http.proxy={}", f.proxy.url()))
        .arg("-c")
        .arg(format!(
            "http.sslCAInfo={}",
            f.proxy.ca_files.cert.display()
        ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_clone_over_https_works_and_push_is_refused_with_git_push() {
    let f = Fixture::start().await;
    let bare = f.origin.add_git_repo("widget");
    let work = tempfile::tempdir().expect("work dir");
    let dest = work.path().join("widget");
    let url = f.tls_url("/git/widget.git");

    let mut c = tools::git_cmd();
    git_env(&mut c, &f);
    c.args(["clone", "-q", &url]).arg(&dest);
    let out = blocking(move || run(c, "git clone")).await;
    assert!(
        out.status.success(),
        "git clone through the proxy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("README")).expect("cloned file"),
        "hello from the origin\n"
    );
    let seen = f.origin.seen();
    assert!(
        seen.iter().any(|s| s.path.contains("git-upload-pack")),
        "clone used smart HTTP"
    );
    for s in &seen {
        f.assert_credential_injected(s);
    }

    // A commit, then push: refused by the proxy, nothing reaches receive-pack.
    std::fs::write(dest.join("NEW"), "agent change\n").expect("write");
    let mut c = tools::git_cmd();
    c.current_dir(&dest).args(["add", "NEW"]);
    assert!(run(c, "git add").status.success());
    let mut c = tools::git_cmd();
    c.current_dir(&dest).args(["commit", "-q", "-m", "agent"]);
    assert!(run(c, "git commit").status.success());
    let before = tools::git_cmd_out(&bare, &["rev-parse", "main"]);
    let mut c = tools::git_cmd();
    git_env(&mut c, &f);
    c.current_dir(&dest).args(["push", "origin", "main"]);
    let out = blocking(move || run(c, "git push")).await;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "git push must fail through the proxy"
    );
    assert!(err.contains("403"), "git reports the proxy's 403: {err}");
    f.origin.assert_no_path("receive-pack", "git push");
    assert_eq!(
        tools::git_cmd_out(&bare, &["rev-parse", "main"]),
        before,
        "the origin repo must be unchanged"
    );
    f.assert_no_token(err.as_bytes(), "git stderr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_push_info_refs_probe_is_refused_with_reason() {
    let f = Fixture::start().await;
    f.origin.add_git_repo("widget");
    let url = f.tls_url("/git/widget.git/info/refs?service=git-receive-pack");
    let (text, _) = curl(&f, &[], &url);
    assert_eq!(
        status_and_decision(&text),
        (403, Some("git-push".into())),
        "{text}"
    );
    f.origin.assert_untouched("receive-pack advertisement");
}

fn json_of(out: &std::process::Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_allowed_and_refused() {
    let f = Fixture::start().await;
    let py = require("python3", "python3-requests");
    let script = tools::support_dir().join("py/client.py");
    let call = |url: String| {
        let mut c = Command::new(&py);
        hermetic(&mut c);
        c.arg(&script)
            .arg(f.proxy.url())
            .arg(&f.proxy.ca_files.cert)
            .arg("GET")
            .arg(url);
        c
    };
    let c = call(f.tls_url("/echo/py"));
    let out = blocking(move || run(c, "python client")).await;
    let v = json_of(&out, "python requests (apt python3-requests)");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["decision"], "");
    assert!(
        v["body"]
            .as_str()
            .unwrap_or("")
            .starts_with("echo GET /echo/py")
    );
    f.assert_credential_injected(&f.origin.seen()[0]);
    f.assert_no_token(&out.stdout, "python output");

    let c = call(f.tls_url("/echo/secret/py"));
    let out = blocking(move || run(c, "python client")).await;
    let v = json_of(&out, "python requests");
    assert_eq!(
        (v["status"].clone(), v["decision"].clone()),
        (403.into(), "path-not-allowed".into())
    );
    f.origin.assert_no_path("/secret", "python refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_stdlib_connect_then_tls_then_https_request() {
    let f = Fixture::start().await;
    let node = require("node", "nodejs");
    let script = tools::support_dir().join("node/client.js");
    let call = |path: &str| {
        let mut c = Command::new(&node);
        hermetic(&mut c);
        c.arg(&script)
            .arg("127.0.0.1")
            .arg(f.proxy.addr.port().to_string())
            .arg("localhost")
            .arg(f.origin.https.port().to_string())
            .arg("GET")
            .arg(path)
            .arg(&f.proxy.ca_files.cert);
        c
    };
    let c = call("/echo/node");
    let out = blocking(move || run(c, "node client")).await;
    let v = json_of(&out, "node client (apt nodejs)");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["alpn"], "http/1.1");
    assert!(
        v["body"]
            .as_str()
            .unwrap_or("")
            .starts_with("echo GET /echo/node")
    );
    f.assert_credential_injected(&f.origin.seen()[0]);

    let c = call("/nope");
    let out = blocking(move || run(c, "node client")).await;
    let v = json_of(&out, "node client");
    assert_eq!(
        (v["status"].clone(), v["decision"].clone()),
        (403.into(), "path-not-allowed".into())
    );
    f.origin.assert_no_path("/nope", "node refused");
}

/// TLS session resumption, as Node's https agent does it: the proxy sends one
/// session ticket per full handshake (`tls::leaf`, as Go's servers do; rustls
/// sends two by default), a second connection to the same host resumes with
/// it, and the policy still judges every request on the resumed session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_resumes_a_tls_session_with_the_proxys_one_ticket() {
    let f = Fixture::start().await;
    let node = require("node", "nodejs");
    let mut c = Command::new(&node);
    hermetic(&mut c);
    c.arg(tools::support_dir().join("node/resume.js"))
        .arg("127.0.0.1")
        .arg(f.proxy.addr.port().to_string())
        .arg("localhost")
        .arg(f.origin.https.port().to_string())
        .args(["/echo/resume", "/nope"])
        .arg(&f.proxy.ca_files.cert);
    let out = blocking(move || run(c, "node resume")).await;
    let v = json_of(&out, "node resume (apt nodejs)");
    let first = &v["first"];
    assert_eq!(
        (&first["status"], &first["reused"], &first["tickets"]),
        (&200.into(), &false.into(), &1.into()),
        "{v}"
    );
    f.assert_credential_injected(&f.origin.seen()[0]);
    let second = &v["second"];
    assert_eq!(
        (&second["status"], &second["decision"], &second["reused"]),
        (&403.into(), &"path-not-allowed".into(), &true.into()),
        "{v}"
    );
    f.origin
        .assert_no_path("/nope", "refused on a resumed session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_stdlib_client_uses_h2_through_the_proxy() {
    let go = blocking(tools::go_client).await;
    let f = Fixture::start().await;
    let call = |url: String| {
        let mut c = Command::new(&go);
        hermetic(&mut c);
        c.arg(f.proxy.url())
            .arg(&f.proxy.ca_files.cert)
            .arg("GET")
            .arg(url);
        c
    };
    let c = call(f.tls_url("/echo/go"));
    let out = blocking(move || run(c, "go client")).await;
    let v = json_of(&out, "go client");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(
        v["proto"], "HTTP/2.0",
        "Go with ForceAttemptHTTP2 must get h2"
    );
    assert!(
        v["body"]
            .as_str()
            .unwrap_or("")
            .starts_with("echo GET /echo/go")
    );
    f.assert_credential_injected(&f.origin.seen()[0]);

    let c = call(f.tls_url("/git/x.git/git-receive-pack"));
    let out = blocking(move || run(c, "go client")).await;
    let v = json_of(&out, "go client");
    assert_eq!(
        (v["status"].clone(), v["decision"].clone()),
        (403.into(), "git-push".into())
    );
    f.origin.assert_no_path("receive-pack", "go git-push");
}

/// The first certificate `openssl s_client -showcerts` printed: the leaf.
fn first_pem(text: &str) -> x509_parser::pem::Pem {
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("leaf printed");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text.as_bytes()[start..]).expect("leaf PEM");
    pem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_sees_a_valid_leaf_for_the_connect_host() {
    let f = Fixture::start().await;
    let openssl = require("openssl", "openssl");
    for host in ["localhost", "127.0.0.1", "unrouted.example"] {
        let mut c = Command::new(&openssl);
        hermetic(&mut c);
        c.args(["s_client", "-proxy"])
            .arg(f.proxy.addr.to_string())
            .arg("-connect")
            .arg(format!("{host}:{}", f.origin.https.port()))
            .args(["-showcerts", "-verify_return_error", "-CAfile"])
            .arg(&f.proxy.ca_files.cert)
            .arg("-verify_hostname")
            .arg(host);
        if host.parse::<std::net::IpAddr>().is_ok() {
            c.arg("-verify_ip").arg(host);
        } else {
            c.arg("-servername").arg(host);
        }
        let out = blocking(move || run(c, "openssl s_client")).await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{host}: chain must verify against the proxy CA: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = first_pem(&text);
        let cert = pem.parse_x509().expect("leaf DER");
        support::pki::check_leaf(&cert, host, &f.proxy.ca.cert_pem);
    }
    f.origin.assert_untouched("TLS handshakes only");
}

/// 3 MB of random bytes up through the proxy and back (curl over HTTP/1.1 and
/// TLS on both legs, many TLS records each way): the same bytes, in order,
/// sent with a `Content-Length` and sent chunked. The origin offers h2 too;
/// an HTTP/1 client's upload reaches it over HTTP/1.1 (`UPSTREAM_H1_SPREAD`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_upload_and_download_of_3_mb_arrive_byte_for_byte() {
    let f = Fixture::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sent = dir.path().join("sent");
    let got = dir.path().join("got");
    let data: Vec<u8> = {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..3_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    std::fs::write(&sent, &data).expect("write");
    for framing in ["Content-Length", "chunked"] {
        let mut c = Command::new(require("curl", "curl"));
        hermetic(&mut c);
        c.args(["-q", "-sS", "--fail", "--http1.1", "--max-time", "60", "-x"])
            .arg(f.proxy.url())
            .arg("--cacert")
            .arg(&f.proxy.ca_files.cert)
            .arg("--data-binary")
            .arg(format!("@{}", sent.display()))
            .arg("-o")
            .arg(&got);
        if framing == "chunked" {
            c.args(["-H", "Transfer-Encoding: chunked"]);
        }
        c.arg(f.tls_url("/echo/mirror"));
        let out = blocking(move || run(c, "curl")).await;
        assert!(
            out.status.success(),
            "{framing}: curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let back = std::fs::read(&got).expect("read");
        assert_eq!(
            back.len(),
            data.len(),
            "{framing}: length; got {}",
            String::from_utf8_lossy(&back[..back.len().min(400)])
        );
        assert!(back == data, "{framing}: the bytes came back changed");
        let seen = f.origin.seen().last().cloned().expect("the origin saw it");
        assert_eq!(seen.body_len, 3_000_000, "{framing}");
        assert_eq!(seen.version, http::Version::HTTP_11, "{framing}");
        let (te, cl) = if framing == "chunked" {
            (Some(&b"chunked"[..]), None)
        } else {
            (None, Some(&b"3000000"[..]))
        };
        assert_eq!(seen.header("transfer-encoding"), te, "{framing}");
        assert_eq!(seen.header("content-length"), cl, "{framing}");
    }
}

/// `openssl s_client` through the proxy to the origin's TLS port, with
/// `extra` arguments; its output (stdout then stderr).
async fn s_client(f: &Fixture, extra: &[&str]) -> String {
    let mut c = Command::new(require("openssl", "openssl"));
    hermetic(&mut c);
    c.args(["s_client", "-proxy"])
        .arg(f.proxy.addr.to_string())
        .arg("-connect")
        .arg(format!("localhost:{}", f.origin.https.port()))
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(&f.proxy.ca_files.cert)
        .args(extra);
    let out = blocking(move || run(c, "openssl s_client")).await;
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The proxy's TLS suite order (AES-128-GCM first, `tls::provider`) wins on
/// both legs: OpenSSL lists AES-256 first and still gets AES-128 from the
/// proxy, and the origin sees AES-128 from the proxy. A client that offers
/// only AES-256 or only ChaCha20 still connects with what it offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_suites_aes_128_first_on_both_legs_and_every_suite_still_accepted() {
    let f = Fixture::start().await;
    let offers = [
        (None, "TLS_AES_128_GCM_SHA256"),
        (Some("TLS_AES_256_GCM_SHA384"), "TLS_AES_256_GCM_SHA384"),
        (
            Some("TLS_CHACHA20_POLY1305_SHA256"),
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
    ];
    for (offer, want) in offers {
        let extra = offer.map_or(vec![], |suite| vec!["-ciphersuites", suite]);
        let text = s_client(&f, &extra).await;
        assert!(
            text.contains(&format!("Cipher is {want}")),
            "offer {offer:?}: want {want}: {text}"
        );
    }
    let url = f.tls_url("/echo/suite");
    let (text, out) = curl(&f, &["--tls13-ciphers", "TLS_AES_256_GCM_SHA384"], &url);
    assert!(out.status.success(), "curl: {text}");
    assert_eq!(status_and_decision(&text), (200, None), "{text}");
    let seen = f.origin.seen();
    assert_eq!(
        seen.last().and_then(|s| s.suite),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
        "the origin leg uses the proxy's order"
    );
}

/// The key exchange (`tls::provider`: aws-lc's X25519, P-256 and P-384 beside
/// ring's suites): OpenSSL's default offer gets X25519, a client that offers
/// only P-256 or only P-384 still connects with it, and the origin's leg
/// gets X25519 from the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_key_exchange_x25519_first_and_the_nist_curves_still_accepted() {
    let f = Fixture::start().await;
    let offers = [
        (None, "Server Temp Key: X25519"),
        (Some("P-256"), "Server Temp Key: ECDH, prime256v1"),
        (Some("P-384"), "Server Temp Key: ECDH, secp384r1"),
    ];
    for (offer, want) in offers {
        let extra = offer.map_or(vec![], |group| vec!["-groups", group]);
        let text = s_client(&f, &extra).await;
        assert!(
            text.contains(want) && text.contains("Verify return code: 0 (ok)"),
            "offer {offer:?}: want {want}: {text}"
        );
    }
    let url = f.tls_url("/echo/group");
    let (text, out) = curl(&f, &[], &url);
    assert!(out.status.success(), "curl: {text}");
    assert_eq!(status_and_decision(&text), (200, None), "{text}");
    assert_eq!(
        f.origin.seen().last().and_then(|s| s.group),
        Some(rustls::NamedGroup::X25519),
        "the origin leg's key exchange"
    );
}

/// The leaf's key follows the client's signature algorithms (`tls::leaf`):
/// OpenSSL's default offer, in TLS 1.3 and 1.2, gets the host's Ed25519 leaf;
/// a client that offers no Ed25519 gets an ECDSA P-256 leaf for the same
/// host, minted once (the next such client gets the same certificate). Each
/// chain verifies against the proxy's CA, for the CONNECT host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaf_is_ed25519_for_clients_that_offer_it_and_ecdsa_for_the_others() {
    let f = Fixture::start().await;
    let no_ed25519 = ["-sigalgs", "ECDSA+SHA256:RSA-PSS+SHA256:RSA+SHA256"];
    let offers: [(&[&str], &str); 4] = [
        (&[], "Peer signature type: ed25519"),
        (&["-tls1_2"], "Peer signature type: ed25519"),
        (&no_ed25519, "Peer signature type: ECDSA"),
        (
            &["-tls1_2", no_ed25519[0], no_ed25519[1]],
            "Peer signature type: ECDSA",
        ),
    ];
    let mut ecdsa_leaves = Vec::new();
    for (extra, want) in offers {
        let text = s_client(
            &f,
            &[&["-showcerts", "-verify_hostname", "localhost"], extra].concat(),
        )
        .await;
        assert!(
            text.contains(want) && text.contains("Verify return code: 0 (ok)"),
            "offer {extra:?}: want {want}: {text}"
        );
        let pem = first_pem(&text);
        let cert = pem.parse_x509().expect("leaf DER");
        support::pki::check_leaf(&cert, "localhost", &f.proxy.ca.cert_pem);
        let key = cert.public_key().algorithm.algorithm.to_id_string();
        // id-Ed25519 and id-ecPublicKey.
        let want_key = if want.ends_with("ed25519") {
            "1.3.101.112"
        } else {
            "1.2.840.10045.2.1"
        };
        assert_eq!(key, want_key, "offer {extra:?}: the leaf's key");
        if want_key != "1.3.101.112" {
            ecdsa_leaves.push(pem.contents.clone());
        }
    }
    assert_eq!(ecdsa_leaves.len(), 2);
    assert_eq!(
        ecdsa_leaves[0], ecdsa_leaves[1],
        "the ECDSA leaf is minted once per host"
    );
    f.origin.assert_untouched("TLS handshakes only");
}

/// The three CA forms of SPEC §4 all give a leaf curl accepts: `--ca-cert` +
/// `--ca-key` (the other tests), `--ca` with one PEM, and no CA with `--ca-out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_accepts_leaves_from_combined_pem_and_ephemeral_ca() {
    use support::proxy::{CaMode, DEFAULT_ROUTES, Proxy, ProxyOpts, TOKEN_VAR};
    let origin = support::origin::Origin::start().await;
    for mode in [CaMode::Combined, CaMode::Ephemeral] {
        let proxy = Proxy::start(
            ProxyOpts::new(DEFAULT_ROUTES)
                .token(TOKEN_VAR, "tok-ca-mode-test-000000")
                .upstream_ca(&origin.ca_file)
                .ca_mode(mode),
        );
        assert!(
            proxy.ca_files.cert.exists(),
            "{mode:?}: the CA certificate file must exist"
        );
        let mut c = Command::new(require("curl", "curl"));
        hermetic(&mut c);
        c.args(["-q", "-sS", "--max-time", "30", "-x"])
            .arg(proxy.url())
            .arg("--cacert")
            .arg(&proxy.ca_files.cert)
            .arg(format!("https://localhost:{}/echo/ca", origin.https.port()));
        let out = blocking(move || run(c, "curl")).await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "echo GET /echo/ca body=0\n",
            "{mode:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// git over HTTP/2 (`http.version=HTTP/2`): clone works, push is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_over_http2_clone_works_and_push_is_refused() {
    let f = Fixture::start().await;
    let bare = f.origin.add_git_repo("h2repo");
    let work = tempfile::tempdir().expect("work dir");
    let dest = work.path().join("h2repo");
    let url = f.tls_url("/git/h2repo.git");
    let mut c = tools::git_cmd();
    git_env(&mut c, &f);
    c.args(["-c", "http.version=HTTP/2", "clone", "-q", &url])
        .arg(&dest);
    let out = blocking(move || run(c, "git clone h2")).await;
    assert!(
        out.status.success(),
        "git clone over h2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dest.join("H2"), "x\n").expect("write");
    for args in [&["add", "H2"][..], &["commit", "-q", "-m", "h2"][..]] {
        let mut c = tools::git_cmd();
        c.current_dir(&dest).args(args);
        assert!(run(c, "git").status.success());
    }
    let before = tools::git_cmd_out(&bare, &["rev-parse", "main"]);
    let mut c = tools::git_cmd();
    git_env(&mut c, &f);
    c.current_dir(&dest)
        .args(["-c", "http.version=HTTP/2", "push", "origin", "main"]);
    let out = blocking(move || run(c, "git push h2")).await;
    assert!(!out.status.success(), "git push over h2 must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.origin.assert_no_path("receive-pack", "git push h2");
    assert_eq!(tools::git_cmd_out(&bare, &["rev-parse", "main"]), before);
}

/// The env fallbacks a container sets (SPEC §4): `EGRESS_PROXY_UPSTREAM_CA`
/// instead of `--upstream-ca`, `EGRESS_PROXY_ALLOW_RANGES` instead of
/// `--allow-range`; the launcher relies on the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_fallbacks_for_upstream_ca_and_allow_ranges() {
    use support::proxy::{DEFAULT_ROUTES, Proxy, ProxyOpts, TOKEN_VAR};
    let origin = support::origin::Origin::start().await;
    let mut opts = ProxyOpts::new(DEFAULT_ROUTES)
        .token(TOKEN_VAR, "tok-env-fallback-000000")
        .no_allow_range();
    opts.env = vec![
        (
            "EGRESS_PROXY_UPSTREAM_CA".into(),
            origin.ca_file.display().to_string(),
        ),
        (
            "EGRESS_PROXY_ALLOW_RANGES".into(),
            "10.0.0.0/8,127.0.0.0/8".into(),
        ),
    ];
    let proxy = Proxy::start(opts);
    let mut c = Command::new(require("curl", "curl"));
    hermetic(&mut c);
    c.args(["-q", "-sS", "--max-time", "30", "-x"])
        .arg(proxy.url())
        .arg("--cacert")
        .arg(&proxy.ca_files.cert)
        .arg(format!(
            "https://localhost:{}/echo/env",
            origin.https.port()
        ));
    let out = blocking(move || run(c, "curl")).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echo GET /echo/env body=0\n",
        "the origin is reachable only if both env fallbacks were read: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
