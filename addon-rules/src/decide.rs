//! The decision of one request (SPEC §3 steps 1-7, in that order): target,
//! path normalization, git-push block, authority, framing and method, route,
//! credentials, each a call into the file of its step. Owns the order of the
//! steps and the decision types the proxy uses ([`Decision`], [`Allowed`]).
//! Must never do I/O, allocate beyond the normalized path and destination,
//! or read a secret: a credential is returned by reference to where it lives.

use std::borrow::Cow;

use http::HeaderName;

use crate::facts::RequestFacts;
use crate::reason::Refusal;
use crate::routes::{Credential, Policy, Route};
use crate::target::authority_string;
use crate::trace::Trace;
use crate::{authority, credentials, framing, git, path, request_target, routing};

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
        authority_string(&self.host, self.port)
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
        self.decide_traced(req, &mut Trace::off())
    }

    /// Like [`Policy::decide`], also returning one line per step taken, for
    /// `egress-proxy explain`.
    pub fn explain(&self, req: &RequestFacts<'_>) -> (Decision<'_>, Vec<String>) {
        let mut steps = Vec::new();
        let d = self.decide_traced(req, &mut Trace::into(&mut steps));
        (d, steps)
    }

    fn decide_traced<'p>(&'p self, req: &RequestFacts<'_>, trace: &mut Trace<'_>) -> Decision<'p> {
        match self.steps(req, trace) {
            Ok(a) => {
                trace.step(|| format!("=> allow, forward to {}", a.authority()));
                Decision::Allow(a)
            }
            Err(r) => {
                trace.step(|| format!("=> refuse {}: {}", r.status.as_u16(), r.message));
                Decision::Refuse(r)
            }
        }
    }

    /// SPEC §3 steps 1-7, one call each.
    fn steps<'p>(
        &'p self,
        req: &RequestFacts<'_>,
        trace: &mut Trace<'_>,
    ) -> Result<Allowed<'p>, Refusal> {
        let target = request_target::resolve(req, trace)?;
        let path = path::normalize_step(target.raw_path, trace)?;
        git::block_push(&path, target.query, req.headers, trace)?;
        authority::check(req, &target, trace)?;
        let websocket = framing::check_request(req, target.query, trace)?;
        let route = routing::apply(self, req, &target.host, &path, target.query, trace)?;
        if let Some(route) = route {
            credentials::check(route, &req.transport, trace)?;
        }
        Ok(Allowed {
            route,
            path_and_query: with_query(path, target.query),
            host: target.host.into_owned(),
            port: target.port,
            credential: route.and_then(Route::credential),
            strip_headers: route.map_or(&[], Route::strip_headers),
            websocket,
        })
    }
}

/// The normalized path plus `?query`, as sent upstream.
fn with_query(path: Cow<'_, str>, query: Option<&str>) -> String {
    let Some(q) = query else {
        return path.into_owned();
    };
    // A new string of the exact size: cheaper than growing `path` in place.
    let mut s = String::with_capacity(path.len() + 1 + q.len());
    s.push_str(&path);
    s.push('?');
    s.push_str(q);
    s
}
