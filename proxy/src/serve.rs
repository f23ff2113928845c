//! The client side of HTTP: requests on the proxy port and inside tunnels.
//!
//! Owns: turning one client request into `RequestFacts`, asking the policy
//! (the single place a request is judged), and answering with a refusal or
//! handing the allowed request to `forward`. Also `GET /healthz` on the proxy
//! port and the access-log record of each request.
//! Must never: poll a refused request's body (no `100 Continue`, nothing read),
//! touch DNS or the upstream for a refused request, or judge a request itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use addon_rules::{BodyHint, ConnectTarget, Decision, Reason, Refusal, RequestFacts, Transport};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use crate::body::{BoxBody, Tracked, full};
use crate::forward::{self, Plan};
use crate::log::AccessRecord;
use crate::refuse::refusal;
use crate::state::Shared;
use crate::upstream::{Origin, SendOpts};

/// How the client's connection reached the request.
#[derive(Debug, Clone)]
pub enum Via {
    /// Inside a CONNECT tunnel, TLS terminated with a leaf (`sni` as sent).
    Tls {
        connect: ConnectTarget,
        sni: Option<String>,
    },
    /// Cleartext HTTP/1 inside a CONNECT tunnel.
    Cleartext { connect: ConnectTarget },
    /// A request on the proxy port itself (absolute-form `http://`).
    Proxy,
}

/// One client connection's context.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub client: SocketAddr,
    pub via: Via,
    /// The raw heads of an HTTP/1 connection (`None` for h2).
    pub raw: Option<crate::h1scan::RawHeads>,
}

/// Serves one request. Never fails: errors become refusals.
pub async fn handle(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let start = Instant::now();
    let method = req.method().clone();
    let version = req.version();
    let mut record = AccessRecord::new(ctx.client, &method, start);
    record.host = match &ctx.via {
        Via::Tls { connect, .. } | Via::Cleartext { connect } => connect.host.clone(),
        Via::Proxy => req.uri().host().unwrap_or("").to_ascii_lowercase(),
    };
    record.path = req.uri().path().to_owned();

    // HTTP/1: the head as the client sent it (hyper hides a `#fragment` and a
    // Content-Length next to Transfer-Encoding). A scanned connection whose
    // head is missing or is another request's cannot be checked: refuse.
    let mut raw = match ctx.raw.as_ref().filter(|_| version != Version::HTTP_2) {
        None => None,
        Some(q) => match q.pop() {
            Some(h) if h.refusal.is_none() && h.method == method.as_str() => Some(h),
            other => {
                let (status, why) = other
                    .and_then(|h| h.refusal)
                    .unwrap_or((400, "the request head could not be checked"));
                record.decision = "bad-request";
                let resp = refusal(status, "bad-request", why, true);
                return Ok(finish(resp, record, version));
            }
        },
    };
    let ends_http = raw.as_ref().is_some_and(|h| h.ends_http);

    if matches!(ctx.via, Via::Proxy)
        && req.uri().scheme().is_none()
        && req.uri().authority().is_none()
        && method == Method::GET
        && req.uri().path() == "/healthz"
    {
        let resp = Response::new(full(Bytes::from_static(b"ok\n")));
        record.decision = "healthz";
        return Ok(finish(resp, record, version));
    }

    // hyper's buffer limit is not exact (reads grow adaptively), so the head
    // size is checked here too: SPEC §5, 64 KiB, 431.
    if head_size(&req) > ctx.shared.limits.max_head_bytes {
        record.decision = "bad-request";
        let resp = refusal(431, "bad-request", "request head larger than 64 KiB", true);
        return Ok(finish(resp, record, version));
    }

    let body_hint = body_hint(&req);
    let target = if version == Version::HTTP_2 {
        req.uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default()
    } else if let Some(h) = raw.as_mut() {
        std::mem::take(&mut h.target)
    } else {
        req.uri().to_string()
    };
    // Only with both Content-Length and Transfer-Encoding (hyper dropped the
    // former): the policy must see the conflict.
    let with_cl;
    let headers = match raw.as_ref() {
        Some(h) if !h.dropped_content_length.is_empty() => {
            let mut m = req.headers().clone();
            for v in &h.dropped_content_length {
                m.append(http::header::CONTENT_LENGTH, v.clone());
            }
            with_cl = m;
            &with_cl
        }
        _ => req.headers(),
    };
    let authority = if version == Version::HTTP_2 {
        req.uri().authority().map(|a| a.as_str().to_owned())
    } else {
        None
    };
    let transport = match &ctx.via {
        Via::Tls { connect, sni } => Transport::Tls {
            connect,
            sni: sni.as_deref(),
        },
        Via::Cleartext { connect } => Transport::CleartextTunnel { connect },
        Via::Proxy => Transport::PlainProxy,
    };
    let loaded = ctx.shared.loaded.load_full();
    let facts = RequestFacts {
        transport,
        method: &method,
        target: &target,
        version,
        authority: authority.as_deref(),
        headers,
        body: body_hint,
    };
    let decision = loaded.policy.decide(&facts);
    let allowed = match decision {
        Decision::Refuse(r) => {
            record.decision = r.reason.as_str();
            // An HTTP/1 request whose body we never read: close the connection
            // rather than read (or misparse) what follows.
            let close = version != Version::HTTP_2 && (body_hint != BodyHint::Empty || ends_http);
            let resp = refusal(r.status.as_u16(), r.reason.as_str(), &r.message, close);
            return Ok(finish(resp, record, version));
        }
        Decision::Allow(a) => a,
    };
    record.decision = "allowed";
    record.route = allowed.route.map(|r| r.host().to_owned());
    record.host = allowed.host.clone();
    if let Some(p) = allowed.path_and_query.split('?').next() {
        record.path = p.to_owned();
    }
    let credential = match allowed.credential {
        Some(c) => match loaded.secret(&c.source) {
            Some(secret) => Some((c.header.clone(), c.scheme.clone(), secret.clone())),
            None => {
                // Cannot happen (loading checks every credential); refuse
                // rather than forward without the credential.
                record.decision = "upstream-unreachable";
                let resp = refusal(502, "upstream-unreachable", "credential not loaded", true);
                return Ok(finish(resp, record, version));
            }
        },
        None => None,
    };
    let tls = matches!(ctx.via, Via::Tls { .. });
    let route_names_ip = match (allowed.route, allowed.host.parse::<std::net::IpAddr>()) {
        (Some(r), Ok(ip)) => r.names_ip(&ip),
        _ => false,
    };
    let plan = Plan {
        origin: Origin {
            tls,
            host: allowed.host.clone(),
            port: allowed.port,
        },
        path_and_query: allowed.path_and_query.clone(),
        credential,
        strip: allowed.strip_headers.to_vec(),
        opts: SendOpts {
            websocket: allowed.websocket,
            route_names_ip,
        },
        drop_body: matches!(method, Method::GET | Method::HEAD) && body_hint == BodyHint::Unknown,
    };
    drop(loaded);

    // An h2 GET/HEAD whose head did not say whether a body follows: the
    // body must be seen to be empty before anything is forwarded.
    let mut req = req;
    if plan.drop_body {
        let wait = ctx.shared.limits.header_read_timeout;
        if let Err(r) = expect_no_body(req.body_mut(), &method, wait).await {
            record.decision = r.reason.as_str();
            let resp = refusal(r.status.as_u16(), r.reason.as_str(), &r.message, false);
            return Ok(finish(resp, record, version));
        }
    }

    let bytes_in = record.bytes_in.clone();
    let resp = forward::forward(&ctx.shared, req, plan, bytes_in).await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            let (status, reason) = e.status_and_reason();
            record.decision = reason;
            crate::metrics::get().upstream_error(reason);
            tracing::debug!(error = %e, "upstream failure");
            refusal(status.as_u16(), reason, &e.to_string(), false)
        }
    };
    // The bytes after an `Upgrade` request are not scanned: unless it became
    // a tunnel, the connection must not carry another request.
    let mut resp = resp;
    if ends_http && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    Ok(finish(resp, record, version))
}

/// Approximate size of the request head as received (line plus headers).
fn head_size(req: &Request<Incoming>) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

/// What the transport tells about the request body (see `BodyHint`).
fn body_hint(req: &Request<Incoming>) -> BodyHint {
    if req.body().is_end_stream() {
        return BodyHint::Empty;
    }
    if req.version() == Version::HTTP_2 && !req.headers().contains_key(http::header::CONTENT_LENGTH)
    {
        return BodyHint::Unknown;
    }
    BodyHint::NonEmpty
}

/// Waits for the end of an h2 request stream that must carry no body (a
/// `GET`/`HEAD` whose head announced none): empty DATA frames and trailers
/// are fine, one byte of data is a 400 `bad-request`, decided before anything
/// is forwarded. A stream that neither ends nor sends data within `wait` is
/// refused the same way rather than forwarded with a body still to come.
async fn expect_no_body(
    body: &mut Incoming,
    method: &Method,
    wait: std::time::Duration,
) -> Result<(), Refusal> {
    let bad = |why: &str| Refusal::new(Reason::BadRequest, format!("{method} {why}"));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(bad("request stream did not end (a body may follow)")),
            Ok(None) => return Ok(()),
            Ok(Some(Err(_))) => return Err(bad("request stream failed")),
            Ok(Some(Ok(f))) => {
                if f.data_ref().is_some_and(|d| !d.is_empty()) {
                    return Err(bad("with a request body"));
                }
            }
        }
    }
}

/// Wraps the response body so the access-log line is written when it ends.
fn finish(
    resp: Response<BoxBody>,
    mut record: AccessRecord,
    version: Version,
) -> Response<BoxBody> {
    record.status = resp.status().as_u16();
    // hyper's h2 server sends a body even on a HEAD response, which the
    // client must treat as a protocol error (RFC 9113 §8.1.1); HTTP/1 drops
    // it itself and keeps the length the GET would have.
    let resp = if record.method == Method::HEAD && version == Version::HTTP_2 {
        resp.map(|_| crate::body::empty())
    } else {
        resp
    };
    let counter = record.bytes_out.clone();
    let on_end: Box<dyn FnOnce(bool) + Send> = Box::new(move |_complete| record.emit());
    resp.map(|b| Tracked::new(b, counter, Some(on_end)).boxed_unsync())
}

/// A response for requests the proxy port cannot serve at all.
pub fn not_a_proxy_request() -> Response<BoxBody> {
    refusal(
        StatusCode::BAD_REQUEST.as_u16(),
        "bad-request",
        "send CONNECT host:port or an absolute-form http:// request",
        true,
    )
}

/// Counter type shared with `forward` for the request body.
pub type Counter = Arc<AtomicU64>;
