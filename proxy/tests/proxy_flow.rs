//! End-to-end flows through the in-process proxy with a real TLS origin and a
//! rustls/hyper client: credential injection, refusals that never reach the
//! origin, h1 and h2, streaming, header hygiene, pooling, upstream failures.

mod support;

use std::sync::Arc;

use http::Request;
use support::T;
use support::clients::{CBody, body, collect, connect, h1, h2, https_get, tls, tls_any_sni};
use support::origin::Origin;
use support::pki::TestCa;
use support::proxy::{ProxySetup, SECRET, TestProxy, routes_with_credential};

fn get(uri: &str) -> Request<CBody> {
    Request::get(uri).body(body("")).unwrap()
}

/// The next data frame of a response the origin holds open (`/sse`'s first
/// event), within `T`.
async fn next_data(body: &mut hyper::body::Incoming) -> bytes::Bytes {
    use http_body_util::BodyExt;
    tokio::time::timeout(T, body.frame())
        .await
        .expect("first event arrives while the origin holds the stream open")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap()
}

/// The rest of a response body, within `T`.
async fn rest_of(body: hyper::body::Incoming) -> bytes::Bytes {
    use http_body_util::BodyExt;
    tokio::time::timeout(T, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes()
}

async fn setup() -> (Arc<TestCa>, Origin, TestProxy) {
    let pki = Arc::new(TestCa::new("test origin CA"));
    let origin = Origin::hello(&pki, &["h2", "http/1.1"]).await;
    let mut s = ProxySetup::new(&routes_with_credential(""));
    s.env.push(("TEST_TOKEN".into(), SECRET.into()));
    s.upstream_ca = Some(pki.cert_pem.clone());
    let proxy = s.start().await;
    (pki, origin, proxy)
}

#[tokio::test]
async fn allowed_request_gets_the_credential_and_the_client_never_sees_it() {
    let (_pki, origin, proxy) = setup().await;
    for alpn in ["http/1.1", "h2"] {
        let req = Request::get(format!(
            "https://localhost:{}/allowed/x?q=1",
            origin.https.port()
        ))
        .header("authorization", "Bearer agent-own-token")
        .header("cookie", "session=agent")
        .header("x-api-key", "agent-key")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .body(body(""))
        .unwrap();
        let got = https_get(&proxy, "localhost", origin.https.port(), alpn, req).await;
        assert_eq!(got.status, 200, "{alpn}: {got:?}");
        assert_eq!(
            got.decision(),
            None,
            "allowed responses carry no decision header"
        );
        assert!(got.headers.get("alt-svc").is_none(), "Alt-Svc removed");
        assert_eq!(got.headers.get("x-origin").unwrap(), "yes");
        assert!(!got.text().contains(SECRET) && !format!("{:?}", got.headers).contains(SECRET));
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.path, "/allowed/x?q=1");
        let auth: Vec<_> = s.headers.get_all("authorization").iter().collect();
        assert_eq!(auth.len(), 1, "exactly one Authorization: {:?}", s.headers);
        assert_eq!(auth[0], format!("Bearer {SECRET}").as_str());
        assert!(s.headers.get("cookie").is_none());
        assert!(s.headers.get("x-api-key").is_none());
        assert!(s.headers.get("proxy-authorization").is_none());
    }
}

#[tokio::test]
async fn refusals_answer_with_reason_and_the_origin_sees_nothing() {
    let (_pki, origin, proxy) = setup().await;
    let port = origin.https.port();
    let cases: Vec<(&str, Request<CBody>, u16, &str)> = vec![
        (
            "path not in allow list",
            get(&format!("https://localhost:{port}/other")),
            403,
            "path-not-allowed",
        ),
        (
            "deny list",
            get(&format!("https://localhost:{port}/allowed/secret/x")),
            403,
            "path-not-allowed",
        ),
        (
            "git push",
            get(&format!(
                "https://localhost:{port}/a/b.git/info/refs?service=git-receive-pack"
            )),
            403,
            "git-push",
        ),
        (
            "dot segment",
            get(&format!("https://localhost:{port}/allowed/%2e%2e/other")),
            400,
            "bad-path",
        ),
        (
            "Host names another host",
            Request::get("/allowed")
                .header("host", "evil.example")
                .body(body(""))
                .unwrap(),
            421,
            "authority-mismatch",
        ),
        (
            "TRACE",
            Request::builder()
                .method("TRACE")
                .uri(format!("https://localhost:{port}/allowed"))
                .body(body(""))
                .unwrap(),
            405,
            "method-not-allowed",
        ),
    ];
    for (what, req, status, reason) in cases {
        let got = https_get(&proxy, "localhost", port, "http/1.1", req).await;
        assert_eq!(got.status, status, "{what}: {got:?}");
        assert_eq!(got.decision(), Some(reason), "{what}");
        assert!(
            got.headers
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert!(!got.text().contains(SECRET));
    }
    assert!(origin.seen().is_empty(), "origin saw {:?}", origin.seen());
    assert_eq!(origin.connections(), 0);
}

#[tokio::test]
async fn unrouted_host_is_intercepted_then_refused_without_any_lookup() {
    let (_pki, origin, proxy) = setup().await;
    // A name that must never be resolved: the refusal happens first.
    for alpn in ["http/1.1", "h2"] {
        let got = https_get(
            &proxy,
            "unrouted.invalid",
            443,
            alpn,
            get("https://unrouted.invalid/"),
        )
        .await;
        assert_eq!(got.status, 403, "{got:?}");
        assert_eq!(got.decision(), Some("host-not-allowed"));
    }
    assert_eq!(
        proxy
            .running
            .shared
            .upstream
            .connects
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert!(origin.seen().is_empty());
}

#[tokio::test]
async fn sni_other_than_the_connect_host_is_421() {
    let (_pki, origin, proxy) = setup().await;
    for alpn in ["http/1.1", "h2"] {
        let (s, status) = connect(proxy.addr, &format!("localhost:{}", origin.https.port())).await;
        assert!(status.starts_with("HTTP/1.1 200"));
        let t = tls_any_sni(s, "evil.example", &[alpn]).await;
        let req = get(&format!(
            "https://localhost:{}/allowed",
            origin.https.port()
        ));
        let resp = if alpn == "h2" {
            h2(t).await.send_request(req).await.unwrap()
        } else {
            h1(t).await.send_request(req).await.unwrap()
        };
        let got = collect(resp).await;
        assert_eq!(got.status, 421, "{alpn}: {got:?}");
        assert_eq!(got.decision(), Some("authority-mismatch"));
    }
    assert!(origin.seen().is_empty());
}

#[tokio::test]
async fn sse_events_flow_before_the_response_ends() {
    let (_pki, origin, proxy) = setup().await;
    for alpn in ["http/1.1", "h2"] {
        let (s, _) = connect(proxy.addr, &format!("localhost:{}", origin.https.port())).await;
        let t = tls(s, &proxy.ca_pem, "localhost", &[alpn]).await.unwrap();
        let req = get(&format!("https://localhost:{}/sse", origin.https.port()));
        let resp = if alpn == "h2" {
            let mut c = h2(t).await;
            tokio::time::timeout(T, c.send_request(req))
                .await
                .unwrap()
                .unwrap()
        } else {
            let mut c = h1(t).await;
            tokio::time::timeout(T, c.send_request(req))
                .await
                .unwrap()
                .unwrap()
        };
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        assert_eq!(next_data(&mut body).await.as_ref(), b"data: one\n\n");
        origin.release_one();
        assert_eq!(rest_of(body).await.as_ref(), b"data: two\n\n");
    }
}

#[tokio::test]
async fn upstream_connections_are_pooled_across_clients() {
    let (_pki, origin, proxy) = setup().await;
    // HTTP/1.1 origin: reuse only after both directions were read.
    let pki = Arc::new(TestCa::new("test origin CA"));
    drop(pki);
    for i in 0..4 {
        let alpn = if i % 2 == 0 { "http/1.1" } else { "h2" };
        let got = https_get(
            &proxy,
            "localhost",
            origin.https.port(),
            alpn,
            get(&format!(
                "https://localhost:{}/allowed",
                origin.https.port()
            )),
        )
        .await;
        assert_eq!(got.status, 200);
    }
    let seen = origin.seen();
    let versions: Vec<_> = seen.iter().map(|s| s.version).collect();
    use http::Version;
    assert_eq!(
        versions,
        [
            Version::HTTP_11,
            Version::HTTP_2,
            Version::HTTP_11,
            Version::HTTP_2
        ],
        "each client's protocol upstream while nothing else is in flight"
    );
    assert_eq!((seen[0].conn, seen[1].conn), (seen[2].conn, seen[3].conn));
    assert_eq!(
        origin.connections(),
        2,
        "four requests from four client connections share two upstream connections"
    );
}

/// A bodiless request from an HTTP/1 client shares the origin's h2
/// connection while that carries another request (many small requests in
/// flight share its writes), and goes on HTTP/1.1 once it carries none.
#[tokio::test]
async fn an_http1_clients_get_shares_h2_only_while_h2_carries_a_request() {
    use http::Version;
    let (_pki, origin, proxy) = setup().await;
    let port = origin.https.port();
    let url = |path: &str| format!("https://localhost:{port}{path}");
    // An h2 client's response held open by the origin.
    let (s, _) = connect(proxy.addr, &format!("localhost:{port}")).await;
    let t = tls(s, &proxy.ca_pem, "localhost", &["h2"]).await.unwrap();
    let mut c = h2(t).await;
    let resp = tokio::time::timeout(T, c.send_request(get(&url("/sse"))))
        .await
        .unwrap()
        .unwrap();
    let mut held = resp.into_body();
    assert_eq!(next_data(&mut held).await.as_ref(), b"data: one\n\n");

    let got = https_get(&proxy, "localhost", port, "http/1.1", get(&url("/allowed"))).await;
    assert_eq!(got.status, 200, "{got:?}");
    let seen = origin.seen();
    assert_eq!(
        seen[1].version,
        Version::HTTP_2,
        "shares the busy h2 connection"
    );
    assert_eq!(seen[1].conn, seen[0].conn);
    assert_eq!(origin.connections(), 1);

    origin.release_one();
    assert_eq!(rest_of(held).await.as_ref(), b"data: two\n\n");
    // The proxy counts the h2 request done when it drops the response body,
    // which may come a moment after the client read its end.
    let mut tries = 0;
    loop {
        let got = https_get(&proxy, "localhost", port, "http/1.1", get(&url("/allowed"))).await;
        assert_eq!(got.status, 200, "{got:?}");
        let last = origin.seen().pop().unwrap();
        if last.version == Version::HTTP_11 {
            assert_ne!(last.conn, seen[0].conn);
            break;
        }
        tries += 1;
        assert!(tries < 20, "still on h2 after the held request ended");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(origin.connections(), 2);
    assert!(
        origin
            .seen()
            .iter()
            .all(|s| s.header("authorization") == Some(format!("Bearer {SECRET}").as_bytes()))
    );
}

/// An HTTP/1 client's upload goes to an origin that offers h2 over HTTP/1.1,
/// on a connection of its own that the next request reuses; with
/// `UPSTREAM_H1_SPREAD` uploads in flight, the next one shares h2. Each
/// arrives with its body and the credential.
#[tokio::test]
async fn an_http1_upload_gets_an_http1_connection_of_its_own_up_to_the_spread() {
    use egress_proxy::limits::UPSTREAM_H1_SPREAD;
    use http::Version;
    let (_pki, origin, proxy) = setup().await;
    let port = origin.https.port();
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let post = |path: &str| Request::post(url(path)).body(body("12345")).unwrap();
    for req in [post("/allowed"), get(&url("/allowed")), post("/allowed")] {
        let got = https_get(&proxy, "localhost", port, "http/1.1", req).await;
        assert_eq!(got.status, 200, "{got:?}");
    }
    let seen = origin.seen();
    let versions: Vec<_> = seen.iter().map(|s| s.version).collect();
    assert_eq!(versions, [Version::HTTP_11; 3]);
    assert!(
        seen.iter().all(|s| s.conn == seen[0].conn),
        "the GET and the second upload reuse the first upload's connection"
    );
    assert_eq!(origin.connections(), 1);
    for s in &seen {
        assert_eq!(
            s.header("authorization"),
            Some(format!("Bearer {SECRET}").as_bytes())
        );
    }
    assert_eq!(
        (seen[0].body_len, seen[1].body_len, seen[2].body_len),
        (5, 0, 5)
    );

    // Uploads held open by the origin (`/sse` waits before its last event).
    let mut held = Vec::new();
    for _ in 0..=UPSTREAM_H1_SPREAD {
        let (s, _) = connect(proxy.addr, &format!("localhost:{port}")).await;
        let t = tls(s, &proxy.ca_pem, "localhost", &["http/1.1"])
            .await
            .unwrap();
        let mut c = h1(t).await;
        let resp = tokio::time::timeout(T, c.send_request(post("/sse")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut b = resp.into_body();
        assert_eq!(next_data(&mut b).await.as_ref(), b"data: one\n\n");
        held.push((c, b));
    }
    let seen = origin.seen();
    let versions: Vec<_> = seen[3..].iter().map(|s| s.version).collect();
    let mut expected = vec![Version::HTTP_11; UPSTREAM_H1_SPREAD];
    expected.push(Version::HTTP_2);
    assert_eq!(versions, expected, "past the spread, an upload shares h2");
    assert!(seen[3..].iter().all(|s| s.body_len == 5));
    // The first held upload reused the idle HTTP/1.1 connection: the spread
    // opened SPREAD - 1 more, and the last opened the h2 connection.
    assert_eq!(origin.connections(), UPSTREAM_H1_SPREAD + 1);
    for _ in 0..held.len() {
        origin.release_one();
    }
    for (_c, b) in held {
        assert_eq!(rest_of(b).await.as_ref(), b"data: two\n\n");
    }
}

#[tokio::test]
async fn h1_only_origin_is_pooled_after_full_reads() {
    let pki = Arc::new(TestCa::new("test origin CA"));
    let origin = Origin::hello(&pki, &["http/1.1"]).await;
    let mut s = ProxySetup::new(&routes_with_credential(""));
    s.env.push(("TEST_TOKEN".into(), SECRET.into()));
    s.upstream_ca = Some(pki.cert_pem.clone());
    let proxy = s.start().await;
    for _ in 0..3 {
        let got = https_get(
            &proxy,
            "localhost",
            origin.https.port(),
            "h2",
            get(&format!(
                "https://localhost:{}/allowed",
                origin.https.port()
            )),
        )
        .await;
        assert_eq!(got.status, 200);
        assert_eq!(
            origin.seen().last().unwrap().version,
            http::Version::HTTP_11
        );
    }
    assert_eq!(origin.connections(), 1);
    // An HTTP/1 client's upload takes the idle connection too: the origin
    // offered no h2, so there is nothing to keep it off.
    let url = format!("https://localhost:{}/allowed", origin.https.port());
    let post = Request::post(url).body(body("12345")).unwrap();
    let got = https_get(&proxy, "localhost", origin.https.port(), "http/1.1", post).await;
    assert_eq!(got.status, 200);
    assert_eq!(origin.seen().last().unwrap().body_len, 5);
    assert_eq!(origin.connections(), 1);
}

#[tokio::test]
async fn direct_mode_refuses_private_addresses_without_allow_range() {
    let pki = Arc::new(TestCa::new("test origin CA"));
    let origin = Origin::hello(&pki, &["h2", "http/1.1"]).await;
    let mut s = ProxySetup::new(&routes_with_credential(""));
    s.env.push(("TEST_TOKEN".into(), SECRET.into()));
    s.upstream_ca = Some(pki.cert_pem.clone());
    s.allow.clear();
    let proxy = s.start().await;
    let got = https_get(
        &proxy,
        "localhost",
        origin.https.port(),
        "http/1.1",
        get(&format!(
            "https://localhost:{}/allowed",
            origin.https.port()
        )),
    )
    .await;
    assert_eq!(got.status, 403, "{got:?}");
    assert_eq!(got.decision(), Some("destination-not-allowed"));
    assert!(origin.seen().is_empty());
    assert_eq!(origin.connections(), 0);
}

#[tokio::test]
async fn route_naming_the_ip_opens_it_but_never_the_proxy_itself() {
    let pki = Arc::new(TestCa::new("test origin CA"));
    let origin = Origin::hello(&pki, &["http/1.1"]).await;
    let mut s = ProxySetup::new("routes:\n  - host: 127.0.0.1\n");
    s.upstream_ca = Some(pki.cert_pem.clone());
    s.allow.clear();
    let proxy = s.start().await;
    let got = https_get(
        &proxy,
        "127.0.0.1",
        origin.https.port(),
        "http/1.1",
        get(&format!("https://127.0.0.1:{}/x", origin.https.port())),
    )
    .await;
    assert_eq!(got.status, 200, "{got:?}");
    // The proxy's own port is refused even though the route names the IP.
    let own = proxy.addr.port();
    let (st, _) = connect(proxy.addr, &format!("127.0.0.1:{own}")).await;
    let t = tls(st, &proxy.ca_pem, "127.0.0.1", &["http/1.1"])
        .await
        .unwrap();
    let mut c = h1(t).await;
    let resp = c
        .send_request(get(&format!("https://127.0.0.1:{own}/healthz")))
        .await
        .unwrap();
    let got = collect(resp).await;
    assert_eq!(got.status, 403, "{got:?}");
    assert_eq!(got.decision(), Some("destination-not-allowed"));
}

#[tokio::test]
async fn unreachable_origin_is_502_and_slow_origin_is_504() {
    let pki = Arc::new(TestCa::new("test origin CA"));
    let origin = Origin::hello(&pki, &["http/1.1"]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut s = ProxySetup::new(&routes_with_credential(""));
    s.env.push(("TEST_TOKEN".into(), SECRET.into()));
    s.upstream_ca = Some(pki.cert_pem.clone());
    s.upstream_timeout = Some(std::time::Duration::from_secs(1));
    let proxy = s.start().await;
    let got = https_get(
        &proxy,
        "localhost",
        dead_port,
        "http/1.1",
        get(&format!("https://localhost:{dead_port}/allowed")),
    )
    .await;
    assert_eq!(got.status, 502, "{got:?}");
    assert_eq!(got.decision(), Some("upstream-unreachable"));
    let got = https_get(
        &proxy,
        "localhost",
        origin.https.port(),
        "h2",
        get(&format!("https://localhost:{}/slow", origin.https.port())),
    )
    .await;
    assert_eq!(got.status, 504, "{got:?}");
    assert_eq!(got.decision(), Some("upstream-timeout"));
}

#[tokio::test]
async fn untrusted_origin_certificate_is_502() {
    let pki = Arc::new(TestCa::new("test origin CA"));
    let origin = Origin::hello(&pki, &["http/1.1"]).await;
    // No --upstream-ca: the origin's test CA is not trusted.
    let mut s = ProxySetup::new(&routes_with_credential(""));
    s.env.push(("TEST_TOKEN".into(), SECRET.into()));
    let proxy = s.start().await;
    let got = https_get(
        &proxy,
        "localhost",
        origin.https.port(),
        "http/1.1",
        get(&format!(
            "https://localhost:{}/allowed",
            origin.https.port()
        )),
    )
    .await;
    assert_eq!(got.status, 502);
    assert_eq!(got.decision(), Some("upstream-unreachable"));
    assert!(origin.seen().is_empty());
}

#[tokio::test]
async fn plain_http_to_a_credential_route_is_refused_and_healthz_answers() {
    let (_pki, origin, proxy) = setup().await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!(
        "GET http://localhost:{}/allowed HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        origin.https.port(),
        origin.https.port()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(
        text.contains("x-egress-proxy-decision: cleartext-credentials"),
        "{text}"
    );
    assert!(origin.seen().is_empty());

    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn tunnel_that_is_neither_tls_nor_http_is_closed() {
    let (_pki, origin, proxy) = setup().await;
    let (mut s, status) = connect(proxy.addr, &format!("localhost:{}", origin.https.port())).await;
    assert!(status.starts_with("HTTP/1.1 200"));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    assert_eq!(origin.connections(), 0);
}

#[tokio::test]
async fn refused_h1_request_with_unread_body_closes_and_sends_no_100_continue() {
    let (_pki, origin, proxy) = setup().await;
    let (s, _) = connect(proxy.addr, &format!("localhost:{}", origin.https.port())).await;
    let mut t = tls(s, &proxy.ca_pem, "localhost", &["http/1.1"])
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST /other HTTP/1.1\r\nHost: localhost:{}\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n",
        origin.https.port()
    );
    t.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, t.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 403"),
        "no 100 Continue first: {text}"
    );
    assert!(text.contains("path-not-allowed"));
    assert!(!text.contains("100 Continue"));
    assert!(origin.seen().is_empty());
}

#[tokio::test]
async fn websocket_is_bridged_on_a_matching_101_even_when_the_origin_offers_h2() {
    let (_pki, origin, proxy) = setup().await;
    let (s, _) = connect(proxy.addr, &format!("localhost:{}", origin.https.port())).await;
    let t = tls(s, &proxy.ca_pem, "localhost", &["http/1.1"])
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws", origin.https.port());
    let (mut ws, resp) = tokio::time::timeout(T, tokio_tungstenite::client_async(url, t))
        .await
        .unwrap()
        .expect("WebSocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text("ping through the proxy"))
        .await
        .unwrap();
    let echo = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "ping through the proxy");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].version,
        http::Version::HTTP_11,
        "upgrades go over HTTP/1.1"
    );
    assert_eq!(
        seen[0].headers.get("authorization").unwrap(),
        format!("Bearer {SECRET}").as_str()
    );
}
