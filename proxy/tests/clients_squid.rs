//! egress-proxy behind a real squid (Debian squid-openssl) as `--upstream-proxy`:
//! a plain CONNECT proxy with a `dstdomain` allowlist, and an `ssl_bump` proxy with
//! its own CA that egress-proxy trusts through `--upstream-ca` (the role pipelock
//! has in a bottle). squid's refusal of a CONNECT becomes `upstream-proxy-refused`.

mod support;

use support::origin::Origin;
use support::pki::TestCa;
use support::proxy::{DEFAULT_ROUTES, Proxy, ProxyOpts, TOKEN_VAR};
use support::raw::{self, collect, empty, request};
use support::tools::{Squid, SquidBump, blocking};

struct Chain {
    origin: Origin,
    squid: Squid,
    proxy: Proxy,
    token: String,
}

async fn chain(bump: bool) -> Chain {
    let origin = Origin::start().await;
    let token = format!("tok-{}", support::random_hex(24));
    let squid_ca = TestCa::new("squid test CA");
    let origin_ca = origin.ca_file.clone();
    let (cert, key) = (squid_ca.cert_pem.clone(), squid_ca.key_pem.clone());
    let squid = blocking(move || {
        Squid::start(
            &["localhost"],
            bump.then_some(SquidBump {
                ca: (&cert, &key),
                origin_ca: &origin_ca,
            }),
        )
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let upstream_ca = if bump {
        let p = squid.dir.path().join("squid-ca-cert.pem");
        std::fs::write(&p, &squid_ca.cert_pem).expect("write");
        p
    } else {
        origin.ca_file.clone()
    };
    drop(dir);
    let proxy = Proxy::start(
        ProxyOpts::new(DEFAULT_ROUTES)
            .token(TOKEN_VAR, &token)
            .upstream_ca(upstream_ca)
            .upstream_proxy(format!("http://{}", squid.addr)),
    );
    Chain {
        origin,
        squid,
        proxy,
        token,
    }
}

fn assert_injected(c: &Chain, s: &support::origin::Seen) {
    let want = format!("Bearer {}", c.token);
    assert!(
        s.header("authorization") == Some(want.as_bytes()),
        "the origin must see the injected credential (value withheld)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_squid_connect_allowed_request_reaches_origin() {
    let c = chain(false).await;
    let host = format!("localhost:{}", c.origin.https.port());
    for h2 in [false, true] {
        let r = if h2 {
            let mut s = raw::h2_client(c.proxy.addr, &c.proxy.ca, &host).await;
            let req = request("GET", &format!("https://{host}/echo/squid-h2"))
                .body(empty())
                .expect("req");
            collect(s.send_request(req).await.expect("resp")).await
        } else {
            let mut s = raw::h1_client(c.proxy.addr, &c.proxy.ca, &host).await;
            let req = request("GET", "/echo/squid-h1")
                .header("host", &host)
                .body(empty())
                .expect("req");
            collect(s.send_request(req).await.expect("resp")).await
        };
        assert_eq!(
            r.status,
            200,
            "h2={h2}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let seen = c.origin.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_injected(&c, s);
    }
    // squid logs a CONNECT when the tunnel ends: close the pooled upstream
    // connections by stopping egress-proxy, then wait for the line.
    let Chain { squid, proxy, .. } = c;
    drop(proxy);
    let mut log = String::new();
    for _ in 0..100 {
        log = squid.access_log();
        if log.contains("CONNECT localhost:") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        log.contains("CONNECT localhost:"),
        "egress-proxy must reach the origin through squid's CONNECT: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squid_allowlist_refusal_becomes_upstream_proxy_refused() {
    let c = chain(false).await;
    // 127.0.0.1 is allowed by egress-proxy's routes but not by squid's allowlist.
    let target = format!("127.0.0.1:{}", c.origin.https.port());
    let r = raw::tls_exchange(
        c.proxy.addr,
        &c.proxy.ca,
        &target,
        format!("GET /echo/x HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
    )
    .await;
    r.assert_refused(403, "upstream-proxy-refused", "squid denied the CONNECT");
    c.origin.assert_untouched("squid refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_squid_ssl_bump_with_its_own_ca() {
    let c = chain(true).await;
    let host = format!("localhost:{}", c.origin.https.port());
    let mut s = raw::h1_client(c.proxy.addr, &c.proxy.ca, &host).await;
    let req = request("GET", "/echo/bumped")
        .header("host", &host)
        .body(empty())
        .expect("req");
    let r = collect(s.send_request(req).await.expect("resp")).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(r.body.starts_with(b"echo GET /echo/bumped "));
    let seen = c.origin.seen();
    assert_eq!(seen.len(), 1);
    assert_injected(&c, &seen[0]);
    // The refusal paths still hold with squid in the chain.
    let r = raw::tls_exchange(
        c.proxy.addr,
        &c.proxy.ca,
        &host,
        format!(
            "POST /git/x.git/git-receive-pack HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    r.assert_refused(403, "git-push", "push through the chain");
    c.origin
        .assert_no_path("receive-pack", "push through the chain");
    c.proxy.assert_no_secret_in_logs();
}

/// A WebSocket also goes through the upstream proxy (SPEC §4: every outbound
/// connection, WebSocket included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_goes_through_squid() {
    use futures_util::{SinkExt, StreamExt};
    let c = chain(false).await;
    let host = format!("localhost:{}", c.origin.https.port());
    let tcp = raw::tunnel(c.proxy.addr, &host).await;
    let tls = raw::tls(tcp, "localhost", &c.proxy.ca, &[b"http/1.1"]).await;
    let (mut ws, _) = tokio::time::timeout(
        support::STEP,
        tokio_tungstenite::client_async(format!("wss://{host}/ws"), tls),
    )
    .await
    .expect("ws handshake timed out")
    .expect("WebSocket through egress-proxy and squid");
    ws.send(tokio_tungstenite::tungstenite::Message::text("via squid"))
        .await
        .expect("send");
    let back = tokio::time::timeout(support::STEP, ws.next())
        .await
        .expect("echo timed out")
        .expect("echo")
        .expect("echo ok");
    assert_eq!(back.into_text().expect("text").as_str(), "via squid");
    drop(ws);
    let Chain { squid, proxy, .. } = c;
    drop(proxy);
    let mut log = String::new();
    for _ in 0..100 {
        log = squid.access_log();
        if log.contains("CONNECT localhost:") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        log.contains("CONNECT localhost:"),
        "the WebSocket must reach the origin through squid: {log}"
    );
}
