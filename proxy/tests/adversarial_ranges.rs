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
use std::sync::atomic::Ordering;

use egress_proxy::upstream::resolve::{Lookup, Resolve, Resolver};
use support::origin::Origin;
use support::pki::TestCa;
use support::proxy::ProxySetup;
use support::raw;

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
    let hits = raw::canary("127.0.0.2", origin.http.port()).await;
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
    let (status, _, body) =
        raw::proxy_get(proxy.addr, "control.ranges.example", origin.http.port()).await;
    assert_eq!(status, 200, "control: {body}");
    assert!(body.starts_with("hello from origin"), "control: {body}");

    for (label, answer, range) in HOSTILE {
        let (status, decision, body) = raw::proxy_get(
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
