//! Bypass catalogue, inside a CONNECT tunnel (issue 5): what a hostile agent sends
//! through a MITM'd tunnel to reach another host, smuggle a second request, widen
//! an upgrade into a blind tunnel, push with git, or lift the injected credential.
//! Each test fails if the proxy lets the request through, and asserts the origin
//! saw nothing (no request, and for pure refusals no connection).
//!
//! Raw sockets (tokio TcpStream + tokio-rustls) send what a normal client would not.

mod support;

use support::proxy::Fixture;
use support::raw::{self, RawResponse, collect, empty, request};

/// Sends `raw` over CONNECT localhost:PORT + TLS (SNI localhost), reads a response.
async fn in_tunnel(f: &Fixture, raw: &str) -> RawResponse {
    raw::tls_exchange(f.proxy.addr, &f.proxy.ca, &f.tls_host(), raw.as_bytes()).await
}

// ---------------------------------------------------------------- authority (§3.4)

/// A `Host` naming another host than the CONNECT target must not pick the
/// upstream. Peers: archie-judd/agent-sandbox.nix#105 (Host not checked against the
/// CONNECT authority), paradigmxyz/iron-proxy#248; httpjail#57 class.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_naming_another_host_in_tunnel_is_421() {
    let f = Fixture::start().await;
    let other = format!("127.0.0.1:{}", f.origin.https.port());
    let r = in_tunnel(
        &f,
        &format!("GET /echo/x HTTP/1.1\r\nHost: {other}\r\n\r\n"),
    )
    .await;
    r.assert_refused(421, "authority-mismatch", "Host: other host");
    let r = in_tunnel(&f, "GET /echo/x HTTP/1.1\r\nHost: evil.example\r\n\r\n").await;
    r.assert_refused(421, "authority-mismatch", "Host: unrouted host");
    // Same host, other port.
    let r = in_tunnel(&f, "GET /echo/x HTTP/1.1\r\nHost: localhost:1\r\n\r\n").await;
    r.assert_refused(421, "authority-mismatch", "Host: other port");
    f.origin.assert_untouched("Host mismatch");
}

/// An absolute-form target inside a tunnel naming another host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_naming_another_host_in_tunnel_is_421() {
    let f = Fixture::start().await;
    let other = format!("127.0.0.1:{}", f.origin.https.port());
    let r = in_tunnel(
        &f,
        &format!(
            "GET https://{other}/echo/x HTTP/1.1\r\nHost: {}\r\n\r\n",
            f.tls_host()
        ),
    )
    .await;
    r.assert_refused(421, "authority-mismatch", "absolute-form other host");
    let r = in_tunnel(
        &f,
        &format!("GET http://{other}/echo/x HTTP/1.1\r\nHost: {other}\r\n\r\n"),
    )
    .await;
    r.assert_refused(421, "authority-mismatch", "absolute-form + Host both other");
    f.origin.assert_untouched("absolute-form mismatch");
}

/// Keep-alive does not pin a decision: after an allowed request, a second
/// request on the same tunnel naming another host is judged on its own (421).
/// Peer: archie-judd/agent-sandbox.nix#105 ("keep-alive pins the upstream
/// connection, so one mismatch is inherited by every request sent after it").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_request_on_a_kept_alive_tunnel_is_judged_again() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let other = format!("127.0.0.1:{}", f.origin.https.port());
    let mut c = raw::tls_conn(f.proxy.addr, &f.proxy.ca, &h).await;
    c.send(format!("GET /echo/first HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    c.read_response(false)
        .await
        .expect("first")
        .assert_allowed("first request");
    c.send(format!("GET /echo/second HTTP/1.1\r\nHost: {other}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    c.read_response(false)
        .await
        .expect("second")
        .assert_refused(421, "authority-mismatch", "second request, other host");
    let _ = c
        .send(format!("GET /echo/secret/third HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes())
        .await;
    if let Ok(r) = c.read_response(false).await {
        r.assert_refused(403, "path-not-allowed", "third request, denied path");
    }
    let seen = f.origin.seen();
    assert_eq!(seen.len(), 1, "only the first request reaches the origin");
    assert_eq!(seen[0].path, "/echo/first");
}

/// Two Host headers, equal or not: 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_host_headers_are_400() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    for second in [h.clone(), "evil.example".to_string()] {
        let r = in_tunnel(
            &f,
            &format!("GET /echo/x HTTP/1.1\r\nHost: {h}\r\nHost: {second}\r\n\r\n"),
        )
        .await;
        r.assert_refused(400, "bad-request", "two Host headers");
    }
    f.origin.assert_untouched("duplicate Host");
}

/// h2 `:authority` naming another host than the CONNECT target, and `:authority`
/// differing from a `host` header. Peer: paradigmxyz/iron-proxy#248.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_authority_differing_from_connect_or_host_is_421() {
    let f = Fixture::start().await;
    let mut send = raw::h2_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    let other = format!("https://127.0.0.1:{}/echo/x", f.origin.https.port());
    let req = request("GET", &other).body(empty()).expect("req");
    let r = collect(send.send_request(req).await.expect("resp")).await;
    r.assert_refused(421, "authority-mismatch", ":authority other host");

    let req = request("GET", &f.tls_url("/echo/x"))
        .header("host", "evil.example")
        .body(empty())
        .expect("req");
    // A client library may refuse to send it; then nothing went anywhere.
    if let Ok(resp) = send.send_request(req).await {
        collect(resp)
            .await
            .assert_refused(421, "authority-mismatch", ":authority != host header");
    }
    f.origin.assert_untouched(":authority mismatch");
}

/// TLS SNI for an allowed host on a CONNECT to a denied one, and the reverse:
/// SNI must name the CONNECT host (421). Peer: paradigmxyz/iron-proxy#248.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_differing_from_connect_host_is_421() {
    let f = Fixture::start().await;
    let port = f.origin.https.port();
    for (connect, sni, host) in [
        (
            format!("denied.example:{port}"),
            "localhost",
            format!("localhost:{port}"),
        ),
        (
            format!("denied.example:{port}"),
            "localhost",
            format!("denied.example:{port}"),
        ),
        (
            format!("localhost:{port}"),
            "denied.example",
            format!("localhost:{port}"),
        ),
    ] {
        let tcp = raw::tunnel(f.proxy.addr, &connect).await;
        let what = format!("CONNECT {connect} SNI {sni} Host {host}");
        let Ok(tls) = raw::try_tls(tcp, sni, raw::insecure_client_config(&[b"http/1.1"])).await
        else {
            panic!("{what}: the proxy must finish TLS and answer 421, not drop the handshake");
        };
        let mut c = raw::Conn::new(tls);
        c.send(format!("GET /echo/x HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .expect("send");
        let r = c.read_response(false).await.expect("response");
        r.assert_refused(421, "authority-mismatch", &what);
    }
    f.origin.assert_untouched("SNI mismatch");
}

/// HTTP/1.0 without Host inside a tunnel uses the CONNECT host (allowed), and
/// still gets the credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_without_host_uses_connect_host() {
    let f = Fixture::start().await;
    let r = in_tunnel(&f, "GET /echo/ten HTTP/1.0\r\n\r\n").await;
    r.assert_allowed("HTTP/1.0 without Host");
    let seen = f.origin.seen();
    assert_eq!(seen.len(), 1);
    f.assert_credential_injected(&seen[0]);
}

// ------------------------------------------------------ framing and method (§3.5)

/// TRACE and CONNECT inside a tunnel: 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_and_nested_connect_are_405() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let r = in_tunnel(&f, &format!("TRACE /echo/x HTTP/1.1\r\nHost: {h}\r\n\r\n")).await;
    r.assert_refused(405, "method-not-allowed", "TRACE");
    let r = in_tunnel(&f, &format!("CONNECT {h} HTTP/1.1\r\nHost: {h}\r\n\r\n")).await;
    r.assert_refused(405, "method-not-allowed", "CONNECT in tunnel");
    let mut send = raw::h2_client(f.proxy.addr, &f.proxy.ca, &h).await;
    let req = request("TRACE", &f.tls_url("/echo/x"))
        .body(empty())
        .expect("req");
    collect(send.send_request(req).await.expect("resp"))
        .await
        .assert_refused(405, "method-not-allowed", "TRACE over h2");
    f.origin.assert_untouched("TRACE/CONNECT");
}

/// GET/HEAD with a body: 400; `Content-Length: 0` is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_or_head_with_a_body_is_400() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let r = in_tunnel(
        &f,
        &format!("GET /echo/x HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n\r\nhello"),
    )
    .await;
    r.assert_refused(400, "bad-request", "GET with body");
    let r = in_tunnel(
        &f,
        &format!("GET /echo/x HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    )
    .await;
    r.assert_refused(400, "bad-request", "GET with chunked body");
    let r = in_tunnel(
        &f,
        &format!("HEAD /echo/x HTTP/1.1\r\nHost: {h}\r\nContent-Length: 3\r\n\r\nabc"),
    )
    .await;
    r.assert_refused(400, "bad-request", "HEAD with body");
    f.origin.assert_untouched("GET/HEAD with body");
    let r = in_tunnel(
        &f,
        &format!("GET /echo/zero HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\n\r\n"),
    )
    .await;
    r.assert_allowed("GET with Content-Length: 0");
}

/// CL.0 desync: a GET whose "body" is a second request that would ride the
/// pooled upstream connection with the injected credential. The GET is refused,
/// the connection closed, and the smuggled request never reaches the origin.
/// Peer: postrank-labs/goliath#351; kemalcr/kemal#767 (pipelined request after a
/// refusal kept alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cl0_desync_get_with_pipelined_request_is_refused_and_closed() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let smuggled = format!("GET /echo/secret/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n");
    let mut c = raw::tls_conn(f.proxy.addr, &f.proxy.ca, &h).await;
    c.send(
        format!(
            "GET /echo/a HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        )
        .as_bytes(),
    )
    .await
    .expect("send");
    let r = c.read_response(false).await.expect("response");
    r.assert_refused(400, "bad-request", "GET with a body holding a request");
    assert!(
        c.is_closed().await,
        "the connection with an unread refused body must be closed"
    );
    raw::settle().await;
    f.origin.assert_no_path("smuggled", "CL.0 desync");
    f.origin.assert_untouched("CL.0 desync");
}

/// A refused POST with an unread body: the connection is closed so the body
/// cannot be read as the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_request_with_unread_body_closes_the_connection() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let inner = format!("GET /echo/secret/inner HTTP/1.1\r\nHost: {h}\r\n\r\n");
    let mut c = raw::tls_conn(f.proxy.addr, &f.proxy.ca, &h).await;
    c.send(
        format!(
            "POST /echo/secret/x HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        )
        .as_bytes(),
    )
    .await
    .expect("send");
    let r = c.read_response(false).await.expect("response");
    r.assert_refused(403, "path-not-allowed", "denied POST");
    assert!(
        c.is_closed().await,
        "connection must close after a refused body"
    );
    f.origin.assert_untouched("refused body");
}

/// CL/TE smuggling pairs: conflicting Content-Length / Transfer-Encoding, two
/// different Content-Lengths, obfuscated Transfer-Encoding. Peers:
/// mitmproxy/mitmproxy#4799 (CL+TE refused), sozu-proxy/sozu#726 (TE with a tab),
/// postrank-labs/goliath#351 (duplicate CL, TE variants).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cl_te_smuggling_pairs_are_400() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let cases = [
        (
            "CL+TE",
            format!(
                "POST /echo/x HTTP/1.1\r\nHost: {h}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
        ),
        (
            "TE+CL",
            format!(
                "POST /echo/x HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"
            ),
        ),
        (
            "two CL",
            format!(
                "POST /echo/x HTTP/1.1\r\nHost: {h}\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc"
            ),
        ),
        (
            "CL list",
            format!("POST /echo/x HTTP/1.1\r\nHost: {h}\r\nContent-Length: 3, 40\r\n\r\nabc"),
        ),
        (
            "TE tab",
            format!(
                "POST /echo/x HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\t\r\nContent-Length: 3\r\n\r\nabc"
            ),
        ),
        (
            "TE x",
            format!(
                "POST /echo/x HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
            ),
        ),
        (
            "TE identity,chunked",
            format!(
                "POST /echo/x HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
            ),
        ),
        (
            "space before colon",
            format!(
                "POST /echo/x HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc"
            ),
        ),
    ];
    // Every case is tried, then all failures are reported together.
    let mut failed = Vec::new();
    for (what, req) in cases {
        match raw::try_tls_exchange(f.proxy.addr, &f.proxy.ca, &h, req.as_bytes()).await {
            Ok(r) if r.status == 400 => {}
            Ok(r) => failed.push(format!("{what}: {} {:?}", r.status, r.body_text())),
            Err(e) => failed.push(format!("{what}: no answer ({e})")),
        }
    }
    assert!(failed.is_empty(), "must be 400: {failed:#?}");
    f.origin.assert_untouched("CL/TE pairs");
}

/// CR injected into a header value, obsolete line folding and NUL: 400. A bare
/// LF is a line end some parsers accept (RFC 9112 §2.2); then the proxy must
/// treat what follows as a separate header it re-serializes, so a forged
/// `Authorization` is still replaced by the injected one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cr_lf_in_header_values_and_obs_fold_are_400() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let cases = [
        (
            "bare CR",
            format!("GET /echo/x HTTP/1.1\r\nHost: {h}\r\nX-A: a\rHost: evil.example\r\n\r\n"),
        ),
        (
            "obs-fold",
            format!("GET /echo/x HTTP/1.1\r\nHost: {h}\r\nX-A: a\r\n Host: evil.example\r\n\r\n"),
        ),
        (
            "NUL",
            format!("GET /echo/x HTTP/1.1\r\nHost: {h}\r\nX-A: a\0b\r\n\r\n"),
        ),
    ];
    for (what, req) in cases {
        let r = in_tunnel(&f, &req).await;
        assert_eq!(
            r.status,
            400,
            "{what}: must be 400, got {} {:?}",
            r.status,
            r.body_text()
        );
    }
    f.origin.assert_untouched("header injection");
    let r = in_tunnel(
        &f,
        &format!(
            "GET /echo/lf HTTP/1.1\r\nHost: {h}\r\nX-A: a\nAuthorization: Bearer forged\r\n\r\n"
        ),
    )
    .await;
    if r.status != 400 {
        let seen = f.origin.seen();
        assert_eq!(seen.len(), 1, "bare LF: {r:?}");
        f.assert_credential_injected(&seen[0]);
        assert!(
            seen[0]
                .headers
                .iter()
                .all(|(_, v)| !v.as_bytes().contains(&b'\n') && !v.as_bytes().contains(&b'\r')),
            "bare LF: no CR/LF may reach the origin inside a header value"
        );
    }
}

/// `Upgrade: h2c` (and any non-websocket upgrade) on an HTTP/1.1 GET: 400.
/// Peer: dotnet/yarp#877 (h2c smuggling through a proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_h2c_and_unknown_upgrades_are_400() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    for up in ["h2c", "foo", "websocket, h2c"] {
        let r = in_tunnel(
            &f,
            &format!(
                "GET /echo/x HTTP/1.1\r\nHost: {h}\r\nUpgrade: {up}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n"
            ),
        )
        .await;
        r.assert_refused(400, "bad-request", &format!("Upgrade: {up}"));
    }
    f.origin.assert_untouched("h2c upgrade");
}

/// A WebSocket upgrade to a denied path is refused before the origin sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_to_denied_path_is_403() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let r = in_tunnel(
        &f,
        &format!(
            "GET /ws-denied HTTP/1.1\r\nHost: {h}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
    )
    .await;
    r.assert_refused(403, "path-not-allowed", "WebSocket to denied path");
    f.origin.assert_untouched("denied WebSocket");
}

/// A WebSocket upgrade the origin answers with 200 (no switch): the connection
/// must stay HTTP, so bytes sent next are a new request judged by the policy, not
/// a blind tunnel to the origin. Peers: kemalcr/kemal#767,
/// http-party/node-http-proxy#624 (upgrade answered without 101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_answered_without_101_does_not_open_a_tunnel() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let mut c = raw::tls_conn(f.proxy.addr, &f.proxy.ca, &h).await;
    c.send(
        format!(
            "GET /no-101 HTTP/1.1\r\nHost: {h}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("send");
    let r = c.read_response(false).await.expect("response");
    assert_eq!(r.status, 200, "the origin's non-101 answer is relayed");
    // Now a request to a denied path on the same connection.
    let _ = c
        .send(format!("GET /echo/secret/after-upgrade HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes())
        .await;
    // A closed connection is also no tunnel.
    if let Ok(r) = c.read_response(false).await {
        r.assert_refused(403, "path-not-allowed", "request after a failed upgrade");
    }
    raw::settle().await;
    f.origin
        .assert_no_path("after-upgrade", "no blind tunnel after a non-101 answer");
}

// ------------------------------------------------------------- git push (§3.3)

/// git push over h2, with an encoded `receive-pack`, via the query, via the
/// Content-Type, and on an unrouted host (git-push comes before routes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_push_variants_are_403_git_push() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let mut send = raw::h2_client(f.proxy.addr, &f.proxy.ca, &h).await;
    for path in [
        "/git/w.git/git-receive-pack",
        "/git/w.git/git%2Dreceive%2Dpack",
        "/git/w.git/%67it-receive-pack",
        "/git/w.git/info/refs?service=git-receive-pack",
        "/git/w.git/info/refs?service=GIT-RECEIVE-PACK",
        "/git/w.git/info/refs?service=git%2dreceive%2dpack",
        "/git/w.git/info/refs?foo=1&service=git-receive-pack",
        "/git/w.git/git-receive-pack/",
    ] {
        let req = request("POST", &f.tls_url(path))
            .body(empty())
            .expect("req");
        collect(send.send_request(req).await.expect("resp"))
            .await
            .assert_refused(403, "git-push", &format!("h2 {path}"));
    }
    let req = request("POST", &f.tls_url("/echo/anything"))
        .header("content-type", "application/x-git-receive-pack-request")
        .body(empty())
        .expect("req");
    collect(send.send_request(req).await.expect("resp"))
        .await
        .assert_refused(403, "git-push", "receive-pack Content-Type");
    let r = raw::tls_exchange(
        f.proxy.addr,
        &f.proxy.ca,
        "unrouted.example:443",
        b"POST /x.git/git-receive-pack HTTP/1.1\r\nHost: unrouted.example\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    r.assert_refused(
        403,
        "git-push",
        "unrouted host: git-push decided before routes",
    );
    f.origin.assert_untouched("git push variants");
}

// ----------------------------------------------------------- credentials (§3.7)

/// The client's own Authorization, Proxy-Authorization, Cookie and X-Api-Key are
/// removed on a credential route; only the injected header reaches the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_are_stripped_on_a_credential_route() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let r = in_tunnel(
        &f,
        &format!(
            "GET /echo/creds HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer agent-forged\r\n\
             Authorization: Basic YWdlbnQ6Zm9yZ2Vk\r\nProxy-Authorization: Basic eDp5\r\n\
             Cookie: session=agent\r\nX-Api-Key: agent-key\r\n\r\n"
        ),
    )
    .await;
    r.assert_allowed("credential route");
    f.assert_no_token(&r.body, "response body");
    let seen = f.origin.seen();
    assert_eq!(seen.len(), 1);
    f.assert_credential_injected(&seen[0]);
    for name in ["cookie", "x-api-key", "proxy-authorization"] {
        assert!(
            seen[0].header(name).is_none(),
            "{name} from the client must be removed"
        );
    }
    // Over h2 as well.
    let mut send = raw::h2_client(f.proxy.addr, &f.proxy.ca, &h).await;
    let req = request("GET", &f.tls_url("/echo/creds2"))
        .header("authorization", "Bearer agent-forged")
        .header("cookie", "session=agent")
        .header("x-api-key", "agent-key")
        .body(empty())
        .expect("req");
    let r = collect(send.send_request(req).await.expect("resp")).await;
    assert_eq!(r.status, 200);
    let seen = f.origin.seen();
    f.assert_credential_injected(&seen[1]);
    assert!(seen[1].header("cookie").is_none() && seen[1].header("x-api-key").is_none());
    f.proxy.assert_no_secret_in_logs();
}

/// A refused request never carries the credential anywhere: not to the origin,
/// not in the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_does_not_leak_the_credential() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let r = in_tunnel(
        &f,
        &format!("GET /echo/secret/x HTTP/1.1\r\nHost: {h}\r\n\r\n"),
    )
    .await;
    r.assert_refused(403, "path-not-allowed", "denied path");
    let all = format!("{:?}{}", r.headers, r.body_text());
    f.assert_no_token(all.as_bytes(), "refusal");
    f.origin.assert_untouched("refusal");
}

/// Cleartext HTTP inside a CONNECT to a credential route: 403
/// cleartext-credentials; to a plain route it is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_inside_connect_never_carries_credentials() {
    let f = Fixture::start().await;
    let target = format!("localhost:{}", f.origin.http.port());
    let (mut c, r) = raw::connect(f.proxy.addr, &target).await;
    assert_eq!(r.status, 200);
    c.send(format!("GET /echo/clear HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let r = c.read_response(false).await.expect("response");
    r.assert_refused(403, "cleartext-credentials", "cleartext in CONNECT");
    f.origin.assert_untouched("cleartext credential route");

    let target = format!("127.0.0.1:{}", f.origin.http.port());
    let (mut c, r) = raw::connect(f.proxy.addr, &target).await;
    assert_eq!(r.status, 200);
    c.send(format!("GET /echo/clear HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let r = c.read_response(false).await.expect("response");
    r.assert_allowed("cleartext in CONNECT to a plain route");
    assert!(f.origin.seen()[0].header("authorization").is_none());
}

// ------------------------------------------------------- tunnel content (§3, §5)

/// A tunnel whose first bytes are neither TLS nor HTTP/1.x is closed: no blind
/// tunnels. Peer: apify/proxy-chain#284 (data on CONNECT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_with_neither_tls_nor_http_is_closed() {
    let f = Fixture::start().await;
    for junk in [
        &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
        &b"\x00\x01\x02\x03\x04\x05garbage\r\n\r\n"[..],
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
    ] {
        let (mut c, r) = raw::connect(f.proxy.addr, &f.tls_host()).await;
        assert_eq!(r.status, 200);
        c.send(junk).await.expect("send");
        assert!(
            c.is_closed().await,
            "a tunnel starting with {:?} must be closed",
            String::from_utf8_lossy(junk)
        );
    }
    raw::settle().await;
    f.origin.assert_untouched("non-TLS non-HTTP tunnel");
}

/// Data sent right behind the CONNECT head (before reading the 200) is the
/// tunnel's first bytes and goes through the same MITM path, never blindly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_pipelined_behind_connect_head_is_still_judged() {
    let f = Fixture::start().await;
    let target = format!("127.0.0.1:{}", f.origin.http.port());
    let mut c = raw::Conn::new(raw::dial(f.proxy.addr).await);
    c.send(
        format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nGET /echo/x HTTP/1.1\r\nHost: evil.example\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("send");
    let r = c.read_connect_answer().await.expect("CONNECT answer");
    assert_eq!(r.status, 200);
    if let Ok(r) = c.read_response(false).await {
        r.assert_refused(421, "authority-mismatch", "pipelined after CONNECT");
    }
    raw::settle().await;
    f.origin.assert_untouched("pipelined behind CONNECT");
}

/// A CONNECT is judged the same however it arrives: as a connection's first
/// request (answered by the proxy port itself), in HTTP/1.0 (Python's
/// http.client), or through hyper (with a body header, or after another
/// request on the connection). Each tunnel serves the allowed path with the
/// credential and refuses the denied one; the origin sees only the allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_is_judged_the_same_however_it_arrives() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let ways = [
        (
            "first request",
            format!("CONNECT {h} HTTP/1.1\r\nHost: {h}\r\n\r\n"),
            false,
        ),
        ("HTTP/1.0", format!("CONNECT {h} HTTP/1.0\r\n\r\n"), false),
        (
            "with Content-Length: 0",
            format!("CONNECT {h} HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\n\r\n"),
            false,
        ),
        (
            "after another request",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nCONNECT {h} HTTP/1.1\r\nHost: {h}\r\n\r\n"
            ),
            true,
        ),
    ];
    for (way, heads, after_healthz) in ways {
        let mut c = raw::Conn::new(raw::dial(f.proxy.addr).await);
        c.send(heads.as_bytes()).await.expect("send");
        if after_healthz {
            let r = c.read_response(false).await.expect("healthz answer");
            assert_eq!(r.status, 200, "{way}: healthz");
        }
        let r = c.read_connect_answer().await.expect("CONNECT answer");
        assert_eq!(r.status, 200, "{way}: {r:?}");
        assert!(c.pending().is_empty(), "{way}: nothing follows the 200");
        let tls = raw::tls(c.io, "localhost", &f.proxy.ca, &[b"http/1.1"]).await;
        let mut c = raw::Conn::new(tls);
        c.send(format!("GET /echo/{} HTTP/1.1\r\nHost: {h}\r\n\r\n", way.len()).as_bytes())
            .await
            .expect("send");
        c.read_response(false)
            .await
            .expect("allowed answer")
            .assert_allowed(way);
        c.send(format!("GET /echo/secret/x HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes())
            .await
            .expect("send");
        if let Ok(r) = c.read_response(false).await {
            r.assert_refused(403, "path-not-allowed", way);
        }
    }
    let seen = f.origin.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/echo/13", "/echo/8", "/echo/22", "/echo/21"]);
    for s in &seen {
        f.assert_credential_injected(s);
    }
}

/// A CONNECT head that arrives a few bytes at a time is answered once, when
/// it is whole, and nothing is answered before; the tunnel then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_head_trickled_in_pieces_is_answered_once_whole() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let head = format!("CONNECT {h} HTTP/1.1\r\nHost: {h}\r\nUser-Agent: slow\r\n\r\n");
    let mut c = raw::Conn::new(raw::dial(f.proxy.addr).await);
    let pieces: Vec<&[u8]> = head.as_bytes().chunks(3).collect();
    for (i, piece) in pieces.iter().enumerate() {
        c.send(piece).await.expect("send");
        if i + 1 == pieces.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let mut b = [0u8; 1];
        let early = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            tokio::io::AsyncReadExt::read(&mut c.io, &mut b),
        )
        .await;
        assert!(
            early.is_err(),
            "nothing is answered before the head is whole"
        );
    }
    let r = c.read_connect_answer().await.expect("CONNECT answer");
    assert_eq!(r.status, 200, "{r:?}");
    let tls = raw::tls(c.io, "localhost", &f.proxy.ca, &[b"http/1.1"]).await;
    let mut c = raw::Conn::new(tls);
    c.send(format!("GET /echo/trickled HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    c.read_response(false)
        .await
        .expect("answer")
        .assert_allowed("after a trickled CONNECT");
    assert_eq!(f.origin.seen().len(), 1);
}

/// CONNECT line over 8 KiB: 400. Request head over 64 KiB: 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_connect_line_and_request_head_are_refused() {
    let f = Fixture::start().await;
    let long = format!("{}.example:443", "a".repeat(9000));
    let (_, r) = raw::connect(f.proxy.addr, &long).await;
    assert_eq!(r.status, 400, "CONNECT line > 8 KiB: {r:?}");
    // Far past the 64 KiB head limit too: still the CONNECT line's 400, not
    // 431. The proxy answers and closes while the client is still sending, so
    // the kernel may reset the connection before the answer is read: then
    // nothing may have been served either.
    let huge = format!("{}.example:443", "a".repeat(1024 * 1024));
    let mut c = raw::Conn::new(raw::dial(f.proxy.addr).await);
    let _ = c
        .send(format!("CONNECT {huge} HTTP/1.1\r\nHost: {huge}\r\n\r\n").as_bytes())
        .await;
    if let Ok(r) = c.read_connect_answer().await {
        assert_eq!(r.status, 400, "CONNECT line of 1 MiB: {r:?}");
    }

    let h = f.tls_host();
    let mut c = raw::tls_conn(f.proxy.addr, &f.proxy.ca, &h).await;
    let big = "x".repeat(70 * 1024);
    let _ = c
        .send(format!("GET /echo/x HTTP/1.1\r\nHost: {h}\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await;
    let r = c.read_response(false).await.expect("response");
    assert_eq!(r.status, 431, "request head > 64 KiB in a tunnel");
    let r = raw::plain_exchange(
        f.proxy.addr,
        format!(
            "GET http://127.0.0.1:{}/echo/x HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Big: {big}\r\n\r\n",
            f.origin.http.port(),
            f.origin.http.port()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 431, "plain request head > 64 KiB");
    f.origin.assert_untouched("oversized heads");
}

/// A refused request is decided before `100 Continue`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_comes_before_100_continue() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let mut c = raw::tls_conn(f.proxy.addr, &f.proxy.ca, &h).await;
    c.send(
        format!(
            "POST /echo/secret/upload HTTP/1.1\r\nHost: {h}\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("send");
    let r = c.read_response(false).await.expect("response");
    r.assert_refused(403, "path-not-allowed", "refused with Expect: 100-continue");
    f.origin.assert_untouched("100-continue");
}

/// A route with `auth_header: x-api-key` (no scheme) and `strip_headers`: the
/// client's own key in any case spelling, its `Authorization` and the stripped
/// header never reach the origin; the injected key appears exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_auth_header_and_strip_headers_replace_client_values() {
    let f = Fixture::with_routes(
        "unmatched: deny\nroutes:\n  - host: localhost\n    auth_header: x-api-key\n    \
         token_env: EGRESS_PROXY_TOKEN_0\n    strip_headers: [x-agent-trace]\n",
    )
    .await;
    let h = f.tls_host();
    let r = in_tunnel(
        &f,
        &format!(
            "GET /any HTTP/1.1\r\nHost: {h}\r\nX-API-KEY: forged-1\r\nx-api-key: forged-2\r\n\
             Authorization: Bearer forged-3\r\nX-Agent-Trace: t\r\nCookie: c=1\r\n\r\n"
        ),
    )
    .await;
    r.assert_allowed("custom auth header route");
    let seen = f.origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header_count("x-api-key"),
        1,
        "exactly one x-api-key"
    );
    assert!(
        seen[0].header("x-api-key") == Some(f.token.as_bytes()),
        "the injected key (value withheld) replaces the client's"
    );
    for name in ["authorization", "x-agent-trace", "cookie"] {
        assert!(seen[0].header(name).is_none(), "{name} must be removed");
    }
}

/// H2.CL desync: an h2 request whose DATA exceeds its `content-length`, the
/// excess being an HTTP/1 request to a denied path, sent through a proxy that
/// must downgrade to an HTTP/1-only origin. The stream must be rejected and the
/// smuggled request never reach the origin, not even on a reused pooled
/// connection. (Request smuggling in HTTP/2 downgrades; h2 sends the frames raw.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_content_length_mismatch_is_not_smuggled_to_an_h1_origin() {
    let origin = support::origin::Origin::start_h1_only().await;
    let f = Fixture::with_origin(support::proxy::DEFAULT_ROUTES, origin);
    let h = f.tls_host();
    let smuggled = format!("GET /echo/secret/h2cl HTTP/1.1\r\nHost: {h}\r\n\r\n");
    for declared in ["0", "5"] {
        let tcp = raw::tunnel(f.proxy.addr, &h).await;
        let tls = raw::tls(tcp, "localhost", &f.proxy.ca, &[b"h2"]).await;
        let (client, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.expect("h2 ready");
        let req = hyper::Request::builder()
            .method("POST")
            .uri(f.tls_url("/echo/h2cl"))
            .header("content-length", declared)
            .body(())
            .expect("req");
        let (resp, mut stream) = client.send_request(req, false).expect("send head");
        let _ = stream.send_data(bytes::Bytes::from(format!("hello{smuggled}")), true);
        if let Ok(Ok(r)) = tokio::time::timeout(support::STEP, resp).await {
            assert_ne!(
                r.status(),
                200,
                "content-length {declared} with a longer body must not be accepted"
            );
        }
    }
    // Anything left on a pooled upstream connection would surface with the next
    // request over it.
    let r = in_tunnel(
        &f,
        &format!("GET /echo/after HTTP/1.1\r\nHost: {h}\r\n\r\n"),
    )
    .await;
    r.assert_allowed("normal request after the attempts");
    raw::settle().await;
    f.origin.assert_no_path("/echo/secret/h2cl", "H2.CL desync");
}

/// Hop-by-hop headers (and headers the client nominates in `Connection`) are not
/// forwarded; nominating the credential header in `Connection` does not remove
/// the injected one nor let the client's through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded() {
    let f = Fixture::start().await;
    let h = f.tls_host();
    let r = in_tunnel(
        &f,
        &format!(
            "GET /echo/hop HTTP/1.1\r\nHost: {h}\r\nConnection: keep-alive, X-Foo, Authorization\r\n\
             X-Foo: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\n\
             Upgrade-Insecure-Requests: 1\r\nAuthorization: Bearer forged\r\n\r\n"
        ),
    )
    .await;
    r.assert_allowed("hop-by-hop request");
    let seen = f.origin.seen();
    assert_eq!(seen.len(), 1);
    for name in ["x-foo", "keep-alive", "proxy-connection", "te"] {
        assert!(
            seen[0].header(name).is_none(),
            "{name} must not be forwarded"
        );
    }
    f.assert_credential_injected(&seen[0]);
}

/// Route `methods`: others get 403 `method-not-allowed` (method names are case
/// sensitive); DELETE may carry a body (SPEC §7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_methods_and_delete_with_body() {
    let f = Fixture::with_routes(
        "unmatched: deny\nroutes:\n  - host: localhost\n    methods: [GET, DELETE]\n    \
         auth_scheme: Bearer\n    token_env: EGRESS_PROXY_TOKEN_0\n",
    )
    .await;
    let h = f.tls_host();
    for method in ["POST", "PUT", "get", "PATCH"] {
        let r = in_tunnel(
            &f,
            &format!("{method} /echo/m HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\n\r\n"),
        )
        .await;
        r.assert_refused(403, "method-not-allowed", method);
    }
    f.origin.assert_untouched("methods not on the route");
    let r = in_tunnel(
        &f,
        &format!("DELETE /echo/d HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\n\r\nhello"),
    )
    .await;
    r.assert_allowed("DELETE with a body");
    assert_eq!(
        f.origin.seen()[0].body_len,
        5,
        "the DELETE body reaches the origin"
    );
}
