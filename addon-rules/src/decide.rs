//! The decision of one request (SPEC §3 steps 1-7, in that order): target,
//! path normalization, git-push block, authority, framing and method, route,
//! credentials. Owns the request-facts and decision types the proxy uses.
//! Must never do I/O, allocate beyond the normalized path and destination,
//! or read a secret: a credential is returned by reference to where it lives.

use http::{HeaderMap, HeaderName, Method, StatusCode, Version};

use crate::reason::{Reason, Refusal};
use crate::routes::{Credential, Policy, Route};
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

/// The outcome of [`Policy::decide`].
#[derive(Debug, Clone)]
pub enum Decision<'p> {
    Allow(Allowed<'p>),
    Refuse(Refusal),
}

impl Decision<'_> {
    /// The reason string for the access log: `allowed` or the refusal reason.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "allowed",
            Decision::Refuse(r) => r.reason.as_str(),
        }
    }
}

/// An allowed request: where it goes and what to change on the way.
#[derive(Debug, Clone)]
pub struct Allowed<'p> {
    /// The matched route; `None` when forwarded under `unmatched: forward`.
    pub route: Option<&'p Route>,
    /// Destination host, normalized (lowercase, no trailing dot, IPv6 without
    /// brackets). Inside a tunnel always the CONNECT host.
    pub host: String,
    /// Destination port (the CONNECT port, or the plain URL's port, default 80).
    pub port: u16,
    /// The normalized path plus `?` and the query exactly as received, if any.
    /// This is what goes upstream as the request-target (origin-form).
    pub path_and_query: String,
    /// The credential to inject, if the route has one.
    pub credential: Option<&'p Credential>,
    /// Client headers to remove before forwarding (credential routes: the
    /// fixed set, the route's `auth_header` and `strip_headers`; other routes:
    /// their `strip_headers`), lowercase. Hop-by-hop headers are the proxy's
    /// business and are not listed.
    pub strip_headers: &'p [HeaderName],
    /// A valid WebSocket upgrade request (HTTP/1.1 GET, `Upgrade: websocket`,
    /// `Connection: upgrade`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version`).
    pub websocket: bool,
}

impl Allowed<'_> {
    /// `host:port` with brackets around an IPv6 literal.
    pub fn authority(&self) -> String {
        crate::target::authority_string(&self.host, self.port)
    }
}

impl Policy {
    /// Decides one request. Steps, in SPEC §3 order; the first refusal wins:
    ///
    /// 1. target syntax (400 `bad-request`),
    /// 2. path normalization (400 `bad-path`),
    /// 3. git-push block on every host (403 `git-push`),
    /// 4. authority (421 `authority-mismatch`; duplicate `Host` 400),
    /// 5. framing and method (405 / 400),
    /// 6. route: host (403 `host-not-allowed` under `unmatched: deny`), method
    ///    (403 `method-not-allowed`), deny list, allow list (403 `path-not-allowed`),
    /// 7. credentials over cleartext (403 `cleartext-credentials`).
    pub fn decide(&self, req: &RequestFacts<'_>) -> Decision<'_> {
        self.decide_traced(req, None)
    }

    /// Like [`Policy::decide`], also returning one line per step taken, for
    /// `egress-proxy explain`.
    pub fn explain(&self, req: &RequestFacts<'_>) -> (Decision<'_>, Vec<String>) {
        let mut steps = Vec::new();
        let d = self.decide_traced(req, Some(&mut steps));
        (d, steps)
    }

    fn decide_traced(
        &self,
        _req: &RequestFacts<'_>,
        _trace: Option<&mut Vec<String>>,
    ) -> Decision<'_> {
        Decision::Refuse(Refusal::with_status(
            Reason::HostNotAllowed,
            StatusCode::FORBIDDEN,
            "policy engine not finished",
        ))
    }
}
