//! Readiness of the sidecars: an HTTP or TCP probe on the container's
//! address, or (where the host cannot reach the network) a log line; and the
//! container's last log lines, redacted, for error messages.
//!
//! Must never: show a log line without passing it through `Secrets::redact`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use super::engine::{ApplyError, docker_err};
use crate::plan::{ContainerPlan, Health, RoleName};
use crate::secrets::Secrets;

/// The container's address on a network.
async fn ip_on(d: &Docker, name: &str, network: &str) -> Result<Option<String>, ApplyError> {
    let i = d
        .inspect_container(name, None)
        .await
        .map_err(docker_err(format!("inspect {name}")))?;
    Ok(i.network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(network).and_then(|e| e.ip_address.clone()))
        .filter(|ip| !ip.is_empty()))
}

pub(super) async fn running(d: &Docker, name: &str) -> bool {
    d.inspect_container(name, None)
        .await
        .ok()
        .and_then(|i| i.state)
        .and_then(|s| s.running)
        .unwrap_or(false)
}

/// The last lines of a container's logs, secrets redacted.
pub async fn logs_tail(d: &Docker, name: &str, secrets: &Secrets, lines: usize) -> String {
    let mut s = d.logs(
        name,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        }),
    );
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(5), s.next()).await {
        out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        if Instant::now() > deadline || out.len() > 64 * 1024 {
            break;
        }
    }
    secrets.redact(&out)
}

/// Waits (bounded) until a sidecar's log holds `needle` (its readiness line).
pub(super) async fn wait_log_line(
    d: &Docker,
    c: &ContainerPlan,
    secrets: &Secrets,
    needle: &str,
) -> Result<(), ApplyError> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let logs = logs_tail(d, &c.name, secrets, 200).await;
        if logs.contains(needle) {
            return Ok(());
        }
        if !running(d, &c.name).await {
            return Err(ApplyError::Runtime(format!(
                "{} ({}) exited during start-up; its last log lines:\n{}{}",
                c.role.as_str(),
                c.name,
                logs.trim_end(),
                hint(c.role)
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(ApplyError::Runtime(format!(
        "{} ({}) did not log `{needle}` in 90 s{}",
        c.role.as_str(),
        c.name,
        hint(c.role)
    )))
}

/// Waits (bounded) until a sidecar answers its health check.
pub(super) async fn wait_healthy(
    d: &Docker,
    c: &ContainerPlan,
    secrets: &Secrets,
) -> Result<(), ApplyError> {
    let (network, port, path) = match &c.health {
        Health::Http {
            network,
            port,
            path,
        } => (network, *port, Some(path.clone())),
        Health::Tcp { network, port } => (network, *port, None),
        Health::None => return Ok(()),
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        if !running(d, &c.name).await {
            let logs = logs_tail(d, &c.name, secrets, 30).await;
            // routes.json lists the manifest's routes first, in order, then `allow`.
            let hint = hint(c.role);
            return Err(ApplyError::Runtime(format!(
                "{} ({}) exited during start-up; its last log lines:\n{}{hint}",
                c.role.as_str(),
                c.name,
                logs.trim_end()
            )));
        }
        if let Some(ip) = ip_on(d, &c.name, network).await? {
            let addr: Option<SocketAddr> = format!("{ip}:{port}").parse().ok();
            if let Some(addr) = addr {
                let p = path.clone();
                let r = tokio::task::spawn_blocking(move || probe(addr, p.as_deref())).await;
                match r {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) => last = e,
                    Err(e) => last = e.to_string(),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let logs = logs_tail(d, &c.name, secrets, 30).await;
    Err(ApplyError::Runtime(format!(
        "{} ({}) did not become healthy in 90 s ({last}); its last log lines:\n{}{}",
        c.role.as_str(),
        c.name,
        logs.trim_end(),
        hint(c.role)
    )))
}

/// What to look at when a sidecar of this role does not come up.
fn hint(role: RoleName) -> &'static str {
    match role {
        RoleName::EgressProxy => {
            "\n(routes[N] in routes.json is egress_proxy.routes[N] of the manifest; indexes past them are `allow` hosts)"
        }
        RoleName::Supervise => {
            "\n(the supervise sidecar serves the agent's MCP tools on supervise:9100; the agent is not started without it. Its image is bottle-supervise:latest (docker/build-images.sh bottle-supervise); its state is <state>/supervise)"
        }
        _ => "",
    }
}

fn probe(addr: SocketAddr, path: Option<&str>) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let Some(path) = path else { return Ok(()) };
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).map_err(|e| format!("read {addr}: {e}"))?;
    let head = String::from_utf8_lossy(&buf[..n]);
    if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!(
            "GET {path} answered `{}`",
            head.lines().next().unwrap_or("")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Security, resource_name};
    use std::collections::BTreeMap;

    /// A supervise sidecar that exits at start (as `bottle-supervise` does,
    /// code 2, when its state directory lacks `view/`) stops `bottle run`
    /// before the agent, with an error naming the sidecar, its container,
    /// its last log line and its image. Real Docker (`BOTTLE_SKIP_DOCKER=1`
    /// skips it).
    #[tokio::test]
    async fn a_supervise_sidecar_that_never_becomes_ready_is_named() {
        if std::env::var("BOTTLE_SKIP_DOCKER").is_ok_and(|v| v == "1") {
            eprintln!("SKIP: BOTTLE_SKIP_DOCKER=1");
            return;
        }
        let d = super::super::connect().await.expect("no Docker engine");
        let mut r = [0u8; 4];
        getrandom::fill(&mut r).unwrap();
        let id = format!("health-{:02x}{:02x}{:02x}{:02x}", r[0], r[1], r[2], r[3]);
        let name = resource_name(&id, "supervise");
        let cmd = "echo 'bottle-supervise: /state/view: not a directory' >&2; exit 2";
        d.create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            bollard::models::ContainerCreateBody {
                image: Some("bottle-agent:latest".into()),
                cmd: Some(vec!["bash".into(), "-c".into(), cmd.into()]),
                labels: Some(std::collections::HashMap::from([(
                    "bottle.test".to_string(),
                    "health".to_string(),
                )])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        d.start_container(&name, None).await.unwrap();
        let c = ContainerPlan {
            role: RoleName::Supervise,
            name: name.clone(),
            image: "bottle-supervise:latest".into(),
            networks: vec![],
            command: vec![],
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            files: vec![],
            mounts: vec![],
            labels: BTreeMap::new(),
            security: Security {
                user: None,
                cap_drop: vec![],
                cap_add: vec![],
                no_new_privileges: true,
                privileged: false,
                docker_socket: false,
                host_namespaces: false,
            },
            health: Health::Tcp {
                network: "bridge".into(),
                port: 9100,
            },
        };
        let secrets = Secrets::default();
        let r = wait_healthy(&d, &c, &secrets).await;
        let log = wait_log_line(&d, &c, &secrets, "listening").await;
        let _ = d
            .remove_container(
                &name,
                Some(bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        for e in [r.unwrap_err().to_string(), log.unwrap_err().to_string()] {
            assert!(
                e.contains(&format!("supervise ({name}) exited during start-up"))
                    && e.contains("/state/view: not a directory")
                    && e.contains("bottle-supervise:latest"),
                "{e}"
            );
        }
    }
}
