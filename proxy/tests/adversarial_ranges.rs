//! Special-purpose address ranges in direct mode (issue 12 item 7, SPEC §4).
//! A hostile DNS answer (or a route to a name the agent controls) points at an
//! address that is not globally reachable, spelled in a form a simple
//! "private/loopback" check misses: NAT64 local-use `64:ff9b:1::/48`,
//! site-local `fec0::/10`, 6to4 `2002::/16` carrying 127.0.0.x, the SIIT
//! `::ffff:0:a.b.c.d` form, IPv4-mapped. Each must get 403
//! `destination-not-allowed` with the range named, and a canary listener on
//! 127.0.0.2 (reachable through `::ffff:127.0.0.2` on this machine: the
//! positive control proves the mapped path dials) sees no connection.
//!
//! The resolver is the test's, through the proxy's seam; proxy, sockets and
//! origin are real.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use egress_proxy::upstream::resolve::{Lookup, Resolve, Resolver};
use support::T;
use support::origin::Origin;
use support::pki::TestCa;
use support::proxy::ProxySetup;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answers `<label>.ranges.example` with the address the map gives the label.
struct Table(HashMap<&'static str, &'static str>);

impl Resolve for Table {
    fn resolve(&self, host: &str, port: u16) -> Lookup {
        let label = host.split('.').next().unwrap_or_default();
        let addrs = self
            .0
            .get(label)
            .map(|ip| vec![SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)])
            .unwrap_or_default();
        Box::pin(async move { Ok(addrs) })
    }
}

/// A listener on 127.0.0.2 at `port`; counts connections.
async fn canary(port: u16) -> Arc<AtomicUsize> {
    let l = TcpListener::bind(("127.0.0.2", port))
        .await
        .expect("bind the canary on 127.0.0.2");
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nCANARY")
                .await;
        }
    });
    hits
}

/// A plain-HTTP proxy request to `host:port`; returns (status, decision, body).
async fn get(proxy: SocketAddr, host: &str, port: u16) -> (u16, String, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(
        format!(
            "GET http://{host}:{port}/echo/x HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let decision = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-egress-proxy-decision:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, decision, body)
}

/// (label, answer, the range the refusal must name).
const HOSTILE: &[(&str, &str, &str)] = &[
    ("nat64local", "64:ff9b:1::7f00:2", "64:ff9b:1::/48"),
    ("sitelocal", "fec0::7f00:2", "fec0::/10"),
    ("sixtofour", "2002:7f00:2::1", "127.0.0.0/8"),
    ("sixtofourpriv", "2002:a00:1::1", "10.0.0.0/8"),
    ("siit", "::ffff:0:7f00:2", "2000::/3"),
    ("mapped", "::ffff:127.0.0.2", "127.0.0.0/8"),
    ("mappedbench", "::ffff:198.18.0.1", "198.18.0.0/15"),
    ("nat64", "64:ff9b::7f00:2", "127.0.0.0/8"),
    ("compat", "::127.0.0.2", "::/96"),
    (
        "teredo",
        "2001:0:4136:e378:8000:63bf:80ff:fffd",
        "2001::/32",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_purpose_answers_are_refused_and_never_dialled() {
    let origin = Origin::hello(
        &Arc::new(TestCa::new("test origin CA")),
        &["h2", "http/1.1"],
    )
    .await;
    let hits = canary(origin.http.port()).await;
    let mut map: HashMap<&'static str, &'static str> =
        HOSTILE.iter().map(|(l, a, _)| (*l, *a)).collect();
    map.insert("control", "::ffff:127.0.0.1");
    let mut setup = ProxySetup::new("unmatched: deny\nroutes:\n  - host: \"*.ranges.example\"\n");
    // Only the origin, in its IPv4-mapped spelling, is permitted.
    setup.allow = vec!["::ffff:127.0.0.1/128".into()];
    setup.resolver = Some(Resolver::new(Table(map)));
    let proxy = setup.start().await;

    // Positive control: the mapped form dials on this machine, so a mapped
    // answer that slipped through would reach the canary.
    let (status, _, body) = get(proxy.addr, "control.ranges.example", origin.http.port()).await;
    assert_eq!(status, 200, "control: {body}");
    assert!(body.starts_with("hello from origin"), "control: {body}");

    for (label, answer, range) in HOSTILE {
        let (status, decision, body) = get(
            proxy.addr,
            &format!("{label}.ranges.example"),
            origin.http.port(),
        )
        .await;
        assert_eq!(
            (status, decision.as_str()),
            (403, "destination-not-allowed"),
            "{label} -> {answer}: {body}"
        );
        assert!(
            body.contains(range) && body.contains("not globally reachable"),
            "{label}: the refusal names {range}: {body}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the canary was dialled");
    assert_eq!(
        origin.seen().len(),
        1,
        "only the control reached the origin"
    );
}
