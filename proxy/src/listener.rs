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
use std::time::Instant;

use addon_rules::{Reason, Refusal};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use crate::body::{BoxBody, empty};
use crate::h1scan::H1Scan;
use crate::io::Lingering;
use crate::limits::{ACCEPT_BACKOFF, Limits, MAX_CONNECT_TARGET};
use crate::log::AccessRecord;
use crate::metrics::Outcome;
use crate::refuse;
use crate::serve::{self, Ctx};
use crate::state::Shared;

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

async fn serve_client(
    shared: Arc<Shared>,
    stream: Lingering<OwnedSemaphorePermit>,
    client: SocketAddr,
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
    let svc = service_fn(move |req: Request<Incoming>| {
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
    // Boxed, and freed when the connection's HTTP/1 ends: while a tunnel
    // runs, this task keeps only the tunnel's handle (S6).
    let serving = Box::pin(async move {
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        // On drain: an idle connection closes now, a busy one after its response.
        crate::connect::until_stopped!(conn, drained);
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
    let raw = req.uri().to_string();
    let parsed = if raw.len() > MAX_CONNECT_TARGET {
        Err(Refusal::new(
            Reason::BadRequest,
            "CONNECT line longer than 8 KiB",
        ))
    } else {
        addon_rules::parse_connect_target(&raw)
    };
    let target = match parsed {
        Ok(t) => t,
        Err(r) => {
            AccessRecord {
                host: raw.chars().take(256).collect(),
                status: r.status.as_u16(),
                decision: Outcome::Refused(r.reason),
                ..AccessRecord::new(ctx.client, req.method(), Instant::now())
            }
            .emit();
            return refuse::response(&r, true);
        }
    };
    let shared = ctx.shared.clone();
    let client = ctx.client;
    let handle = tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => crate::connect::tunnel(shared, client, upgraded, target).await,
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    if let Ok(mut slot) = tunnels.lock() {
        slot.push(handle);
    }
    Response::new(empty())
}
