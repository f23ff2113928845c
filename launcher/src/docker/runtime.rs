//! The agent's OCI runtime: `auto` becomes gVisor's `runsc` when the engine
//! has it registered (`docker info` Runtimes), else `runc`; `runsc` asked for
//! and not registered is an error before anything starts.
//!
//! Must never: start anything, or run the sidecars under a runtime the plan
//! does not name (only the agent gets `runsc`).

use bollard::Docker;

use super::engine::{ApplyError, docker_err};
use crate::model::RuntimeChoice;

/// The runtimes the engine has registered.
pub async fn registered(d: &Docker) -> Result<Vec<String>, ApplyError> {
    let info = d
        .info()
        .await
        .map_err(docker_err("read the engine's runtimes (docker info)"))?;
    let mut v: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
    v.sort();
    Ok(v)
}

/// The runtime the agent gets, given what the engine has.
pub fn choose(want: RuntimeChoice, registered: &[String]) -> Result<&'static str, ApplyError> {
    let has_runsc = registered.iter().any(|r| r == "runsc");
    match want {
        RuntimeChoice::Runc => Ok("runc"),
        RuntimeChoice::Auto => Ok(if has_runsc { "runsc" } else { "runc" }),
        RuntimeChoice::Runsc if has_runsc => Ok("runsc"),
        RuntimeChoice::Runsc => Err(ApplyError::Config(format!(
            "the bottle asks for `runtime: runsc` but this Docker engine has no runtime `runsc` (it has: {}); fix: install gVisor (Debian: `apt-get install runsc`), register it in /etc/docker/daemon.json (\"runtimes\": {{\"runsc\": {{\"path\": \"/usr/bin/runsc\"}}}}) and reload dockerd (SIGHUP), or set `runtime: auto` or `runc`",
            registered.join(", ")
        ))),
    }
}

/// Asks the engine and chooses.
pub async fn resolve(d: &Docker, want: RuntimeChoice) -> Result<&'static str, ApplyError> {
    if want == RuntimeChoice::Runc {
        return Ok("runc");
    }
    choose(want, &registered(d).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_runsc_only_when_registered_and_runsc_refuses_without_it() {
        let runc = vec!["io.containerd.runc.v2".to_string(), "runc".to_string()];
        let both = vec!["runc".to_string(), "runsc".to_string()];
        assert_eq!(choose(RuntimeChoice::Auto, &runc).unwrap(), "runc");
        assert_eq!(choose(RuntimeChoice::Auto, &both).unwrap(), "runsc");
        assert_eq!(choose(RuntimeChoice::Runc, &both).unwrap(), "runc");
        assert_eq!(choose(RuntimeChoice::Runsc, &both).unwrap(), "runsc");
        let e = choose(RuntimeChoice::Runsc, &runc).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = e.to_string();
        assert!(
            e.contains("has no runtime `runsc` (it has: io.containerd.runc.v2, runc)"),
            "{e}"
        );
        assert!(e.contains("fix: install gVisor"), "{e}");
    }
}
