//! The admin listener (`--admin-listen`): `/healthz` and Prometheus `/metrics`.
//!
//! Owns: a small HTTP/1.1 server, separate from the proxy port so the agent
//! (which only reaches the proxy port) cannot read the metrics.
//! Must never: proxy anything, serve anything but these two paths, or expose a
//! secret (the metrics carry only closed-set labels, see `metrics`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::body::{BoxBody, full};
use crate::state::Shared;

/// Admin clients at once (scrapers and probes, not the agent).
const MAX_ADMIN_CONNECTIONS: usize = 64;
/// Time for an admin client to send its request head.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on --admin-listen {addr}: {source}")]
pub struct AdminError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// A running admin listener; dropping it stops accepting.
#[derive(Debug)]
pub struct Admin {
    pub addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Binds `addr` and serves `/healthz` and `/metrics` until dropped.
pub async fn start(addr: SocketAddr, shared: Arc<Shared>) -> Result<Admin, AdminError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| AdminError { addr, source })?;
    let accept = tokio::spawn(run(listener, shared));
    Ok(Admin {
        addr: bound,
        accept,
    })
}

async fn run(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Beyond the limit the connection is dropped: a probe retries.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(ADMIN_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop(permit);
        });
    }
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<BoxBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    match req.uri().path() {
        "/healthz" => healthz(shared),
        "/metrics" => {
            let mut resp = Response::new(full(Bytes::from(crate::metrics::get().encode())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz or /metrics\n",
        ),
    }
}

/// 200 when a policy is loaded. A started proxy always holds one (a failed
/// reload keeps the old one), so this answers whether the process serves.
pub fn healthz(shared: &Shared) -> Response<BoxBody> {
    let routes = shared.loaded.load().policy.routes().len();
    text(StatusCode::OK, &format!("ok: {routes} routes loaded\n"))
}

fn text(status: StatusCode, body: &str) -> Response<BoxBody> {
    let mut resp = Response::new(full(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
