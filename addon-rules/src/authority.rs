//! Step 4 of a decision (SPEC §3.4): authority. Owns the rule that inside a
//! tunnel `Host`, `:authority`, an absolute-form target and the TLS SNI all
//! name the CONNECT target, and that a plain `http://` request's `Host` names
//! its URL's authority; two `Host` headers are refused.
//! Must never pick a destination: it only checks that every name the request
//! carries agrees with the one step 1 chose.

use http::Version;

use crate::facts::{RequestFacts, Transport};
use crate::reason::{Reason, Refusal};
use crate::request_target::RequestTarget;
use crate::target::{Authority, authority_string, normalize_host, parse_authority};
use crate::trace::Trace;

/// Step 4: every authority `req` names agrees with `target`'s destination.
pub(crate) fn check(
    req: &RequestFacts<'_>,
    target: &RequestTarget<'_>,
    trace: &mut Trace<'_>,
) -> Result<(), Refusal> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::new(
            Reason::BadRequest,
            "more than one Host header",
        ));
    }
    let host_text = host_header.and_then(|v| v.to_str().ok());
    let host_header = match host_header.map(|v| {
        v.to_str()
            .map_err(|_| "not ASCII".to_string())
            .and_then(parse_authority)
    }) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(m)) => {
            return Err(Refusal::new(
                Reason::BadRequest,
                format!("Host header: {m}"),
            ));
        }
    };
    let h2_authority = match req.authority.map(parse_authority) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(m)) => {
            return Err(Refusal::new(Reason::BadRequest, format!(":authority: {m}")));
        }
    };
    let (host, port) = (&target.host, target.port);
    let Some(c) = target.connect else {
        for (what, a) in [("Host", &host_header), (":authority", &h2_authority)] {
            if let Some(a) = a
                && (a.host != *host || a.port.unwrap_or(80) != port)
            {
                return Err(Refusal::new(
                    Reason::AuthorityMismatch,
                    format!(
                        "{what} names {}, not the URL's {}",
                        display_authority(a),
                        authority_string(host, port)
                    ),
                ));
            }
        }
        trace.step(|| format!("4 authority: the URL's {}", authority_string(host, port)));
        return Ok(());
    };
    let named = [
        ("the absolute-form target", &target.absolute),
        ("Host", &host_header),
        (":authority", &h2_authority),
    ];
    for (what, a) in named {
        if let Some(a) = a
            && (a.host != c.host || a.port.is_some_and(|p| p != c.port))
        {
            return Err(Refusal::new(
                Reason::AuthorityMismatch,
                format!(
                    "{what} names {}, not the CONNECT target {}",
                    display_authority(a),
                    c.authority()
                ),
            ));
        }
    }
    if let Transport::Tls { sni: Some(sni), .. } = req.transport {
        // A `Host` without a port is parsed as one whole host, so when the SNI
        // is the same text its normalized form is the one checked above
        // (usually the case: the host is not normalized twice).
        let same_as_host =
            host_text == Some(sni) && host_header.as_ref().is_some_and(|a| a.port.is_none());
        let ok = same_as_host || normalize_host(sni).is_ok_and(|s| s == c.host);
        if !ok {
            return Err(Refusal::new(
                Reason::AuthorityMismatch,
                format!("TLS SNI does not name the CONNECT host {}", c.host),
            ));
        }
    }
    if host_header.is_none()
        && h2_authority.is_none()
        && target.absolute.is_none()
        && req.version == Version::HTTP_11
    {
        return Err(Refusal::new(
            Reason::BadRequest,
            "HTTP/1.1 request without Host",
        ));
    }
    trace.step(|| format!("4 authority: names the CONNECT target {}", c.authority()));
    Ok(())
}

fn display_authority(a: &Authority) -> String {
    match a.port {
        Some(p) => authority_string(&a.host, p),
        None if a.host.contains(':') => format!("[{}]", a.host),
        None => a.host.to_string(),
    }
}
