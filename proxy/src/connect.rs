//! CONNECT tunnels: sniffing the first bytes and terminating TLS.
//!
//! Owns: what happens after the client's CONNECT was answered 200: a TLS
//! ClientHello is terminated with a leaf for the CONNECT host (whatever SNI
//! says; a different SNI is refused by the policy with 421), HTTP/1 is served
//! as cleartext, anything else is closed; an idle HTTP/1 tunnel rests (its
//! hyper connection freed until the client's next bytes).
//! Must never: open a blind tunnel, contact the upstream before a request
//! inside the tunnel was allowed, or let a rest change what the client sees.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use addon_rules::ConnectTarget;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::either::Either;

use crate::body::{BoxBody, Guarded};
use crate::h1scan::H1Scan;
use crate::io::{Prefixed, ReadAhead};
use crate::limits::{LINGER_IDLE, MAX_SNIFFED_METHOD, REST_AFTER};
use crate::listener::Socket;
use crate::metrics;
use crate::serve::{self, ClientHello, Ctx, Tunnel};
use crate::shutdown::{Activity, Busy, WhenWoken};
use crate::state::Shared;

/// What the first bytes of a tunnel are.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniffed {
    Tls,
    Http1,
    Other,
}

/// Where in an HTTP/1 request line the classifier is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// The method token: this many uppercase letters so far.
    Method(usize),
    /// The request-target: this many bytes so far.
    Target(usize),
    /// `HTTP/1.x`: this many bytes of it so far.
    Version(usize),
    /// After `HTTP/1.x\r`.
    Lf,
}

/// Classifies the first bytes of a tunnel, resuming where the last call
/// stopped (each byte is looked at once, however the client splits them).
///
/// TLS: a handshake record's first byte (the ClientHello is checked by
/// rustls). HTTP/1: the whole first line is an HTTP/1.x request line,
/// `METHOD SP target SP HTTP/1.x` then CRLF or LF, so an `EHLO`, an SSH
/// banner, a line with no version, or control bytes after a method-like
/// prefix close the tunnel at once instead of waiting for a head that will
/// never come. A target longer than `max_line` is left to the head limit of
/// `h1scan` (431). Bytes of 0x80 and above in the target are left to
/// `h1scan` too, which refuses them with a reason.
#[derive(Debug)]
pub struct Classifier {
    seen: usize,
    line: Line,
    max_line: usize,
}

impl Classifier {
    pub fn new(max_line: usize) -> Self {
        Classifier {
            seen: 0,
            line: Line::Method(0),
            max_line,
        }
    }

    /// Looks at the bytes of `all` not seen yet (`all` only grows).
    /// `None`: more bytes are needed.
    pub fn classify(&mut self, all: &[u8]) -> Option<Sniffed> {
        if self.seen == 0 && all.first() == Some(&0x16) {
            return Some(Sniffed::Tls);
        }
        while let Some(&b) = all.get(self.seen) {
            self.seen += 1;
            self.line = match (self.line, b) {
                (Line::Method(n), b'A'..=b'Z') if n < MAX_SNIFFED_METHOD => Line::Method(n + 1),
                // The h2 prior-knowledge preface is not HTTP/1 (h2c is refused).
                (Line::Method(_), b' ') if all.starts_with(b"PRI ") => return Some(Sniffed::Other),
                (Line::Method(n), b' ') if n > 0 => Line::Target(0),
                (Line::Target(n), b' ') if n > 0 => Line::Version(0),
                (Line::Target(n), 0x21..=0x7e | 0x80..=0xff) => {
                    if n >= self.max_line {
                        return Some(Sniffed::Http1);
                    }
                    Line::Target(n + 1)
                }
                (Line::Version(7), b'0' | b'1') => Line::Version(8),
                (Line::Version(n), _) if n < 7 && b == b"HTTP/1."[n] => Line::Version(n + 1),
                (Line::Version(8), b'\r') => Line::Lf,
                (Line::Version(8) | Line::Lf, b'\n') => return Some(Sniffed::Http1),
                _ => return Some(Sniffed::Other),
            };
        }
        None
    }
}

/// Reads until the first bytes can be classified (at most the first line);
/// `early`: bytes of the tunnel read already.
async fn sniff<S: AsyncRead + Unpin>(
    io: &mut S,
    max_line: usize,
    early: Vec<u8>,
) -> std::io::Result<(Sniffed, Vec<u8>)> {
    let mut classifier = Classifier::new(max_line);
    if let Some(kind) = classifier.classify(&early) {
        return Ok((kind, early));
    }
    let mut buf = early;
    let mut chunk = [0u8; 2048];
    loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok((Sniffed::Other, buf));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(kind) = classifier.classify(&buf) {
            return Ok((kind, buf));
        }
    }
}

/// A tunnel's client stream: the proxy port's socket when the CONNECT was
/// the connection's first request (`listener`), else hyper's upgrade.
pub type ClientIo = Either<Socket, TokioIo<Upgraded>>;

/// The tunnel's stream once its first bytes are read: they are replayed.
type Opened = Prefixed<ClientIo>;

/// Runs a tunnel the client opened with CONNECT to `target`; `early`: the
/// bytes the client sent after its CONNECT head, read already.
///
/// Each stage (sniffing, the TLS handshake, serving) runs boxed, the ones
/// before serving freed when they end: the task then keeps only the serving
/// stage's state for the life of a keep-alive connection, and room for none
/// of the other ways of serving (S6).
pub async fn tunnel(
    shared: Arc<Shared>,
    client: std::net::SocketAddr,
    io: ClientIo,
    early: Vec<u8>,
    target: ConnectTarget,
) {
    let (max_head, handshake_limit) = (
        shared.limits.max_head_bytes,
        shared.limits.handshake_timeout,
    );
    // Each box is built in a statement of its own: a box built inside the
    // `.await` statement still leaves room for the boxed future in this one.
    let opened = Box::pin(open(&shared, io, early, &target));
    let opened = opened.await;
    let Some((kind, io, leaf)) = opened else {
        return;
    };
    match kind {
        Sniffed::Other => {
            tracing::info!(client = %client, host = %target.host, "closed a tunnel that is neither TLS nor HTTP/1");
        }
        Sniffed::Http1 => {
            let (io, heads) = H1Scan::new(io, max_head);
            let ctx = Arc::new(Ctx {
                shared,
                client,
                tunnel: Some(Tunnel {
                    connect: target,
                    tls: None,
                }),
                raw: Some(heads),
            });
            let serving = Box::pin(serve_h1(ctx, io));
            serving.await;
        }
        Sniffed::Tls => {
            let hs = Box::pin(handshake(io, leaf, handshake_limit));
            let hs = hs.await;
            let (tls, sni) = match hs {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(client = %client, host = %target.host, error = %e, "client TLS handshake failed");
                    return;
                }
            };
            let alpn = tls.get_ref().1.alpn_protocol();
            let h1_only = alpn == Some(b"http/1.1");
            let tunnel = Some(Tunnel {
                connect: target,
                tls: Some(ClientHello { sni }),
            });
            if alpn == Some(b"h2") {
                // h2 is framed by hyper itself: nothing to scan, no cost.
                let ctx = Arc::new(Ctx {
                    shared,
                    client,
                    tunnel,
                    raw: None,
                });
                let serving = Box::pin(serve_auto(ctx, tls));
                serving.await;
            } else {
                // http/1.1, or no ALPN (the scanner steps aside for an h2
                // preface).
                let (io, heads) = H1Scan::new(tls, max_head);
                let ctx = Arc::new(Ctx {
                    shared,
                    client,
                    tunnel,
                    raw: Some(heads),
                });
                if h1_only {
                    let serving = Box::pin(serve_h1(ctx, io));
                    serving.await;
                } else {
                    let serving = Box::pin(serve_auto(ctx, io));
                    serving.await;
                }
            }
        }
    }
}

/// Finds or mints the host's leaf and reads the tunnel's first bytes.
/// `None`: the client sent nothing classifiable in time (or closed).
async fn open(
    shared: &Shared,
    mut io: ClientIo,
    early: Vec<u8>,
    target: &ConnectTarget,
) -> Option<(Sniffed, Opened, LeafResult)> {
    let limits = &shared.limits;
    // The 200 is sent: find or mint the host's leaf now, while the client
    // makes its ClientHello, rather than after the ClientHello arrives.
    let leaf = shared.leaves.server_config(&target.host).await;
    let sniffed = tokio::time::timeout(
        limits.handshake_timeout,
        sniff(&mut io, limits.max_head_bytes, early),
    )
    .await;
    let Ok(Ok((kind, prefix))) = sniffed else {
        return None;
    };
    Some((kind, Prefixed::new(prefix, io), leaf))
}

type LeafResult = Result<Arc<rustls::ServerConfig>, crate::tls::leaf::LeafError>;

/// A tunnel's TLS stream, boxed where it is made: a future keeps room for
/// every value it holds across an await (a moved-out argument included), so
/// the futures that pass it on hold a pointer instead of a copy of its ~1.2
/// KiB (S6).
type ClientTls = tokio_rustls::server::TlsStream<ReadAhead<Opened>>;

/// The client-side TLS handshake with the host's leaf, bounded in time;
/// returns the stream and the SNI the client sent.
async fn handshake(
    io: Opened,
    leaf: LeafResult,
    limit: std::time::Duration,
) -> std::io::Result<(Box<ClientTls>, Option<String>)> {
    let hs = async {
        let start =
            LazyConfigAcceptor::new(rustls::server::Acceptor::default(), ReadAhead::new(io))
                .await?;
        let sni = start.client_hello().server_name().map(|s| s.to_owned());
        let config = leaf.map_err(std::io::Error::other)?;
        let tls = start.into_stream(config).await?;
        Ok::<_, std::io::Error>((Box::new(tls), sni))
    };
    tokio::time::timeout(limit, hs)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// A response as a connection's service hands it to hyper: its body keeps
/// the request in flight (the connection's activity) until it ends.
type Served = Response<Guarded<BoxBody, Busy>>;

/// The service of one client connection, and the connection's activity
/// (requests in flight, for the idle timeout and for resting).
fn service(
    ctx: Arc<Ctx>,
) -> (
    impl hyper::service::Service<
        Request<Incoming>,
        Response = Served,
        Error = Infallible,
        Future: Send + 'static,
    > + Send
    + 'static,
    Arc<Activity>,
) {
    let activity = Arc::new(Activity::default());
    let watched = activity.clone();
    let handler = move |req| {
        let busy = watched.begin();
        let ctx = ctx.clone();
        // Boxed per request: hyper keeps room for one request future per
        // connection for the connection's whole life, so an idle keep-alive
        // connection would hold the full size of this future (S6).
        Box::pin(async move {
            let resp = serve::handle(ctx, req).await?;
            // Not boxed again: hyper takes any body type.
            Ok::<_, Infallible>(resp.map(|b| Guarded::new(b, busy)))
        })
    };
    (service_fn(handler), activity)
}

/// Completes when the connection must close: the proxy drains, or the
/// connection had nothing in flight for the idle timeout (h2 has no
/// header-read timeout between requests: a request counts as in flight
/// until its response body ends).
fn stop(ctx: &Ctx, activity: Arc<Activity>) -> impl Future<Output = ()> + Send + 'static {
    let drained = ctx.shared.drain.signalled();
    let idle = ctx.shared.limits.idle_timeout;
    async move {
        tokio::select! {
            () = drained => {}
            () = activity.idle_for(idle) => {}
        }
    }
}

/// What ends a turn of `serve_h1`'s loop besides hyper's connection.
enum Watch {
    /// The proxy drains, or the idle timeout passed.
    Stop,
    /// No request head within the header-read timeout.
    HeadTimeout,
    /// Quiet for `REST_AFTER`: ask the connection to rest.
    Rest,
}

/// Serves HTTP/1.1 on a tunnel's stream (ALPN `http/1.1`, or cleartext).
///
/// A connection with nothing in flight for `REST_AFTER` rests: the scanner
/// ends hyper's connection at its next idle read, hyper's state (its 8 KiB
/// read and write buffers, its header cache) is freed, and the stream waits
/// for the client's next bytes holding only the TLS state and the scanner.
/// Those bytes start a new hyper connection on the same stream: the client
/// sees one keep-alive connection (S6). On drain, the idle timeout or the
/// header-read timeout a resting connection closes as an idle one does.
///
/// The header-read timeout is this function's, not hyper's: from the end of
/// the last response (or the connection's start) to the next request's
/// head, as hyper counts it, but on one timer for the connection's life
/// where hyper arms and drops one for every request.
async fn serve_h1<S>(ctx: Arc<Ctx>, io: H1Scan<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let h1 = crate::listener::http1_server(&ctx.shared.limits, None);
    let header_read_timeout = ctx.shared.limits.header_read_timeout;
    let (mut svc, activity) = service(ctx.clone());
    let stop = stop(&ctx, activity.clone());
    tokio::pin!(stop);
    let rest = io.rest();
    let mut io = io;
    loop {
        // Boxed: a resting connection's task keeps a pointer, not hyper's
        // connection state.
        let mut conn = Box::pin(h1.serve_connection(TokioIo::new(io), svc).with_upgrades());
        let rested = loop {
            // The watchers as one future, polled only when one of them woke:
            // the task wakes for every read and every response.
            let watch = WhenWoken::new(async {
                tokio::select! {
                    biased;
                    () = stop.as_mut() => Watch::Stop,
                    () = activity.idle_for(header_read_timeout) => Watch::HeadTimeout,
                    () = activity.idle_for_after(REST_AFTER) => Watch::Rest,
                }
            });
            tokio::select! {
                biased;
                _ = conn.as_mut() => break rest.is_resting(),
                w = watch => match w {
                    Watch::Stop => {
                        // Closing for good: a shutdown must reach the stream.
                        rest.serve();
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                        return;
                    }
                    // No head within the timeout (a slow one never rests):
                    // closed as hyper closes it, without a response.
                    Watch::HeadTimeout => return,
                    // The wrapper may not rest (part of a head is in): asked
                    // again a `REST_AFTER` later, not at once.
                    Watch::Rest => rest.ask(),
                },
            }
        };
        // Not rested: closed, failed, or upgraded (hyper has the stream).
        let Some(parts) = rested.then(|| Pin::into_inner(conn).into_parts()).flatten() else {
            return;
        };
        svc = parts.service;
        let mut scan = parts.io.into_inner();
        scan.unread(&parts.read_buf);
        // It shares the allocation of hyper's read buffer: dropped now, not
        // when the rest ends.
        drop(parts.read_buf);
        scan.shed();
        let resting = metrics::get().resting();
        let woke = tokio::select! {
            r = std::future::poll_fn(|cx| scan.poll_wake(cx)) => matches!(r, Ok(true)),
            () = stop.as_mut() => false,
            // hyper's header-read timeout, which runs from the end of the
            // last response, bounds an idle HTTP/1 connection: so here.
            () = activity.idle_for(header_read_timeout) => false,
        };
        drop(resting);
        if !woke {
            rest.serve();
            // As hyper closes an idle connection: close_notify, then FIN.
            let _ = tokio::time::timeout(LINGER_IDLE, scan.shutdown()).await;
            return;
        }
        io = scan;
    }
}

/// Serves HTTP/1.1 or h2 on a tunnel's stream (ALPN `h2`, or none).
async fn serve_auto<I>(ctx: Arc<Ctx>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = ctx.shared.limits.clone();
    let (svc, activity) = service(ctx.clone());
    let stop = stop(&ctx, activity);
    let io = TokioIo::new(io);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The auto builder's own HTTP/1 settings: as `listener::http1_server`.
    builder
        .http1()
        .timer(TokioTimer::new())
        .preserve_header_case(true)
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_h2_streams)
        .keep_alive_interval(None);
    // Boxed: a future has room for the largest state it can reach, and the
    // auto connection (h2 server included) is several times the size of
    // hyper's HTTP/1 one.
    let b = Box::pin(async move {
        until_stopped!(builder.serve_connection_with_upgrades(io, svc), stop);
    });
    b.await;
}

/// Runs a served connection to its end; once `$stop` is ready first, asks
/// it to close gracefully and waits for that. (A macro: hyper's two
/// connection types share `graceful_shutdown` by name only.)
macro_rules! until_stopped {
    ($conn:expr, $stop:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            () = $stop => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }};
}
pub(crate) use until_stopped;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let classify = |b: &[u8]| Classifier::new(64).classify(b);
        assert_eq!(classify(&[0x16, 3, 1]), Some(Sniffed::Tls));
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http1));
        assert_eq!(classify(b"GET http://h/x HTTP/1.0\n"), Some(Sniffed::Http1));
        assert_eq!(classify(b"GET / HTTP/1.1"), None);
        assert_eq!(classify(b"SSH-2.0-OpenSSH"), Some(Sniffed::Other));
        assert_eq!(classify(b"PRI * HTTP/2.0"), Some(Sniffed::Other));
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b" GET"), Some(Sniffed::Other));
        assert_eq!(classify(&[0u8; 4]), Some(Sniffed::Other));
        assert_eq!(classify(b"EHLO example.test\r\n"), Some(Sniffed::Other));
        assert_eq!(classify(b"GET /x\r\n"), Some(Sniffed::Other));
        assert_eq!(classify(b"GET / HTTP/2.0\r\n"), Some(Sniffed::Other));
        assert_eq!(classify(b"GET \x00\x01\x02"), Some(Sniffed::Other));
        assert_eq!(classify(b"GET / HTTP/1.1\rX"), Some(Sniffed::Other));
        assert_eq!(classify(b"ABCDEFGHIJKLMNOPQ"), Some(Sniffed::Other));
        // A long target is left to the head limit.
        assert_eq!(
            classify(&[&b"GET /"[..], &[b'a'; 100]].concat()),
            Some(Sniffed::Http1)
        );
    }

    #[test]
    fn classification_resumes_byte_by_byte() {
        for line in [&b"GET /a HTTP/1.1\r\n"[..], b"EHLO x\r\n", b"\x16\x03"] {
            let mut c = Classifier::new(64);
            let mut got = None;
            for i in 1..=line.len() {
                got = c.classify(&line[..i]);
                if got.is_some() {
                    break;
                }
            }
            assert_eq!(got, Classifier::new(64).classify(line), "{line:?}");
        }
    }
}
