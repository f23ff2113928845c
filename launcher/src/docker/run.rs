//! The agent, attached: on a terminal through `docker start -ai` (the one
//! call delegated to the Docker CLI), otherwise through the attach API with
//! its output copied to ours. Returns the agent's exit code.
//!
//! Must never: start any container but the agent `apply` created.

use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{AttachContainerOptions, WaitContainerOptions};
use futures_util::StreamExt;

use super::engine::{ApplyError, docker_err};

/// Starts the agent attached to this terminal (or to our stdout/stderr) and
/// returns its exit code.
pub async fn run_agent(d: &Docker, name: &str, tty: bool) -> Result<i64, ApplyError> {
    if tty {
        // The Docker CLI owns raw-mode terminal handling, resizes and detach
        // keys; bollard would need all of that re-implemented. Only `start -ai`
        // of the container apply created is delegated to it.
        let st = tokio::process::Command::new("docker")
            .args(["start", "--attach", "--interactive", name])
            .status()
            .await
            .map_err(|source| ApplyError::Io {
                what: "run `docker start -ai` for the agent".into(),
                source,
            })?;
        let _ = st;
        return exit_code(d, name).await;
    }
    let mut att = d
        .attach_container(
            name,
            Some(AttachContainerOptions {
                stdout: true,
                stderr: true,
                stream: true,
                logs: true,
                ..Default::default()
            }),
        )
        .await
        .map_err(docker_err(format!("attach to {name}")))?;
    d.start_container(name, None)
        .await
        .map_err(docker_err(format!("start {name}")))?;
    let pump = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        let mut err = tokio::io::stderr();
        use tokio::io::AsyncWriteExt;
        while let Some(Ok(msg)) = att.output.next().await {
            match msg {
                bollard::container::LogOutput::StdErr { message } => {
                    let _ = err.write_all(&message).await;
                    let _ = err.flush().await;
                }
                other => {
                    let _ = out.write_all(&other.into_bytes()).await;
                    let _ = out.flush().await;
                }
            }
        }
    });
    let code = exit_code(d, name).await;
    // Let the last output drain (bounded).
    let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
    code
}

async fn exit_code(d: &Docker, name: &str) -> Result<i64, ApplyError> {
    let mut w = d.wait_container(
        name,
        Some(WaitContainerOptions {
            condition: "not-running".into(),
        }),
    );
    match w.next().await {
        Some(Ok(r)) => Ok(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(docker_err(format!("wait for {name}"))(e)),
        None => Err(ApplyError::Runtime(format!("lost track of {name}"))),
    }
}
