//! `/healthz` and `/metrics` of the real binary (SPEC §5, issue 5): health
//! on the proxy port and on `--admin-listen`, Prometheus metrics on the admin
//! port only (requests by decision, upstream errors, active connections, leaf
//! mints and cache hits, duration histogram, overloaded connections).

mod support;

use std::time::{Duration, Instant};

use support::T;
use support::clients::*;
use support::origin::Origin;
use support::proxy::{Proxy, ProxyOpts, sample};
use support::raw::{plain_get, raw_exchange};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_on_both_ports_and_metrics_on_the_admin_port_only() {
    let origin = Origin::streaming().await;
    let mut opts = ProxyOpts::ephemeral(
        "unmatched: deny\nroutes:\n  - host: localhost\n    path_allowlist: [\"/ok\"]\n",
    );
    opts.upstream_ca = Some(origin.ca_file.clone());
    opts.admin = true;
    let proxy = Proxy::start(opts);
    let admin = proxy.admin.expect("admin address");

    let (status, body) = plain_get(admin, "/healthz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1 routes loaded"), "{body}");
    let (status, _) = plain_get(proxy.addr, "/healthz").await.unwrap();
    assert_eq!(status, 200, "healthz on the proxy port (origin form)");

    // The agent only reaches the proxy port: no metrics there.
    let (status, body) = plain_get(proxy.addr, "/metrics").await.unwrap();
    assert_ne!(status, 200, "no /metrics on the proxy port");
    assert!(!body.contains("egress_proxy_"), "{body}");
    // The admin port serves only its two paths, read-only.
    let (status, _) = plain_get(admin, "/other").await.unwrap();
    assert_eq!(status, 404);
    let text = raw_exchange(
        admin,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");

    let tp = origin.https.port();
    let host = format!("localhost:{tp}");
    // Allowed twice over two tunnels (one mint, then a cache hit), refused once.
    let mut a = h1_through(&proxy, "localhost", tp).await.expect("tunnel");
    assert_eq!(get1(&mut a, &host, "/ok").await.unwrap().status, 200);
    let mut b = h1_through(&proxy, "localhost", tp).await.expect("tunnel");
    assert_eq!(get1(&mut b, &host, "/ok").await.unwrap().status, 200);
    assert_eq!(get1(&mut b, &host, "/no").await.unwrap().status, 403);
    // An allowed request to a closed port: an upstream error.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = h1_through(&proxy, "localhost", closed_port)
        .await
        .expect("tunnel");
    let got = get1(&mut c, &format!("localhost:{closed_port}"), "/ok")
        .await
        .unwrap();
    assert_eq!(
        (got.status, got.decision()),
        (502, Some("upstream-unreachable"))
    );

    // Access lines are written (and counted) when a body ends: wait for 4.
    let deadline = Instant::now() + T;
    let mut m = proxy.metrics().await;
    while sample(&m, "egress_proxy_request_duration_seconds_count") < 4.0 {
        assert!(Instant::now() < deadline, "requests not counted:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = proxy.metrics().await;
    }
    assert_eq!(
        sample(&m, "egress_proxy_requests_total{decision=\"allowed\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "egress_proxy_requests_total{decision=\"path-not-allowed\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "egress_proxy_requests_total{decision=\"upstream-unreachable\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "egress_proxy_upstream_errors_total{kind=\"upstream-unreachable\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "egress_proxy_leaf_mints_total"),
        1.0,
        "one host, one leaf: {m}"
    );
    assert!(
        sample(&m, "egress_proxy_leaf_cache_hits_total") >= 2.0,
        "{m}"
    );
    assert!(
        sample(&m, "egress_proxy_active_connections") >= 3.0,
        "three tunnels open: {m}"
    );
    assert_eq!(sample(&m, "egress_proxy_routes"), 1.0, "{m}");
    assert!(
        m.contains("egress_proxy_request_duration_seconds_bucket{le="),
        "{m}"
    );
    assert!(m.trim_end().ends_with("# EOF"), "OpenMetrics text");

    drop((a, b, c));
    let deadline = Instant::now() + T;
    while sample(&proxy.metrics().await, "egress_proxy_active_connections") > 0.0 {
        assert!(Instant::now() < deadline, "active connections go back to 0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No request data in the metrics.
    let m = proxy.metrics().await;
    assert!(!m.contains("/ok") && !m.contains("localhost"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_connections_a_client_gets_503_overloaded_and_others_keep_working() {
    let mut opts = ProxyOpts::ephemeral("routes: []\n")
        .arg("--max-connections")
        .arg("3");
    opts.admin = true;
    let proxy = Proxy::start(opts);
    let hold: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(tokio::net::TcpStream::connect(proxy.addr).await.unwrap());
        }
        v
    };
    // Accepted in order: wait until the three are counted.
    let deadline = Instant::now() + T;
    while sample(&proxy.metrics().await, "egress_proxy_active_connections") < 3.0 {
        assert!(Instant::now() < deadline, "three connections counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = raw_exchange(proxy.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("x-egress-proxy-decision: overloaded"),
        "{text}"
    );
    let m = proxy.metrics().await;
    assert_eq!(
        sample(&m, "egress_proxy_overloaded_connections_total"),
        1.0,
        "{m}"
    );
    drop(hold);
    // Once they are gone, a client is served again.
    let deadline = Instant::now() + T;
    loop {
        let (status, _) = plain_get(proxy.addr, "/healthz").await.unwrap();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "served again after the others left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
