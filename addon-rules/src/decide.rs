//! The decision of one request (SPEC §3 steps 1-7, in that order): target,
//! path normalization, git-push block, authority, framing and method, route,
//! credentials. Owns the request-facts and decision types the proxy uses.
//! Must never do I/O, allocate beyond the normalized path and destination,
//! or read a secret: a credential is returned by reference to where it lives.

use http::{HeaderMap, HeaderName, Method, StatusCode, Version};

use crate::framing;
use crate::git::push_signal;
use crate::method_override;
use crate::path::normalize_path;
use crate::pattern::fold_path;
use crate::reason::{Reason, Refusal};
use crate::routes::{Credential, Policy, Route, Unmatched};
use crate::target::{
    Authority, ConnectTarget, authority_string, normalize_host, parse_absolute, parse_authority,
};

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

    fn decide_traced<'p>(
        &'p self,
        req: &RequestFacts<'_>,
        mut trace: Option<&mut Vec<String>>,
    ) -> Decision<'p> {
        // Formats a step only when tracing: `decide` must not pay for `explain`.
        macro_rules! step {
            ($($arg:tt)*) => {
                if let Some(t) = trace.as_mut() {
                    t.push(format!($($arg)*));
                }
            };
        }
        macro_rules! refuse {
            ($r:expr) => {{
                let r: Refusal = $r;
                step!("=> refuse {}: {}", r.status.as_u16(), r.message);
                return Decision::Refuse(r);
            }};
        }

        // 1. Target. A CONNECT carries an authority-form target, which is valid
        // for that method: its refusal is step 5's (405), not a bad target.
        if req.method == Method::CONNECT
            && let Err(r) = framing::check(req.method, req.version, req.headers, req.body)
        {
            refuse!(r);
        }
        let raw = req.target;
        if raw.contains('#') {
            refuse!(Refusal::new(
                Reason::BadRequest,
                "the request target holds a fragment (#)"
            ));
        }
        let connect = match req.transport {
            Transport::Tls { connect, .. } | Transport::CleartextTunnel { connect } => {
                Some(connect)
            }
            Transport::PlainProxy => None,
        };
        let (host, port, raw_path, query, absolute) = if raw.starts_with('/') {
            let Some(c) = connect else {
                refuse!(Refusal::new(
                    Reason::BadRequest,
                    "a request to the proxy port must use an absolute http:// URL (or CONNECT for https)"
                ));
            };
            let (p, q) = match raw.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (raw, None),
            };
            (c.host.clone(), c.port, p, q, None)
        } else {
            let abs = match parse_absolute(raw) {
                Ok(a) => a,
                Err(m) => refuse!(Refusal::new(Reason::BadRequest, m)),
            };
            match connect {
                Some(c) => {
                    if abs.scheme != "http" && abs.scheme != "https" {
                        refuse!(Refusal::new(
                            Reason::BadRequest,
                            format!("scheme {:?} is not http or https", abs.scheme)
                        ));
                    }
                    (
                        c.host.clone(),
                        c.port,
                        abs.path,
                        abs.query,
                        Some(abs.authority),
                    )
                }
                None => {
                    if abs.scheme != "http" {
                        refuse!(Refusal::new(
                            Reason::BadRequest,
                            format!(
                                "scheme {:?} cannot be sent as a plain proxy request: only http://, use CONNECT for https",
                                abs.scheme
                            )
                        ));
                    }
                    let port = abs.authority.port.unwrap_or(80);
                    (
                        abs.authority.host.clone(),
                        port,
                        abs.path,
                        abs.query,
                        Some(abs.authority),
                    )
                }
            }
        };
        if port == 0 {
            refuse!(Refusal::new(Reason::BadRequest, "port 0 is not allowed"));
        }
        step!(
            "1 target: {} (raw path {raw_path:?})",
            authority_string(&host, port)
        );

        // 2. Normalize the path.
        let path = match normalize_path(raw_path) {
            Ok(p) => p,
            Err(e) => refuse!(Refusal::new(Reason::BadPath, e.to_string())),
        };
        step!("2 path: normalized to {path:?}");

        // 3. Git push block, every host.
        if let Some(signal) = push_signal(&path, query, req.headers) {
            step!("3 git-push: {signal}");
            refuse!(Refusal::new(
                Reason::GitPush,
                format!("git push over HTTP is blocked: {signal}")
            ));
        }
        step!("3 git-push: not a push");

        // 4. Authority.
        let mut hosts = req.headers.get_all(http::header::HOST).iter();
        let host_header = hosts.next();
        if hosts.next().is_some() {
            refuse!(Refusal::new(
                Reason::BadRequest,
                "more than one Host header"
            ));
        }
        let host_header = match host_header.map(|v| {
            v.to_str()
                .map_err(|_| "not ASCII".to_string())
                .and_then(parse_authority)
        }) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(m)) => refuse!(Refusal::new(
                Reason::BadRequest,
                format!("Host header: {m}")
            )),
        };
        let h2_authority = match req.authority.map(parse_authority) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(m)) => refuse!(Refusal::new(Reason::BadRequest, format!(":authority: {m}"))),
        };
        if let Some(c) = connect {
            let named = [
                ("the absolute-form target", &absolute),
                ("Host", &host_header),
                (":authority", &h2_authority),
            ];
            for (what, a) in named {
                if let Some(a) = a
                    && (a.host != c.host || a.port.is_some_and(|p| p != c.port))
                {
                    refuse!(Refusal::new(
                        Reason::AuthorityMismatch,
                        format!(
                            "{what} names {}, not the CONNECT target {}",
                            display_authority(a),
                            c.authority()
                        )
                    ));
                }
            }
            if let Transport::Tls { sni: Some(sni), .. } = req.transport {
                let ok = normalize_host(sni).is_ok_and(|s| s == c.host);
                if !ok {
                    refuse!(Refusal::new(
                        Reason::AuthorityMismatch,
                        format!("TLS SNI does not name the CONNECT host {}", c.host)
                    ));
                }
            }
            if host_header.is_none()
                && h2_authority.is_none()
                && absolute.is_none()
                && req.version == Version::HTTP_11
            {
                refuse!(Refusal::new(
                    Reason::BadRequest,
                    "HTTP/1.1 request without Host"
                ));
            }
            step!("4 authority: names the CONNECT target {}", c.authority());
        } else {
            for (what, a) in [("Host", &host_header), (":authority", &h2_authority)] {
                if let Some(a) = a
                    && (a.host != host || a.port.unwrap_or(80) != port)
                {
                    refuse!(Refusal::new(
                        Reason::AuthorityMismatch,
                        format!(
                            "{what} names {}, not the URL's {}",
                            display_authority(a),
                            authority_string(&host, port)
                        )
                    ));
                }
            }
            step!("4 authority: the URL's {}", authority_string(&host, port));
        }

        // 5. Framing and method.
        let websocket = match framing::check(req.method, req.version, req.headers, req.body) {
            Ok(ws) => ws,
            Err(r) => refuse!(r),
        };
        // An override to TRACE would echo the request, injected credential
        // included, back to the agent: refused like TRACE itself, on every
        // route (docs/routes.md).
        if let Some((what, m)) = method_override::find_refused(req.headers, query, |m| {
            m.eq_ignore_ascii_case("TRACE") || m.eq_ignore_ascii_case("CONNECT")
        }) {
            refuse!(Refusal::new(
                Reason::MethodNotAllowed,
                format!(
                    "{what} names {}, which is not allowed through the proxy",
                    shorten(&m)
                )
            ));
        }
        step!(
            "5 framing: ok{}",
            if websocket {
                " (websocket upgrade)"
            } else {
                ""
            }
        );

        // 6. Route.
        let path_and_query = match query {
            Some(q) => {
                let mut s = String::with_capacity(path.len() + 1 + q.len());
                s.push_str(&path);
                s.push('?');
                s.push_str(q);
                s
            }
            None => path.clone(),
        };
        let Some(route) = self.route_for_host(&host) else {
            match self.unmatched {
                Unmatched::Deny => {
                    step!("6 route: none for {host}; unmatched: deny");
                    refuse!(Refusal::new(
                        Reason::HostNotAllowed,
                        format!("host {host} has no route")
                    ));
                }
                Unmatched::Forward => {
                    step!("6 route: none for {host}; unmatched: forward (no credential)");
                    step!("=> allow, forward to {}", authority_string(&host, port));
                    return Decision::Allow(Allowed {
                        route: None,
                        host,
                        port,
                        path_and_query,
                        credential: None,
                        strip_headers: &[],
                        websocket,
                    });
                }
            }
        };
        step!("6 route: routes[{}] {}", route.index(), route.host());
        if let Some(methods) = route.methods()
            && !methods.contains(req.method)
        {
            refuse!(
                Refusal::with_status(
                    Reason::MethodNotAllowed,
                    StatusCode::FORBIDDEN,
                    format!(
                        "method {} is not allowed on host {}",
                        req.method,
                        route.host()
                    )
                )
                .on_route(route.host())
            );
        }
        if let Some(methods) = route.methods()
            && let Some((what, m)) = method_override::find_refused(req.headers, query, |m| {
                !methods.iter().any(|a| a.as_str().eq_ignore_ascii_case(m))
            })
        {
            refuse!(
                Refusal::with_status(
                    Reason::MethodNotAllowed,
                    StatusCode::FORBIDDEN,
                    format!(
                        "{what} names method {}, which is not allowed on host {}",
                        shorten(&m),
                        route.host()
                    )
                )
                .on_route(route.host())
            );
        }
        // `first_match` names the entry for `explain`; `matches` is the fast path.
        // Origins fold what the proxy must not (docs/routes.md): a Tomcat- or
        // Jetty-style origin drops `;` parameters (`/a/secret;x=1/b` serves
        // `/a/secret/b`), forges ignore case, common servers merge `//`. The
        // deny list is checked against every form such an origin may read.
        let unparameterized = without_parameters(&path);
        let deny = route.path_denylist();
        if !deny.is_empty() {
            let folded_deny = route.path_denylist_folded();
            let folded = fold_path(&path);
            let folded_unparameterized = unparameterized.as_deref().map(fold_path);
            let forms = [
                (deny, "as sent", Some(path.as_str())),
                (deny, "without ; parameters", unparameterized.as_deref()),
                (folded_deny, "folded", Some(&*folded)),
                (
                    folded_deny,
                    "folded, without ; parameters",
                    folded_unparameterized.as_deref(),
                ),
            ];
            if let Some((list, form, p)) = forms
                .iter()
                .find_map(|(l, f, p)| p.filter(|p| l.matches(p)).map(|p| (l, f, p)))
            {
                step!(
                    "6 deny list: {p:?} ({form}) matches {:?}",
                    list.first_match(p).unwrap_or_default()
                );
                refuse!(
                    Refusal::new(
                        Reason::PathNotAllowed,
                        format!("path is denied on host {}", route.host())
                    )
                    .on_route(route.host())
                );
            }
        }
        // A `;` parameter can turn a denied resource into an allowed-looking
        // path (`/files/secret.key;.txt` for `/files/*.txt`): both the path as
        // sent and its `;`-stripped form must be allowed.
        let allow = route.path_allowlist();
        if allow.is_empty() {
            step!("6 allow list: none (every path)");
        } else if let Some(missed) = [Some(path.as_str()), unparameterized.as_deref()]
            .into_iter()
            .flatten()
            .find(|p| !allow.matches(p))
        {
            step!("6 allow list: no entry matches {missed:?}");
            refuse!(
                Refusal::new(
                    Reason::PathNotAllowed,
                    format!("path is not in the allow list of host {}", route.host())
                )
                .on_route(route.host())
            );
        } else {
            step!(
                "6 allow list: matches {:?}",
                allow.first_match(&path).unwrap_or_default()
            );
        }

        // 7. Credentials.
        let credential = route.credential();
        if let Some(c) = credential {
            if !matches!(req.transport, Transport::Tls { .. }) {
                refuse!(
                    Refusal::new(
                        Reason::CleartextCredentials,
                        format!(
                            "host {} gets a credential and is reachable only over https",
                            route.host()
                        )
                    )
                    .on_route(route.host())
                );
            }
            step!(
                "7 credentials: inject {}{} from {}, strip {}",
                c.header,
                c.scheme
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default(),
                c.source,
                route
                    .strip_headers()
                    .iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        } else {
            step!("7 credentials: none");
        }
        step!("=> allow, forward to {}", authority_string(&host, port));
        Decision::Allow(Allowed {
            route: Some(route),
            host,
            port,
            path_and_query,
            credential,
            strip_headers: route.strip_headers(),
            websocket,
        })
    }
}

fn display_authority(a: &Authority) -> String {
    match a.port {
        Some(p) => authority_string(&a.host, p),
        None if a.host.contains(':') => format!("[{}]", a.host),
        None => a.host.clone(),
    }
}

/// A client-sent value for a message: at most 40 characters.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{:?}...", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// The path with every segment's `;` parameters removed, or `None` when it
/// has none.
fn without_parameters(path: &str) -> Option<String> {
    if !path.contains(';') {
        return None;
    }
    let segments: Vec<&str> = path
        .split('/')
        .map(|seg| seg.split_once(';').map_or(seg, |(name, _)| name))
        .collect();
    Some(segments.join("/"))
}

#[cfg(test)]
mod parameter_tests {
    use super::without_parameters;

    #[test]
    fn parameters_are_removed_from_every_segment() {
        assert_eq!(without_parameters("/a/b"), None);
        assert_eq!(
            without_parameters("/a;x=1/secret;jsessionid=2/c").as_deref(),
            Some("/a/secret/c")
        );
        assert_eq!(
            without_parameters("/a/secret;/x").as_deref(),
            Some("/a/secret/x")
        );
        assert_eq!(without_parameters("/a/b;").as_deref(), Some("/a/b"));
    }
}
