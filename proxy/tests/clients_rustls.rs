//! A rustls client (tokio-rustls + hyper) through egress-proxy, for what needs a
//! programmable client: h2 specifics (ALPN, many streams), streaming (SSE, large
//! downloads in bounded memory), WebSocket, response-header hygiene, upstream
//! pooling across clients, leaf properties and single-flight minting, `/healthz`.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use support::proxy::Fixture;
use support::raw::{self, collect, empty, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_many_concurrent_streams_each_get_the_credential() {
    let f = Fixture::start().await;
    let send = raw::h2_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut send = send.clone();
        let uri = f.tls_url(&format!("/echo/stream-{i}"));
        tasks.push(tokio::spawn(async move {
            let req = request("GET", &uri).body(empty()).expect("request");
            let resp = send.send_request(req).await.expect("h2 response");
            collect(resp).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.expect("task");
        assert_eq!(r.status, 200, "stream {i}: {:?}", r.body);
        assert!(r.decision().is_none());
        assert!(
            r.body
                .starts_with(format!("echo GET /echo/stream-{i} ").as_bytes()),
            "stream {i} got its own body"
        );
        f.assert_no_token(&r.body, "h2 body");
    }
    let seen = f.origin.seen();
    assert_eq!(seen.len(), 20);
    for s in &seen {
        f.assert_credential_injected(s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_post_body_reaches_origin_intact() {
    let f = Fixture::start().await;
    let mut send = raw::h2_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    let body = Full::new(Bytes::from(vec![b'p'; 100_000]));
    let req = request("POST", &f.tls_url("/echo/upload"))
        .body(body)
        .expect("request");
    let r = collect(send.send_request(req).await.expect("response")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "echo POST /echo/upload body=100000\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_keep_alive_serves_several_requests_on_one_tunnel() {
    let f = Fixture::start().await;
    let mut c = raw::tls_conn(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    for i in 0..3 {
        c.send(
            format!(
                "GET /echo/ka-{i} HTTP/1.1\r\nHost: {}\r\n\r\n",
                f.tls_host()
            )
            .as_bytes(),
        )
        .await
        .expect("send");
        let r = c.read_response(false).await.expect("response");
        r.assert_allowed("keep-alive request");
        assert!(
            r.body_text()
                .starts_with(&format!("echo GET /echo/ka-{i} "))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_first_event_arrives_before_the_stream_ends_over_h2_and_h1() {
    let f = Fixture::start().await;
    // h2
    let mut send = raw::h2_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    let req = request("GET", &f.tls_url("/sse"))
        .body(empty())
        .expect("req");
    let resp = send.send_request(req).await.expect("response head");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut body = resp.into_body();
    let first = tokio::time::timeout(support::STEP, body.frame())
        .await
        .expect("the first SSE event must arrive while the origin holds the stream open")
        .expect("frame")
        .expect("frame ok");
    assert_eq!(
        first.into_data().ok(),
        Some(Bytes::from_static(b"data: first\n\n"))
    );
    f.origin.release_sse();
    let rest = tokio::time::timeout(support::STEP, body.collect())
        .await
        .expect("rest")
        .expect("rest ok")
        .to_bytes();
    assert_eq!(rest, Bytes::from_static(b"data: last\n\n"));

    // h1 (chunked from the origin; the proxy keeps the framing kind)
    let mut c = raw::tls_conn(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    c.send(format!("GET /sse HTTP/1.1\r\nHost: {}\r\n\r\n", f.tls_host()).as_bytes())
        .await
        .expect("send");
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    use tokio::io::AsyncReadExt;
    while !String::from_utf8_lossy(&buf).contains("data: first") {
        let n = tokio::time::timeout(support::STEP, c.io.read(&mut tmp))
            .await
            .expect("h1 SSE: first event must arrive before the stream ends")
            .expect("read");
        assert!(n > 0, "closed early");
        buf.extend_from_slice(&tmp[..n]);
    }
    assert!(
        !String::from_utf8_lossy(&buf).contains("data: last"),
        "the last event was held by the origin"
    );
    f.origin.release_sse();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_streams_in_bounded_memory() {
    let f = Fixture::start().await;
    const SIZE: usize = 256 << 20;
    let mut send = raw::h1_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    let req = request("GET", &f.tls_url(&format!("/large?bytes={SIZE}")))
        .header("host", f.tls_host())
        .body(empty())
        .expect("req");
    let resp = send.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    let before = f.proxy.rss_kib();
    let mut body = resp.into_body();
    let mut total = 0usize;
    let mut peak = before;
    while let Some(frame) = tokio::time::timeout(support::STEP, body.frame())
        .await
        .expect("download stalled")
    {
        if let Ok(data) = frame.expect("frame").into_data() {
            total += data.len();
        }
        if total % (16 << 20) < 65536 {
            peak = peak.max(f.proxy.rss_kib());
        }
    }
    assert_eq!(total, SIZE, "every byte arrives");
    assert!(
        peak < before + 96 * 1024,
        "proxy RSS grew from {before} KiB to {peak} KiB while streaming {SIZE} bytes: \
         the body must not be buffered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_tunnel() {
    let f = Fixture::start().await;
    let tcp = raw::tunnel(f.proxy.addr, &f.tls_host()).await;
    let tls = raw::tls(tcp, "localhost", &f.proxy.ca, &[b"http/1.1"]).await;
    let url = format!("wss://{}/ws", f.tls_host());
    let (mut ws, resp) = tokio::time::timeout(
        support::STEP,
        tokio_tungstenite::client_async(url.as_str(), tls),
    )
    .await
    .expect("ws handshake timed out")
    .expect("WebSocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        let msg = format!("ping {i}");
        ws.send(tokio_tungstenite::tungstenite::Message::text(msg.clone()))
            .await
            .expect("send");
        let back = tokio::time::timeout(support::STEP, ws.next())
            .await
            .expect("echo timed out")
            .expect("echo")
            .expect("echo ok");
        assert_eq!(back.into_text().expect("text").as_str(), msg);
    }
    let seen = f.origin.seen();
    assert_eq!(seen.len(), 1);
    f.assert_credential_injected(&seen[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_drops_alt_svc_and_a_forged_decision_header() {
    let f = Fixture::start().await;
    for h2 in [false, true] {
        let r = if h2 {
            let mut s = raw::h2_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
            let req = request("GET", &f.tls_url("/dirty"))
                .body(empty())
                .expect("req");
            collect(s.send_request(req).await.expect("resp")).await
        } else {
            let mut s = raw::h1_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
            let req = request("GET", "/dirty")
                .header("host", f.tls_host())
                .body(empty())
                .expect("req");
            collect(s.send_request(req).await.expect("resp")).await
        };
        assert_eq!(r.status, 200, "h2={h2}");
        assert!(
            r.headers.get("alt-svc").is_none(),
            "h2={h2}: Alt-Svc must be removed"
        );
        assert!(
            r.headers.get("x-egress-proxy-decision").is_none(),
            "h2={h2}: an upstream x-egress-proxy-decision must be removed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connection_is_pooled_across_clients() {
    let f = Fixture::start().await;
    for i in 0..3 {
        let mut s = raw::h1_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
        let req = request("GET", &format!("/echo/pool-{i}"))
            .header("host", f.tls_host())
            .body(empty())
            .expect("req");
        let r = collect(s.send_request(req).await.expect("resp")).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        f.origin.connections(),
        1,
        "three sequential clients must share one pooled upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_properties_and_single_flight_minting_under_50_first_connections() {
    let f = Fixture::start().await;
    let host = "fresh-mint.example";
    let ca = Arc::new(f.proxy.ca.cert_pem.clone());
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let addr = f.proxy.addr;
        let cfg = raw::client_config(f.proxy.ca.root_store(), &[b"h2", b"http/1.1"]);
        tasks.push(tokio::spawn(async move {
            let tcp = raw::tunnel(addr, &format!("{host}:443")).await;
            let tls = raw::try_tls(tcp, host, cfg)
                .await
                .expect("TLS with the minted leaf");
            tls.get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first().cloned())
                .expect("leaf")
        }));
    }
    let mut leaves = Vec::new();
    for t in tasks {
        leaves.push(t.await.expect("task"));
    }
    let first = leaves[0].clone();
    assert!(
        leaves.iter().all(|l| *l == first),
        "50 concurrent first connections for one host must get one minted leaf"
    );
    let (_, cert) = x509_parser::parse_x509_certificate(&first).expect("leaf DER");
    support::pki::check_leaf(&cert, host, &ca);

    // An IP literal gets an IP SAN.
    let tcp = raw::tunnel(
        f.proxy.addr,
        &format!("127.0.0.1:{}", f.origin.https.port()),
    )
    .await;
    let tls = raw::tls(tcp, "127.0.0.1", &f.proxy.ca, &[b"http/1.1"]).await;
    let der = tls.get_ref().1.peer_certificates().expect("certs")[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("leaf DER");
    support::pki::check_leaf(&cert, "127.0.0.1", &ca);
    f.origin.assert_untouched("handshakes only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_in_origin_form_on_the_proxy_port() {
    let f = Fixture::start().await;
    let r = raw::plain_exchange(
        f.proxy.addr,
        format!(
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            f.proxy.addr
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    f.origin.assert_untouched("healthz");
}

/// One JSON access-log line per request on stderr with the SPEC §5 keys, for an
/// allowed h2 request and a refused h1 one; no query string, no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_json_line_per_request_with_spec_keys() {
    let f = Fixture::start().await;
    let mut s = raw::h2_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    let req = request("GET", &f.tls_url("/echo/logged?q=query-marker-5521"))
        .body(empty())
        .expect("req");
    assert_eq!(
        collect(s.send_request(req).await.expect("resp"))
            .await
            .status,
        200
    );
    let r = raw::tls_exchange(
        f.proxy.addr,
        &f.proxy.ca,
        &f.tls_host(),
        format!(
            "GET /echo/secret/logged HTTP/1.1\r\nHost: {}\r\n\r\n",
            f.tls_host()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403);
    let mut entries = Vec::new();
    for _ in 0..50 {
        entries = f
            .proxy
            .lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("decision").is_some())
            .collect::<Vec<_>>();
        if entries.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let allowed: Vec<_> = entries
        .iter()
        .filter(|v| v["path"] == "/echo/logged")
        .collect();
    let refused: Vec<_> = entries
        .iter()
        .filter(|v| v["path"] == "/echo/secret/logged")
        .collect();
    assert_eq!(
        allowed.len(),
        1,
        "one line for the allowed request: {entries:?}"
    );
    assert_eq!(
        refused.len(),
        1,
        "one line for the refused request: {entries:?}"
    );
    for (v, decision, status) in [
        (allowed[0], "allowed", 200),
        (refused[0], "path-not-allowed", 403),
    ] {
        for key in [
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
        ] {
            assert!(v.get(key).is_some(), "access log line lacks `{key}`: {v}");
        }
        assert_eq!(v["decision"], decision, "{v}");
        assert_eq!(v["status"], status, "{v}");
        assert_eq!(v["method"], "GET", "{v}");
    }
    assert!(
        !f.proxy.redacted().contains("query-marker-5521"),
        "no query string in the logs"
    );
    f.proxy.assert_no_secret_in_logs();
}
