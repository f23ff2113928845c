//! Step 1 of a decision (SPEC §3.1): the request target. Owns turning the
//! raw target (origin-form inside a tunnel, absolute-form anywhere) into the
//! destination host and port, the raw path and the query, and refusing a
//! fragment, a wrong scheme, an origin-form target outside a tunnel and port 0.
//! Must never decide the destination from anything but the CONNECT target
//! (inside a tunnel) or the plain request's URL.

use std::borrow::Cow;

use http::Method;

use crate::facts::RequestFacts;
use crate::framing;
use crate::reason::{Reason, Refusal};
use crate::target::{Authority, ConnectTarget, authority_string, parse_absolute};
use crate::trace::Trace;

/// Where a request goes and what it asks for, before path normalization.
pub(crate) struct RequestTarget<'r> {
    /// The tunnel's CONNECT target; `None` for a plain proxy request.
    pub connect: Option<&'r ConnectTarget>,
    /// Destination host, normalized: the CONNECT host, or the plain URL's.
    pub host: Cow<'r, str>,
    /// Destination port: the CONNECT port, or the plain URL's (default 80).
    pub port: u16,
    /// The path as sent (not normalized), without the query.
    pub raw_path: &'r str,
    /// The query exactly as sent, without `?`.
    pub query: Option<&'r str>,
    /// The authority of an absolute-form target, for step 4.
    pub absolute: Option<Authority<'r>>,
}

/// Step 1: the target of `req`.
pub(crate) fn resolve<'r>(
    req: &RequestFacts<'r>,
    trace: &mut Trace<'_>,
) -> Result<RequestTarget<'r>, Refusal> {
    // A CONNECT carries an authority-form target, which is valid for that
    // method: its refusal is step 5's (405), not a bad target.
    if req.method == Method::CONNECT {
        framing::check(req.method, req.version, req.headers, req.body)?;
    }
    let raw = req.target;
    if raw.as_bytes().contains(&b'#') {
        return Err(Refusal::new(
            Reason::BadRequest,
            "the request target holds a fragment (#)",
        ));
    }
    let connect = req.transport.connect();
    let target = if raw.starts_with('/') {
        let Some(c) = connect else {
            return Err(Refusal::new(
                Reason::BadRequest,
                "a request to the proxy port must use an absolute http:// URL (or CONNECT for https)",
            ));
        };
        let (raw_path, query) = match raw.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (raw, None),
        };
        RequestTarget {
            connect,
            host: Cow::Borrowed(&c.host),
            port: c.port,
            raw_path,
            query,
            absolute: None,
        }
    } else {
        let abs = parse_absolute(raw).map_err(|m| Refusal::new(Reason::BadRequest, m))?;
        match connect {
            Some(c) => {
                if abs.scheme != "http" && abs.scheme != "https" {
                    return Err(Refusal::new(
                        Reason::BadRequest,
                        format!("scheme {:?} is not http or https", abs.scheme),
                    ));
                }
                RequestTarget {
                    connect,
                    host: Cow::Borrowed(&c.host),
                    port: c.port,
                    raw_path: abs.path,
                    query: abs.query,
                    absolute: Some(abs.authority),
                }
            }
            None => {
                if abs.scheme != "http" {
                    return Err(Refusal::new(
                        Reason::BadRequest,
                        format!(
                            "scheme {:?} cannot be sent as a plain proxy request: only http://, use CONNECT for https",
                            abs.scheme
                        ),
                    ));
                }
                RequestTarget {
                    connect,
                    host: abs.authority.host.clone(),
                    port: abs.authority.port.unwrap_or(80),
                    raw_path: abs.path,
                    query: abs.query,
                    absolute: Some(abs.authority),
                }
            }
        }
    };
    if target.port == 0 {
        return Err(Refusal::new(Reason::BadRequest, "port 0 is not allowed"));
    }
    trace.step(|| {
        format!(
            "1 target: {} (raw path {:?})",
            authority_string(&target.host, target.port),
            target.raw_path
        )
    });
    Ok(target)
}
