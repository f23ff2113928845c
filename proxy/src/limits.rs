//! Resource limits of the proxy, in one place.
//!
//! Owns: every bound (sizes, counts, timeouts) with its default.
//! Must never: be read from the network; only the CLI may change it.

use std::time::Duration;

/// Every bound the proxy enforces. One struct so the CLI and later tasks
/// (limits flags, reload) have one place to change.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum concurrent client connections (503 `overloaded` beyond).
    pub max_connections: usize,
    /// Maximum concurrent h2 streams per client connection.
    pub max_h2_streams: u32,
    /// Maximum request head size (hyper answers 431 beyond).
    pub max_head_bytes: usize,
    /// Time for a client to send a request head or finish a TLS handshake.
    pub header_read_timeout: Duration,
    /// Time for the first bytes inside a CONNECT tunnel.
    pub handshake_timeout: Duration,
    /// Idle keep-alive on client connections (h1 between requests).
    pub idle_timeout: Duration,
    /// Connect (TCP + upstream proxy CONNECT + TLS) timeout upstream.
    pub upstream_connect_timeout: Duration,
    /// Time from the request sent upstream to the response head.
    pub upstream_response_timeout: Duration,
    /// Idle pooled upstream connections older than this are dropped.
    pub pool_idle_timeout: Duration,
    /// Idle pooled HTTP/1 connections kept per origin.
    pub pool_max_idle_per_origin: usize,
    /// Leaf certificates kept in the cache.
    pub leaf_cache_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_h2_streams: 100,
            max_head_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            upstream_connect_timeout: Duration::from_secs(30),
            upstream_response_timeout: Duration::from_secs(120),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_origin: 32,
            leaf_cache_size: 10_000,
        }
    }
}
