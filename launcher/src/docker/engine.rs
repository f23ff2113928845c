//! The connection to the engine and the errors of everything under
//! `docker/`.
//!
//! Must never: put a secret in an error message (callers pass names only).

use bollard::Docker;

/// Errors of apply; messages never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Config(String),
    #[error("docker: {what}: {source}")]
    Docker {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{0}")]
    Runtime(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl ApplyError {
    /// Exit code: 2 for configuration/usage problems, 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            ApplyError::Config(_) => 2,
            _ => 1,
        }
    }
}

pub(crate) fn docker_err(
    what: impl Into<String>,
) -> impl FnOnce(bollard::errors::Error) -> ApplyError {
    let what = what.into();
    move |source| ApplyError::Docker { what, source }
}

/// Connects to the local engine, negotiating the API version (20.10 speaks 1.41).
pub async fn connect() -> Result<Docker, ApplyError> {
    let d = Docker::connect_with_local_defaults()
        .map_err(docker_err("connect to the Docker engine"))?;
    d.negotiate_version()
        .await
        .map_err(docker_err("talk to the Docker engine (is it running?)"))
}

/// The engine's major version (e.g. 20 for 20.10.24).
pub async fn engine_major(d: &Docker) -> Result<u32, ApplyError> {
    let v = d
        .version()
        .await
        .map_err(docker_err("read the engine version"))?;
    Ok(v.version
        .as_deref()
        .and_then(|s| s.split('.').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}
