//! TLS: the bottle CA, per-host leaf certificates and the client-side
//! server configurations built from them.
//!
//! Owns: loading/minting the CA, minting leaves, the bounded leaf cache with
//! single-flight minting, and the upstream (client) TLS configuration.
//! Must never: log or return key material; accept a leaf for any host but the
//! CONNECT host.

pub mod ca;
pub mod leaf;
pub mod upstream;

pub use ca::{Ca, CaError};
pub use leaf::LeafCache;
