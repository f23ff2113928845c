//! The benchmark origin: an HTTPS server (HTTP/1.1 and h2 by ALPN) on loopback that every
//! path of the harness talks to, direct or through a proxy.
//!
//! Endpoints: `/small` (a short body), `/bytes/<n>` (n bytes streamed from one reused
//! buffer in 64 KiB slices, `?slice=<bytes>` for smaller ones, so h2 DATA frames of that
//! size; `?paced=1`: one write per slice), `/sse?n=&interval_ms=` (server-sent events, each carrying its send time in
//! Unix nanoseconds), `POST /sink` (reads the request body to its end, answers with its
//! length in decimal). Every response says in `x-auth` whether the expected
//! `Authorization` arrived (`match`, `other`, `none`); the value itself is never printed
//! or echoed. It listens on 127.0.0.1..=127.0.0.<hosts> at one port (the S3 hosts) and
//! never on a non-loopback address.

use crate::pki;
use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const CHUNK: usize = 64 * 1024;
/// Largest `/bytes/<n>` served (bounds a request's work).
const MAX_BYTES: u64 = 4 << 30;
/// Bounds of `/sse`.
const MAX_EVENTS: u64 = 100_000;
const MAX_INTERVAL_MS: u64 = 10_000;

type OBody = BoxBody<Bytes, Infallible>;

struct Shared {
    expected_auth: Option<HeaderValue>,
    chunk: Bytes,
}

/// Runs the origin until killed. Writes `origin-ca.pem` to `dir` and prints
/// `READY <port>` on stdout once every listener is bound.
pub async fn run(dir: &Path, hosts: u8) -> Result<()> {
    let ca = pki::mint_ca("bench origin CA")?;
    let (leaf, leaf_key) = pki::mint_origin_leaf(&ca)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("origin-ca.pem"), &ca.cert)?;
    let certs = vec![
        rustls::pki_types::CertificateDer::from_pem_slice(leaf.as_bytes())
            .context("origin leaf PEM")?,
    ];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf_key.as_bytes())
        .context("origin key PEM")?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("origin TLS config")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(cfg));

    let expected_auth = match std::env::var("BENCH_TOKEN") {
        Ok(t) if !t.is_empty() => Some(
            HeaderValue::from_str(&format!("Bearer {t}"))
                .context("BENCH_TOKEN is not a valid header value")?,
        ),
        _ => None,
    };
    let shared = Arc::new(Shared {
        expected_auth,
        chunk: Bytes::from(vec![b'x'; CHUNK]),
    });

    let first = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding origin")?;
    let port = first.local_addr()?.port();
    let mut listeners = vec![first];
    for i in 2..=hosts.max(1) {
        let ip = Ipv4Addr::new(127, 0, 0, i);
        let l = TcpListener::bind(SocketAddr::from((ip, port)))
            .await
            .with_context(|| format!("binding origin on {ip}:{port}"))?;
        listeners.push(l);
    }
    println!("READY {port}");
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        tasks.spawn(accept_loop(l, acceptor.clone(), shared.clone()));
    }
    while let Some(r) = tasks.join_next().await {
        r.context("origin accept loop")??;
    }
    Ok(())
}

async fn accept_loop(l: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) -> Result<()> {
    loop {
        let (tcp, _) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("origin: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await
            else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move {
                    if req.method() == http::Method::POST && req.uri().path() == "/sink" {
                        return Ok::<_, Infallible>(sink(&shared, req).await);
                    }
                    Ok(handle(&shared, req))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// Whether the request carried the expected credential: `match`, `other` or `none`.
fn auth_seen(shared: &Shared, req: &Request<Incoming>) -> &'static str {
    match (
        req.headers().get(http::header::AUTHORIZATION),
        &shared.expected_auth,
    ) {
        (None, _) => "none",
        (Some(got), Some(want)) if got == want => "match",
        (Some(_), _) => "other",
    }
}

/// `POST /sink`: the request body read to its end (S4u), its length as the answer.
async fn sink(shared: &Shared, req: Request<Incoming>) -> Response<OBody> {
    let auth = auth_seen(shared, &req);
    let mut body = req.into_body();
    let mut n = 0u64;
    let (status, text) = loop {
        match body.frame().await {
            None => break (StatusCode::OK, format!("{n}\n")),
            Some(Ok(f)) => n += f.data_ref().map_or(0, |d| d.len() as u64),
            Some(Err(e)) => break (StatusCode::BAD_REQUEST, format!("sink: body: {e}\n")),
        }
    };
    respond(
        status,
        "text/plain",
        Full::new(Bytes::from(text)).boxed(),
        auth,
    )
}

fn handle(shared: &Shared, req: Request<Incoming>) -> Response<OBody> {
    let auth = auth_seen(shared, &req);
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let (status, ctype, body): (StatusCode, &str, OBody) = if path == "/small" {
        (
            StatusCode::OK,
            "text/plain",
            Full::new(Bytes::from_static(b"hello from the bench origin\n")).boxed(),
        )
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let slice = param(query, "slice").unwrap_or(CHUNK as u64);
        match n.parse::<u64>() {
            Ok(n) if n <= MAX_BYTES && (1024..=CHUNK as u64).contains(&slice) => (
                StatusCode::OK,
                "application/octet-stream",
                crate::slices::Slices::new(
                    n,
                    shared.chunk.slice(..slice as usize),
                    param(query, "paced") == Some(1),
                )
                .boxed(),
            ),
            _ => bad("bytes: want /bytes/<n> with n <= 4 GiB, slice=1024..=65536"),
        }
    } else if path == "/sse" {
        let n = param(query, "n").unwrap_or(10);
        let interval = param(query, "interval_ms").unwrap_or(10);
        if n > MAX_EVENTS || interval > MAX_INTERVAL_MS {
            bad("sse: n <= 100000 and interval_ms <= 10000")
        } else {
            let mut iv = tokio::time::interval(Duration::from_millis(interval.max(1)));
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (
                StatusCode::OK,
                "text/event-stream",
                SseBody {
                    remaining: n,
                    interval: iv,
                }
                .boxed(),
            )
        }
    } else {
        bad("unknown path: use /small, /bytes/<n>, /sse or POST /sink")
    };
    respond(status, ctype, body, auth)
}

/// Every answer: its status and type, and `x-auth` (what `auth_seen` said).
fn respond(
    status: StatusCode,
    ctype: &'static str,
    body: OBody,
    auth: &'static str,
) -> Response<OBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert("x-auth", HeaderValue::from_static(auth));
    if ctype == "text/event-stream" {
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
    }
    resp
}

fn bad(msg: &'static str) -> (StatusCode, &'static str, OBody) {
    (
        StatusCode::BAD_REQUEST,
        "text/plain",
        Full::new(Bytes::from_static(msg.as_bytes())).boxed(),
    )
}

fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// One event per tick: `data: <unix nanos at send>\n\n`.
struct SseBody {
    remaining: u64,
    interval: tokio::time::Interval,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskCx<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.interval.poll_tick(cx).is_pending() {
            return Poll::Pending;
        }
        self.remaining -= 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!(
            "data: {now}\n\n"
        ))))))
    }
    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
}
