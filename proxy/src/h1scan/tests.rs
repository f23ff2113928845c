use super::*;
use crate::limits::FIRST_HEAD_MAX;
use futures_util::FutureExt;
use proptest::prelude::*;
use tokio::io::AsyncReadExt;

/// A reader that returns its chunks one read at a time, then EOF.
struct Chunks(VecDeque<Vec<u8>>);

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(mut c) = self.0.pop_front() {
            let n = c.len().min(buf.remaining());
            buf.put_slice(&c[..n]);
            if n < c.len() {
                self.0.push_front(c.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// What hyper would read through the wrapper, and the queued heads. A
/// refused connection stops (the wrapper stays pending).
fn drain(chunks: Vec<Vec<u8>>, max: usize, bufsize: usize) -> (Vec<u8>, Vec<RawHead>) {
    let chunks = chunks.into_iter().filter(|c| !c.is_empty()).collect();
    let (mut scan, heads) = H1Scan::new(Chunks(chunks), max);
    let mut out = Vec::new();
    let mut buf = vec![0u8; bufsize];
    for _ in 0..1_000_000 {
        match scan.read(&mut buf).now_or_never() {
            Some(Ok(0)) | None => break,
            Some(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Some(Err(e)) => panic!("read failed: {e}"),
        }
    }
    let mut queued = Vec::new();
    while let Some(h) = heads.pop() {
        queued.push(h);
    }
    (out, queued)
}

fn targets(heads: &[RawHead]) -> Vec<&str> {
    heads.iter().map(|h| h.target.as_str()).collect()
}

const PIPELINE: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
POST /b?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nGET /\
POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
3;ext=\"x\"\r\nabc\r\nA \r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n\
GET http://h/d#frag HTTP/1.1\nHost: h\n\n";

#[test]
fn heads_split_at_every_offset_are_found() {
    for bufsize in [1, 7, 8192] {
        for k in 0..=PIPELINE.len() {
            let (out, heads) = drain(
                vec![PIPELINE[..k].to_vec(), PIPELINE[k..].to_vec()],
                64 * 1024,
                bufsize,
            );
            assert_eq!(out, PIPELINE, "split at {k}, buffer {bufsize}");
            assert_eq!(
                targets(&heads),
                ["/a", "/b?q=1", "/c", "http://h/d#frag"],
                "split at {k}"
            );
            assert!(heads.iter().all(|h| h.refusal.is_none() && !h.ends_http));
        }
    }
}

#[test]
fn byte_at_a_time_pipeline_is_found() {
    let chunks = PIPELINE.iter().map(|b| vec![*b]).collect();
    let (out, heads) = drain(chunks, 64 * 1024, 3);
    assert_eq!(out, PIPELINE);
    assert_eq!(heads.len(), 4);
    assert_eq!(heads[1].method, "POST");
}

#[test]
fn content_length_next_to_transfer_encoding_is_kept_for_the_policy() {
    for req in [
        &b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\nContent-Length: 3\r\n\r\nabc",
    ] {
        let (_, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
        assert_eq!(heads[0].dropped_content_length.len(), 1, "{req:?}");
        assert!(heads[0].refusal.is_none());
    }
    let (_, heads) = drain(
        vec![b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec()],
        64 * 1024,
        8192,
    );
    assert!(heads[0].dropped_content_length.is_empty());
}

#[test]
fn heads_hyper_would_reject_are_refused_by_the_proxy() {
    let cases: [(&[u8], u16); 9] = [
        (
            "CONNECT b\u{fc}cher.example:443 HTTP/1.1\r\n\r\n".as_bytes(),
            400,
        ),
        (
            "GET http://b\u{fc}cher.example/ HTTP/1.1\r\n\r\n".as_bytes(),
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
            400,
        ),
        (b"GET / HTTP/1.1\r\nContent-Length: 3, 40\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", 400),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            400,
        ),
    ];
    for (req, status) in cases {
        let (out, heads) = drain(
            vec![req.to_vec(), b"GET / HTTP/1.1\r\n\r\n".to_vec()],
            64 * 1024,
            8192,
        );
        assert_eq!(out, SYNTHETIC_HEAD, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(heads.len(), 1);
        assert_eq!(
            heads[0].refusal.as_ref().map(|r| r.status.as_u16()),
            Some(status)
        );
    }
}

#[test]
fn a_connect_line_over_8_kib_is_400_before_the_head_limit() {
    let mut req = b"CONNECT ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    let (out, heads) = drain(vec![req], 64 * 1024, 8192);
    assert_eq!(out, SYNTHETIC_HEAD);
    assert_eq!(
        heads[0].refusal.as_ref().map(|r| r.status.as_u16()),
        Some(400)
    );
    // A long GET line is only bounded by the head limit.
    let mut req = b"GET /".to_vec();
    req.extend(std::iter::repeat_n(b'a', 20 * 1024));
    req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    let (out, heads) = drain(vec![req.clone()], 64 * 1024, 8192);
    assert_eq!(out, req);
    assert!(heads[0].refusal.is_none());
}

#[test]
fn a_head_over_the_limit_is_431_and_held_back() {
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    for _ in 0..100 {
        req.extend_from_slice(b"X-Filler: 0123456789\r\n");
    }
    let (out, heads) = drain(vec![req.clone()], 1024, 8192);
    assert_eq!(out, SYNTHETIC_HEAD);
    assert_eq!(
        heads[0].refusal.as_ref().map(|r| r.status.as_u16()),
        Some(431)
    );
    // A complete head just over the limit too.
    req.extend_from_slice(b"\r\n");
    let (_, heads) = drain(vec![req.clone()], req.len() - 1, 8192);
    assert_eq!(
        heads[0].refusal.as_ref().map(|r| r.status.as_u16()),
        Some(431)
    );
    let (out, heads) = drain(vec![req.clone()], req.len(), 8192);
    assert_eq!(out, req);
    assert!(heads[0].refusal.is_none());
}

#[test]
fn upgrade_and_connect_stop_scanning() {
    let req = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello GET /x#y HTTP/1.1\r\n\r\n";
    let (out, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
    assert_eq!(out, req);
    assert_eq!(targets(&heads), ["/ws"]);
    assert!(heads[0].ends_http);
    let req = b"CONNECT h:443 HTTP/1.1\r\n\r\n\x16\x03\x01 GET /x HTTP/1.1\r\n\r\n";
    let (out, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
    assert_eq!(out, req);
    assert_eq!(targets(&heads), ["h:443"]);
    assert!(heads[0].ends_http);
}

#[test]
fn the_queue_frees_its_room_after_a_connect() {
    let (mut scan, heads) = H1Scan::new(
        Chunks(VecDeque::from([
            b"GET /a HTTP/1.1\r\n\r\nCONNECT h:443 HTTP/1.1\r\n\r\n".to_vec(),
        ])),
        64 * 1024,
    );
    while read_now(&mut scan).is_some_and(|b| !b.is_empty()) {}
    assert_eq!(heads.pop().map(|h| h.target).as_deref(), Some("/a"));
    assert!(
        heads.0.lock().unwrap().capacity() > 0,
        "more heads may come"
    );
    assert_eq!(heads.pop().map(|h| h.target).as_deref(), Some("h:443"));
    assert_eq!(heads.0.lock().unwrap().capacity(), 0, "none can come");
}

#[test]
fn a_broken_chunked_body_stops_queueing_heads() {
    let req =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /next HTTP/1.1\r\n\r\n";
    let (out, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
    assert_eq!(out, req);
    assert_eq!(targets(&heads), ["/"]);
}

#[test]
fn an_h2_preface_is_passed_through() {
    let req = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let (out, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
    assert_eq!(out, req);
    assert!(heads.is_empty());
    // Only as the first thing on the connection.
    let req = b"GET / HTTP/1.1\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let (_, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
    assert_eq!(heads.len(), 2);
    assert!(heads[1].refusal.is_some());
}

#[test]
fn leading_empty_lines_are_dropped() {
    let (out, heads) = drain(
        vec![b"\r\n\r\n\nGET / HTTP/1.1\r\n\r\n".to_vec()],
        64 * 1024,
        8192,
    );
    assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(targets(&heads), ["/"]);
}

/// One valid request: its bytes and its target.
fn request() -> impl Strategy<Value = (Vec<u8>, String)> {
    let body = prop_oneof![
        Just(None),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Some((false, vec![b], false))),
        (
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..20), 0..4),
            any::<bool>()
        )
            .prop_map(|(c, t)| Some((true, c, t))),
    ];
    (
        prop_oneof![Just("GET"), Just("POST"), Just("PUT")],
        "/[a-z0-9/._~-]{0,12}(\\?[a-z=&]{0,8})?(#[a-z]{0,4})?",
        body,
        any::<bool>(),
    )
        .prop_map(|(method, target, body, lf)| {
            let eol = if lf { "\n" } else { "\r\n" };
            let mut out = format!("{method} {target} HTTP/1.1{eol}Host: h{eol}").into_bytes();
            match body {
                None => out.extend_from_slice(eol.as_bytes()),
                Some((false, chunks, _)) => {
                    let b = chunks.concat();
                    out.extend_from_slice(
                        format!("Content-Length: {}{eol}{eol}", b.len()).as_bytes(),
                    );
                    out.extend_from_slice(&b);
                }
                Some((true, chunks, trailer)) => {
                    out.extend_from_slice(
                        format!("Transfer-Encoding: chunked{eol}{eol}").as_bytes(),
                    );
                    for (i, c) in chunks.iter().enumerate() {
                        let ext = if i % 2 == 1 { ";a=b" } else { "" };
                        out.extend_from_slice(format!("{:X}{ext}\r\n", c.len()).as_bytes());
                        out.extend_from_slice(c);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n");
                    if trailer {
                        out.extend_from_slice(b"X-T: 1\r\n");
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
            (out, target)
        })
}

fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        out.push(bytes[last..p].to_vec());
        last = p;
    }
    out
}

/// What one read of the scanner gives now: `None` if it would wait.
fn read_now<S: AsyncRead + Unpin>(scan: &mut H1Scan<S>) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 8192];
    match scan.read(&mut buf).now_or_never() {
        Some(Ok(n)) => Some(buf[..n].to_vec()),
        Some(Err(e)) => panic!("read failed: {e}"),
        None => None,
    }
}

#[tokio::test]
async fn rests_only_when_asked_between_requests_with_everything_written() {
    use tokio::io::AsyncWriteExt;
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (mut scan, heads) = H1Scan::new(server, 64 * 1024);
    let rest = scan.rest();
    // Not asked: an idle read waits.
    assert_eq!(read_now(&mut scan), None);

    // Part of a head read: asked, it still waits for the rest of it.
    client.write_all(b"GET /a HTTP/1.1\r\nHo").await.unwrap();
    assert_eq!(read_now(&mut scan), None);
    rest.ask();
    assert_eq!(read_now(&mut scan), None, "mid-head");
    assert!(!rest.is_resting());
    client.write_all(b"st: h\r\n\r\n").await.unwrap();
    assert_eq!(
        read_now(&mut scan).unwrap(),
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    );
    // The client's bytes withdrew the ask.
    assert_eq!(read_now(&mut scan), None);
    assert!(!rest.is_resting());

    // Part of a body read: asked, it waits for the body.
    client
        .write_all(b"POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
        .await
        .unwrap();
    assert!(read_now(&mut scan).unwrap().starts_with(b"POST /b"));
    assert_eq!(read_now(&mut scan).unwrap(), b"ab");
    rest.ask();
    assert_eq!(read_now(&mut scan), None, "mid-body");
    client.write_all(b"cde").await.unwrap();
    assert_eq!(read_now(&mut scan).unwrap(), b"cde");

    // A response written and not flushed: asked, it waits.
    scan.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
    rest.ask();
    assert_eq!(read_now(&mut scan), None, "unflushed");
    assert!(!rest.is_resting());
    scan.flush().await.unwrap();

    // Between requests, everything written, asked: the reader sees the
    // end of the stream, and a shutdown is not passed on.
    rest.ask();
    assert_eq!(read_now(&mut scan).unwrap(), b"", "rested");
    assert!(rest.is_resting());
    scan.shutdown().await.unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 64];
    while let Some(Ok(n)) = client.read(&mut b).now_or_never() {
        assert!(n > 0, "the client saw a close while the connection rests");
        got.extend_from_slice(&b[..n]);
    }
    assert_eq!(got, b"HTTP/1.1 200 OK\r\n");

    // The client's next bytes wake it: kept whole for the next reader.
    scan.shed();
    assert_eq!((scan.raw.capacity(), scan.ready.capacity()), (0, 0));
    client.write_all(b"GET /c HTTP/1.1\r\n\r\n").await.unwrap();
    let woke = std::future::poll_fn(|cx| scan.poll_wake(cx)).await.unwrap();
    assert!(woke && !rest.is_resting());
    assert_eq!(read_now(&mut scan).unwrap(), b"GET /c HTTP/1.1\r\n\r\n");
    let targets: Vec<_> = std::iter::from_fn(|| heads.pop())
        .map(|h| h.target)
        .collect();
    assert_eq!(targets, ["/a", "/b", "/c"], "each head queued once");

    // Serving again, a shutdown reaches the client.
    scan.shutdown().await.unwrap();
    assert_eq!(client.read(&mut b).await.unwrap(), 0);
}

#[tokio::test]
async fn a_resting_stream_that_ends_does_not_wake_and_unread_bytes_come_first() {
    use tokio::io::AsyncWriteExt;
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (mut scan, _heads) = H1Scan::new(server, 64 * 1024);
    client.write_all(b"GET /next").await.unwrap();
    assert_eq!(read_now(&mut scan), None);
    // Bytes hyper had read and not used are handed over before the rest.
    scan.unread(b"GET /kept HTTP/1.1\r\n\r\n");
    assert_eq!(read_now(&mut scan).unwrap(), b"GET /kept HTTP/1.1\r\n\r\n");
    drop(client);
    let mut scan = {
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        H1Scan::new(server, 64 * 1024).0
    };
    let woke = std::future::poll_fn(|cx| scan.poll_wake(cx)).await.unwrap();
    assert!(!woke, "the stream ended");
}

#[test]
fn a_plain_connect_is_sorted_out_with_the_bytes_after_it() {
    let head = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let mut all = head.to_vec();
    all.extend_from_slice(&[0x16, 3, 1]);
    let want = First::Connect {
        len: head.len(),
        target: "example.com:443".into(),
    };
    assert_eq!(first(&all, 0), want);
    // HTTP/1.0 (Python's http.client) and bare LF line ends too.
    assert!(matches!(
        first(b"CONNECT [::1]:8443 HTTP/1.0\n\n", 0),
        First::Connect { len: 29, .. }
    ));
    // Resumed: the same answer from every split.
    for k in 0..head.len() {
        assert_eq!(first(&head[..k], 0), First::More, "{k}");
        assert_eq!(first(head, k.saturating_sub(2)), first(head, 0));
    }
}

#[test]
fn every_other_first_head_is_left_to_hyper_and_the_tracker() {
    let long = format!("CONNECT {}:443 HTTP/1.1\r\n\r\n", "a".repeat(5000));
    let cases: [&[u8]; 12] = [
        b"GET http://example.com/ HTTP/1.1\r\n\r\n",
        b"G",
        b"connect example.com:443 HTTP/1.1\r\n\r\n",
        b"\r\nCONNECT example.com:443 HTTP/1.1\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
        b"CONNECT example.com:443 HTTP/2.0\r\n\r\n",
        b"CONNECT ex ample.com:443 HTTP/1.1\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost : x\r\n\r\n",
        "CONNECT b\u{fc}cher.example:443 HTTP/1.1\r\n\r\n".as_bytes(),
        long.as_bytes(),
    ];
    for case in cases {
        assert_eq!(
            first(case, 0),
            First::Other,
            "{:?}",
            String::from_utf8_lossy(case)
        );
    }
    // Undecided until the head ends or passes the limit.
    assert_eq!(
        first(b"CONNECT example.com:443 HTTP/1.1\r\n", 0),
        First::More
    );
    assert_eq!(
        first(&long.as_bytes()[..FIRST_HEAD_MAX - 1], 0),
        First::More
    );
}

proptest! {
    /// Whatever `first` takes as a plain CONNECT head, the tracker passes,
    /// whole and ending at the same byte, as a CONNECT to the same target.
    /// (A generated header line may be empty: the head then ends there.)
    #[test]
    fn a_first_connect_is_one_the_tracker_passes(
        target in prop_oneof![
            Just("example.com:443".to_string()),
            "[ -~]{0,40}",
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ],
        version in prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0"), Just("HTTP/1.2"), Just("")],
        headers in proptest::collection::vec(
            prop_oneof![
                Just("Host: h\r\n".to_string()),
                Just("Content-Length: 0\r\n".to_string()),
                Just("Proxy-Authorization: Basic eA==\r\n".to_string()),
                "[ -~]{0,30}\r\n",
            ],
            0..4,
        ),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
        eol in prop_oneof![Just("\r\n"), Just("\n")],
    ) {
        let head = format!("CONNECT {target} {version}{eol}{}{eol}", headers.concat());
        let mut all = head.clone().into_bytes();
        all.extend_from_slice(&tail);
        if let First::Connect { len, target } = first(&all, 0) {
            prop_assert!(len <= all.len());
            let (out, heads) = drain(vec![all[..len].to_vec()], 64 * 1024, 8192);
            prop_assert_eq!(&out[..], &all[..len]);
            prop_assert_eq!(heads.len(), 1);
            prop_assert!(heads[0].refusal.is_none());
            prop_assert_eq!(&heads[0].method, &http::Method::CONNECT);
            let hyper_target = http::Uri::try_from(heads[0].target.as_str()).map(|u| u.to_string());
            prop_assert_eq!(hyper_target.ok(), Some(target));
        }
    }

    #[test]
    fn first_never_panics_and_decides_within_its_limit(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        from in any::<usize>(),
        connect in any::<bool>(),
    ) {
        let mut all = if connect { b"CONNECT ".to_vec() } else { Vec::new() };
        all.extend_from_slice(&bytes);
        let from = from % (all.len() + 1);
        let sorted = first(&all, from);
        if let First::Connect { len, .. } = sorted {
            prop_assert!(len <= all.len() && len <= FIRST_HEAD_MAX);
        }
    }

    #[test]
    fn every_head_of_a_valid_pipeline_is_found(
        reqs in proptest::collection::vec(request(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        bufsize in 1usize..64,
    ) {
        let bytes: Vec<u8> = reqs.iter().flat_map(|(b, _)| b.clone()).collect();
        let (out, heads) = drain(split(&bytes, &cuts), 64 * 1024, bufsize);
        prop_assert_eq!(out, bytes);
        let want: Vec<&str> = reqs.iter().map(|(_, t)| t.as_str()).collect();
        prop_assert_eq!(targets(&heads), want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        prefix in prop_oneof![
            Just(&b""[..]),
            Just(&b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..]),
            Just(&b"GET / HTTP/1.1\r\n"[..]),
        ],
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        max in 16usize..1024,
    ) {
        let mut all = prefix.to_vec();
        all.extend_from_slice(&bytes);
        let (out, heads) = drain(split(&all, &cuts), max, 17);
        // Nothing is invented: hyper gets input bytes or the synthetic head.
        prop_assert!(out.len() <= all.len() + SYNTHETIC_HEAD.len());
        prop_assert!(heads.len() <= all.len());
    }
}
