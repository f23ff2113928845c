//! TLS: the bottle CA, per-host leaf certificates and the client-side
//! server configurations built from them.
//!
//! Owns: loading/minting the CA, minting leaves, the bounded leaf cache with
//! single-flight minting, the upstream (client) TLS configuration, and the
//! crypto provider and suite order both legs use.
//! Must never: log or return key material; accept a leaf for any host but the
//! CONNECT host; drop a suite a client may rely on (the order may change).

pub mod ca;
pub mod leaf;
pub mod upstream;

pub use ca::{Ca, CaError};
pub use leaf::{LeafCache, LeafKey};

use std::sync::Arc;

use rustls::CipherSuite;
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::kx_group;

/// The crypto of both TLS sides: ring's suites, with AES-128-GCM first;
/// aws-lc's key exchange, random generator and signing.
///
/// The same suites are offered and accepted; only the order changes. With
/// AES-128-GCM the handshake is hashed with SHA-256 (the CPU's SHA
/// instructions) instead of SHA-384 (software in ring), and every record
/// takes 10 AES rounds instead of 14. It is TLS 1.3's mandatory suite and
/// the first choice of Go and Chrome. ring's records cost less per request
/// than aws-lc's (docs/benchmarks.md, round 5).
///
/// A new connection costs less with aws-lc's parts (round 13): its X25519
/// takes half of ring's time; its random generator runs in user space where
/// ring makes a `getrandom` system call for each draw (five per handshake);
/// and the leaf's ECDSA signature draws its nonce from it. The groups are
/// ring's, in ring's order: X25519, P-256, P-384.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    let aws = rustls::crypto::aws_lc_rs::default_provider();
    p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    p.secure_random = aws.secure_random;
    p.key_provider = aws.key_provider;
    let rank = |s: CipherSuite| match s {
        CipherSuite::TLS13_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        CipherSuite::TLS13_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    };
    p.cipher_suites.sort_by_key(|s| {
        (
            matches!(s, rustls::SupportedCipherSuite::Tls12(_)),
            rank(s.suite()),
        )
    });
    Arc::new(p)
}

/// Seeds aws-lc's random generator now, at start, instead of in the first
/// handshake: its first use collects CPU-jitter entropy, about 70 ms of CPU
/// (docs/benchmarks.md, round 13), which the first client would wait for.
/// Every key exchange draws its private key from that generator.
pub fn warm_up() {
    let _ = kx_group::X25519.start();
}
