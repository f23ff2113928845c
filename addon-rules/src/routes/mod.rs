//! The routes file model (SPEC §2): a validated [`Policy`] of [`Route`]s
//! ("parse, don't validate": a `Route` that exists has a normalized host and
//! compiled patterns). Loading lives below it: [`document`] reads the file
//! into a tree and checks keys and types, [`load`] walks the file and the
//! route list, [`fields`] validates each field of a route.
//! Must never read the environment or a token file: that is the proxy's job
//! at start and reload.

mod document;
mod fields;
mod load;

use std::net::IpAddr;
use std::path::PathBuf;

use http::{HeaderName, Method};

use crate::host::{HostPattern, HostTable};
use crate::pattern::PatternList;

/// What happens to a request whose host has no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmatched {
    /// 403 `host-not-allowed` (the default).
    #[default]
    Deny,
    /// Forwarded without credentials (the git-push block still applies).
    Forward,
}

impl Unmatched {
    pub fn as_str(self) -> &'static str {
        match self {
            Unmatched::Deny => "deny",
            Unmatched::Forward => "forward",
        }
    }
}

/// Where a credential's secret comes from. The value itself is never held here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// An environment variable of the proxy process, read once at start.
    Env(String),
    /// A file, read at start and on every reload; surrounding whitespace trimmed.
    File(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Env(v) => write!(f, "env {v}"),
            TokenSource::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// Client headers removed on every credential route before the route's own
/// header is added (SPEC §3.7), lowercase.
pub const CREDENTIAL_STRIP_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

/// A credential to inject: `header: <scheme> <secret>` (or `<secret>` without scheme).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Lowercase; `authorization` unless `auth_header` says otherwise.
    pub header: HeaderName,
    pub scheme: Option<String>,
    pub source: TokenSource,
}

/// One validated route.
#[derive(Debug, Clone)]
pub struct Route {
    pub(crate) index: usize,
    pub(crate) host: HostPattern,
    pub(crate) host_display: String,
    pub(crate) methods: Option<Vec<Method>>,
    pub(crate) allow: PatternList,
    pub(crate) deny: PatternList,
    /// The deny list as an origin that folds case and slashes applies it
    /// ([`PatternList::folded`]); `None` when it is `deny` itself.
    pub(crate) deny_folded: Option<PatternList>,
    pub(crate) credential: Option<Credential>,
    /// Precomputed client headers to strip (see [`crate::Allowed::strip_headers`]).
    pub(crate) strip: Vec<HeaderName>,
}

impl Route {
    /// The 0-based position in the routes file (`routes[i]`).
    pub fn index(&self) -> usize {
        self.index
    }
    /// The normalized host as written: `api.github.com`, `*.npmjs.org`, `::1`.
    pub fn host(&self) -> &str {
        &self.host_display
    }
    pub fn host_pattern(&self) -> &HostPattern {
        &self.host
    }
    pub fn is_wildcard(&self) -> bool {
        matches!(self.host, HostPattern::Wildcard(_))
    }
    /// True when the route's host is this IP literal (for direct mode's
    /// "the route names that IP literally"). IPv4-mapped IPv6 and IPv4 compare equal.
    pub fn names_ip(&self, ip: &IpAddr) -> bool {
        matches!(&self.host, HostPattern::Ip(r) if r.to_canonical() == ip.to_canonical())
    }
    /// `None`: any method.
    pub fn methods(&self) -> Option<&[Method]> {
        self.methods.as_deref()
    }
    pub fn path_allowlist(&self) -> &PatternList {
        &self.allow
    }
    pub fn path_denylist(&self) -> &PatternList {
        &self.deny
    }
    /// The deny list matched against folded paths (lowercase, `/` runs
    /// collapsed; see docs/routes.md).
    pub(crate) fn path_denylist_folded(&self) -> &PatternList {
        self.deny_folded.as_ref().unwrap_or(&self.deny)
    }
    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }
    /// Client headers removed on this route.
    pub fn strip_headers(&self) -> &[HeaderName] {
        &self.strip
    }
}

/// A loaded, validated routes file. `Send + Sync`; share it in an `Arc` and
/// swap the `Arc` on reload.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) routes: Vec<Route>,
    pub(crate) unmatched: Unmatched,
    pub(crate) table: HostTable,
}

impl Policy {
    /// The routes, in file order (`routes()[i].index() == i`).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn unmatched(&self) -> Unmatched {
        self.unmatched
    }

    /// The route that a normalized host (as in [`crate::ConnectTarget`]) maps to.
    pub fn route_for_host(&self, host: &str) -> Option<&Route> {
        self.table.lookup(host).and_then(|i| self.routes.get(i))
    }
}
