//! Refusal responses, answered by the proxy itself.
//!
//! Owns: the shape of every refusal: status, a short `text/plain` body saying
//! why, and `x-egress-proxy-decision: <reason>`.
//! Must never: put a secret, a query string or request body into the body.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{BoxBody, full};

/// The header naming the reason of a refusal.
pub const DECISION_HEADER: &str = "x-egress-proxy-decision";

/// Builds a refusal. `close` asks an HTTP/1 client connection to close
/// (a refused request whose body was never read).
pub fn refusal(status: u16, reason: &str, message: &str, close: bool) -> Response<BoxBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let text = format!("egress-proxy refused this request ({reason}): {message}\n");
    let mut resp = Response::new(full(Bytes::from(text)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(reason) {
        h.insert(DECISION_HEADER, v);
    }
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
