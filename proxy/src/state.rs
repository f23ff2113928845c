//! The state every connection shares.
//!
//! Owns: the loaded policy with its secrets (behind an `ArcSwap`, so a reload
//! swaps it atomically while requests in flight keep the one they started
//! with), the leaf cache, the upstream side and the limits.
//! Must never: hold a secret outside `Secret`, or name a secret's value in an
//! error.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use addon_rules::{Policy, TokenSource};
use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use crate::limits::Limits;
use crate::tls::LeafCache;
use crate::upstream::Upstream;
use addon_rules::Secret;

/// Why a routes file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    #[error("cannot read routes file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Policy(#[from] addon_rules::LoadError),
    #[error("{0}")]
    Token(String),
}

/// A policy and the secrets its credentials name, loaded together.
#[derive(Debug)]
pub struct Loaded {
    pub policy: Policy,
    /// Keyed by the source's display form (`env NAME` / `file PATH`).
    secrets: HashMap<String, Secret>,
}

impl Loaded {
    /// The secret of a credential source (present for every credential of
    /// `policy`: loading fails otherwise).
    pub fn secret(&self, source: &TokenSource) -> Option<&Secret> {
        self.secrets.get(&source.to_string())
    }

    /// Reads and validates the routes file and the secrets it names.
    /// `env` is the environment snapshot taken at start (`token_env` is read
    /// once); `token_file`s are read now.
    pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Loaded, LoadFailure> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadFailure::Read {
            path: path.into(),
            source,
        })?;
        let policy = Policy::from_text(&text, &path.display().to_string())?;
        Self::with_policy(policy, env)
    }

    /// Reads the secrets of an already parsed policy.
    pub fn with_policy(
        policy: Policy,
        env: &HashMap<String, String>,
    ) -> Result<Loaded, LoadFailure> {
        let mut secrets = HashMap::new();
        let mut problems = Vec::new();
        for route in policy.routes() {
            let Some(cred) = route.credential() else {
                continue;
            };
            if secrets.contains_key(&cred.source.to_string()) {
                continue;
            }
            let at = format!("routes[{}] ({})", route.index(), route.host());
            match &cred.source {
                TokenSource::Env(name) => match env.get(name) {
                    Some(v) if !v.trim().is_empty() => {
                        secrets.insert(cred.source.to_string(), Secret::new(v.clone()));
                    }
                    Some(_) => problems.push(format!(
                        "{at}: token_env: environment variable {name} is empty; set it to the token"
                    )),
                    None => problems.push(format!(
                        "{at}: token_env: environment variable {name} is not set; set it to the token"
                    )),
                },
                TokenSource::File(p) => match crate::reload::read_token_file(p) {
                    Ok(v) if !v.trim().is_empty() => {
                        secrets.insert(cred.source.to_string(), Secret::new(v.trim().to_owned()));
                    }
                    Ok(_) => problems.push(format!(
                        "{at}: token_file: {} is empty; write the token into it",
                        p.display()
                    )),
                    Err(e) => problems.push(format!(
                        "{at}: token_file: cannot read {}: {}",
                        p.display(),
                        e.kind()
                    )),
                },
            }
        }
        if problems.is_empty() {
            Ok(Loaded { policy, secrets })
        } else {
            Err(LoadFailure::Token(problems.join("\n")))
        }
    }
}

/// Everything a connection needs, shared by all of them.
pub struct Shared {
    pub loaded: ArcSwap<Loaded>,
    pub leaves: LeafCache,
    pub upstream: Arc<Upstream>,
    pub limits: Limits,
    pub listen: SocketAddr,
    pub connections: Arc<Semaphore>,
    /// Set on SIGTERM/SIGINT: connections finish what is in flight and close.
    pub drain: crate::shutdown::Drain,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}
