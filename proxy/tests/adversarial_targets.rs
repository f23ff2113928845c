//! Bypass catalogue, targets and the way out (issue 5, SPEC §3.1, §3.4, §4): host
//! spellings that smuggle a private address past a name check, the cloud metadata
//! address, the proxy's own port, private ranges in direct mode, international and
//! mixed-case names, and an upstream proxy that refuses (nothing may be sent to it
//! before its reply: CVE-2025-64763 class). Each test asserts the origin saw
//! nothing.

mod support;

use std::sync::{Arc, Mutex};

use support::proxy::{DEFAULT_ROUTES, Fixture, Proxy, ProxyOpts, TOKEN_VAR};
use support::raw::{self, RawResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FORWARD_ROUTES: &str =
    "unmatched: forward\nroutes:\n  - host: localhost\n    path_denylist: [\"/echo/secret/**\"]\n";

/// CONNECT `target`; if the proxy answers the CONNECT itself with a refusal, that
/// is the answer; else TLS (any leaf: the name may be odd) with `sni` and send
/// `GET path` with `Host: target`. An IP literal as `sni` sends no SNI at all
/// (rustls never sends one for an IP), which is what real clients do for hosts
/// that are not DNS names.
async fn judged(proxy: std::net::SocketAddr, target: &str, sni: &str, path: &str) -> RawResponse {
    let (c, r) = raw::connect(proxy, target).await;
    if r.status != 200 {
        return r;
    }
    let tls = raw::try_tls(c.io, sni, raw::insecure_client_config(&[b"http/1.1"]))
        .await
        .unwrap_or_else(|e| panic!("CONNECT {target} was accepted, so TLS must work: {e}"));
    let mut c = raw::Conn::new(tls);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    c.read_response(false).await.expect("response")
}

/// Numeric host spellings that resolve to loopback in some parsers (decimal,
/// octal, short forms) are refused as bad requests. (`0x7f000001` is a valid
/// name by SPEC §3.1 - its last label is not all digits - and is covered by the
/// address check in `private_and_mapped_destinations_are_refused_in_direct_mode`.) Peer:
/// luckyPipewrench/pipelock#123 ("decimal IP encoding all blocked" in its SSRF tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_ipv4_spellings_are_400() {
    let f = Fixture::with_routes(FORWARD_ROUTES).await;
    let port = f.origin.http.port();
    for host in [
        "2130706433",
        "0x7f.1",
        "127.1",
        "0177.0.0.1",
        "127.0.0.01",
        "017700000001",
        "127.000.000.001",
    ] {
        let r = judged(
            f.proxy.addr,
            &format!("{host}:{port}"),
            "127.0.0.1",
            "/echo/x",
        )
        .await;
        r.assert_refused(400, "bad-request", &format!("CONNECT {host}"));
        let r = raw::plain_exchange(
            f.proxy.addr,
            format!("GET http://{host}:{port}/echo/x HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await;
        r.assert_refused(400, "bad-request", &format!("plain http://{host}"));
    }
    f.origin.assert_untouched("numeric hosts");
}

/// IPv6 zone IDs, userinfo, fragments and port 0 are 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_ids_userinfo_fragment_and_port_zero_are_400() {
    let f = Fixture::with_routes(FORWARD_ROUTES).await;
    let port = f.origin.http.port();
    for target in [
        format!("[fe80::1%25lo]:{port}"),
        format!("[::1%lo]:{port}"),
        format!("[fe80::1%eth0]:{port}"),
        "localhost:0".to_string(),
    ] {
        let r = judged(f.proxy.addr, &target, "127.0.0.1", "/echo/x").await;
        r.assert_refused(400, "bad-request", &format!("CONNECT {target}"));
    }
    for url in [
        format!("http://user:pw@127.0.0.1:{port}/echo/x"),
        format!("http://user@localhost:{port}/echo/x"),
        format!("http://127.0.0.1:{port}/echo/x#frag"),
        format!("http://[::1%25lo]:{port}/echo/x"),
        "http://127.0.0.1:0/echo/x".to_string(),
    ] {
        let r = raw::plain_exchange(
            f.proxy.addr,
            format!("GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
        )
        .await;
        r.assert_refused(400, "bad-request", &format!("plain {url}"));
    }
    // A fragment in an origin-form target inside a tunnel (raw target checked).
    let r = raw::tls_exchange(
        f.proxy.addr,
        &f.proxy.ca,
        &f.tls_host(),
        format!(
            "GET /echo/x#frag HTTP/1.1\r\nHost: {}\r\n\r\n",
            f.tls_host()
        )
        .as_bytes(),
    )
    .await;
    r.assert_refused(400, "bad-request", "fragment in tunnel");
    f.origin.assert_untouched("bad targets");
}

/// Private, loopback, link-local (metadata), CGNAT, multicast, unspecified and
/// IPv4-mapped IPv6 destinations are refused in direct mode without an
/// allow-range. Peers: 3proxy/3proxy#807 and stripe/smokescreen#289 (IPv4-mapped
/// bypass), stripe/smokescreen#33 (169.254.169.254).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_mapped_destinations_are_refused_in_direct_mode() {
    let origin = support::origin::Origin::start().await;
    let proxy = Proxy::start(
        ProxyOpts::new(FORWARD_ROUTES)
            .upstream_ca(&origin.ca_file)
            .no_allow_range(),
    );
    let port = origin.http.port();
    for host in [
        "127.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "169.254.169.254",
        "[::ffff:169.254.169.254]",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "224.0.0.1",
        "0.0.0.0",
        "[::]",
        "[fe80::1]",
        "[fd00::1]",
        "localhost",
        // A valid name by SPEC §3.1 that glibc resolves as hex IPv4 127.0.0.1:
        // the address check after resolution must catch it.
        "0x7f000001",
    ] {
        let r = raw::plain_exchange(
            proxy.addr,
            format!("GET http://{host}:{port}/echo/x HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await;
        r.assert_refused(403, "destination-not-allowed", &format!("plain {host}"));
    }
    for host in [
        "127.0.0.1",
        "[::ffff:127.0.0.1]",
        "169.254.169.254",
        "localhost",
    ] {
        let sni = if host == "localhost" {
            "localhost"
        } else {
            // No SNI (an IP name), as real clients do for IP literals.
            "127.0.0.1"
        };
        let r = judged(
            proxy.addr,
            &format!("{host}:{}", origin.https.port()),
            sni,
            "/echo/x",
        )
        .await;
        r.assert_refused(403, "destination-not-allowed", &format!("CONNECT {host}"));
    }
    origin.assert_untouched("private destinations");
}

/// The metadata address with an explicit route under `unmatched: deny` and no
/// range: the route would allow it only if it named the IP literally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_address_via_name_route_is_refused() {
    let f = Fixture::with_routes("unmatched: deny\nroutes:\n  - host: 127.0.0.1\n").await;
    let r = raw::plain_exchange(
        f.proxy.addr,
        b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 403, "metadata under deny: {r:?}");
    assert!(
        matches!(
            r.decision(),
            Some("host-not-allowed") | Some("destination-not-allowed")
        ),
        "{r:?}"
    );
}

/// A route naming the IP literally is allowed without a range (SPEC §4), a name
/// resolving to it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_ip_route_allows_loopback_but_a_name_does_not() {
    let origin = support::origin::Origin::start().await;
    let token = format!("tok-{}", support::random_hex(16));
    let proxy = Proxy::start(
        ProxyOpts::new(DEFAULT_ROUTES)
            .token(TOKEN_VAR, &token)
            .upstream_ca(&origin.ca_file)
            .no_allow_range(),
    );
    let port = origin.http.port();
    let r = raw::plain_exchange(
        proxy.addr,
        format!("GET http://127.0.0.1:{port}/echo/lit HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    r.assert_allowed("route names 127.0.0.1 literally");
    let before = origin.connections();
    let r = raw::tls_exchange(
        proxy.addr,
        &proxy.ca,
        &format!("localhost:{}", origin.https.port()),
        format!(
            "GET /echo/x HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            origin.https.port()
        )
        .as_bytes(),
    )
    .await;
    r.assert_refused(403, "destination-not-allowed", "name resolving to loopback");
    assert_eq!(
        origin.connections(),
        before,
        "no connection for a refused destination"
    );
}

/// The proxy's own listen address and port are refused always, even when a
/// route names 127.0.0.1 and the range allows loopback (a request loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_own_port_is_refused() {
    let f = Fixture::start().await;
    let own = f.proxy.addr;
    let r = raw::plain_exchange(
        own,
        format!("GET http://{own}/echo/loop HTTP/1.1\r\nHost: {own}\r\n\r\n").as_bytes(),
    )
    .await;
    r.assert_refused(403, "destination-not-allowed", "plain to own port");
    let r = judged(own, &own.to_string(), "127.0.0.1", "/echo/loop").await;
    r.assert_refused(403, "destination-not-allowed", "CONNECT to own port");
    let r = raw::tls_exchange(
        own,
        &f.proxy.ca,
        &format!("localhost:{}", own.port()),
        format!(
            "GET /echo/loop HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            own.port()
        )
        .as_bytes(),
    )
    .await;
    r.assert_refused(403, "destination-not-allowed", "CONNECT localhost:own-port");
    f.proxy.assert_no_secret_in_logs();
}

/// Trailing dot and mixed case name the same route: the deny list still applies
/// (no route escape by spelling).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_dot_and_mixed_case_hosts_hit_the_same_route() {
    let f = Fixture::start().await;
    let port = f.origin.https.port();
    for host in ["LOCALHOST", "LocalHost", "localhost."] {
        let target = format!("{host}:{port}");
        let (c, r) = raw::connect(f.proxy.addr, &target).await;
        assert_eq!(r.status, 200, "CONNECT {target}");
        let tls = raw::tls(c.io, "localhost", &f.proxy.ca, &[b"http/1.1"]).await;
        let mut c = raw::Conn::new(tls);
        c.send(format!("GET /echo/secret/x HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .expect("send");
        let r = c.read_response(false).await.expect("response");
        r.assert_refused(403, "path-not-allowed", &format!("deny list via {host}"));
    }
    f.origin.assert_untouched("case/dot spellings");
}

/// Punycode names are ordinary names (unrouted here: 403); raw UTF-8 names are
/// not valid targets (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn punycode_is_a_name_and_raw_unicode_is_400() {
    let f = Fixture::start().await;
    let r = raw::tls_exchange(
        f.proxy.addr,
        &f.proxy.ca,
        "xn--bcher-kva.example:443",
        b"GET / HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n\r\n",
    )
    .await;
    r.assert_refused(403, "host-not-allowed", "punycode unrouted");
    let r = judged(f.proxy.addr, "b\u{fc}cher.example:443", "127.0.0.1", "/").await;
    r.assert_refused(400, "bad-request", "raw UTF-8 CONNECT host");
    let r = raw::plain_exchange(
        f.proxy.addr,
        "GET http://b\u{fc}cher.example/ HTTP/1.1\r\nHost: b\u{fc}cher.example\r\n\r\n".as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400, "raw UTF-8 plain host");
    // Lookalike of an allowed host: must not match the localhost route.
    let r = raw::tls_exchange(
        f.proxy.addr,
        &f.proxy.ca,
        "xn--lcalhost-l4a.example:443",
        b"GET /echo/x HTTP/1.1\r\nHost: xn--lcalhost-l4a.example\r\n\r\n",
    )
    .await;
    r.assert_refused(403, "host-not-allowed", "lookalike");
    f.origin.assert_untouched("international names");
}

/// A plain `http://` request whose Host differs from its URL authority: 421.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_request_host_differing_from_url_is_421() {
    let f = Fixture::start().await;
    let port = f.origin.http.port();
    let r = raw::plain_exchange(
        f.proxy.addr,
        format!("GET http://127.0.0.1:{port}/echo/x HTTP/1.1\r\nHost: evil.example\r\n\r\n")
            .as_bytes(),
    )
    .await;
    r.assert_refused(421, "authority-mismatch", "plain Host != URL");
    f.origin.assert_untouched("plain Host mismatch");
}

/// Bytes an upstream connection received before and after the fake's reply.
type ConnLog = Vec<(Vec<u8>, Vec<u8>)>;

/// A fake upstream proxy: records every byte and when it arrived relative to
/// its own reply, answers each CONNECT with `reply` after a pause.
struct FakeUpstream {
    addr: std::net::SocketAddr,
    /// (bytes received before the reply, bytes after), per connection.
    log: Arc<Mutex<ConnLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    async fn start(reply: &'static str) -> FakeUpstream {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let log = log2.clone();
                tokio::spawn(async move {
                    let mut before = Vec::new();
                    let mut buf = [0u8; 4096];
                    // Read the CONNECT head, then keep reading for 500 ms: any
                    // byte here was sent before our reply.
                    let deadline =
                        tokio::time::Instant::now() + std::time::Duration::from_millis(500);
                    loop {
                        let head_done = before.windows(4).any(|w| w == b"\r\n\r\n");
                        let wait = if head_done {
                            deadline.saturating_duration_since(tokio::time::Instant::now())
                        } else {
                            support::STEP
                        };
                        match tokio::time::timeout(wait, s.read(&mut buf)).await {
                            Ok(Ok(0)) | Ok(Err(_)) => break,
                            Ok(Ok(n)) => before.extend_from_slice(&buf[..n]),
                            Err(_) => break,
                        }
                    }
                    let _ = s.write_all(reply.as_bytes()).await;
                    let mut after = Vec::new();
                    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            after.extend_from_slice(&buf[..n]);
                        }
                    })
                    .await;
                    log.lock().expect("log").push((before, after));
                });
            }
        });
        FakeUpstream { addr, log, task }
    }

    fn log(&self) -> ConnLog {
        self.log.lock().expect("log").clone()
    }
}

fn upstream_proxy_fixture_opts(
    up: &FakeUpstream,
    origin: &support::origin::Origin,
    token: &str,
) -> ProxyOpts {
    ProxyOpts::new(DEFAULT_ROUTES)
        .token(TOKEN_VAR, token)
        .upstream_ca(&origin.ca_file)
        .upstream_proxy(format!("http://{}", up.addr))
}

/// An upstream proxy that refuses: egress-proxy sends it the CONNECT head only,
/// nothing before its reply (CVE-2025-64763 class: data sent after CONNECT before
/// the 200 must not reach a refusing upstream); the refusal surfaces as
/// `upstream-proxy-refused` with its status, 407 as 502 without
/// `Proxy-Authenticate`. The CONNECT names the host (nothing resolved locally).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_upstream_proxy_gets_nothing_before_its_reply() {
    let origin = support::origin::Origin::start().await;
    let token = format!("tok-{}", support::random_hex(16));
    for (reply, status) in [
        (
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            403,
        ),
        (
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            502,
        ),
    ] {
        let up = FakeUpstream::start(reply).await;
        let proxy = Proxy::start(upstream_proxy_fixture_opts(&up, &origin, &token));
        // The client sends its request right behind the CONNECT head, before
        // reading the 200 (cleartext HTTP to the plain route), and over TLS.
        let target = format!("127.0.0.1:{}", origin.http.port());
        let mut c = raw::Conn::new(raw::dial(proxy.addr).await);
        c.send(
            format!(
                "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nPOST /echo/early HTTP/1.1\r\nHost: {target}\r\nContent-Length: 11\r\n\r\nearly-bytes"
            )
            .as_bytes(),
        )
        .await
        .expect("send");
        let r = c.read_connect_answer().await.expect("CONNECT answer");
        assert_eq!(r.status, 200, "the client's CONNECT is answered at once");
        let r = c.read_response(false).await.expect("response");
        r.assert_refused(
            status,
            "upstream-proxy-refused",
            &format!("upstream {reply:?}"),
        );
        assert!(
            r.header("proxy-authenticate").is_none(),
            "Proxy-Authenticate must not pass"
        );

        let r = raw::tls_exchange(
            proxy.addr,
            &proxy.ca,
            &format!("localhost:{}", origin.https.port()),
            format!(
                "GET /echo/tls HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
                origin.https.port()
            )
            .as_bytes(),
        )
        .await;
        r.assert_refused(
            status,
            "upstream-proxy-refused",
            "TLS request via refusing upstream",
        );
        raw::settle().await;
        let log = up.log();
        assert!(
            log.len() >= 2,
            "two upstream CONNECTs expected, saw {}",
            log.len()
        );
        for (before, after) in &log {
            let text = String::from_utf8_lossy(before);
            assert!(text.starts_with("CONNECT "), "upstream got {text:?}");
            let head_end = before
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| i + 4);
            assert_eq!(
                head_end,
                Some(before.len()),
                "no byte may follow the CONNECT head before the upstream's reply: {text:?}"
            );
            assert!(
                after.is_empty(),
                "nothing may be sent on a refused upstream CONNECT: {:?}",
                String::from_utf8_lossy(after)
            );
            let b = format!("{text}{}", String::from_utf8_lossy(after));
            assert!(
                !b.contains(&token),
                "the credential must never reach a refusing upstream"
            );
        }
        assert!(
            log.iter()
                .any(|(b, _)| String::from_utf8_lossy(b).starts_with("CONNECT localhost:")),
            "the upstream CONNECT names the host, not a locally resolved address"
        );
        proxy.assert_no_secret_in_logs();
    }
    origin.assert_untouched("refusing upstream proxy");
}

/// With an upstream proxy, a refused request opens no upstream connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_request_opens_no_upstream_proxy_connection() {
    let origin = support::origin::Origin::start().await;
    let up = FakeUpstream::start("HTTP/1.1 200 Connection established\r\n\r\n").await;
    let proxy = Proxy::start(upstream_proxy_fixture_opts(
        &up,
        &origin,
        "tok-unused-000000",
    ));
    let host = format!("localhost:{}", origin.https.port());
    for path in ["/echo/secret/x", "/git/w.git/git-receive-pack", "/nope"] {
        let r = raw::tls_exchange(
            proxy.addr,
            &proxy.ca,
            &host,
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(r.status == 403, "{path}: {r:?}");
    }
    raw::settle().await;
    assert!(
        up.log().is_empty(),
        "refused requests must not open upstream connections"
    );
}

/// Under `unmatched: forward` an unrouted host is forwarded without any
/// credential, and the git-push block still applies (SPEC §7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_forward_still_blocks_git_push_and_adds_no_credential() {
    let f = Fixture::with_routes(FORWARD_ROUTES).await;
    let port = f.origin.http.port();
    let r = raw::plain_exchange(
        f.proxy.addr,
        format!("POST http://127.0.0.1:{port}/x.git/git-receive-pack HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
    .await;
    r.assert_refused(403, "git-push", "forward mode push");
    f.origin.assert_untouched("forward mode push");
    let r = raw::plain_exchange(
        f.proxy.addr,
        format!("GET http://127.0.0.1:{port}/echo/fwd HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer agent-own\r\n\r\n").as_bytes(),
    )
    .await;
    r.assert_allowed("forward mode GET");
    let seen = f.origin.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].header("authorization") != Some(f.token.as_bytes())
            && !seen[0].headers.iter().any(|(_, v)| v
                .as_bytes()
                .windows(f.token.len())
                .any(|w| w == f.token.as_bytes())),
        "an unrouted host never receives the route's credential"
    );
}

/// An unreachable upstream proxy is 502 `upstream-unreachable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_proxy_is_502() {
    let origin = support::origin::Origin::start().await;
    // A port that was free a moment ago: nothing listens there.
    let dead = support::tools::free_port();
    let proxy = Proxy::start(
        ProxyOpts::new(DEFAULT_ROUTES)
            .token(TOKEN_VAR, "tok-unreachable-000000")
            .upstream_ca(&origin.ca_file)
            .upstream_proxy(format!("http://127.0.0.1:{dead}")),
    );
    let host = format!("localhost:{}", origin.https.port());
    let r = raw::tls_exchange(
        proxy.addr,
        &proxy.ca,
        &host,
        format!("GET /echo/x HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
    .await;
    r.assert_refused(502, "upstream-unreachable", "dead upstream proxy");
    origin.assert_untouched("dead upstream proxy");
}
