//! The pure policy engine of egress-proxy (SPEC §2, §3 steps 1-7, §7).
//!
//! It owns the routes file model (parse, validate), the request target rules,
//! path normalization, path patterns, host matching, the git-push block, the
//! authority and framing rules, and the ordered decision of one request:
//! [`Policy::decide`] takes the facts of a request ([`RequestFacts`]) and
//! returns a [`Decision`] — allow (where to, which credential to inject, which
//! client headers to strip) or refuse (status, [`Reason`], one-line message).
//!
//! It must never do I/O, block, spawn, log, or hold a secret value: credentials
//! are named by where they come from ([`TokenSource`]), the proxy reads them.
//! That keeps it table-testable, fuzzable and benchmarkable on its own.

mod authority;
mod credentials;
mod decide;
mod error;
mod facts;
mod framing;
mod git;
mod host;
mod method_override;
mod path;
mod pattern;
mod reason;
mod request_target;
mod routes;
mod routing;
mod target;
mod trace;

pub use decide::{Allowed, Decision};
pub use error::{ConfigError, LoadError};
pub use facts::{BodyHint, RequestFacts, Transport};
pub use host::HostPattern;
pub use path::{PathError, is_normalized, normalize_path};
pub use pattern::PatternList;
pub use reason::{Reason, Refusal};
pub use routes::{Credential, Policy, Route, TokenSource, Unmatched};
pub use target::{ConnectTarget, parse_connect_target};

/// Client headers removed on every credential route before the route's own
/// header is added (SPEC §3.7), lowercase.
pub const CREDENTIAL_STRIP_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];
