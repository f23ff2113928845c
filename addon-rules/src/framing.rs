//! Framing and method rules of SPEC §3.5 that need only the request head:
//! `TRACE` and `CONNECT` in a tunnel, `GET`/`HEAD` with a body,
//! `Content-Length` / `Transfer-Encoding` conflicts, and `Upgrade` tokens.
//! Owns the WebSocket-upgrade recognition and step 5 of a decision (which
//! also refuses a method override naming `TRACE` or `CONNECT`).
//! Must never accept a head whose framing two HTTP parsers could read
//! differently (request smuggling).

use http::{HeaderMap, Method, Version, header};

use crate::facts::{BodyHint, RequestFacts};
use crate::method_override;
use crate::reason::{Reason, Refusal};
use crate::trace::Trace;

/// Step 5 of a decision: framing and method, and a method override naming
/// `TRACE` or `CONNECT`. `Ok(true)` for a valid WebSocket upgrade request.
pub(crate) fn check_request(
    req: &RequestFacts<'_>,
    query: Option<&str>,
    trace: &mut Trace<'_>,
) -> Result<bool, Refusal> {
    let websocket = check(req.method, req.version, req.headers, req.body)?;
    // An override to TRACE would echo the request, injected credential
    // included, back to the agent: refused like TRACE itself, on every
    // route (docs/routes.md).
    if let Some((what, m)) = method_override::find_refused(req.headers, query, |m| {
        m.eq_ignore_ascii_case("TRACE") || m.eq_ignore_ascii_case("CONNECT")
    }) {
        return Err(Refusal::new(
            Reason::MethodNotAllowed,
            format!(
                "{what} names {}, which is not allowed through the proxy",
                method_override::shorten(&m)
            ),
        ));
    }
    trace.step(|| {
        format!(
            "5 framing: ok{}",
            if websocket {
                " (websocket upgrade)"
            } else {
                ""
            }
        )
    });
    Ok(websocket)
}

fn bad(msg: impl Into<String>) -> Refusal {
    Refusal::new(Reason::BadRequest, msg)
}

/// Comma-separated tokens of every value of `name`, trimmed, lowercased.
fn tokens(headers: &HeaderMap, name: header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Checks method and framing; `Ok(true)` for a valid WebSocket upgrade request.
pub(crate) fn check(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    body: BodyHint,
) -> Result<bool, Refusal> {
    if method == Method::TRACE {
        return Err(Refusal::new(
            Reason::MethodNotAllowed,
            "TRACE is not allowed through the proxy",
        ));
    }
    if method == Method::CONNECT {
        return Err(Refusal::new(
            Reason::MethodNotAllowed,
            "CONNECT is not allowed inside a tunnel or as a forwarded request",
        ));
    }

    // Content-Length: every value (and every comma-separated element) must be
    // the same plain decimal number.
    let mut content_length: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        let s = v
            .to_str()
            .map_err(|_| bad("Content-Length is not a number"))?;
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("Content-Length is not a number"));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| bad("Content-Length is not a number"))?;
            match content_length {
                Some(prev) if prev != n => return Err(bad("conflicting Content-Length values")),
                _ => content_length = Some(n),
            }
        }
    }
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    if has_te {
        let te = tokens(headers, header::TRANSFER_ENCODING);
        if content_length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding are present"));
        }
        if version != Version::HTTP_11 {
            return Err(bad(
                "Transfer-Encoding is only allowed on HTTP/1.1 requests",
            ));
        }
        if te.last().map(String::as_str) != Some("chunked") {
            return Err(bad("Transfer-Encoding must end with chunked"));
        }
    }
    if (method == Method::GET || method == Method::HEAD)
        && (body == BodyHint::NonEmpty || has_te || content_length.is_some_and(|n| n > 0))
    {
        return Err(bad(format!("{method} with a request body")));
    }

    if !headers.contains_key(header::UPGRADE) {
        return Ok(false);
    }
    let upgrade = tokens(headers, header::UPGRADE);
    let only_websocket = !upgrade.is_empty() && upgrade.iter().all(|t| t == "websocket");
    if !(only_websocket && version == Version::HTTP_11 && method == Method::GET) {
        return Err(bad(format!(
            "Upgrade {:?} is not allowed: only websocket, on an HTTP/1.1 GET",
            upgrade.join(", ")
        )));
    }
    // A websocket upgrade that lacks its handshake headers is forwarded as a
    // plain GET (the proxy drops the hop-by-hop Upgrade), not tunnelled.
    let connection_upgrade = tokens(headers, header::CONNECTION)
        .iter()
        .any(|t| t == "upgrade");
    Ok(connection_upgrade
        && headers.contains_key(header::SEC_WEBSOCKET_KEY)
        && headers.contains_key(header::SEC_WEBSOCKET_VERSION))
}
