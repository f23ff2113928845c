//! DNS rebinding between check and connect, direct mode (issue 5, SPEC §4). A
//! proxy that resolves a name to check it and then connects by name resolves
//! twice, and a hostile DNS answers a permitted address the first time and a
//! private one the second (postel-sh/postel#128: "SSRF check is not pinned to
//! the connection"; mixed answers: Doezer/Questarr#385). The resolver here is
//! the test's, through the proxy's
//! resolver seam; sockets, proxy and origin are real. The "private" service is a
//! canary listener on 127.0.0.2 that must never see a connection.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use egress_proxy::upstream::resolve::{Lookup, Resolve, Resolver};
use support::origin::Origin;
use support::pki::TestCa;
use support::proxy::{ProxySetup, TestProxy};
use support::raw;

const ALLOWED: &str = "127.0.0.1";
const PRIVATE: &str = "127.0.0.2";

/// Answers each lookup with the next entry of `script` (cycling), with the
/// asked port; counts lookups.
struct Rebinding {
    script: Vec<Vec<&'static str>>,
    calls: Arc<AtomicUsize>,
}

impl Resolve for Rebinding {
    fn resolve(&self, _host: &str, port: u16) -> Lookup {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let addrs = self.script[n % self.script.len()]
            .iter()
            .map(|ip| SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port))
            .collect();
        Box::pin(async move { Ok(addrs) })
    }
}

async fn setup(script: Vec<Vec<&'static str>>) -> (Origin, TestProxy, Arc<AtomicUsize>) {
    let origin = Origin::hello(
        &Arc::new(TestCa::new("test origin CA")),
        &["h2", "http/1.1"],
    )
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut setup = ProxySetup::new("unmatched: deny\nroutes:\n  - host: \"*.rebind.example\"\n");
    // Only the origin's address is permitted; 127.0.0.2 is "private".
    setup.allow = vec![format!("{ALLOWED}/32")];
    setup.resolver = Some(Resolver::new(Rebinding {
        script,
        calls: calls.clone(),
    }));
    (origin, setup.start().await, calls)
}

/// Answers alternate permitted / private. Every request is a new host, so a new
/// upstream connection: each must cost exactly one lookup, reach the origin when
/// that lookup was permitted and be 403 `destination-not-allowed` when it was
/// not; the private listener sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_between_check_and_connect_never_reaches_the_private_address() {
    let (origin, proxy, calls) = setup(vec![vec![ALLOWED], vec![PRIVATE]]).await;
    let hits = raw::canary(PRIVATE, origin.http.port()).await;
    for i in 0..20 {
        let (status, decision, body) = raw::proxy_get(
            proxy.addr,
            &format!("h{i}.rebind.example"),
            origin.http.port(),
        )
        .await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            i + 1,
            "request {i}: one lookup per connection"
        );
        if i % 2 == 0 {
            assert_eq!(status, 200, "request {i} resolved to the origin: {body}");
            assert!(body.starts_with("hello from origin"), "request {i}: {body}");
        } else {
            assert_eq!(
                (status, decision.as_str()),
                (403, "destination-not-allowed"),
                "request {i}"
            );
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the private address was connected to"
    );
    assert_eq!(origin.seen().len(), 10);
}

/// One answer mixing private and permitted addresses, in either order: only the
/// permitted one is dialled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_answers_dial_only_the_permitted_address() {
    let (origin, proxy, _calls) = setup(vec![vec![PRIVATE, ALLOWED], vec![ALLOWED, PRIVATE]]).await;
    let hits = raw::canary(PRIVATE, origin.http.port()).await;
    for i in 0..4 {
        let (status, _, body) = raw::proxy_get(
            proxy.addr,
            &format!("m{i}.rebind.example"),
            origin.http.port(),
        )
        .await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert!(body.starts_with("hello from origin"), "request {i}: {body}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the private address was connected to"
    );
}
