//! The way out through an upstream proxy (a tiny CONNECT proxy in the test
//! that records what it received), and leaf certificate properties read back
//! from real handshakes.

mod support;

use std::sync::{Arc, Mutex};

use http::Request;
use support::T;
use support::clients::{body, connect, https_get, tls};
use support::origin::Origin;
use support::pki::TestCa;
use support::proxy::{ProxySetup, SECRET, TestProxy, routes_with_credential};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the test CONNECT proxy saw on one connection.
#[derive(Debug, Default, Clone)]
struct ProxyLog {
    head: String,
    /// Bytes the client sent before the proxy's reply was written.
    early_bytes: usize,
}

/// A CONNECT proxy answering `status`; on 200 it tunnels to the target.
/// Before replying it waits a moment and records any byte sent early.
async fn connect_proxy(status: u16) -> (std::net::SocketAddr, Arc<Mutex<Vec<ProxyLog>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let logs2 = logs.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let logs = logs2.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if c.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                // Anything arriving now was sent before our reply.
                let mut early = [0u8; 4096];
                let early_bytes = match tokio::time::timeout(
                    std::time::Duration::from_millis(300),
                    c.read(&mut early),
                )
                .await
                {
                    Ok(Ok(n)) => n,
                    _ => 0,
                };
                let text = String::from_utf8_lossy(&head).to_string();
                logs.lock().unwrap().push(ProxyLog {
                    head: text.clone(),
                    early_bytes,
                });
                if status != 200 {
                    let reply = format!(
                        "HTTP/1.1 {status} Refused\r\nProxy-Authenticate: Basic realm=\"outer\"\r\nContent-Length: 0\r\n\r\n"
                    );
                    let _ = c.write_all(reply.as_bytes()).await;
                    return;
                }
                let target = text
                    .lines()
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .unwrap_or("")
                    .to_owned();
                let Ok(mut up) = tokio::net::TcpStream::connect(&target).await else {
                    let _ = c.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = c
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
            });
        }
    });
    (addr, logs)
}

async fn proxy_via(pki: &TestCa, outer: std::net::SocketAddr) -> TestProxy {
    let mut s = ProxySetup::new(&routes_with_credential("  - host: plain.localhost.test\n"));
    s.env.push(("TEST_TOKEN".into(), SECRET.into()));
    s.upstream_ca = Some(pki.cert_pem.clone());
    s.upstream_proxy = Some(outer.to_string());
    // No allow range: through an upstream proxy nothing is resolved or checked locally.
    s.allow.clear();
    s.start().await
}

#[tokio::test]
async fn every_connection_goes_through_the_upstream_proxy_and_waits_for_its_reply() {
    let pki = Arc::new(TestCa::new("test origin CA"));
    let origin = Origin::hello(&pki, &["h2", "http/1.1"]).await;
    let (outer, logs) = connect_proxy(200).await;
    let proxy = proxy_via(&pki, outer).await;
    let port = origin.https.port();
    let got = https_get(
        &proxy,
        "localhost",
        port,
        "http/1.1",
        Request::get(format!("https://localhost:{port}/allowed"))
            .body(body(""))
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200, "{got:?}");
    let logs = logs.lock().unwrap().clone();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        logs[0]
            .head
            .starts_with(&format!("CONNECT localhost:{port} HTTP/1.1\r\n")),
        "{:?}",
        logs[0]
    );
    assert_eq!(
        logs[0].early_bytes, 0,
        "nothing may be sent before the proxy's reply"
    );
    assert!(
        !logs[0].head.contains(SECRET),
        "the credential is never in the CONNECT"
    );
    let seen = origin.seen();
    assert_eq!(
        seen[0].headers.get("authorization").unwrap(),
        format!("Bearer {SECRET}").as_str()
    );
}

#[tokio::test]
async fn refused_requests_never_reach_the_upstream_proxy() {
    let pki = Arc::new(TestCa::new("test origin CA"));
    let (outer, logs) = connect_proxy(200).await;
    let proxy = proxy_via(&pki, outer).await;
    let got = https_get(
        &proxy,
        "unrouted.example",
        443,
        "h2",
        Request::get("https://unrouted.example/")
            .body(body(""))
            .unwrap(),
    )
    .await;
    assert_eq!(got.decision(), Some("host-not-allowed"));
    assert!(logs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn upstream_proxy_403_is_passed_as_upstream_proxy_refused_and_407_becomes_502() {
    let pki = Arc::new(TestCa::new("test origin CA"));
    for (status, want) in [(403u16, 403u16), (407, 502)] {
        let (outer, logs) = connect_proxy(status).await;
        let proxy = proxy_via(&pki, outer).await;
        let got = https_get(
            &proxy,
            "localhost",
            443,
            "http/1.1",
            Request::get("https://localhost/allowed")
                .body(body(""))
                .unwrap(),
        )
        .await;
        assert_eq!(got.status, want, "{status}: {got:?}");
        assert_eq!(got.decision(), Some("upstream-proxy-refused"));
        assert!(got.headers.get("proxy-authenticate").is_none());
        assert_eq!(logs.lock().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn leaf_has_san_eku_validity_and_chains_to_the_ca() {
    let pki = Arc::new(TestCa::new("test origin CA"));
    let proxy = ProxySetup::new(&routes_with_credential(""))
        .tap_env()
        .start()
        .await;
    drop(pki);
    for host in ["unrouted.example", "127.0.0.1"] {
        let (s, _) = connect(proxy.addr, &format!("{host}:443")).await;
        let t = tls(s, &proxy.ca_pem, host, &["h2"])
            .await
            .expect("rustls accepts the leaf");
        let (_, conn) = t.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        let chain = conn.peer_certificates().unwrap();
        assert_eq!(chain.len(), 2, "leaf and CA");
        let (_, leaf) = x509_parser::parse_x509_certificate(chain[0].as_ref()).unwrap();
        let san = leaf.subject_alternative_name().unwrap().unwrap();
        let names = &san.value.general_names;
        assert_eq!(names.len(), 1, "{names:?}");
        match (&names[0], host.parse::<std::net::Ipv4Addr>()) {
            (x509_parser::extensions::GeneralName::IPAddress(b), Ok(ip)) => {
                assert_eq!(*b, &ip.octets()[..])
            }
            (x509_parser::extensions::GeneralName::DNSName(n), Err(_)) => assert_eq!(*n, host),
            other => panic!("unexpected SAN {other:?}"),
        }
        let eku = leaf.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth);
        let nb = leaf.validity().not_before.timestamp();
        let na = leaf.validity().not_after.timestamp();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            now - nb >= 3500 && now - nb <= 3700,
            "valid from about one hour ago"
        );
        assert!(na - nb <= 30 * 86400, "at most 30 days");
        assert!(!leaf.is_ca());
        let (_, ca) = x509_parser::parse_x509_certificate(chain[1].as_ref()).unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        leaf.verify_signature(Some(ca.public_key()))
            .expect("signed by the CA");
    }
}

#[tokio::test]
async fn fifty_concurrent_first_connections_mint_once() {
    let proxy = ProxySetup::new(&routes_with_credential(""))
        .tap_env()
        .start()
        .await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let addr = proxy.addr;
        let ca = proxy.ca_pem.clone();
        tasks.push(tokio::spawn(async move {
            let (s, _) = connect(addr, "burst.example:443").await;
            let t = tls(s, &ca, "burst.example", &["http/1.1"])
                .await
                .expect("handshake");
            t.get_ref().1.peer_certificates().unwrap()[0]
                .as_ref()
                .to_vec()
        }));
    }
    let mut leaves = Vec::new();
    for t in tasks {
        leaves.push(tokio::time::timeout(T, t).await.unwrap().unwrap());
    }
    assert!(leaves.windows(2).all(|w| w[0] == w[1]), "one leaf for all");
    assert_eq!(proxy.running.shared.leaves.mint_count(), 1);
}

trait TapEnv {
    fn tap_env(self) -> Self;
}
impl TapEnv for ProxySetup {
    fn tap_env(mut self) -> Self {
        self.env.push(("TEST_TOKEN".into(), SECRET.into()));
        self
    }
}
