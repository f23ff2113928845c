//! Access log and secrets hygiene of the real binary (SPEC §5, issue 5):
//! one JSON line per request with the SPEC keys (allowed, refused, h2, plain),
//! the text format, start-up lines, and a grep of everything the proxy wrote
//! (and its metrics and argv) for the test secrets and query strings.

mod support;

use support::T;
use support::clients::*;
use support::origin::Origin;
use support::proxy::{Proxy, ProxyOpts};
use support::raw::{plain_get, raw_exchange};
use support::tools::path_of;
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "ops-injected-token-9c1e5b7d";
const CLIENT_SECRET: &str = "client-sent-secret-4a8f";
/// Query values that must never reach the log.
const QUERIES: [&str; 5] = [
    "qsecret-one-71",
    "qsecret-two-72",
    "qsecret-three-73",
    "qsecret-four-74",
    "qsecret-five-75",
];

fn routes() -> String {
    "unmatched: deny\nroutes:\n  - host: localhost\n    path_allowlist: [\"/ok\"]\n    auth_scheme: Bearer\n    token_env: OPS_TOKEN\n  - host: 127.0.0.1\n    path_allowlist: [\"/plain\"]\n".into()
}

/// The proxy of these tests: their routes and token, trusting `origin`'s CA.
fn opts_for(origin: &Origin) -> ProxyOpts {
    let mut opts = ProxyOpts::ephemeral(routes());
    opts.tokens.push(("OPS_TOKEN".into(), TOKEN.into()));
    opts.upstream_ca = Some(origin.ca_file.clone());
    opts
}

const SPEC_KEYS: [&str; 11] = [
    "ts",
    "client",
    "method",
    "host",
    "path",
    "status",
    "decision",
    "route",
    "bytes_in",
    "bytes_out",
    "duration_ms",
];

fn assert_spec_keys(v: &serde_json::Value) {
    for k in SPEC_KEYS {
        assert!(v.get(k).is_some(), "access line lacks {k}: {v}");
    }
    for k in ["status", "bytes_in", "bytes_out", "duration_ms"] {
        assert!(v[k].is_u64(), "{k} is a number: {v}");
    }
    for k in [
        "ts", "client", "method", "host", "path", "decision", "route",
    ] {
        assert!(v[k].is_string(), "{k} is a string: {v}");
    }
    assert!(
        !v["path"].as_str().unwrap_or("").contains('?'),
        "no query in path: {v}"
    );
}

/// `bytes_in` and `bytes_out` are the request and response body sizes, over
/// h1 and h2: a POST counts its body, a GET counts none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_count_the_body_bytes_each_way() {
    let origin = Origin::streaming().await;
    let proxy = Proxy::start(opts_for(&origin));
    let tp = origin.https.port();
    let upload: &'static str = Box::leak("u".repeat(12_345).into_boxed_str());
    let mut h1 = h1_through(&proxy, "localhost", tp).await.expect("tunnel");
    let mut h2 = h2_through(&proxy, "localhost", tp)
        .await
        .expect("h2 tunnel");
    let mut sizes = Vec::new();
    for (i, post) in [(0, true), (1, false), (2, true), (3, false)] {
        let mut req = hyper::Request::builder()
            .method(if post { "POST" } else { "GET" })
            .uri(format!("https://localhost:{tp}/ok"));
        if i < 2 {
            req = req.uri("/ok").header("host", format!("localhost:{tp}"));
        }
        let req = req.body(if post { body(upload) } else { empty() }).unwrap();
        // Ready first: the h1 connection takes the next request only once its
        // task has seen the end of the last response.
        let resp = if i < 2 {
            h1.ready().await.expect("h1 ready");
            h1.send_request(req).await.expect("h1 request")
        } else {
            h2.ready().await.expect("h2 ready");
            h2.send_request(req).await.expect("h2 request")
        };
        let got = try_collect(resp).await.unwrap();
        assert_eq!(got.status, 200, "request {i}");
        sizes.push((if post { 12_345 } else { 0 }, got.body.len() as u64));
    }
    let deadline = std::time::Instant::now() + T;
    while proxy.access().len() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let access = proxy.access();
    assert_eq!(access.len(), 4, "{access:?}");
    for (v, (bytes_in, bytes_out)) in access.iter().zip(sizes) {
        assert_eq!(
            (v["bytes_in"].as_u64(), v["bytes_out"].as_u64()),
            (Some(bytes_in), Some(bytes_out)),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_lines_have_the_spec_keys_and_no_secret_or_query() {
    let origin = Origin::streaming().await;
    let mut opts = opts_for(&origin);
    opts.admin = true;
    let mut proxy = Proxy::start(opts);
    let tp = origin.https.port();

    // Allowed over h1 inside a tunnel, with a client credential that must go.
    let mut h1 = h1_through(&proxy, "localhost", tp).await.expect("tunnel");
    let req = hyper::Request::get(format!("/ok?api_key={}", QUERIES[0]))
        .header("host", format!("localhost:{tp}"))
        .header("authorization", format!("Bearer {CLIENT_SECRET}"))
        .body(empty())
        .unwrap();
    let got = try_collect(h1.send_request(req).await.expect("h1 request"))
        .await
        .unwrap();
    assert_eq!(got.status, 200, "allowed h1");
    // Refused inside the same tunnel (path not allowed).
    let got = get1(
        &mut h1,
        &format!("localhost:{tp}"),
        &format!("/nope?q={}", QUERIES[1]),
    )
    .await
    .unwrap();
    assert_eq!(
        (got.status, got.decision()),
        (403, Some("path-not-allowed"))
    );

    // Allowed over h2.
    let mut h2 = h2_through(&proxy, "localhost", tp)
        .await
        .expect("h2 tunnel");
    let req = hyper::Request::get(format!("https://localhost:{tp}/ok?x={}", QUERIES[2]))
        .body(empty())
        .unwrap();
    let resp = h2.send_request(req).await.expect("h2 request");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(try_collect(resp).await.unwrap().status, 200, "allowed h2");

    // Plain http:// on the proxy port: allowed, and refused (credential route).
    let pp = origin.http.port();
    let text = raw_exchange(
        proxy.addr,
        format!("GET http://127.0.0.1:{pp}/plain?y={} HTTP/1.1\r\nHost: 127.0.0.1:{pp}\r\nConnection: close\r\n\r\n", QUERIES[3]).as_bytes(),
    )
    .await
    .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "plain allowed: {text}");
    let text = raw_exchange(
        proxy.addr,
        format!("GET http://localhost:{pp}/ok?z={} HTTP/1.1\r\nHost: localhost:{pp}\r\nConnection: close\r\n\r\n", QUERIES[4]).as_bytes(),
    )
    .await
    .unwrap();
    assert!(
        text.starts_with("HTTP/1.1 403"),
        "cleartext credential refused: {text}"
    );
    assert!(text.contains("cleartext-credentials"), "{text}");
    drop(h1);
    drop(h2);

    // Five requests, five lines (written when each response body ends).
    proxy.wait_line(|_| true, "any line");
    let deadline = std::time::Instant::now() + T;
    while proxy.access().len() < 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let access = proxy.access();
    assert_eq!(
        access.len(),
        5,
        "one line per request:\n{}",
        proxy.redacted()
    );
    for v in &access {
        assert_spec_keys(v);
    }
    let find = |path: &str, decision: &str| {
        access
            .iter()
            .filter(|v| v["path"] == path && v["decision"] == decision)
            .cloned()
            .collect::<Vec<_>>()
    };
    let ok = find("/ok", "allowed");
    assert_eq!(ok.len(), 2, "h1 and h2 allowed lines: {access:?}");
    for v in &ok {
        assert_eq!(v["status"], 200);
        assert_eq!(v["host"], "localhost");
        assert_eq!(v["route"], "localhost");
        assert_eq!(v["method"], "GET");
        assert!(
            v["bytes_out"].as_u64().unwrap() > 0,
            "bytes_out counted: {v}"
        );
        assert!(v["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    let refused = find("/nope", "path-not-allowed");
    assert_eq!(refused.len(), 1, "{access:?}");
    assert_eq!(refused[0]["status"], 403);
    let plain = find("/plain", "allowed");
    assert_eq!(plain.len(), 1, "{access:?}");
    assert_eq!(plain[0]["host"], "127.0.0.1");
    assert_eq!(find("/ok", "cleartext-credentials").len(), 1, "{access:?}");

    // Start-up lines: routes loaded, CA fingerprint, listen address.
    let lines = proxy.json_lines();
    assert!(
        lines
            .iter()
            .any(|v| v["msg"] == "routes loaded" && v["routes"] == 2)
    );
    let fp = lines
        .iter()
        .find_map(|v| v["ca_sha256"].as_str().map(str::to_owned))
        .expect("CA fingerprint line");
    assert_eq!(fp.len(), 95, "SHA-256 as AB:CD:..: {fp}");
    assert!(
        lines
            .iter()
            .any(|v| v["msg"] == "listening" && v["addr"] == proxy.addr.to_string())
    );

    // Whole-run grep: the proxy's output, its metrics and its argv.
    let (_, metrics) = plain_get(proxy.admin.unwrap(), "/metrics").await.unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", proxy.pid())).unwrap_or_default();
    let everything = format!(
        "{}\n{metrics}\n{}",
        proxy.lines().join("\n"),
        String::from_utf8_lossy(&cmdline)
    );
    for needle in [TOKEN, CLIENT_SECRET].iter().chain(QUERIES.iter()) {
        assert!(
            !everything.contains(needle),
            "a secret or query value reached the output:\n{}",
            proxy.redacted()
        );
    }
    assert!(
        !everything.contains("api_key="),
        "query keys are not logged either"
    );
}

/// JSON access lines are written in batches (docs/operations.md): a burst of
/// requests larger than one batch (32 KiB of lines) still gives exactly one
/// line per request, each request's own, soon after its response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_requests_gives_one_line_each_soon() {
    const N: usize = 400;
    let origin = Origin::streaming().await;
    let mut proxy = Proxy::start(opts_for(&origin));
    let tp = origin.https.port();
    let host = format!("localhost:{tp}");
    let mut h1 = h1_through(&proxy, "localhost", tp).await.expect("tunnel");
    for i in 0..N {
        let got = get1(&mut h1, &host, &format!("/nope/{i}")).await.unwrap();
        assert_eq!(got.status, 403, "refused (not in the allowlist): {i}");
    }
    let last = format!("/nope/{}", N - 1);
    proxy.wait_line(|v| v["path"] == last.as_str(), "the last request's line");
    let mut paths: Vec<String> = proxy
        .access()
        .iter()
        .map(|v| v["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    paths.sort_by_key(|p| p[6..].parse::<usize>().unwrap_or(usize::MAX));
    let want: Vec<String> = (0..N).map(|i| format!("/nope/{i}")).collect();
    assert_eq!(paths, want, "one line per request, none lost or repeated");
}

/// The batcher's thread writes by itself while lines keep coming and waits to
/// be woken once none do: a request after a quiet spell (longer than a batch)
/// still gets its line, each time, and soon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_a_quiet_spell_still_gets_its_line_soon() {
    let origin = Origin::streaming().await;
    let mut proxy = Proxy::start(opts_for(&origin));
    let tp = origin.https.port();
    let host = format!("localhost:{tp}");
    let mut h1 = h1_through(&proxy, "localhost", tp).await.expect("tunnel");
    for (i, quiet_ms) in [0u64, 30, 2, 60, 0, 15].into_iter().enumerate() {
        tokio::time::sleep(std::time::Duration::from_millis(quiet_ms)).await;
        let path = format!("/nope/quiet-{i}");
        let got = get1(&mut h1, &host, &path).await.unwrap();
        assert_eq!(got.status, 403);
        let t0 = std::time::Instant::now();
        proxy.wait_line(
            |v| v["path"] == path.as_str(),
            "the line after a quiet spell",
        );
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(1),
            "request {i}: its line took {:?} (a batch waits {:?})",
            t0.elapsed(),
            egress_proxy::log::BATCH_EVERY
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_format_is_one_readable_line_per_request() {
    let origin = Origin::streaming().await;
    let mut opts = opts_for(&origin).arg("--log-format").arg("text");
    let proxy = {
        // `Proxy::start` waits for the JSON `listening` line; in text format
        // the address is found by a plain request on a known port instead.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        opts.args.push("--listen".into());
        opts.args.push(format!("127.0.0.1:{port}"));
        TextProc::start(opts, port)
    };
    let tp = origin.https.port();
    let mut h1 = proxy.h1(tp).await;
    let got = get1(
        &mut h1,
        &format!("localhost:{tp}"),
        &format!("/ok?k={}", QUERIES[0]),
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200);
    let got = get1(&mut h1, &format!("localhost:{tp}"), "/nope")
        .await
        .unwrap();
    assert_eq!(got.status, 403);
    drop(h1);
    let deadline = std::time::Instant::now() + T;
    let mut access;
    loop {
        access = proxy
            .lines()
            .into_iter()
            .filter(|l| l.contains("decision="))
            .collect::<Vec<_>>();
        if access.len() >= 2 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(access.len(), 2, "{access:?}");
    assert!(
        access[0].contains("decision=allowed") && access[0].contains("status=200"),
        "{}",
        access[0]
    );
    assert!(
        access[1].contains("decision=path-not-allowed"),
        "{}",
        access[1]
    );
    for l in &access {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_err(),
            "text, not JSON: {l}"
        );
        for k in [
            "client=",
            "method=",
            "host=",
            "path=",
            "route=",
            "bytes_in=",
            "bytes_out=",
            "duration_ms=",
        ] {
            assert!(l.contains(k), "{k} in {l}");
        }
    }
    let all = proxy.lines().join("\n");
    assert!(
        !all.contains(TOKEN) && !all.contains(QUERIES[0]),
        "no secret or query in text logs"
    );
}

/// The proxy started with `--log-format text`.
struct TextProc {
    inner: Proxy,
}

impl TextProc {
    fn start(mut opts: ProxyOpts, port: u16) -> TextProc {
        // Start with JSON start-up detection disabled: drive `Proxy` by a
        // readiness probe on the port instead.
        opts.admin = false;
        let inner = Proxy::start_on(opts, port);
        TextProc { inner }
    }
    fn lines(&self) -> Vec<String> {
        self.inner.lines()
    }
    async fn h1(&self, port: u16) -> hyper::client::conn::http1::SendRequest<CBody> {
        h1_through(&self.inner, "localhost", port)
            .await
            .expect("tunnel")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_readable_by_others_is_warned_about_without_its_value() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let loose = dir.path().join("loose-token");
    let tight = dir.path().join("tight-token");
    std::fs::write(&loose, "loose-token-value-3d2c\n").unwrap();
    std::fs::write(&tight, "tight-token-value-8e1f\n").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&tight, std::fs::Permissions::from_mode(0o600)).unwrap();
    let routes = format!(
        "routes:\n  - host: a.example\n    auth_header: x-api-key\n    token_file: {}\n  - host: b.example\n    auth_header: x-api-key\n    token_file: {}\n",
        loose.display(),
        tight.display()
    );
    let mut proxy = Proxy::start(ProxyOpts::ephemeral(routes));
    let warn = proxy.wait_line(
        |v| {
            v["msg"]
                .as_str()
                .is_some_and(|m| m.contains("readable by group or others"))
        },
        "the permission warning",
    );
    assert_eq!(warn["token_file"], path_of(&loose));
    assert_eq!(warn["mode"], "0644");
    assert_eq!(warn["level"], "warn");
    let all = proxy.lines().join("\n");
    assert!(
        !all.contains(&path_of(&tight)),
        "a 0600 file is not warned about"
    );
    assert!(!all.contains("token-value"), "no token value in the output");
    // Keep the stream open a moment so a late line would be caught too.
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let _ = s.shutdown().await;
}

#[test]
fn ca_new_writes_the_key_0600_and_prints_no_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_egress-proxy"))
        .args(["ca", "new", "--out"])
        .arg(dir.path())
        .output()
        .expect("run ca new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let both = dir.path().join("ca.pem");
    let mode = std::fs::metadata(&both).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the file holding the key is 0600");
    assert!(
        std::fs::read_to_string(&both)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains("PRIVATE KEY"), "the key is never printed");
}

#[test]
fn start_up_errors_exit_2_and_name_the_source_never_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "file-token-value-5b6a\n").unwrap();
    let routes = dir.path().join("routes.yaml");
    // A file token (read fine), an empty env token, and a bad key.
    std::fs::write(
        &routes,
        format!(
            "routes:\n  - host: a.example\n    auth_header: x-api-key\n    token_file: {}\n  - host: b.example\n    auth_scheme: Bearer\n    token_env: OPS_EMPTY\n",
            token.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_egress-proxy"))
        .env_clear()
        .env("OPS_EMPTY", "   ")
        .env("OPS_OTHER", "env-token-value-77aa")
        .arg("--routes")
        .arg(&routes)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--ca-out")
        .arg(dir.path().join("ca.pem"))
        .output()
        .expect("run egress-proxy");
    assert_eq!(out.status.code(), Some(2), "bad configuration exits 2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OPS_EMPTY"),
        "the error names the variable: {err}"
    );
    assert!(err.contains("routes[1]"), "and the route: {err}");
    assert!(
        !err.contains("file-token-value") && !err.contains("env-token-value"),
        "{err}"
    );
}
