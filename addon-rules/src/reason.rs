//! Refusal reasons: the closed set of SPEC §3 reason codes and the refusal value
//! the proxy turns into a response. Owns the mapping reason -> status -> SPEC
//! string. Must never carry a secret: a `Refusal` message is sent to the client
//! and logged.

use http::StatusCode;

/// Why a request was refused. `as_str()` gives the SPEC §3 string that the
/// proxy writes into `x-egress-proxy-decision` and the access log.
///
/// The policy returns only the first eight; the others need I/O and are decided
/// by the proxy, but live here so there is one list of reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// §3.1 target syntax, §3.4 duplicate `Host`, §3.5 framing. 400.
    BadRequest,
    /// §3.2 path normalization refused the path. 400.
    BadPath,
    /// §3.3 a git push over HTTP(S). 403.
    GitPush,
    /// §3.4 `Host` / `:authority` / absolute target / SNI disagree with the destination. 421.
    AuthorityMismatch,
    /// §3.5 `TRACE` or `CONNECT` in a tunnel (405), or a route's `methods` (403).
    MethodNotAllowed,
    /// No route and `unmatched: deny`. 403.
    HostNotAllowed,
    /// A deny-list hit or an allow-list miss. 403.
    PathNotAllowed,
    /// §3.7 a credential route reached over cleartext. 403.
    CleartextCredentials,
    /// Direct mode refused a private destination (decided by the proxy). 403.
    DestinationNotAllowed,
    /// The upstream proxy refused the CONNECT (decided by the proxy). Its status, 407 -> 502.
    UpstreamProxyRefused,
    /// Connect or TLS failure upstream (decided by the proxy). 502.
    UpstreamUnreachable,
    /// No response head within the timeout (decided by the proxy). 504.
    UpstreamTimeout,
    /// Connection or stream limit reached (decided by the proxy). 503.
    Overloaded,
}

impl Reason {
    /// Every reason, in SPEC table order (for docs, metrics and tests).
    pub const ALL: [Reason; 13] = [
        Reason::BadRequest,
        Reason::BadPath,
        Reason::GitPush,
        Reason::AuthorityMismatch,
        Reason::MethodNotAllowed,
        Reason::HostNotAllowed,
        Reason::PathNotAllowed,
        Reason::CleartextCredentials,
        Reason::DestinationNotAllowed,
        Reason::UpstreamProxyRefused,
        Reason::UpstreamUnreachable,
        Reason::UpstreamTimeout,
        Reason::Overloaded,
    ];

    /// The SPEC §3 reason string, e.g. `"bad-request"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "bad-request",
            Reason::BadPath => "bad-path",
            Reason::GitPush => "git-push",
            Reason::AuthorityMismatch => "authority-mismatch",
            Reason::MethodNotAllowed => "method-not-allowed",
            Reason::HostNotAllowed => "host-not-allowed",
            Reason::PathNotAllowed => "path-not-allowed",
            Reason::CleartextCredentials => "cleartext-credentials",
            Reason::DestinationNotAllowed => "destination-not-allowed",
            Reason::UpstreamProxyRefused => "upstream-proxy-refused",
            Reason::UpstreamUnreachable => "upstream-unreachable",
            Reason::UpstreamTimeout => "upstream-timeout",
            Reason::Overloaded => "overloaded",
        }
    }

    /// The usual status for this reason. `MethodNotAllowed` is 405 here (the
    /// §3.5 case); the route `methods` case uses 403 and is built by the policy.
    /// `UpstreamProxyRefused` has no fixed status (the proxy passes the upstream
    /// proxy's, 407 becoming 502); 502 is returned as the default.
    pub fn default_status(self) -> StatusCode {
        match self {
            Reason::BadRequest | Reason::BadPath => StatusCode::BAD_REQUEST,
            Reason::GitPush
            | Reason::HostNotAllowed
            | Reason::PathNotAllowed
            | Reason::CleartextCredentials
            | Reason::DestinationNotAllowed => StatusCode::FORBIDDEN,
            Reason::AuthorityMismatch => StatusCode::MISDIRECTED_REQUEST,
            Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reason::UpstreamProxyRefused | Reason::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Reason::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reason::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: the proxy answers `status` with `message` as a short
/// `text/plain` body and `x-egress-proxy-decision: reason.as_str()`.
///
/// `message` is one line, built only from request facts the client sent
/// itself (never from the routes file's credentials), so it never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub status: StatusCode,
    pub message: String,
    /// The host of the route the request matched (as [`crate::Route::host`]),
    /// when the refusal came after route matching (`method-not-allowed` on a
    /// route's `methods`, `path-not-allowed`, `cleartext-credentials`), for
    /// the access log's `route`.
    pub route: Option<String>,
}

impl Refusal {
    /// A refusal with the reason's default status.
    pub fn new(reason: Reason, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            status: reason.default_status(),
            message: one_line(message.into()),
            route: None,
        }
    }

    /// The same refusal, naming the route the request matched.
    pub fn on_route(mut self, route_host: &str) -> Refusal {
        self.route = Some(route_host.to_string());
        self
    }

    /// A refusal with an explicit status (route `methods`: 403 method-not-allowed).
    pub fn with_status(reason: Reason, status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            status,
            message: one_line(message.into()),
            route: None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.reason.as_str(),
            self.message
        )
    }
}

/// Messages echo client input; a CR/LF or control byte must never split the
/// line the proxy writes into a body or a log.
fn one_line(s: String) -> String {
    if s.chars().any(|c| c.is_control()) {
        s.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    } else {
        s
    }
}
