//! Bypass catalogue, resource limits (SPEC §5, black-box): hostile clients -
//! slowloris heads, idle connections, an h2 client that opens streams and never
//! reads - must not starve a normal client. Bounded in count and time; asserts
//! that the normal client's requests keep succeeding, never a latency figure (the
//! load harness measures those).

mod support;

use std::time::Duration;

use support::proxy::Fixture;
use support::raw::{self, collect, empty, request};
use tokio::io::AsyncWriteExt;

/// One normal request through a fresh tunnel; true when it got its 200.
async fn normal_request(f: &Fixture, i: usize) -> bool {
    let h = f.tls_host();
    let req = format!("GET /echo/normal-{i} HTTP/1.1\r\nHost: {h}\r\n\r\n");
    let fut = raw::try_tls_exchange(f.proxy.addr, &f.proxy.ca, &h, req.as_bytes());
    matches!(tokio::time::timeout(support::STEP, fut).await, Ok(Ok(r)) if r.status == 200)
}

/// 100 slowloris connections (a header byte every 200 ms, ~6 s) and 200 idle
/// ones, while 20 normal requests run: all normal requests succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_connections_do_not_starve_a_normal_client() {
    let f = Fixture::start().await;
    let head = format!(
        "GET http://127.0.0.1:{0}/echo/slow HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\nX-Pad: {1}\r\n\r\n",
        f.origin.http.port(),
        "p".repeat(40)
    );
    let mut hostile = Vec::new();
    for _ in 0..100 {
        let addr = f.proxy.addr;
        let head = head.clone().into_bytes();
        hostile.push(tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            for b in head.iter().take(30) {
                if s.write_all(&[*b]).await.is_err() {
                    return; // closed by the proxy: fine
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    let mut idle = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = tokio::net::TcpStream::connect(f.proxy.addr).await {
            idle.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ok = 0;
    for i in 0..20 {
        if normal_request(&f, i).await {
            ok += 1;
        }
    }
    assert_eq!(
        ok, 20,
        "every normal request must succeed beside hostile clients"
    );
    for t in hostile {
        t.abort();
    }
    drop(idle);
}

/// An h2 client opens 100 streams of 1 MiB each and never reads them; another
/// client is still served, and so is a new stream on the hostile connection's
/// neighbour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_never_read_do_not_starve_others() {
    let f = Fixture::start().await;
    let send = raw::h2_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut send = send.clone();
        let uri = f.tls_url("/large?bytes=1048576");
        held.push(tokio::spawn(async move {
            let req = request("GET", &uri).body(empty()).expect("req");
            // Take the response head and keep the body unread.
            let resp = send.send_request(req).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(resp);
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut other = raw::h2_client(f.proxy.addr, &f.proxy.ca, &f.tls_host()).await;
    for i in 0..10 {
        let req = request("GET", &f.tls_url(&format!("/echo/beside-{i}")))
            .body(empty())
            .expect("req");
        let r = tokio::time::timeout(support::STEP, async {
            collect(other.send_request(req).await.expect("response")).await
        })
        .await
        .expect("a normal h2 client must be served beside unread streams");
        assert_eq!(r.status, 200);
    }
    for i in 0..5 {
        assert!(
            normal_request(&f, 100 + i).await,
            "h1 client beside unread h2 streams"
        );
    }
    for t in held {
        t.abort();
    }
}

/// A TLS ClientHello trickled byte by byte inside a tunnel does not hold others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_client_hello_does_not_block_others() {
    let f = Fixture::start().await;
    let mut trick = Vec::new();
    for _ in 0..20 {
        let addr = f.proxy.addr;
        let target = f.tls_host();
        trick.push(tokio::spawn(async move {
            let (mut c, r) = raw::connect(addr, &target).await;
            if r.status != 200 {
                return;
            }
            // A plausible TLS record header, then one byte at a time.
            let hello = [
                0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ];
            for b in hello.iter().cycle().take(40) {
                if c.io.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..10 {
        assert!(
            normal_request(&f, i).await,
            "normal request {i} beside trickled handshakes"
        );
    }
    for t in trick {
        t.abort();
    }
}
