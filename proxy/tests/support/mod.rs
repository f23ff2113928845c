//! Black-box test support for egress-proxy: a recording test origin, per-test CAs,
//! the proxy binary as a child process, raw-socket helpers, and real client programs.
//!
//! It owns only test fixtures. It must never print a credential: tests compare
//! secrets in memory and assert with messages that do not contain them, and every
//! text this module shows (proxy stderr in a panic) has the test tokens redacted.
#![allow(dead_code)]

pub mod origin;
pub mod pki;
pub mod proxy;
pub mod raw;
pub mod tools;

use std::time::Duration;

/// Generous bound for one network step on a noisy 2-core machine.
pub const STEP: Duration = Duration::from_secs(20);

/// A random hex string (tokens, unique names) from the OS RNG via rustls' provider.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .expect("OS random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
