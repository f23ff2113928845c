//! Upstream pool behaviour against a raw HTTP/1.1 origin that drops a kept-alive
//! connection after reading the next request: an idempotent request is retried
//! once on a new connection, a POST with a body is not.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Request;
use support::T;
use support::clients::{CBody, Got, body, collect, h1};
use support::proxy::{ProxySetup, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    Some(String::from_utf8_lossy(&head).to_string())
}

/// Each connection answers its first request, then reads the second and
/// closes without answering (a keep-alive connection that went stale).
async fn flaky_origin() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let (c2, a2) = (conns.clone(), answered.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            c2.fetch_add(1, Ordering::SeqCst);
            let a = a2.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = s.read_exact(&mut body).await;
                a.fetch_add(1, Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                if read_head(&mut s).await.is_some() {
                    // A request arrived on the kept-alive connection: drop it unanswered.
                    a.fetch_add(100, Ordering::SeqCst);
                }
            });
        }
    });
    (port, conns, answered)
}

async fn plain_request(proxy: &TestProxy, req: Request<CBody>) -> Got {
    let s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut c = h1(s).await;
    let resp = tokio::time::timeout(T, c.send_request(req))
        .await
        .unwrap()
        .unwrap();
    collect(resp).await
}

#[tokio::test]
async fn idempotent_request_on_a_stale_pooled_connection_is_retried_once() {
    let (port, conns, answered) = flaky_origin().await;
    let proxy = ProxySetup::new("routes:\n  - host: 127.0.0.1\n")
        .start()
        .await;
    let url = format!("http://127.0.0.1:{port}/x");
    let got = plain_request(&proxy, Request::get(&url).body(body("")).unwrap()).await;
    assert_eq!((got.status, got.text().as_str()), (200, "ok"));
    let got = plain_request(&proxy, Request::get(&url).body(body("")).unwrap()).await;
    assert_eq!((got.status, got.text().as_str()), (200, "ok"), "{got:?}");
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "second request reused, failed, retried on a new connection"
    );
    assert_eq!(
        answered.load(Ordering::SeqCst),
        102,
        "two answered, one dropped on the reused connection"
    );
}

#[tokio::test]
async fn post_with_a_body_on_a_stale_connection_is_not_retried() {
    let (port, conns, answered) = flaky_origin().await;
    let proxy = ProxySetup::new("routes:\n  - host: 127.0.0.1\n")
        .start()
        .await;
    let url = format!("http://127.0.0.1:{port}/x");
    let got = plain_request(&proxy, Request::get(&url).body(body("")).unwrap()).await;
    assert_eq!(got.status, 200);
    let got = plain_request(
        &proxy,
        Request::post(&url)
            .header("content-length", "5")
            .body(body("hello"))
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 502, "{got:?}");
    assert_eq!(got.decision(), Some("upstream-unreachable"));
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "no second connection for a POST"
    );
    assert_eq!(answered.load(Ordering::SeqCst), 101);
}
