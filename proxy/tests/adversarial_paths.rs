//! Bypass catalogue, paths (issue 5, SPEC §3.2): encodings and dot segments that
//! a lax origin (Tomcat `;` parameters, IIS `\`, double decoding) would read as a
//! denied path. The route under test: `localhost` allows `/echo/**` and denies
//! `/echo/secret/**`. A refused path never reaches the origin; an allowed path
//! reaches it exactly as normalized (what was matched is what is sent).
//!
//! Includes a property test: random paths built from hostile pieces; whatever the
//! proxy forwards must not be read as a denied path by a lax origin.

mod support;

use support::proxy::Fixture;
use support::raw::{self, RawResponse, collect, empty, request};

async fn get(f: &Fixture, path: &str) -> RawResponse {
    raw::tls_exchange(
        f.proxy.addr,
        &f.proxy.ca,
        &f.tls_host(),
        format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", f.tls_host()).as_bytes(),
    )
    .await
}

/// Encoded `/` and `\`, NUL, malformed and non-UTF-8 escapes (overlong `%c0%af`),
/// raw `\`, and `.`/`..` segments raw, encoded or before a `;` parameter: 400
/// bad-path. Peer: the `..;/` Tomcat traversal class.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_separators_dot_segments_and_bad_escapes_are_bad_path() {
    let f = Fixture::start().await;
    for path in [
        "/echo/%2Fsecret/x",
        "/echo%2fsecret/x",
        "/echo/%5Csecret/x",
        "/echo\\secret\\x",
        "/echo/x%00",
        "/echo/%zz",
        "/echo/%4",
        "/echo/%c0%af",
        "/echo/%e0%80%af",
        "/echo/%ff",
        "/echo/./secret/x",
        "/echo/../echo/secret/x",
        "/echo/%2e%2e/echo/secret/x",
        "/echo/%2E%2E/echo/secret/x",
        "/echo/.%2e/echo/secret/x",
        "/echo/%2e/secret/x",
        "/echo/x/..;/secret/x",
        "/echo/..;x=1/echo/secret/x",
        "/echo/.;/secret/x",
        "/echo/%2e%2e;/echo/secret/x",
        "/echo/x/..",
        "/echo/x/.",
    ] {
        get(&f, path).await.assert_refused(400, "bad-path", path);
    }
    // Over h2 too (the client library must not normalize these away).
    let mut send = raw::h2_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    for path in [
        "/echo/%2e%2e/echo/secret/x",
        "/echo/%2Fsecret",
        "/echo/..;/secret",
    ] {
        let req = request("GET", &f.tls_url(path)).body(empty()).expect("req");
        collect(send.send_request(req).await.expect("resp"))
            .await
            .assert_refused(400, "bad-path", &format!("h2 {path}"));
    }
    // And on a plain http:// request.
    let port = f.origin.http.port();
    let r = raw::plain_exchange(
        f.proxy.addr,
        format!(
            "GET http://127.0.0.1:{port}/a/%2e%2e/b HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    r.assert_refused(400, "bad-path", "plain dot segment");
    f.origin.assert_untouched("bad paths");
}

/// Percent-encoded unreserved characters are decoded before matching, so they
/// cannot dodge the deny list; case is significant in paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_unreserved_characters_cannot_dodge_the_deny_list() {
    let f = Fixture::start().await;
    for path in [
        "/echo/secret",
        "/echo/secret/",
        "/echo/secret/x",
        "/%65cho/secret/x",
        "/echo/%73ecret/x",
        "/echo/%73%65%63%72%65%74/x",
        "/echo/secre%74",
        "/echo/secret/x?y=1",
        "/ECHO/x",
        "/echox",
        "/",
    ] {
        get(&f, path)
            .await
            .assert_refused(403, "path-not-allowed", path);
    }
    f.origin.assert_untouched("encoded deny-list dodges");
}

/// `;` path parameters on a denied segment: a Tomcat-like origin strips them and
/// serves the denied resource, so the proxy must not forward them (any refusal).
/// SPEC §3.2 refuses dot segments before `;`; this extends the same reasoning to
/// the segment name itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_on_a_denied_segment_do_not_reach_the_origin() {
    let f = Fixture::start().await;
    for path in [
        "/echo/secret;jsessionid=1/x",
        "/echo/secret;/x",
        "/echo;a=b/secret/x",
    ] {
        let r = get(&f, path).await;
        assert!(
            matches!(r.status, 400 | 403) && r.decision().is_some(),
            "{path}: a lax origin reads this as /echo/secret/...; must be refused, got {} {:?}",
            r.status,
            r.decision()
        );
    }
    f.origin.assert_no_path("secret", "path parameters");
}

/// What is matched is what is sent: `%25` stays encoded (no double decoding),
/// reserved escapes stay, unreserved escapes are decoded, `//` is not collapsed,
/// the query is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_paths_reach_the_origin_exactly_as_normalized() {
    let f = Fixture::start().await;
    for (sent, want) in [
        ("/echo/%252e%252e/secret/x", "/echo/%252e%252e/secret/x"),
        ("/echo/%252F", "/echo/%252F"),
        // `//` is sent as is (a `//` spelling of a denied path is refused:
        // adversarial_folding).
        ("/echo//x", "/echo//x"),
        ("/echo/%41%7e", "/echo/A~"),
        ("/echo/a%2Bb%3Fc", "/echo/a%2Bb%3Fc"),
        ("/echo/q?a=%2F..&b=%252e", "/echo/q?a=%2F..&b=%252e"),
        ("/echo", "/echo"),
    ] {
        let before = f.origin.seen().len();
        let r = get(&f, sent).await;
        r.assert_allowed(sent);
        let seen = f.origin.seen();
        assert_eq!(seen.len(), before + 1, "{sent}");
        let got = &seen[before].path;
        let norm = |p: &str| {
            // Hex case of escapes is not meaningful.
            let mut out = String::new();
            let mut chars = p.chars().peekable();
            while let Some(c) = chars.next() {
                out.push(c);
                if c == '%' {
                    for _ in 0..2 {
                        if let Some(h) = chars.next() {
                            out.push(h.to_ascii_uppercase());
                        }
                    }
                }
            }
            out
        };
        assert_eq!(
            norm(got),
            norm(want),
            "{sent}: the origin must see the normalized path"
        );
    }
}

/// A lax origin's reading of a path: decode once, `\` as `/`, strip `;` params
/// from each segment when `strip_params` (Tomcat), resolve dot segments (`//`
/// kept).
fn lax_origin_reading_with(path: &str, strip_params: bool) -> String {
    let path = path.split('?').next().unwrap_or("");
    let bytes = path.as_bytes();
    let mut dec = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            )
        {
            dec.push(v);
            i += 3;
            continue;
        }
        dec.push(bytes[i]);
        i += 1;
    }
    let s = String::from_utf8_lossy(&dec).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in s.split('/').skip(1) {
        let seg = if strip_params {
            seg.split(';').next().unwrap_or("")
        } else {
            seg
        };
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

fn lax_origin_reading(path: &str) -> String {
    lax_origin_reading_with(path, true)
}

fn is_denied(lax: &str) -> bool {
    lax == "/echo/secret" || lax.starts_with("/echo/secret/")
}

/// Property test: 300 random paths from hostile pieces (seed printed on
/// failure), over one fixture. For each: a refusal carries a reason, and any
/// path the origin received is not a denied path to an origin that decodes once,
/// reads `\` as `/` and resolves dot segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_hostile_paths_never_reach_a_denied_resource() {
    let f = Fixture::start().await;
    let pieces = [
        "/", "//", "echo", "secret", "x", ".", "..", "%2e", "%2E%2e", "%2f", "%2F", "%5c", "\\",
        ";", ";a=1", "%3b", "%25", "%252e", "%73", "%65", "%00", "%c0%af", "%", "?", "#", "~",
        "%7e", "A", "%41",
    ];
    let mut seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    let start_seed = seed;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut c = raw::tls_conn(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    for n in 0..300 {
        let mut path = String::from("/echo/");
        for _ in 0..(2 + next() % 6) {
            path.push_str(pieces[(next() % pieces.len() as u64) as usize]);
        }
        let before = f.origin.seen().len();
        let sent = c
            .send(format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", f.tls_host()).as_bytes())
            .await;
        let r = match sent {
            Ok(()) => c.read_response(false).await,
            Err(e) => Err(e),
        };
        let r = match r {
            Ok(r) => r,
            Err(_) => {
                // The proxy closed the connection (e.g. after a 400): reconnect
                // and retry this path once on a fresh tunnel.
                c = raw::tls_conn(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
                c.send(format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", f.tls_host()).as_bytes())
                    .await
                    .expect("send");
                c.read_response(false)
                    .await
                    .unwrap_or_else(|e| panic!("seed {start_seed} #{n} {path:?}: no response: {e}"))
            }
        };
        assert!(
            r.status < 500 || r.decision().is_some(),
            "seed {start_seed} #{n} {path:?}: proxy answered {} without a reason",
            r.status
        );
        if r.status >= 400 {
            assert!(
                r.decision().is_some(),
                "seed {start_seed} #{n} {path:?}: refusal without reason"
            );
        }
        let seen = f.origin.seen();
        for s in &seen[before..] {
            // `;` parameters are the separate test above (SPEC-silent); here
            // the model is an origin that decodes once and resolves dots.
            let lax = lax_origin_reading_with(&s.path, false);
            assert!(
                !is_denied(&lax),
                "seed {start_seed} #{n}: sent {path:?}, origin got {:?}, a lax origin reads {lax:?}",
                s.path
            );
        }
        if r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            c = raw::tls_conn(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
        }
    }
}

#[test]
fn lax_reading_reference_cases() {
    assert_eq!(lax_origin_reading("/echo/secret;x/y"), "/echo/secret/y");
    assert_eq!(lax_origin_reading("/echo/x/..;/secret"), "/echo/secret");
    assert_eq!(
        lax_origin_reading("/echo/%2e%2e/echo/secret"),
        "/echo/secret"
    );
    assert_eq!(
        lax_origin_reading("/echo/%252e%252e/secret"),
        "/echo/%2e%2e/secret"
    );
    assert_eq!(lax_origin_reading("/echo//secret"), "/echo//secret");
    assert!(is_denied(&lax_origin_reading("/echo\\secret\\x")));
}
