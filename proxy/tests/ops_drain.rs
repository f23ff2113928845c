//! SIGTERM/SIGINT drain and the idle timeout of the real binary (SPEC §5,
//! issue 5): in-flight downloads and SSE streams finish after the signal
//! within `--grace`, new connections are refused, idle connections close,
//! the exit code is 0; past the grace the rest is cut and the exit is still
//! 0; an idle keep-alive timeout never cuts a response that is streaming; an
//! idle tunnel rests (frees its HTTP state) and serves on when woken.

mod support;

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use support::T;
use support::clients::*;
use support::origin::Origin;
use support::proxy::{Proxy, ProxyOpts, sample};
use tokio::io::AsyncReadExt;

fn routes() -> String {
    "unmatched: deny\nroutes:\n  - host: localhost\n".into()
}

fn start(args: &[&str]) -> (Proxy, u16, Origin) {
    start_with(args, false)
}

/// As `start`, with the admin port (`/metrics`) when `admin`.
fn start_with(args: &[&str], admin: bool) -> (Proxy, u16, Origin) {
    let rt = tokio::runtime::Handle::current();
    let origin = tokio::task::block_in_place(|| rt.block_on(Origin::streaming()));
    let mut opts = ProxyOpts::ephemeral(routes());
    opts.upstream_ca = Some(origin.ca_file.clone());
    opts.admin = admin;
    for a in args {
        opts.args.push((*a).into());
    }
    let proxy = Proxy::start(opts);
    let tp = origin.https.port();
    (proxy, tp, origin)
}

/// Sends GET `path` and waits for the head and the first body frame.
async fn begin1(
    send: &mut hyper::client::conn::http1::SendRequest<CBody>,
    host: &str,
    path: &str,
) -> (hyper::body::Incoming, usize) {
    let req = hyper::Request::get(path)
        .header("host", host)
        .body(empty())
        .unwrap();
    let resp = tokio::time::timeout(T, send.send_request(req))
        .await
        .expect("head in time")
        .expect("head");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = first_data(&mut body).await;
    (body, first)
}

async fn first_data(body: &mut hyper::body::Incoming) -> usize {
    loop {
        let f = tokio::time::timeout(T, body.frame())
            .await
            .expect("first frame in time")
            .expect("a frame")
            .expect("frame ok");
        if let Ok(d) = f.into_data() {
            return d.len();
        }
    }
}

/// Whether the client connection was closed by the proxy within `limit`.
async fn wait_closed(
    send: &hyper::client::conn::http1::SendRequest<CBody>,
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if send.is_closed() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn rest(body: hyper::body::Incoming) -> Result<Vec<u8>, String> {
    match tokio::time::timeout(T, body.collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes().to_vec()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_downloads_and_sse_refuses_new_clients_and_exits_0() {
    let (mut proxy, tp, _origin) = start(&["--grace", "10"]);
    let host = format!("localhost:{tp}");

    // In flight: a slow download over h1 (15 x 16 KiB, one per 200 ms) and
    // an SSE stream over h2 (10 events, one per 300 ms).
    let mut h1 = h1_through(&proxy, "localhost", tp)
        .await
        .expect("h1 tunnel");
    let (slow, first_slow) = begin1(&mut h1, &host, "/slow?n=15&ms=200").await;
    let mut h2 = h2_through(&proxy, "localhost", tp)
        .await
        .expect("h2 tunnel");
    let req = hyper::Request::get(format!("https://{host}/sse?n=10&ms=300"))
        .body(empty())
        .unwrap();
    let resp = h2.send_request(req).await.expect("sse head");
    assert_eq!(resp.status(), 200);
    let mut sse = resp.into_body();
    let _ = first_data(&mut sse).await;
    // An idle keep-alive connection (one request done).
    let mut idle = h1_through(&proxy, "localhost", tp)
        .await
        .expect("idle tunnel");
    assert_eq!(get1(&mut idle, &host, "/x").await.unwrap().status, 200);
    // A raw idle client connection that never sent anything.
    let mut silent = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();

    let signalled = Instant::now();
    proxy.signal("TERM");
    proxy.wait_line(|v| v["msg"] == "draining", "the draining line");

    // New connections are refused (the listener is closed).
    let deadline = Instant::now() + T;
    loop {
        match tokio::net::TcpStream::connect(proxy.addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "the proxy port still accepts after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // The idle connections are closed without waiting for the grace.
    let mut b = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut b)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent client is closed on drain"
    );
    assert!(
        wait_closed(&idle, Duration::from_secs(5)).await,
        "an idle keep-alive connection is closed on drain"
    );

    // The in-flight responses complete, whole.
    let slow_rest = rest(slow).await.expect("download completes after SIGTERM");
    assert_eq!(
        first_slow + slow_rest.len(),
        15 * 16 * 1024,
        "whole download"
    );
    let sse_rest =
        String::from_utf8(rest(sse).await.expect("SSE completes after SIGTERM")).unwrap();
    assert!(
        sse_rest.contains("data: event 9\n\n"),
        "last SSE event arrived: {sse_rest}"
    );

    let code = proxy.wait_exit(T);
    let took = signalled.elapsed();
    eprintln!("drain: exit {code:?} {took:?} after SIGTERM");
    assert_eq!(code, Some(0), "exit 0 after drain:\n{}", proxy.redacted());
    assert!(
        took < Duration::from_secs(10),
        "drained before the grace ran out ({took:?})"
    );
    assert!(proxy.count(|v| v["msg"] == "drained; exiting") == 1);
    // The access lines of the responses that finished while draining are
    // written, before the exit line (SPEC §5: one line per request).
    proxy.wait_line(|v| v["path"] == "/sse", "the SSE stream's access line");
    let lines = proxy.json_lines();
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| lines.iter().position(pred);
    let (slow, sse, drained) = (
        at(&|v| v["msg"] == "request" && v["path"] == "/slow"),
        at(&|v| v["msg"] == "request" && v["path"] == "/sse"),
        at(&|v| v["msg"] == "drained; exiting"),
    );
    assert!(
        slow.is_some() && sse < drained && slow < drained,
        "access lines of the drained requests before the exit line:\n{}",
        proxy.redacted()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_the_grace_is_cut_and_the_exit_is_still_0() {
    let (mut proxy, tp, _origin) = start(&["--grace", "1"]);
    let host = format!("localhost:{tp}");
    let mut h1 = h1_through(&proxy, "localhost", tp).await.expect("tunnel");
    // 100 events, one per 200 ms: 20 s, far past the grace.
    let (sse, _) = begin1(&mut h1, &host, "/sse?n=100&ms=200").await;
    let signalled = Instant::now();
    proxy.signal("INT");
    let code = proxy.wait_exit(T);
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "SIGINT exits 0:\n{}", proxy.redacted());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "waited for the grace, then exited ({took:?})"
    );
    // An error is a cut too: what a client sees past the grace.
    if let Ok(body) = rest(sse).await {
        assert!(
            !String::from_utf8_lossy(&body).contains("event 99"),
            "the stream was cut at the grace"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_closes_idle_connections_but_never_a_streaming_response() {
    let (proxy, tp, _origin) = start(&["--header-read-timeout", "1"]);
    let host = format!("localhost:{tp}");
    // A response streaming for ~3 s, three times the timeout.
    let mut h1 = h1_through(&proxy, "localhost", tp).await.expect("tunnel");
    let (sse, _) = begin1(&mut h1, &host, "/sse?n=8&ms=400").await;
    let body = String::from_utf8(rest(sse).await.expect("stream not cut")).unwrap();
    assert!(body.contains("data: event 7\n\n"), "{body}");

    // An idle keep-alive connection is closed after about the timeout.
    let mut idle = h1_through(&proxy, "localhost", tp).await.expect("tunnel");
    assert_eq!(get1(&mut idle, &host, "/x").await.unwrap().status, 200);
    let since = Instant::now();
    assert!(
        wait_closed(&idle, Duration::from_secs(10)).await,
        "idle keep-alive connection closed by the proxy"
    );
    eprintln!("idle connection closed after {:?}", since.elapsed());

    // A client that opens a connection and sends nothing is closed too.
    let mut silent = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut b = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut b)).await;
    assert!(
        r.is_ok(),
        "a silent client is closed after the header-read timeout"
    );
}

/// The header-read timeout runs from a connection's start to the end of its
/// first head, whichever path reads it (the listener a first CONNECT, hyper
/// anything else): a client that waits 2.5 s, then starts a head and stops,
/// is closed without a response 3 s after it connected, not 3 s after its
/// first byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_head_is_due_one_header_read_timeout_after_the_connection_opened() {
    let (proxy, tp, _origin) = start(&["--header-read-timeout", "3"]);
    for start in [
        "GET /healthz HTTP/1.1\r\nHost: x\r\n".to_string(),
        format!("CONNECT localhost:{tp} HTTP/1.1\r\n"),
    ] {
        let opened = Instant::now();
        let mut c = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        tokio::io::AsyncWriteExt::write_all(&mut c, start.as_bytes())
            .await
            .unwrap();
        let mut b = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(10), c.read(&mut b)).await;
        let after = opened.elapsed();
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "{start:?}: closed without a response, got {r:?}"
        );
        assert!(
            (Duration::from_millis(2900)..Duration::from_millis(4900)).contains(&after),
            "{start:?}: closed {after:?} after connecting; due at 3 s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2_connection_is_closed_but_a_streaming_h2_response_is_not() {
    let (proxy, tp, _origin) = start(&["--idle-timeout", "1"]);
    let host = format!("localhost:{tp}");
    let mut h2 = h2_through(&proxy, "localhost", tp)
        .await
        .expect("h2 tunnel");
    // ~3 s of SSE, three times the idle timeout: never cut.
    let req = hyper::Request::get(format!("https://{host}/sse?n=8&ms=400"))
        .body(empty())
        .unwrap();
    let resp = h2.send_request(req).await.expect("sse head");
    let body = String::from_utf8(rest(resp.into_body()).await.expect("stream not cut")).unwrap();
    assert!(body.contains("data: event 7\n\n"), "{body}");
    assert!(!h2.is_closed(), "not closed while streaming");
    // Then idle: closed (GOAWAY) after about the timeout.
    let since = Instant::now();
    let deadline = since + Duration::from_secs(10);
    while !h2.is_closed() {
        assert!(Instant::now() < deadline, "an idle h2 connection is closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("idle h2 connection closed after {:?}", since.elapsed());
}

/// The value of `egress_proxy_resting_connections` on the admin port.
async fn resting(proxy: &Proxy) -> f64 {
    sample(&proxy.metrics().await, "egress_proxy_resting_connections")
}

/// Waits until `n` tunnels rest.
async fn until_resting(proxy: &Proxy, n: f64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while resting(proxy).await != n {
        assert!(Instant::now() < deadline, "{what}: {n} resting never seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_rests_then_serves_on_the_same_connection_and_closes_on_drain() {
    let (mut proxy, tp, origin) = start_with(&[], true);
    let host = format!("localhost:{tp}");

    let mut a = h1_through(&proxy, "localhost", tp).await.expect("tunnel");
    let got = get1(&mut a, &host, "/first").await.unwrap();
    assert_eq!((got.status, got.text()), (200, "origin ok /first\n".into()));
    until_resting(&proxy, 1.0, "after one request").await;

    // The client's next request on the same connection wakes it: a body
    // and a plain GET, each answered whole and in order.
    let req = hyper::Request::post("/upload")
        .header("host", &host)
        .body(body("eleven byte"))
        .unwrap();
    let resp = tokio::time::timeout(T, a.send_request(req))
        .await
        .expect("in time")
        .expect("a woken connection answers");
    let got = collect(resp).await;
    assert_eq!(
        (got.status, got.text()),
        (200, "origin ok /upload\n".into())
    );
    let seen = origin.seen();
    let upload = seen
        .iter()
        .find(|s| s.path == "/upload")
        .expect("at the origin");
    assert_eq!((upload.method.as_str(), upload.body_len), ("POST", 11));
    until_resting(&proxy, 1.0, "after the upload").await;
    let got = get1(&mut a, &host, "/third").await.unwrap();
    assert_eq!((got.status, got.text()), (200, "origin ok /third\n".into()));
    assert!(!a.is_closed(), "one keep-alive connection throughout");

    // A second tunnel rests beside it; the drain closes both at once.
    let mut b = h1_through(&proxy, "localhost", tp).await.expect("tunnel");
    assert_eq!(get1(&mut b, &host, "/b").await.unwrap().status, 200);
    until_resting(&proxy, 2.0, "two tunnels").await;
    proxy.signal("TERM");
    assert!(
        wait_closed(&a, Duration::from_secs(5)).await,
        "a resting tunnel closes on drain"
    );
    assert!(
        wait_closed(&b, Duration::from_secs(5)).await,
        "a resting tunnel closes on drain"
    );
    assert_eq!(proxy.wait_exit(T), Some(0), "{}", proxy.redacted());
    let lines = proxy.json_lines();
    for path in ["/first", "/upload", "/third", "/b"] {
        let n = lines
            .iter()
            .filter(|v| v["msg"] == "request" && v["path"] == path)
            .count();
        assert_eq!(n, 1, "one access line for {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_woken_tunnel_serves_pipelined_requests_and_a_slow_head_still_times_out() {
    let (proxy, tp, origin) = start_with(&["--header-read-timeout", "1"], true);
    let tls = tls_through(&proxy, "localhost", tp, &[b"http/1.1"])
        .await
        .expect("tunnel");
    let mut conn = support::raw::Conn::new(tls);
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost:{tp}\r\n\r\n");
    conn.send(get("/one").as_bytes()).await.unwrap();
    assert_eq!(
        conn.read_response(false).await.unwrap().body_text(),
        "origin ok /one\n"
    );
    until_resting(&proxy, 1.0, "after one request").await;

    // Two requests in one write wake it: two answers, in order.
    conn.send(format!("{}{}", get("/two"), get("/three")).as_bytes())
        .await
        .unwrap();
    for path in ["/two", "/three"] {
        let r = conn.read_response(false).await.unwrap();
        assert_eq!(r.body_text(), format!("origin ok {path}\n"));
    }
    until_resting(&proxy, 1.0, "after the pipelined pair").await;

    // Part of a head wakes it too, and the header-read timeout (1 s) then
    // closes the connection: resting gives a slow client no extra time
    // beyond one timeout.
    conn.send(b"GET /slow HTTP/1.1\r\nHo").await.unwrap();
    let woke = Instant::now();
    let mut b = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.io.read(&mut b)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a partial head after a rest is closed by the timeout: {closed:?}"
    );
    eprintln!("closed {:?} after the partial head", woke.elapsed());
    assert_eq!(resting(&proxy).await, 0.0);
    assert!(
        origin.seen().iter().all(|s| s.path != "/slow"),
        "the partial head reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_inside_a_tunnel_is_cut_by_the_header_read_timeout() {
    let (proxy, tp, origin) = start(&["--header-read-timeout", "1"]);
    let tls = tls_through(&proxy, "localhost", tp, &[b"http/1.1"])
        .await
        .expect("tunnel");
    let mut conn = support::raw::Conn::new(tls);
    conn.send(format!("GET /one HTTP/1.1\r\nHost: localhost:{tp}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        conn.read_response(false).await.unwrap().body_text(),
        "origin ok /one\n"
    );
    // The next head, a byte every 100 ms: the connection never rests (its
    // head is never whole), so only the header-read timeout can end it.
    conn.send(b"GET /slow HTTP/1.1\r\nX-Slow: ").await.unwrap();
    let began = Instant::now();
    let mut cut = None;
    for _ in 0..50 {
        if conn.send(b"a").await.is_err() {
            cut = Some(began.elapsed());
            break;
        }
        let mut b = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), conn.io.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = Some(began.elapsed());
                break;
            }
            Ok(Ok(n)) => panic!("an answer to a head never finished: {:?}", &b[..n]),
            Err(_) => {}
        }
    }
    let cut = cut.expect("the trickled head was cut within 5 s");
    eprintln!("trickled head cut after {cut:?}");
    assert!(
        cut >= Duration::from_millis(800),
        "cut by the 1 s timeout, not before: {cut:?}"
    );
    assert!(
        origin.seen().iter().all(|s| s.path != "/slow"),
        "the trickled head reached the origin"
    );
}
