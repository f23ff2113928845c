//! The client side of HTTP: one request through its stages.
//!
//! Owns: the stages of a request, in order, each a function returning
//! `Result<_, Refusal>` (in the spirit of pingora's request filter → upstream
//! peer → upstream request filter → response filter):
//!
//! 1. `raw_head`: the HTTP/1 head as the client sent it (`h1scan`);
//! 2. `GET /healthz` on the proxy port, answered here;
//! 3. `head_size`: SPEC §5, 64 KiB;
//! 4. `request_filter`: the facts of the request, judged by the policy
//!    (the single place a request is allowed or refused);
//! 5. `upstream_peer`: where the allowed request goes and with what
//!    credential (`forward::Plan`);
//! 6. `request_body_filter`: an h2 `GET`/`HEAD` whose head did not say
//!    whether a body follows must show it has none;
//! 7. `forward::forward` (headers, bodies, the upstream), its failures mapped
//!    by `UpstreamError::refusal`;
//! 8. `response_filter`: `Connection: close` where HTTP/1 must stop.
//!
//! Then one place, `answer`, turns the outcome into the response and the
//! access-log record.
//! Must never: poll a refused request's body (no `100 Continue`, nothing read),
//! touch DNS or the upstream for a refused request, or judge a request itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use addon_rules::{
    Allowed, BodyHint, ConnectTarget, Decision, Reason, Refusal, RequestFacts, Transport,
};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use crate::body::{BoxBody, Tracked, full};
use crate::forward::{self, Plan};
use crate::h1scan::{RawHead, RawHeads};
use crate::limits::{REFUSED_H2_BODY_BYTES, REFUSED_H2_BODY_TIME};
use crate::log::AccessRecord;
use crate::metrics::Outcome;
use crate::refuse;
use crate::state::{CredentialHeader, Loaded, Shared};
use crate::upstream::{Origin, SendOpts};

/// One client connection's context.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub client: SocketAddr,
    /// The CONNECT tunnel the requests come through; `None` on the proxy port.
    pub tunnel: Option<Tunnel>,
    /// The raw heads of an HTTP/1 connection (`None` for h2).
    pub raw: Option<RawHeads>,
}

/// A CONNECT tunnel: its target, and the ClientHello when TLS was
/// terminated. The policy sees it as an `addon_rules::Transport`.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub connect: ConnectTarget,
    /// `Some` when the tunnel carries TLS; `None`: cleartext HTTP/1.
    pub tls: Option<ClientHello>,
}

/// What the client's TLS ClientHello said.
#[derive(Debug, Clone)]
pub struct ClientHello {
    /// The server name as sent (a different one than the CONNECT host is 421).
    pub sni: Option<String>,
}

impl Ctx {
    /// How the requests of this connection reach the proxy, for the policy.
    pub fn transport(&self) -> Transport<'_> {
        match &self.tunnel {
            None => Transport::PlainProxy,
            Some(Tunnel {
                connect,
                tls: Some(hello),
            }) => Transport::Tls {
                connect,
                sni: hello.sni.as_deref(),
            },
            Some(Tunnel { connect, tls: None }) => Transport::CleartextTunnel { connect },
        }
    }
}

/// How a request left the stages when it was not refused.
enum Exit {
    Healthz,
    /// The origin's response (or the 101 of a WebSocket bridge).
    Forwarded(Response<BoxBody>),
}

/// A refused request; `close`: the HTTP/1 connection must not carry another
/// request after it (its body was never read, or its head could not be
/// trusted).
struct Stop {
    refusal: Refusal,
    close: bool,
}

/// `result.or_stop(close)`: a stage's refusal as a [`Stop`].
trait OrStop<T> {
    fn or_stop(self, close: bool) -> Result<T, Stop>;
}

impl<T> OrStop<T> for Result<T, Refusal> {
    fn or_stop(self, close: bool) -> Result<T, Stop> {
        self.map_err(|refusal| Stop { refusal, close })
    }
}

/// Serves one request. Never fails: errors become refusals.
pub async fn handle(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let version = req.version();
    let mut record = AccessRecord::new(ctx.client, req.method(), Instant::now());
    record.host = match &ctx.tunnel {
        Some(t) => t.connect.host.clone(),
        None => req.uri().host().unwrap_or("").to_ascii_lowercase(),
    };
    record.path = req.uri().path().to_owned();
    let outcome = stages(&ctx, req, &mut record).await;
    Ok(answer(outcome, record, version))
}

/// The stages in order; the first refusal ends the request.
async fn stages(
    ctx: &Ctx,
    mut req: Request<Incoming>,
    record: &mut AccessRecord,
) -> Result<Exit, Stop> {
    let (plan, ends_http) = match checks(ctx, &mut req, record).await {
        Ok(Some(checked)) => checked,
        Ok(None) => return Ok(Exit::Healthz),
        Err(stop) => {
            if req.version() == Version::HTTP_2 {
                linger_h2(req);
            }
            return Err(stop);
        }
    };
    // Counted only when there is a body to count (not a GET's).
    let bytes_in = (!req.body().is_end_stream()).then(|| {
        let c = Arc::new(std::sync::atomic::AtomicU64::new(0));
        record.bytes_in = Some(c.clone());
        c
    });
    let resp = forward::forward(&ctx.shared, req, plan, bytes_in)
        .await
        .map_err(|e| {
            crate::metrics::get().upstream_error(e.reason());
            tracing::debug!(error = %e, "upstream failure");
            e.refusal()
        })
        .or_stop(false)?;
    Ok(Exit::Forwarded(response_filter(resp, ends_http)))
}

/// Every stage before the request goes upstream: the forwarding plan and
/// whether the connection ends its HTTP after this request, or `None` for
/// `/healthz`.
async fn checks(
    ctx: &Ctx,
    req: &mut Request<Incoming>,
    record: &mut AccessRecord,
) -> Result<Option<(Plan, bool)>, Stop> {
    let h1 = req.version() != Version::HTTP_2;
    let head = raw_head(ctx, req).or_stop(true)?;
    if is_healthz(ctx, req) {
        return Ok(None);
    }
    head_size(ctx, req).or_stop(true)?;
    let ends_http = head.as_ref().is_some_and(|h| h.ends_http);
    let body = body_hint(req);

    let loaded = ctx.shared.loaded.load_full();
    // A refused HTTP/1 request whose body we never read: close the
    // connection rather than read (or misparse) what follows.
    let unread = h1 && (body != BodyHint::Empty || ends_http);
    let allowed = request_filter(ctx, req, head, body, &loaded).or_stop(unread)?;
    record.route = allowed.route.map(|r| r.host().to_owned());
    // Into the buffers `handle` filled (the same text, most of the time).
    record.host.clone_from(&allowed.host);
    if let Some(p) = allowed.path_and_query.split('?').next() {
        record.path.clear();
        record.path.push_str(p);
    }
    let plan = upstream_peer(ctx, &loaded, allowed, req.method(), body).or_stop(true)?;
    drop(loaded);

    if plan.drop_body {
        let wait = ctx.shared.limits.header_read_timeout;
        request_body_filter(req, wait).await.or_stop(false)?;
    }
    Ok(Some((plan, ends_http)))
}

/// An h2 request refused while its body was unread: dropping the body now
/// would reset the stream with CANCEL before the refusal is sent, and a
/// client may then lose the refusal (curl 7.88 prints only the CONNECT's
/// 200). The body is kept past the response and read to its end, within
/// [`REFUSED_H2_BODY_BYTES`] and [`REFUSED_H2_BODY_TIME`], so the stream closes cleanly
/// (RFC 9113 §8.1: at worst RST_STREAM(NO_ERROR) after the response). With
/// `Expect: 100-continue` it is held but never read: reading would invite
/// the body the refusal declines.
fn linger_h2(req: Request<Incoming>) {
    let expects = req.headers().contains_key(http::header::EXPECT);
    let mut body = req.into_body();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + REFUSED_H2_BODY_TIME;
        if expects {
            tokio::time::sleep_until(deadline).await;
            return;
        }
        let mut read = 0usize;
        while read <= REFUSED_H2_BODY_BYTES {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(f))) => read += f.data_ref().map_or(0, |d| d.len()),
                _ => return,
            }
        }
    });
}

/// HTTP/1: the head as the client sent it (hyper hides a `#fragment` and a
/// `Content-Length` next to `Transfer-Encoding`). A scanned connection whose
/// head is missing, malformed or is another request's cannot be checked.
fn raw_head(ctx: &Ctx, req: &Request<Incoming>) -> Result<Option<RawHead>, Refusal> {
    let Some(q) = ctx
        .raw
        .as_ref()
        .filter(|_| req.version() != Version::HTTP_2)
    else {
        return Ok(None);
    };
    match q.pop() {
        Some(h) if h.refusal.is_none() && h.method == *req.method() => Ok(Some(h)),
        Some(RawHead {
            refusal: Some(r), ..
        }) => Err(r),
        _ => Err(Refusal::new(
            Reason::BadRequest,
            "the request head could not be checked",
        )),
    }
}

/// `GET /healthz` in origin form on the proxy port (not inside a tunnel).
fn is_healthz(ctx: &Ctx, req: &Request<Incoming>) -> bool {
    ctx.tunnel.is_none()
        && req.uri().scheme().is_none()
        && req.uri().authority().is_none()
        && req.method() == Method::GET
        && req.uri().path() == "/healthz"
}

/// SPEC §5: a head over 64 KiB is a 431. hyper's buffer limit is not exact
/// (reads grow adaptively), so the size is checked here too.
fn head_size(ctx: &Ctx, req: &Request<Incoming>) -> Result<(), Refusal> {
    let line = req.method().as_str().len() + display_len(req.uri()) + 12;
    let size = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line;
    if size > ctx.shared.limits.max_head_bytes {
        return Err(Refusal::with_status(
            Reason::BadRequest,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head larger than 64 KiB",
        ));
    }
    Ok(())
}

/// The length of `v`'s text, without making it.
fn display_len(v: &impl std::fmt::Display) -> usize {
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut n = Count(0);
    let _ = std::fmt::write(&mut n, format_args!("{v}"));
    n.0
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

/// The facts of the request, judged by the policy.
fn request_filter<'p>(
    ctx: &Ctx,
    req: &Request<Incoming>,
    mut head: Option<RawHead>,
    body: BodyHint,
    loaded: &'p Loaded,
) -> Result<Allowed<'p>, Refusal> {
    let h2 = req.version() == Version::HTTP_2;
    let target = match (h2, head.as_mut()) {
        (true, _) => req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        (false, Some(h)) => std::mem::take(&mut h.target),
        (false, None) => req.uri().to_string(),
    };
    // Only with both Content-Length and Transfer-Encoding (hyper dropped the
    // former): the policy must see the conflict.
    let with_cl: HeaderMap;
    let headers = match head.as_ref() {
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
    let authority = h2.then(|| req.uri().authority().map(|a| a.as_str()));
    let facts = RequestFacts {
        transport: ctx.transport(),
        method: req.method(),
        target: &target,
        version: req.version(),
        authority: authority.flatten(),
        headers,
        body,
    };
    match loaded.policy.decide(&facts) {
        Decision::Allow(a) => Ok(a),
        Decision::Refuse(r) => Err(r),
    }
}

/// Where the allowed request goes, with what credential and options.
fn upstream_peer(
    ctx: &Ctx,
    loaded: &Loaded,
    allowed: Allowed<'_>,
    method: &Method,
    body: BodyHint,
) -> Result<Plan, Refusal> {
    let credential = match allowed.credential {
        None => None,
        Some(c) => match allowed.route.and_then(|r| loaded.credential(r)) {
            Some(CredentialHeader::Value(v)) => Some((c.header.clone(), v.clone())),
            Some(CredentialHeader::Invalid) => {
                return Err(Refusal::new(
                    Reason::UpstreamUnreachable,
                    "the configured credential is not a valid header value",
                ));
            }
            // Cannot happen (loading checks every credential); refuse
            // rather than forward without the credential.
            None => {
                return Err(Refusal::new(
                    Reason::UpstreamUnreachable,
                    "credential not loaded",
                ));
            }
        },
    };
    let route_names_ip = match (allowed.route, allowed.host.parse::<std::net::IpAddr>()) {
        (Some(r), Ok(ip)) => r.names_ip(&ip),
        _ => false,
    };
    let tls = ctx.tunnel.as_ref().is_some_and(|t| t.tls.is_some());
    Ok(Plan {
        origin: Origin {
            tls,
            host: allowed.host,
            port: allowed.port,
        },
        path_and_query: allowed.path_and_query,
        credential,
        strip: allowed.strip_headers.to_vec(),
        opts: SendOpts {
            websocket: allowed.websocket,
            route_names_ip,
        },
        drop_body: matches!(*method, Method::GET | Method::HEAD) && body == BodyHint::Unknown,
    })
}

/// An h2 `GET`/`HEAD` whose head did not say whether a body follows: waits
/// for the end of the request stream. Empty DATA frames and trailers are
/// fine; one byte of data is a 400 `bad-request`, decided before anything is
/// forwarded. A stream that neither ends nor sends data within `wait` is
/// refused the same way rather than forwarded with a body still to come.
async fn request_body_filter(req: &mut Request<Incoming>, wait: Duration) -> Result<(), Refusal> {
    let method = req.method().clone();
    let bad = |why: &str| Refusal::new(Reason::BadRequest, format!("{method} {why}"));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, req.body_mut().frame()).await {
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

/// The bytes after an `Upgrade` request are not scanned: unless it became
/// a tunnel, the connection must not carry another request.
fn response_filter(mut resp: Response<BoxBody>, ends_http: bool) -> Response<BoxBody> {
    if ends_http && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// The one place a request's outcome becomes its response and its
/// access-log record (written when the response body ends).
fn answer(
    outcome: Result<Exit, Stop>,
    mut record: AccessRecord,
    version: Version,
) -> Response<BoxBody> {
    let resp = match outcome {
        Ok(Exit::Healthz) => {
            record.decision = Outcome::Healthz;
            Response::new(full(Bytes::from_static(b"ok\n")))
        }
        Ok(Exit::Forwarded(resp)) => {
            record.decision = Outcome::Allowed;
            resp
        }
        Err(Stop { refusal, close }) => {
            record.decision = Outcome::Refused(refusal.reason);
            // A refusal after route matching names its route.
            if refusal.route.is_some() {
                record.route = refusal.route.clone();
            }
            let resp = refuse::response(&refusal, close);
            // hyper's h2 server sends a body even on a HEAD response, which
            // the client must treat as a protocol error (RFC 9113 §8.1.1);
            // HTTP/1 drops it itself and keeps the length a GET would have.
            if record.method.as_ref() == Some(&Method::HEAD) && version == Version::HTTP_2 {
                resp.map(|_| crate::body::empty())
            } else {
                resp
            }
        }
    };
    record.status = resp.status().as_u16();
    let on_end = move |_complete, bytes| {
        record.bytes_out = bytes;
        record.emit();
    };
    resp.map(|b| Tracked::new(b, None, Some(on_end)).boxed_unsync())
}

#[cfg(test)]
mod tests {
    /// `head_size` measures the URI as `to_string` would write it.
    #[test]
    fn display_len_is_the_text_length() {
        for u in [
            "/",
            "/a/b?x=1&y=%2F",
            "http://example.com:8080/p?q",
            "https://[fd00::7]:443/x",
            "*",
            "example.com:443",
        ] {
            let uri: http::Uri = u.parse().unwrap();
            assert_eq!(super::display_len(&uri), uri.to_string().len(), "{u}");
        }
        assert_eq!(super::display_len(&"é✓"), "é✓".len());
    }
}
