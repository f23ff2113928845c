//! The proxy port: accepting clients and their first request.
//!
//! Owns: the accept loop, the connection limit (503 `overloaded` beyond it,
//! with its access-log line), TCP_NODELAY, the lingering close of client
//! sockets (`io::Lingering`, which holds the connection's permit), and
//! HTTP/1.1 on the proxy port: `CONNECT host:port` (answered 200 at once,
//! then handed to `connect`), absolute-form `http://` requests and
//! `GET /healthz` (both served by `serve`).
//! Must never: resolve or contact the CONNECT target (that happens only for an
//! allowed request inside the tunnel).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use addon_rules::{ConnectTarget, Reason, Refusal};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::either::Either;

use crate::body::{BoxBody, empty};
use crate::h1scan::{self, First, H1Scan};
use crate::io::{Lingering, Prefixed};
use crate::limits::{ACCEPT_BACKOFF, Limits, MAX_CONNECT_TARGET};
use crate::log::AccessRecord;
use crate::metrics::Outcome;
use crate::refuse;
use crate::serve::{self, Ctx};
use crate::shutdown::WhenWoken;
use crate::state::Shared;

/// Binds the proxy port, TCP_NODELAY set on the listening socket: Linux
/// copies it to every socket accepted from it, which saves a `setsockopt`
/// per connection (elsewhere `run` sets it on each).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does.
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts clients until the task is dropped.
pub async fn run(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Linux copies TCP_NODELAY from the listening socket (`bind`).
        #[cfg(not(target_os = "linux"))]
        let _ = stream.set_nodelay(true);
        let permit = match shared.connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tokio::spawn(overloaded(stream, client));
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _counted = crate::metrics::get().connection();
            serve_client(shared, Lingering::new(stream, permit), client).await;
        });
    }
}

/// Over the connection limit: a 503 `overloaded` written at once, without
/// reading anything from the client, and its access-log line.
async fn overloaded(mut stream: TcpStream, client: SocketAddr) {
    let refusal = Refusal::new(Reason::Overloaded, "too many open client connections");
    let mut record = AccessRecord::connection(client, Instant::now());
    record.status = refusal.status.as_u16();
    record.decision = Outcome::Refused(refusal.reason);
    crate::metrics::get().overloaded();
    record.emit();
    let _ = stream.write_all(&refuse::http1_bytes(&refusal)).await;
    let _ = stream.shutdown().await;
}

/// A client's socket on the proxy port: it holds the connection's permit
/// and closes lingering.
pub(crate) type Socket = Lingering<OwnedSemaphorePermit>;

/// Serves one client connection. A first request that is a plain `CONNECT`
/// (`h1scan::first`) is answered here and its tunnel runs in this task: no
/// HTTP server, no upgrade, no second task for the commonest connection.
/// Anything else, the bytes read so far first, is served by hyper.
///
/// The header-read timeout runs from the connection's start to the end of
/// its first head on both paths (`serve_http1` holds hyper to the same
/// deadline for the first head).
async fn serve_client(shared: Arc<Shared>, mut stream: Socket, client: SocketAddr) {
    let first_head_by = tokio::time::Instant::now() + shared.limits.header_read_timeout;
    let first = tokio::select! {
        biased;
        // As hyper's graceful shutdown closes a connection with no request.
        () = shared.drain.wait() => return,
        r = tokio::time::timeout_at(first_head_by, read_first(&mut stream)) => r,
    };
    // Timed out, failed, or closed before a byte.
    let Ok(Ok(Some((mut bytes, first)))) = first else {
        return;
    };
    let First::Connect { len, target } = first else {
        serve_http1(shared, Prefixed::new(bytes, stream), client, first_head_by).await;
        return;
    };
    let target = match connect_target(client, target) {
        Ok(t) => t,
        Err(r) => {
            let _ = stream.write_all(&refuse::http1_bytes(&r)).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    // As hyper answers a CONNECT (no body, no length).
    if stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.is_err() {
        return;
    }
    // Bytes the client sent after its head (a ClientHello) are the tunnel's.
    bytes.drain(..len);
    let early = if bytes.is_empty() { Vec::new() } else { bytes };
    crate::connect::tunnel(shared, client, Either::Left(stream), early, target).await;
}

/// Reads a connection's first bytes until `h1scan::first` can sort them.
/// `None`: closed before a byte.
async fn read_first(stream: &mut Socket) -> std::io::Result<Option<(Vec<u8>, First)>> {
    // Most CONNECT heads fit; a longer one grows the buffer.
    let mut bytes = Vec::with_capacity(512);
    loop {
        let from = bytes.len().saturating_sub(2);
        if stream.read_buf(&mut bytes).await? == 0 {
            // Closed mid-head: hyper sees the same bytes end.
            return Ok((!bytes.is_empty()).then_some((bytes, First::Other)));
        }
        match h1scan::first(&bytes, from) {
            First::More => {}
            sorted => return Ok(Some((bytes, sorted))),
        }
    }
}

/// hyper serves the connection: HTTP/1.1 requests on the proxy port, the
/// bytes `stream` replays first. A `CONNECT` that is not the connection's
/// first request, or not a plain one, is upgraded by `on_connect`. The first
/// head must be whole by `first_head_by` (hyper's own header-read timer
/// starts only now); later heads have hyper's timer alone.
async fn serve_http1(
    shared: Arc<Shared>,
    stream: Prefixed<Socket>,
    client: SocketAddr,
    first_head_by: tokio::time::Instant,
) {
    let (stream, heads) = H1Scan::new(stream, shared.limits.max_head_bytes);
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        client,
        tunnel: None,
        raw: Some(heads),
    });
    // Tunnels are awaited inside this task so the connection permit covers
    // them. (One at most in practice: a CONNECT ends the connection's HTTP/1.)
    let tunnels = TunnelSlot::default();
    let tx = tunnels.clone();
    // Set when hyper hands over the connection's first request.
    let headed = Arc::new(AtomicBool::new(false));
    let seen = headed.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        let ctx = ctx.clone();
        let tx = tx.clone();
        async move {
            if req.method() == Method::CONNECT {
                // Its raw head is not needed (the target is judged as hyper
                // parsed it; bad bytes never reach here) and nothing follows
                // it in HTTP/1.
                if let Some(q) = &ctx.raw {
                    let _ = q.pop();
                }
                Ok::<_, std::convert::Infallible>(on_connect(ctx, req, tx))
            } else {
                serve::handle(ctx, req).await
            }
        }
    });
    let builder = http1_server(&shared.limits, Some(shared.limits.header_read_timeout));
    let drained = shared.drain.signalled();
    // The first head late: closed without a response, as hyper closes a
    // connection whose head is late.
    let late = WhenWoken::new(async move {
        tokio::time::sleep_until(first_head_by).await;
        if headed.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    });
    // Boxed, and freed when the connection's HTTP/1 ends: while a tunnel
    // runs, this task keeps only the tunnel's handle (S6).
    let serving = Box::pin(async move {
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        // On drain: an idle connection closes now, a busy one after its response.
        let served = async { crate::connect::until_stopped!(conn, drained) };
        tokio::select! {
            () = served => {}
            () = late => {}
        }
    });
    serving.await;
    let handles = tunnels.lock().map(|mut h| std::mem::take(&mut *h));
    for h in handles.unwrap_or_default() {
        let _ = h.await;
    }
}

/// The HTTP/1 server settings of every client connection, on the proxy port
/// and inside tunnels. `head_timeout`: hyper's header-read timeout, or `None`
/// where the caller bounds a head's time itself (`connect::serve_h1`: hyper
/// arms and drops a timer for every request).
pub(crate) fn http1_server(
    limits: &Limits,
    head_timeout: Option<std::time::Duration>,
) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        // Header names reach an HTTP/1 origin as the client spelled them
        // (the case map travels in the request's extensions), as mitmproxy
        // does: some origins match names case-sensitively.
        .preserve_header_case(true)
        .header_read_timeout(head_timeout)
        .max_buf_size(limits.max_head_bytes)
        .keep_alive(true);
    b
}

/// Where the proxy port's connection task finds the tunnels it must await.
type TunnelSlot = Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>;

fn on_connect(ctx: Arc<Ctx>, req: Request<Incoming>, tunnels: TunnelSlot) -> Response<BoxBody> {
    let target = match connect_target(ctx.client, req.uri().to_string()) {
        Ok(t) => t,
        Err(r) => return refuse::response(&r, true),
    };
    let shared = ctx.shared.clone();
    let client = ctx.client;
    let handle = tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let io = Either::Right(TokioIo::new(upgraded));
                crate::connect::tunnel(shared, client, io, Vec::new(), target).await;
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    if let Ok(mut slot) = tunnels.lock() {
        slot.push(handle);
    }
    Response::new(empty())
}

/// A CONNECT's request-target, `raw` as hyper shows it, judged; a refusal
/// has its access-log line written.
fn connect_target(client: SocketAddr, raw: String) -> Result<ConnectTarget, Refusal> {
    let parsed = if raw.len() > MAX_CONNECT_TARGET {
        Err(Refusal::new(
            Reason::BadRequest,
            "CONNECT line longer than 8 KiB",
        ))
    } else {
        addon_rules::parse_connect_target(&raw)
    };
    parsed.inspect_err(|r| {
        AccessRecord {
            host: raw.chars().take(256).collect(),
            status: r.status.as_u16(),
            decision: Outcome::Refused(r.reason),
            ..AccessRecord::new(client, &Method::CONNECT, Instant::now())
        }
        .emit();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_tcp_nodelay() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        // Where `run` sets nothing itself, the listening socket's option
        // must have been copied.
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY on the accepted socket"
        );
    }
}
