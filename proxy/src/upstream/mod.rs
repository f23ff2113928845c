//! The way out: connections to origins, direct or through the upstream proxy,
//! pooled per origin across clients.
//!
//! Owns: resolving once and checking the address (direct mode), the CONNECT
//! to the upstream proxy (nothing sent before its reply), upstream TLS with
//! ALPN as the origin offers, HTTP/1 and h2 client connections, which pooled
//! connection a request takes (`pool.rs` keeps them; `origin.rs` names the
//! origin), and the single retry of an idempotent request on a stale pooled
//! connection.
//! An HTTP/1 client's request goes on an HTTP/1 connection of its own while
//! the origin has fewer than `UPSTREAM_H1_SPREAD` of them, a bodiless one
//! only while the origin's h2 connection carries no request; other requests
//! share the origin's h2 connection when it offers h2.
//! Must never: be called for a refused request, resolve a name when an upstream
//! proxy is set, reuse an HTTP/1 connection before request and response were
//! fully read, or tie a credential to a connection.

pub mod address;
mod origin;
mod pool;
mod proxy_connect;
pub mod resolve;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};

use addon_rules::{Reason, Refusal};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::{Body, Incoming};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::body::{BoxBody, Guarded, Tracked};
use crate::limits::{
    Limits, UPSTREAM_H2_CONNECTION_WINDOW, UPSTREAM_H2_MAX_FRAME, UPSTREAM_H2_STREAM_WINDOW,
};
use crate::tls::upstream::ClientTls;
use address::AddressPolicy;
pub use origin::Origin;
use origin::{authority_of, host_header_of};
use pool::{Conn, H1Slot, Pool, PoolKey};

/// How the request must be carried.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendOpts {
    /// A WebSocket upgrade: HTTP/1.1 only, never pooled afterwards.
    pub websocket: bool,
    /// The route names the destination IP literally (direct mode may then
    /// connect to a private address).
    pub route_names_ip: bool,
}

/// Why the way out failed. Each maps to one SPEC §3 reason.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0}")]
    DestinationNotAllowed(String),
    #[error("the upstream proxy refused the CONNECT with {0}")]
    ProxyRefused(StatusCode),
    #[error("{0}")]
    Unreachable(String),
    #[error("no response head from {0} within the timeout")]
    Timeout(String),
}

impl UpstreamError {
    /// The reason of the refusal the client gets.
    pub fn reason(&self) -> Reason {
        match self {
            UpstreamError::DestinationNotAllowed(_) => Reason::DestinationNotAllowed,
            UpstreamError::ProxyRefused(_) => Reason::UpstreamProxyRefused,
            UpstreamError::Unreachable(_) => Reason::UpstreamUnreachable,
            UpstreamError::Timeout(_) => Reason::UpstreamTimeout,
        }
    }

    /// The refusal the client gets: the reason's status, except that an
    /// upstream proxy's refusal passes its own status on (a 407 would ask
    /// the agent for proxy credentials it must not have: 502, as for a
    /// status that is no error at all).
    pub fn refusal(&self) -> Refusal {
        let reason = self.reason();
        let status = match self {
            UpstreamError::ProxyRefused(s)
                if *s != StatusCode::PROXY_AUTHENTICATION_REQUIRED
                    && (s.is_client_error() || s.is_server_error()) =>
            {
                *s
            }
            _ => reason.default_status(),
        };
        Refusal::with_status(reason, status, self.to_string())
    }
}

/// Direct, or every connection through an upstream proxy.
#[derive(Debug, Clone)]
pub enum Mode {
    Direct {
        policy: AddressPolicy,
        resolver: resolve::Resolver,
    },
    /// `host:port` of the upstream proxy (plain HTTP CONNECT proxy).
    Proxy { authority: String },
}

/// The upstream side: mode, TLS and the pool.
pub struct Upstream {
    mode: Mode,
    tls: ClientTls,
    limits: Limits,
    pool: Arc<Pool>,
    /// Connections opened (for tests and metrics).
    pub connects: AtomicU64,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

impl Upstream {
    pub fn new(mode: Mode, tls: ClientTls, limits: Limits) -> Arc<Upstream> {
        let pool = Pool::new(&limits);
        Arc::new(Upstream {
            mode,
            tls,
            limits,
            pool,
            connects: AtomicU64::new(0),
        })
    }

    /// Sends `req` (its URI is the path and query) to `origin` and returns the
    /// response head with a streaming body. The response body returns an
    /// HTTP/1 connection to the pool when it was read to its end.
    pub async fn send(
        self: &Arc<Self>,
        origin: Origin,
        opts: SendOpts,
        req: Request<BoxBody>,
    ) -> Result<Response<BoxBody>, UpstreamError> {
        let shared = PoolKey {
            origin,
            h1_only: opts.websocket,
            route_names_ip: opts.route_names_ip,
        };
        // An HTTP/1 client's request: see `UPSTREAM_H1_SPREAD`.
        let own_h1 = (!opts.websocket
            && shared.origin.tls
            && req.version() < http::Version::HTTP_2
            && (!req.body().is_end_stream() || !self.pool.h2_busy(&shared)))
        .then(|| PoolKey {
            h1_only: true,
            ..shared.clone()
        });
        let origin = &shared.origin;
        // Kept parsed (a shared `Bytes`): the upstream URI is put together
        // from parts, not formatted and parsed again per request (S1).
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // A copy to rebuild an idempotent, bodiless request if a pooled
        // connection turns out stale after the request was handed to it.
        let spare = (idempotent(req.method()) && req.body().is_end_stream()).then(|| {
            let mut r = Request::new(crate::body::empty());
            *r.method_mut() = req.method().clone();
            *r.headers_mut() = req.headers().clone();
            *r.version_mut() = req.version();
            r
        });
        let mut req = Some(req);
        let mut spare = spare;
        for _attempt in 0..2 {
            let Some(mut current) = req.take() else { break };
            let (conn, reused, key) = self.pick(&shared, own_h1.as_ref()).await?;
            let timeout = self.limits.upstream_response_timeout;
            let mut err = match conn {
                Conn::H1(mut s) => {
                    set_uri(&mut current, None, &path);
                    let host = host_header_of(origin).ok_or_else(|| {
                        UpstreamError::Unreachable(format!(
                            "{}: not a valid Host header",
                            origin.authority()
                        ))
                    })?;
                    current.headers_mut().insert(http::header::HOST, host);
                    *current.version_mut() = http::Version::HTTP_11;
                    match tokio::time::timeout(timeout, s.try_send_request(current)).await {
                        Err(_) => return Err(UpstreamError::Timeout(origin.authority())),
                        Ok(Ok(resp)) => {
                            return Ok(self.wrap_h1(resp, key.clone(), s, opts.websocket));
                        }
                        Ok(Err(e)) => e,
                    }
                }
                Conn::H2(mut s, in_flight) => {
                    set_uri(&mut current, Some(origin), &path);
                    current.headers_mut().remove(http::header::HOST);
                    *current.version_mut() = http::Version::HTTP_2;
                    match tokio::time::timeout(timeout, s.try_send_request(current)).await {
                        Err(_) => return Err(UpstreamError::Timeout(origin.authority())),
                        Ok(Ok(resp)) => {
                            return Ok(resp.map(|b| {
                                http_body_util::BodyExt::boxed_unsync(Guarded::new(
                                    http_body_util::BodyExt::map_err(
                                        b,
                                        |e| -> crate::body::BoxError { Box::new(e) },
                                    ),
                                    in_flight,
                                ))
                            }));
                        }
                        Ok(Err(e)) => e,
                    }
                }
            };
            if let Some(msg) = err.take_message() {
                // Never sent: safe to send again, whatever the method.
                req = Some(msg);
                continue;
            }
            if reused && let Some(s) = spare.take() {
                req = Some(s);
                continue;
            }
            return Err(UpstreamError::Unreachable(format!(
                "{}: {}",
                origin.authority(),
                err.into_error()
            )));
        }
        Err(UpstreamError::Unreachable(format!(
            "{}: the connection failed twice",
            origin.authority()
        )))
    }

    fn wrap_h1(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        key: PoolKey,
        sender: http1::SendRequest<BoxBody>,
        websocket: bool,
    ) -> Response<BoxBody> {
        let upgrading = websocket && resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let weak: Weak<Upstream> = Arc::downgrade(self);
        let on_end = (!(upgrading || websocket)).then_some(move |complete, _bytes| {
            if complete && let Some(up) = weak.upgrade() {
                up.pool.checkin(key, sender);
            }
        });
        resp.map(|b| http_body_util::BodyExt::boxed_unsync(Tracked::new(b, None, on_end)))
    }

    /// A connection for one request and the pool key it returns to: a pooled
    /// one, else a new one. `own_h1` (an HTTP/1 client's request to a TLS
    /// origin) is tried first while the origin has room for it.
    async fn pick<'k>(
        &self,
        shared: &'k PoolKey,
        own_h1: Option<&'k PoolKey>,
    ) -> Result<(Conn, bool, &'k PoolKey), UpstreamError> {
        if let Some(key) = own_h1 {
            if let Some(c) = self.pool.checkout(key, true).await {
                return Ok((c, true, key));
            }
            // An idle HTTP/1 connection to an origin that did not offer h2.
            if let Some(c) = self.pool.checkout(shared, true).await {
                return Ok((c, true, shared));
            }
            if let Some(slot) = self.pool.reserve_h1(key) {
                // Boxed: the connect future (TCP, TLS, handshake) is most of
                // the request future's size, and hyper keeps one request
                // future per client connection allocated even while it is
                // idle (S6).
                return Ok((Box::pin(self.connect(key, Some(slot))).await?, false, key));
            }
        }
        if let Some(c) = self.pool.checkout(shared, false).await {
            return Ok((c, true, shared));
        }
        Ok((Box::pin(self.connect(shared, None)).await?, false, shared))
    }

    /// Opens a connection for `key`; `slot`, if any, is held until it closes.
    async fn connect(&self, key: &PoolKey, slot: Option<H1Slot>) -> Result<Conn, UpstreamError> {
        let origin = &key.origin;
        let t = self.limits.upstream_connect_timeout;
        let fut = async {
            let io = self.open_stream(key).await?;
            self.connects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if origin.tls {
                let name = ServerName::try_from(origin.host.clone()).map_err(|e| {
                    UpstreamError::Unreachable(format!("{}: not a TLS name: {e}", origin.host))
                })?;
                let cfg = if key.h1_only {
                    self.tls.h1.clone()
                } else {
                    self.tls.any.clone()
                };
                let tls = TlsConnector::from(cfg)
                    .connect(name, crate::io::ReadAhead::new(io))
                    .await
                    .map_err(|e| {
                        UpstreamError::Unreachable(format!(
                            "TLS handshake with {} failed: {e}",
                            origin.authority()
                        ))
                    })?;
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                if h2 {
                    self.handshake_h2(key, TokioIo::new(tls)).await
                } else {
                    handshake_h1(TokioIo::new(tls), slot).await
                }
            } else {
                handshake_h1(TokioIo::new(io), slot).await
            }
        };
        match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Unreachable(format!(
                "connecting to {} timed out",
                origin.authority()
            ))),
        }
    }

    async fn handshake_h2<I>(&self, key: &PoolKey, io: I) -> Result<Conn, UpstreamError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        // Flow control per stream, not per connection: see the constants.
        let (s, conn) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(UPSTREAM_H2_STREAM_WINDOW)
            .initial_connection_window_size(UPSTREAM_H2_CONNECTION_WINDOW)
            .max_frame_size(UPSTREAM_H2_MAX_FRAME)
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Unreachable(format!("h2 handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(self.pool.insert_h2(key.clone(), s))
    }

    /// TCP to the origin (direct, after the address check) or a tunnel
    /// through the upstream proxy.
    async fn open_stream(
        &self,
        key: &PoolKey,
    ) -> Result<crate::io::Prefixed<TcpStream>, UpstreamError> {
        let origin = &key.origin;
        match &self.mode {
            Mode::Proxy { authority } => {
                proxy_connect::connect(authority, &origin.authority()).await
            }
            Mode::Direct { policy, resolver } => {
                let addrs: Vec<SocketAddr> = match origin.host.parse::<IpAddr>() {
                    Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
                    Err(_) => resolver
                        .lookup(&origin.host, origin.port)
                        .await
                        .map_err(|e| {
                            UpstreamError::Unreachable(format!(
                                "cannot resolve {}: {e}",
                                origin.host
                            ))
                        })?,
                };
                let mut refusal = None;
                let mut last_err = None;
                // Resolved once: connect only to an address that passed the check.
                for addr in addrs {
                    if let Err(m) = policy.check(addr, key.route_names_ip) {
                        refusal.get_or_insert(m);
                        continue;
                    }
                    match TcpStream::connect(addr).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            return Ok(crate::io::Prefixed::new(Vec::new(), s));
                        }
                        Err(e) => last_err = Some(format!("{addr}: {e}")),
                    }
                }
                match (last_err, refusal) {
                    (Some(e), _) => {
                        Err(UpstreamError::Unreachable(format!("cannot connect to {e}")))
                    }
                    (None, Some(m)) => Err(UpstreamError::DestinationNotAllowed(m)),
                    (None, None) => Err(UpstreamError::Unreachable(format!(
                        "{} resolved to no address",
                        origin.host
                    ))),
                }
            }
        }
    }
}

async fn handshake_h1<I>(io: I, slot: Option<H1Slot>) -> Result<Conn, UpstreamError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (s, conn) = http1::Builder::new()
        // Writes header names in the case of the client's HTTP/1 request
        // (its case map is in the request's extensions; h2 requests have
        // none and go lowercase) and keeps the origin's case for the client.
        .preserve_header_case(true)
        .handshake(io)
        .await
        .map_err(|e| UpstreamError::Unreachable(format!("HTTP/1 handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
        drop(slot);
    });
    Ok(Conn::H1(s))
}

fn set_uri(req: &mut Request<BoxBody>, absolute: Option<&Origin>, path: &PathAndQuery) {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(path.clone());
    if let Some(o) = absolute {
        let Some(authority) = authority_of(o) else {
            return;
        };
        parts.scheme = Some(if o.tls { Scheme::HTTPS } else { Scheme::HTTP });
        parts.authority = Some(authority);
    }
    if let Ok(u) = Uri::from_parts(parts) {
        *req.uri_mut() = u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_errors_map_to_their_refusal() {
        let cases = [
            (
                UpstreamError::DestinationNotAllowed("10.0.0.1".into()),
                403,
                Reason::DestinationNotAllowed,
            ),
            (
                UpstreamError::ProxyRefused(StatusCode::FORBIDDEN),
                403,
                Reason::UpstreamProxyRefused,
            ),
            (
                UpstreamError::ProxyRefused(StatusCode::PROXY_AUTHENTICATION_REQUIRED),
                502,
                Reason::UpstreamProxyRefused,
            ),
            (
                UpstreamError::ProxyRefused(StatusCode::MOVED_PERMANENTLY),
                502,
                Reason::UpstreamProxyRefused,
            ),
            (
                UpstreamError::Unreachable("x".into()),
                502,
                Reason::UpstreamUnreachable,
            ),
            (
                UpstreamError::Timeout("h:1".into()),
                504,
                Reason::UpstreamTimeout,
            ),
        ];
        for (e, status, reason) in cases {
            let r = e.refusal();
            assert_eq!((r.status.as_u16(), r.reason), (status, reason), "{e}");
            assert_eq!(r.message, e.to_string());
        }
    }
}
