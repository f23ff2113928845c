//! Bypass catalogue, what origins fold (issue 12 items 2, 3, 8 and the access
//! log's `route`), end to end: real TLS through egress-proxy to the recording
//! origin, with raw sockets, h2 and curl.
//!
//! The route under test is a credential route on `localhost` whose deny list
//! names `/repos/acme/widget/git/**` and whose allow list takes `*.txt` files:
//! - forges read owner and repository names without case and common servers
//!   merge `//`, so `/repos/acme/Widget/git/refs` is the denied resource;
//! - a Tomcat- or Jetty-style origin drops `;` parameters, so
//!   `/files/secret.key;.txt` is `/files/secret.key`;
//! - frameworks honour method-override headers and a `_method` parameter.
//!
//! Each refused request must reach neither the origin nor carry the credential
//! anywhere; each allowed control request reaches it with the credential (so the
//! refusals are not an artefact of a broken fixture).

mod support;

use std::process::Command;

use support::proxy::Fixture;
use support::raw::{self, RawResponse, collect, empty, request};
use support::tools::{blocking, hermetic, require, run};

const ROUTES: &str = r#"unmatched: deny
routes:
  - host: localhost
    path_allowlist: ["/repos/**", "/files/*.txt"]
    path_denylist: ["/repos/acme/widget/git/**"]
    methods: [GET, HEAD]
    auth_scheme: Bearer
    token_env: EGRESS_PROXY_TOKEN_0
"#;

async fn send(f: &Fixture, head: &str) -> RawResponse {
    raw::tls_exchange(
        f.proxy.addr,
        &f.proxy.ca,
        &f.tls_host(),
        format!("{head}Host: {}\r\n\r\n", f.tls_host()).as_bytes(),
    )
    .await
}

async fn get(f: &Fixture, path: &str) -> RawResponse {
    send(f, &format!("GET {path} HTTP/1.1\r\n")).await
}

/// An allowed request reaches the origin once, with the injected credential.
async fn assert_reaches_origin(f: &Fixture, head: &str, want_path: &str) {
    let before = f.origin.seen().len();
    send(f, head).await.assert_allowed(head);
    let seen = f.origin.seen();
    assert_eq!(
        seen.len(),
        before + 1,
        "{head}: the origin must see it once"
    );
    let last = &seen[before];
    assert_eq!(last.path, want_path, "{head}");
    f.assert_credential_injected(last);
}

/// The denied repository spelled as forges and slash-merging servers read it:
/// 403 before any connection to the origin, so no credential leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_and_slash_spellings_of_a_denied_path_never_reach_the_origin() {
    let f = Fixture::with_routes(ROUTES).await;
    for path in [
        "/repos/acme/Widget/git/refs",
        "/repos/acme/widget//git/refs",
        "/REPOS/ACME/WIDGET/GIT/REFS",
        "//repos/acme/widget/git/refs",
        "/repos/acme/Widget;v=1//git/refs",
        "/repos/acme/%57idget/git/refs",
    ] {
        let r = get(&f, path).await;
        r.assert_refused(403, "path-not-allowed", path);
        f.assert_no_token(&r.body, path);
    }
    // Over h2 as well (the client library keeps the path as given).
    let mut h2 = raw::h2_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    for path in [
        "/repos/acme/Widget/git/refs",
        "/repos/acme/widget//git/refs",
    ] {
        let req = request("GET", &f.tls_url(path)).body(empty()).expect("req");
        collect(h2.send_request(req).await.expect("resp"))
            .await
            .assert_refused(403, "path-not-allowed", &format!("h2 {path}"));
    }
    f.origin
        .assert_untouched("folded spellings of a denied path");

    // Control: a neighbouring repository is allowed and gets the credential.
    assert_reaches_origin(
        &f,
        "GET /repos/acme/Widgets/git/refs HTTP/1.1\r\n",
        "/repos/acme/Widgets/git/refs",
    )
    .await;
    f.proxy.assert_no_secret_in_logs();
}

/// The same with curl, which sends the path as given with `--path-as-is`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_cannot_reach_a_denied_repository_by_changing_case() {
    let f = Fixture::with_routes(ROUTES).await;
    let url = f.tls_url("/repos/acme/Widget//git/refs");
    let mut c = Command::new(require("curl", "curl"));
    hermetic(&mut c);
    c.args(["-q", "-sS", "--path-as-is", "--max-time", "30", "-x"])
        .arg(f.proxy.url())
        .arg("--cacert")
        .arg(&f.proxy.ca_files.cert)
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %header{x-egress-proxy-decision}",
        ])
        .arg(url);
    let out = blocking(move || run(c, "curl")).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.trim(), "403 path-not-allowed", "curl saw {text:?}");
    f.origin.assert_untouched("curl, folded spelling");
}

/// A `;` parameter cannot pass off a denied file as an allowed extension: the
/// origin that drops parameters would serve `/files/secret.key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_parameter_cannot_fake_an_allowed_extension() {
    let f = Fixture::with_routes(ROUTES).await;
    for path in [
        "/files/secret.key;.txt",
        "/files/secret.key;x=.txt",
        "/files/secret;.txt",
    ] {
        get(&f, path)
            .await
            .assert_refused(403, "path-not-allowed", path);
    }
    f.origin
        .assert_untouched("`;` parameter hiding the extension");
    assert_reaches_origin(&f, "GET /files/notes.txt HTTP/1.1\r\n", "/files/notes.txt").await;
}

/// On a route with `methods: [GET, HEAD]`, a GET that asks the origin to act
/// as another method is refused; an override to TRACE (which would echo the
/// injected credential back) is refused like TRACE itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_overrides_outside_the_route_methods_are_refused() {
    let f = Fixture::with_routes(ROUTES).await;
    for (head, status) in [
        (
            "GET /repos/x HTTP/1.1\r\nX-HTTP-Method-Override: DELETE\r\n",
            403,
        ),
        ("GET /repos/x HTTP/1.1\r\nX-HTTP-Method: put\r\n", 403),
        ("GET /repos/x HTTP/1.1\r\nX-Method-Override: POST\r\n", 403),
        (
            "GET /repos/x HTTP/1.1\r\nX-HTTP-Method-Override: GET\r\nX-HTTP-Method-Override: PATCH\r\n",
            403,
        ),
        ("GET /repos/x?a=1&_method=DELETE HTTP/1.1\r\n", 403),
        ("GET /repos/x?%5Fmethod=delete HTTP/1.1\r\n", 403),
        (
            "GET /repos/x HTTP/1.1\r\nX-HTTP-Method-Override: TRACE\r\n",
            405,
        ),
    ] {
        let r = send(&f, head).await;
        r.assert_refused(status, "method-not-allowed", head);
        f.assert_no_token(&r.body, head);
    }
    f.origin.assert_untouched("method overrides");
    // Control: an override naming a listed method goes through unchanged.
    assert_reaches_origin(
        &f,
        "GET /repos/x?_method=head HTTP/1.1\r\nX-HTTP-Method-Override: get\r\n",
        "/repos/x?_method=head",
    )
    .await;
}

/// The access log names the route on refusals that found one
/// (`path-not-allowed`, `method-not-allowed`, `cleartext-credentials`), and
/// leaves it empty when none matched (`host-not-allowed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_that_matched_a_route_log_it() {
    let f = Fixture::with_routes(ROUTES).await;
    get(&f, "/repos/acme/Widget/git/refs")
        .await
        .assert_refused(403, "path-not-allowed", "deny");
    send(&f, "DELETE /repos/x HTTP/1.1\r\n")
        .await
        .assert_refused(403, "method-not-allowed", "methods");
    let port = f.origin.http.port();
    raw::plain_exchange(
        f.proxy.addr,
        format!("GET http://localhost:{port}/repos/x HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .assert_refused(403, "cleartext-credentials", "cleartext");
    raw::plain_exchange(
        f.proxy.addr,
        format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .assert_refused(403, "host-not-allowed", "no route");
    f.origin.assert_untouched("logged refusals");

    let want = [
        ("path-not-allowed", "localhost"),
        ("method-not-allowed", "localhost"),
        ("cleartext-credentials", "localhost"),
        ("host-not-allowed", ""),
    ];
    let deadline = std::time::Instant::now() + support::STEP;
    let access = loop {
        let access: Vec<serde_json::Value> = f
            .proxy
            .lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("decision").is_some())
            .collect();
        if access.len() >= want.len() || std::time::Instant::now() > deadline {
            break access;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        access.len(),
        want.len(),
        "access lines: {}",
        f.proxy.redacted()
    );
    for (v, (decision, route)) in access.iter().zip(want) {
        assert_eq!(
            (v["decision"].as_str(), v["route"].as_str()),
            (Some(decision), Some(route)),
            "access line {v}"
        );
    }
    f.proxy.assert_no_secret_in_logs();
}
