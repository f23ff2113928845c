//! Refusal responses, answered by the proxy itself.
//!
//! Owns: the shape of every refusal: status, a short `text/plain` body saying
//! why, and `x-egress-proxy-decision: <reason>`, built from a typed
//! `addon_rules::Refusal` (the reason strings live in `Reason::as_str`).
//! Must never: put a secret, a query string or request body into the body.

use addon_rules::Refusal;
use bytes::Bytes;
use http::{HeaderValue, Response, header};

use crate::body::{BoxBody, full};

/// The header naming the reason of a refusal.
pub const DECISION_HEADER: &str = "x-egress-proxy-decision";

/// The body of a refusal: one line saying why.
fn text(r: &Refusal) -> String {
    format!(
        "egress-proxy refused this request ({}): {}\n",
        r.reason, r.message
    )
}

/// The response for `r`. `close` asks an HTTP/1 client connection to close
/// (a refused request whose body was never read).
pub fn response(r: &Refusal, close: bool) -> Response<BoxBody> {
    let mut resp = Response::new(full(Bytes::from(text(r))));
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(DECISION_HEADER, HeaderValue::from_static(r.reason.as_str()));
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The same refusal as HTTP/1.1 bytes, for a connection no HTTP server
/// reads (503 `overloaded` at accept: nothing of the client's is read).
pub fn http1_bytes(r: &Refusal) -> Vec<u8> {
    let body = text(r);
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\n{DECISION_HEADER}: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        r.status.as_str(),
        r.status.canonical_reason().unwrap_or(""),
        r.reason,
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use addon_rules::Reason;

    #[test]
    fn http1_bytes_match_the_response() {
        let r = Refusal::new(Reason::Overloaded, "too many open client connections");
        let bytes = String::from_utf8(http1_bytes(&r)).unwrap();
        let body =
            "egress-proxy refused this request (overloaded): too many open client connections\n";
        assert_eq!(
            bytes,
            format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nx-egress-proxy-decision: overloaded\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        );
        let resp = response(&r, true);
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[DECISION_HEADER], "overloaded");
    }
}
