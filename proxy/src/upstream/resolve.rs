//! Name resolution of direct mode.
//!
//! Owns: turning an origin's host name into the addresses the address check
//! judges. It is a seam: the proxy uses the system resolver; a test plays a
//! rebinding DNS that answers differently each time. Must never: be asked
//! when an upstream proxy is set (that proxy resolves), or be asked twice for
//! one connection (check and connect must see the same answer).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// A pending lookup.
pub type Lookup = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Resolves `host` (a DNS name, never an IP literal) to addresses with `port`.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(&self, host: &str, port: u16) -> Lookup;
}

/// The resolver direct mode asks; the system's unless a test sets one.
#[derive(Clone)]
pub struct Resolver(Arc<dyn Resolve>);

impl Resolver {
    pub fn new(r: impl Resolve) -> Resolver {
        Resolver(Arc::new(r))
    }

    pub fn lookup(&self, host: &str, port: u16) -> Lookup {
        self.0.resolve(host, port)
    }
}

impl Default for Resolver {
    fn default() -> Resolver {
        Resolver::new(System)
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// `getaddrinfo` on tokio's blocking pool.
struct System;

impl Resolve for System {
    fn resolve(&self, host: &str, port: u16) -> Lookup {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }
}
