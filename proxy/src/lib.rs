//! egress-proxy: the MITM egress proxy of a bottle (SPEC §3, §4, §5, §7).
//!
//! Stages, one module each: `listener` (proxy port, CONNECT, plain requests)
//! -> `connect` (sniff, TLS with a leaf from `tls`) -> `serve` (client-side
//! HTTP, asks the `addon_rules` policy) -> `refuse` or `forward` (headers,
//! credentials, bodies) -> `upstream` (pool, direct or via the upstream proxy).
//! The library must never judge a request itself: `addon_rules::Policy::decide`
//! is the single place a request is allowed or refused.

pub mod admin;
pub mod body;
pub mod cli;
pub mod connect;
pub mod forward;
pub mod h1scan;
pub mod io;
pub mod limits;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod refuse;
pub mod reload;
pub mod serve;
pub mod shutdown;
pub mod state;
pub mod tls;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::limits::Limits;
use crate::state::{Loaded, Shared};
use crate::tls::Ca;
use crate::upstream::{Mode, Upstream, address::AddressPolicy, resolve::Resolver};

/// Where the CA comes from.
#[derive(Debug, Clone)]
pub enum CaSource {
    Combined(PathBuf),
    Separate {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Mint one now; write its certificate to the path.
    Ephemeral {
        cert_out: PathBuf,
    },
}

/// Everything needed to start the proxy.
#[derive(Debug, Clone)]
pub struct Config {
    pub routes: PathBuf,
    pub listen: SocketAddr,
    pub ca: CaSource,
    pub upstream_ca: Option<PathBuf>,
    /// `host:port` of the upstream proxy.
    pub upstream_proxy: Option<String>,
    pub allow_ranges: Vec<IpNet>,
    pub limits: Limits,
    /// Environment snapshot for `token_env` (read once at start).
    pub env: HashMap<String, String>,
    /// Direct mode's name resolution (the system's by default).
    pub resolver: Resolver,
}

/// Why the proxy could not start. `is_config` selects exit code 2 over 1.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
}

impl StartError {
    pub fn is_config(&self) -> bool {
        matches!(self, StartError::Config(_))
    }
}

/// A running proxy.
pub struct Running {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub ca_cert_pem: String,
    /// Reload inputs.
    routes: PathBuf,
    env: HashMap<String, String>,
    accept: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Re-reads the routes file and token files; on error the old policy stays.
    pub fn reload(&self) -> Result<(), String> {
        match Loaded::load(&self.routes, &self.env) {
            Ok(l) => {
                self.shared.loaded.store(Arc::new(l));
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Stops accepting; waits for open connections up to `grace`.
    pub async fn shutdown(self, grace: Duration) {
        self.accept.abort();
        self.shared.drain.start();
        let max = self.shared.limits.max_connections as u32;
        let _ = tokio::time::timeout(grace, self.shared.connections.acquire_many(max)).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Loads everything, binds the listener and starts accepting.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let loaded =
        Loaded::load(&config.routes, &config.env).map_err(|e| StartError::Config(e.to_string()))?;
    let ca = match &config.ca {
        CaSource::Combined(p) => Ca::load_combined(p),
        CaSource::Separate { cert, key } => Ca::load_separate(cert, key),
        CaSource::Ephemeral { cert_out } => {
            Ca::mint("egress-proxy ephemeral CA").and_then(|(ca, _key)| {
                std::fs::write(cert_out, ca.cert_pem()).map_err(|source| {
                    crate::tls::CaError::Write {
                        path: cert_out.clone(),
                        source,
                    }
                })?;
                Ok(ca)
            })
        }
    }
    .map_err(|e| StartError::Config(e.to_string()))?;
    let ca = Arc::new(ca);
    let client_tls = crate::tls::upstream::ClientTls::new(config.upstream_ca.as_deref())
        .map_err(|e| StartError::Config(e.to_string()))?;
    let leaves = crate::tls::LeafCache::new(ca.clone(), config.limits.leaf_cache_size)
        .map_err(|e| StartError::Runtime(e.to_string()))?;
    crate::tls::warm_up();
    let listener = crate::listener::bind(config.listen)
        .map_err(|e| StartError::Runtime(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Runtime(e.to_string()))?;
    let mode = match &config.upstream_proxy {
        Some(p) => Mode::Proxy {
            authority: p.clone(),
        },
        None => Mode::Direct {
            policy: AddressPolicy {
                allow_ranges: config.allow_ranges.clone(),
                listen: addr,
            },
            resolver: config.resolver.clone(),
        },
    };
    let upstream = Upstream::new(mode, client_tls, config.limits.clone());
    let shared = Arc::new(Shared {
        loaded: ArcSwap::from_pointee(loaded),
        leaves,
        upstream,
        connections: Arc::new(tokio::sync::Semaphore::new(config.limits.max_connections)),
        limits: config.limits.clone(),
        listen: addr,
        drain: Default::default(),
    });
    let accept = tokio::spawn(listener::run(shared.clone(), listener));
    Ok(Running {
        addr,
        shared,
        ca_cert_pem: ca.cert_pem().to_owned(),
        routes: config.routes,
        env: config.env,
        accept,
    })
}
