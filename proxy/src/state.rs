//! The state every connection shares.
//!
//! Owns: the loaded policy with its secrets (behind an `ArcSwap`, so a reload
//! swaps it atomically while requests in flight keep the one they started
//! with), the leaf cache, the upstream side and the limits.
//! Must never: hold a secret outside `Secret` or a header value marked
//! sensitive, or name a secret's value in an error.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use addon_rules::{Policy, Route, TokenSource};
use arc_swap::ArcSwap;
use http::HeaderValue;
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

/// A policy and the credential headers its routes inject, loaded together.
#[derive(Debug)]
pub struct Loaded {
    pub policy: Policy,
    /// By route index; an entry for every credential route.
    credentials: HashMap<usize, CredentialHeader>,
}

/// What a credential route injects, built once at load: a request clones
/// the value (a reference count) instead of formatting `scheme token`.
#[derive(Debug, Clone)]
pub enum CredentialHeader {
    /// `scheme token`, or the token alone; marked sensitive, so its `Debug`
    /// prints `Sensitive` and HTTP/2 never indexes it.
    Value(HeaderValue),
    /// The token holds a byte a header value cannot (a control character):
    /// every request on the route is refused instead of forwarded.
    Invalid,
}

impl CredentialHeader {
    fn new(scheme: Option<&str>, secret: &Secret) -> CredentialHeader {
        let text = match scheme {
            Some(s) => format!("{s} {}", secret.expose()),
            None => secret.expose().to_owned(),
        };
        match HeaderValue::from_str(&text) {
            Ok(mut v) => {
                v.set_sensitive(true);
                CredentialHeader::Value(v)
            }
            Err(_) => CredentialHeader::Invalid,
        }
    }
}

impl Loaded {
    /// The header `route` injects (present for every credential route of
    /// `policy`: loading fails otherwise).
    pub fn credential(&self, route: &Route) -> Option<&CredentialHeader> {
        self.credentials.get(&route.index())
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
            let credentials = policy
                .routes()
                .iter()
                .filter_map(|r| {
                    let c = r.credential()?;
                    let secret = secrets.get(&c.source.to_string())?;
                    Some((
                        r.index(),
                        CredentialHeader::new(c.scheme.as_deref(), secret),
                    ))
                })
                .collect();
            Ok(Loaded {
                policy,
                credentials,
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_header_is_built_once_sensitive_and_redacted() {
        let policy = Policy::from_text(
            "routes:\n  - host: api.example.com\n    auth_scheme: Bearer\n    token_env: TOK\n  - host: raw.example.com\n    auth_header: x-api-key\n    token_env: TOK\n  - host: bad.example.com\n    auth_scheme: Bearer\n    token_env: BAD\n",
            "test",
        )
        .expect("routes load");
        let env = HashMap::from([
            ("TOK".to_string(), "hunter2-token".to_string()),
            ("BAD".to_string(), "hunter2\nx".to_string()),
        ]);
        let loaded = Loaded::with_policy(policy, &env).expect("tokens load");
        let routes = loaded.policy.routes();
        let value = |i: usize| match loaded.credential(&routes[i]) {
            Some(CredentialHeader::Value(v)) => Some(v.clone()),
            _ => None,
        };
        let bearer = value(0).expect("a header value");
        assert_eq!(bearer, "Bearer hunter2-token");
        assert!(bearer.is_sensitive());
        assert_eq!(value(1).expect("a header value"), "hunter2-token");
        assert!(matches!(
            loaded.credential(&routes[2]),
            Some(CredentialHeader::Invalid)
        ));
        let debug = format!("{loaded:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
