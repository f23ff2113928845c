//! Applying an allowed decision: the upstream request and the response back.
//!
//! Owns: header hygiene both ways (hop-by-hop, `Proxy-Authorization`,
//! credential headers and `strip_headers` out, the route's credential in;
//! hop-by-hop, `Alt-Svc` and `x-egress-proxy-decision` out of responses),
//! streaming bodies with backpressure (never buffered whole), and bridging a
//! WebSocket on a matching `101`.
//! Must never: decide whether a request is allowed (the policy did), send a
//! credential anywhere but the request it was decided for, or buffer a body.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;

use crate::body::{BoxBody, NoEnd, Tracked, empty};
use crate::refuse::DECISION_HEADER;
use crate::state::Shared;
use crate::upstream::{Origin, SendOpts, UpstreamError};

/// What to send where, from the decision (owned: the policy guard is gone).
#[derive(Debug)]
pub struct Plan {
    pub origin: Origin,
    pub path_and_query: String,
    /// Header and its value, built at load (marked sensitive: `Debug`
    /// prints `Sensitive`).
    pub credential: Option<(HeaderName, HeaderValue)>,
    pub strip: Vec<HeaderName>,
    pub opts: SendOpts,
    /// GET/HEAD whose body was not announced: never forward one.
    pub drop_body: bool,
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the proxy's own.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including those named by `Connection`.
fn remove_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    // One pass over the (few) names present instead of nine lookups: most
    // requests and responses carry none of them (docs/benchmarks.md, S1).
    if h.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        for n in HOP_BY_HOP {
            h.remove(n);
        }
    }
}

/// Sends the allowed request upstream and returns the response to give the client.
pub async fn forward(
    shared: &Arc<Shared>,
    mut req: Request<Incoming>,
    mut plan: Plan,
    bytes_in: Option<Arc<AtomicU64>>,
) -> Result<Response<BoxBody>, UpstreamError> {
    let client_upgrade = plan.opts.websocket.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    let h = &mut parts.headers;
    // `TE: trailers` is end-to-end in meaning (gRPC needs it on h2); any
    // other TE value is hop-by-hop and dropped.
    let te_trailers = h
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("trailers"));
    remove_hop_by_hop(h);
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    for n in &plan.strip {
        h.remove(n);
    }
    if let Some((name, value)) = &plan.credential {
        h.insert(name.clone(), value.clone());
    }
    if plan.opts.websocket {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }

    // A body that has ended already (a GET's, most often) has nothing to
    // count: the empty body costs no allocation.
    let body: BoxBody = if plan.drop_body || body.is_end_stream() {
        empty()
    } else {
        Tracked::<_, NoEnd>::new(body, bytes_in, None).boxed_unsync()
    };
    let mut up = Request::from_parts(parts, body);
    // What `parse` does, without copying the text first.
    let target = Bytes::from(std::mem::take(&mut plan.path_and_query));
    *up.uri_mut() = Uri::from_maybe_shared(target)
        .map_err(|_| UpstreamError::Unreachable("bad upstream path".into()))?;

    let mut resp = shared.upstream.send(plan.origin, plan.opts, up).await?;

    if let Some(client_upgrade) = client_upgrade
        && resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && resp
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) else {
                return;
            };
            let mut c = TokioIo::new(c);
            let mut u = TokioIo::new(u);
            let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
        });
        let (mut parts, _body) = resp.into_parts();
        parts.headers.remove("alt-svc");
        parts.headers.remove(DECISION_HEADER);
        parts.headers.remove(header::PROXY_AUTHENTICATE);
        return Ok(Response::from_parts(parts, empty()));
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A 101 the client did not get a WebSocket for: no blind tunnels.
        return Err(UpstreamError::Unreachable(
            "the origin switched protocols without a matching WebSocket upgrade".into(),
        ));
    }

    let h = resp.headers_mut();
    remove_hop_by_hop(h);
    h.remove("alt-svc");
    h.remove(DECISION_HEADER);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        for n in HOP_BY_HOP {
            let mut h = HeaderMap::new();
            h.insert("x-kept", HeaderValue::from_static("1"));
            h.append(HeaderName::from_static(n), HeaderValue::from_static("x"));
            h.append(HeaderName::from_static(n), HeaderValue::from_static("y"));
            remove_hop_by_hop(&mut h);
            assert!(h.get(n).is_none(), "{n}");
            assert_eq!(h.len(), 1, "{n}: only x-kept stays");
        }
    }
}
