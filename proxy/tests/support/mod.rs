//! Test support for egress-proxy: every integration test file (and the criterion
//! benchmark) starts with `mod support;` and takes what it needs from here.
//!
//! Where each piece lives, and what to reach for when adding a test:
//! - [`origin`]: the one test origin (HTTPS + plain HTTP on loopback) that
//!   records what reached it; its [`origin::Answers`] choose the endpoint set.
//! - [`proxy`]: the proxy under test, as a child process ([`proxy::Proxy`],
//!   [`proxy::ProxyOpts`], and [`proxy::Fixture`] = origin + proxy + token, the
//!   usual start) or in-process ([`proxy::ProxySetup`], when a test must swap
//!   the resolver or set limits the CLI does not expose).
//! - [`clients`]: well-behaved clients (CONNECT, rustls, hyper h1/h2) and the
//!   collected response [`clients::Got`].
//! - [`raw`]: bytes a normal client would not send, parsed by hand; home of the
//!   one CONNECT ([`raw::try_connect`]) and the TLS client configs.
//! - [`pki`]: per-test CAs and leaves ([`pki::TestCa`]), the SPEC §4 leaf checks.
//! - [`tools`]: real client programs (curl, git, Go, Node, Python) and squid,
//!   located on PATH or failing with the apt package to install.
//!
//! It owns only test fixtures. It must never print a credential: tests compare
//! secrets in memory and assert with messages that do not contain them, and every
//! text this module shows (proxy output in a panic) has the test tokens redacted.
#![allow(dead_code, unused_imports)]

pub mod clients;
pub mod origin;
pub mod pki;
pub mod proxy;
pub mod raw;
pub mod tools;

use std::time::Duration;

/// Generous bound for one network step on a noisy 2-core machine.
pub const STEP: Duration = Duration::from_secs(20);

/// The same bound under the short name the in-process and operation tests use.
pub use self::STEP as T;

/// A random hex string (tokens, unique names) from the OS RNG via rustls' provider.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .expect("OS random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The names the former `tests/common/mod.rs` exported whose use is unchanged:
/// a file that had `mod common; use common::*;` needs `mod support;
/// use support::common::*;`. `OriginPki` is now [`pki::TestCa`] (`cert_pem`),
/// and `Origin::tls(&pki, alpn)` is [`origin::Origin::hello`].
pub mod common {
    pub use super::T;
    pub use super::clients::{
        CBody, Got, body, collect, connect, h1, h2, https_get, tls, tls_any_sni,
    };
    pub use super::origin::{Origin, Seen};
    pub use super::pki::{TestCa, provider};
    pub use super::proxy::{ProxySetup, SECRET, TestProxy, routes_with_credential};
}
