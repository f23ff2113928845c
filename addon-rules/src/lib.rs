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
//!
//! Where each rule lives:
//!
//! | SPEC | file |
//! |---|---|
//! | §2 routes file: model / document, keys / per-field loading | `routes/mod.rs` / `routes/document.rs`, `routes/load.rs` / `routes/fields.rs` |
//! | §2 hosts, wildcards, PSL / path patterns, folded forms | `host.rs` / `pattern.rs` |
//! | §3 the ordered steps, [`Decision`] / request facts / trace | `decide.rs` / `facts.rs` / `trace.rs` |
//! | §3.1 target (host syntax in `target.rs`) | `request_target.rs` |
//! | §3.2 path normalization | `path.rs` |
//! | §3.3 git-push block | `git.rs` |
//! | §3.4 authority | `authority.rs` |
//! | §3.5 framing and method | `framing.rs` |
//! | §3.6 route: host, `methods` and overrides, deny and allow lists | `routing.rs`, `method_override.rs` |
//! | §3.7 credentials | `credentials.rs` |
//! | reasons and refusals | `reason.rs` |

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
mod secret;
mod target;
mod trace;

pub use decide::{Allowed, Decision};
pub use error::{ConfigError, LoadError};
pub use facts::{BodyHint, RequestFacts, Transport};
pub use host::HostPattern;
pub use path::{PathError, hex_digit, is_normalized, normalize_path};
pub use pattern::PatternList;
pub use reason::{Reason, Refusal};
pub use routes::{CREDENTIAL_STRIP_HEADERS, Credential, Policy, Route, TokenSource, Unmatched};
pub use secret::Secret;
pub use target::{ConnectTarget, parse_connect_target};
