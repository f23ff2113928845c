//! The facts of one request, as the proxy parsed them: how it arrived
//! ([`Transport`]), what is known of its body ([`BodyHint`]) and its head
//! ([`RequestFacts`]). Owns the input type of [`crate::Policy::decide`].
//! Must never own behaviour: every rule that reads these facts lives in the
//! file of its SPEC §3 step.

use http::{HeaderMap, Method, Version};

use crate::target::ConnectTarget;

/// How the request reached the proxy.
#[derive(Debug, Clone, Copy)]
pub enum Transport<'a> {
    /// Inside a MITM'd CONNECT tunnel, after TLS: `sni` is the ClientHello's server name.
    Tls {
        connect: &'a ConnectTarget,
        sni: Option<&'a str>,
    },
    /// Plain HTTP/1 inside a CONNECT tunnel (no TLS).
    CleartextTunnel { connect: &'a ConnectTarget },
    /// An absolute-form `http://` request sent to the proxy port.
    PlainProxy,
}

impl<'a> Transport<'a> {
    /// The CONNECT target of a tunnel; `None` for a plain proxy request.
    pub(crate) fn connect(&self) -> Option<&'a ConnectTarget> {
        match *self {
            Transport::Tls { connect, .. } | Transport::CleartextTunnel { connect } => {
                Some(connect)
            }
            Transport::PlainProxy => None,
        }
    }
}

/// What the transport knows about the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyHint {
    /// No body (`Content-Length: 0`, no body in HTTP/1, h2 END_STREAM on HEADERS).
    Empty,
    /// A body is known to follow (`Content-Length` > 0, chunked, h2 DATA).
    NonEmpty,
    /// Not known from the head (h2 without END_STREAM and no `content-length`).
    /// `GET`/`HEAD` with `Unknown` are allowed; the proxy must not forward a
    /// body on them if one arrives.
    Unknown,
}

/// The facts of one request, borrowed from what the proxy parsed.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub transport: Transport<'a>,
    pub method: &'a Method,
    /// The raw request-target as received: the HTTP/1 request line target
    /// (origin-form `/p?q`, or absolute-form `http://h/p?q`), or h2 `:path`.
    pub target: &'a str,
    pub version: Version,
    /// h2 `:authority`; `None` for HTTP/1.
    pub authority: Option<&'a str>,
    /// Every header as received (`Host`, `Content-Length`, `Transfer-Encoding`,
    /// `Upgrade`, `Connection`, `Content-Type`, `Sec-WebSocket-*`...).
    pub headers: &'a HeaderMap,
    pub body: BodyHint,
}
