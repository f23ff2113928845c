//! The agent's volumes: its home and `/workspace`, one Docker volume each,
//! named `bottle-<id>-home` / `bottle-<id>-workspace` and labelled with the
//! bottle id, its role (`home`, `workspace`), the bottle and agent names and
//! the manifest's absolute path, so `bottle resume ID` knows what to bring
//! back with nothing stored on the host. Also their sizes for `bottle list`
//! and short-lived helper containers that read a volume (`du`, export).
//!
//! Owns: creating, finding, measuring and removing the volumes.
//!
//! Must never: remove a volume without the `bottle.id` label, touch a
//! volume while a container of its bottle uses it (callers check), or put a
//! secret in a label (names and a path only).

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, ListContainersOptions,
    ListVolumesOptions, LogsOptions, RemoveContainerOptions, RemoveVolumeOptions,
    WaitContainerOptions,
};
use futures_util::StreamExt;

use super::engine::{ApplyError, docker_err};
use super::record::Recorder;
use crate::plan::Plan;

/// Label with the manifest's absolute path (what `resume` loads again).
pub const MANIFEST_LABEL: &str = "bottle.manifest";
/// The image of the short-lived helper containers (`du`, export). It is
/// one of bottle's own images, present wherever a bottle ever ran.
pub const HELPER_IMAGE: &str = "bottle-agent:latest";
/// The label of the helper containers (its value: `du` or `export`).
pub const HELPER_LABEL: &str = "bottle.helper";

/// One volume of a bottle, as found on the engine.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub name: String,
    /// `home` or `workspace`.
    pub role: String,
    pub bottle: String,
    pub agent: String,
    pub manifest: String,
    /// Seconds since the Unix epoch, when the engine says.
    pub created: Option<i64>,
    /// Bytes, when measured.
    pub size: Option<u64>,
}

fn labels(plan: &Plan, manifest: &Path, role: &str) -> HashMap<String, String> {
    HashMap::from([
        ("bottle.id".to_string(), plan.id.clone()),
        ("bottle.role".to_string(), role.to_string()),
        ("bottle.bottle".to_string(), plan.bottle.clone()),
        ("bottle.agent".to_string(), plan.agent.clone()),
        (MANIFEST_LABEL.to_string(), manifest.display().to_string()),
    ])
}

/// Makes sure the plan's volumes exist: created (and recorded) on a first
/// run; on a resume they must be there already and belong to this bottle.
pub async fn ensure(
    d: &Docker,
    plan: &Plan,
    manifest: &Path,
    rec: &Recorder,
) -> Result<(), ApplyError> {
    for v in &plan.volumes {
        match d.inspect_volume(&v.name).await {
            Ok(have) => {
                if have.labels.get("bottle.id") != Some(&plan.id) {
                    return Err(ApplyError::Runtime(format!(
                        "volume {} exists but is not bottle {}'s (no matching bottle.id label); fix: remove or rename that volume",
                        v.name, plan.id
                    )));
                }
                if !plan.resumed {
                    return Err(ApplyError::Runtime(format!(
                        "volume {} already exists; fix: `bottle resume {}` continues that bottle, `bottle rm {}` removes it",
                        v.name, plan.id, plan.id
                    )));
                }
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) if !plan.resumed => {
                d.create_volume(VolumeCreateRequest {
                    name: Some(v.name.clone()),
                    driver: Some("local".into()),
                    labels: Some(labels(plan, manifest, &v.role)),
                    ..Default::default()
                })
                .await
                .map_err(docker_err(format!("create volume {}", v.name)))?;
                rec.update(|r| r.volumes.push(v.name.clone()));
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Err(ApplyError::Runtime(format!(
                    "volume {} of bottle {} is gone; fix: `bottle rm {}` removes what is left, then start a new bottle with `bottle run`",
                    v.name, plan.id, plan.id
                )));
            }
            Err(e) => return Err(docker_err(format!("inspect volume {}", v.name))(e)),
        }
    }
    Ok(())
}

/// `name:target:rw` binds of the plan's volumes (for the agent container).
pub fn binds(plan: &Plan) -> Vec<String> {
    plan.volumes
        .iter()
        .map(|v| format!("{}:{}:rw", v.name, v.target))
        .collect()
}

/// Every volume with a `bottle.id` label, by bottle id (sizes not measured).
pub async fn list(d: &Docker) -> Result<Vec<(String, Stored)>, ApplyError> {
    let filters = HashMap::from([("label".to_string(), vec!["bottle.id".to_string()])]);
    let resp = d
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(docker_err("list volumes"))?;
    let mut out = Vec::new();
    for v in resp.volumes.unwrap_or_default() {
        let l = &v.labels;
        let Some(id) = l.get("bottle.id") else {
            continue;
        };
        let get = |k: &str| l.get(k).cloned().unwrap_or_default();
        out.push((
            id.clone(),
            Stored {
                name: v.name.clone(),
                role: get("bottle.role"),
                bottle: get("bottle.bottle"),
                agent: get("bottle.agent"),
                manifest: get(MANIFEST_LABEL),
                created: v.created_at.as_deref().and_then(parse_time),
                size: v
                    .usage_data
                    .as_ref()
                    .and_then(|u| u64::try_from(u.size).ok()),
            },
        ));
    }
    Ok(out)
}

fn parse_time(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Removes volumes by name (404 is fine); failures are collected. A volume
/// in use (409) is tried again for a few seconds: another `bottle list` may
/// be measuring it with a helper that lives about a second.
pub async fn remove(d: &Docker, names: &[String], failures: &mut Vec<String>) {
    for n in names {
        let mut tries = 0;
        loop {
            match d
                .remove_volume(n, Some(RemoveVolumeOptions { force: false }))
                .await
            {
                Ok(()) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) if tries < 10 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => failures.push(format!("volume {n}: {e}")),
            }
            break;
        }
    }
}

/// Connects and removes `names`; one error naming what is left.
pub async fn remove_all(names: &[String]) -> Result<(), ApplyError> {
    let d = super::connect().await?;
    let mut failures = Vec::new();
    remove(&d, names, &mut failures).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::Runtime(format!(
            "could not remove {}; fix: `bottle cleanup --yes --volumes`",
            failures.join("; ")
        )))
    }
}

/// A created (never started unless `run`) helper container with `volumes`
/// mounted read-only under `/v/<name>`: no network, no capabilities but
/// reading. Labelled `bottle.helper` (not `bottle.id`: a helper must not
/// make a stopped bottle look like a running one to another `bottle`
/// process) and `bottle.pid`, so `bottle cleanup` removes it if this process
/// dies. Removed by `Helper::remove`.
pub struct Helper {
    pub name: String,
}

impl Helper {
    pub async fn create(
        d: &Docker,
        what: &str,
        volumes: &[String],
        cmd: Vec<String>,
    ) -> Result<Helper, ApplyError> {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(|e| ApplyError::Runtime(e.to_string()))?;
        let name = format!(
            "bottle-helper-{what}-{:02x}{:02x}{:02x}{:02x}",
            b[0], b[1], b[2], b[3]
        );
        let labels = HashMap::from([
            (HELPER_LABEL.to_string(), what.to_string()),
            ("bottle.pid".to_string(), std::process::id().to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(HELPER_IMAGE.into()),
            cmd: Some(cmd),
            // root with only DAC_READ_SEARCH: reads every file the agent
            // wrote (mode 000 included) and can change nothing (read-only mounts).
            user: Some("0:0".into()),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                binds: Some(volumes.iter().map(|v| format!("{v}:/v/{v}:ro")).collect()),
                network_mode: Some("none".into()),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(vec!["DAC_READ_SEARCH".into()]),
                security_opt: Some(vec!["no-new-privileges:true".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        d.create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(docker_err(format!(
            "create helper container {name} (image {HELPER_IMAGE})"
        )))?;
        Ok(Helper { name })
    }

    /// Starts it, waits for its end, returns (exit code, stdout).
    pub async fn run(&self, d: &Docker) -> Result<(i64, String), ApplyError> {
        d.start_container(&self.name, None)
            .await
            .map_err(docker_err(format!("start {}", self.name)))?;
        let code = match d
            .wait_container(
                &self.name,
                Some(WaitContainerOptions {
                    condition: "not-running".into(),
                }),
            )
            .next()
            .await
        {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(docker_err(format!("wait for {}", self.name))(e)),
            None => return Err(ApplyError::Runtime(format!("lost track of {}", self.name))),
        };
        let mut logs = d.logs(
            &self.name,
            Some(LogsOptions {
                stdout: true,
                ..Default::default()
            }),
        );
        let mut out = String::new();
        while let Some(Ok(l)) = logs.next().await {
            out.push_str(&String::from_utf8_lossy(&l.into_bytes()));
        }
        Ok((code, out))
    }

    pub async fn remove(self, d: &Docker) {
        let _ = d
            .remove_container(
                &self.name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
}

/// Streams the tar of volume `volume` into `tx`, through a
/// helper container that is created, never started, and removed (the
/// archive API reads its mounts). The archive's top directory is named
/// after the volume.
pub async fn archive(
    d: &Docker,
    volume: &str,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
) -> Result<(), ApplyError> {
    let h = Helper::create(d, "export", &[volume.to_string()], vec!["true".into()]).await?;
    let mut s = d.download_from_container(
        &h.name,
        Some(DownloadFromContainerOptions {
            path: format!("/v/{volume}"),
        }),
    );
    let mut r = Ok(());
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(b) => {
                if tx.send(b.to_vec()).await.is_err() {
                    // The reader stopped (it reports why).
                    break;
                }
            }
            Err(e) => {
                r = Err(docker_err(format!("read volume {volume}"))(e));
                break;
            }
        }
    }
    drop(s);
    h.remove(d).await;
    r
}

/// The sizes of `names` in bytes, with `du` in one helper container
/// (Engine 20.10's `/system/df` reports volume sizes in a shape bollard
/// 0.21 no longer reads, and `/volumes` has none).
pub async fn measure(d: &Docker, names: &[String]) -> Result<HashMap<String, u64>, ApplyError> {
    let mut sizes = HashMap::new();
    if names.is_empty() {
        return Ok(sizes);
    }
    let mut cmd = vec!["du".to_string(), "-s".into(), "-b".into()];
    cmd.extend(names.iter().map(|n| format!("/v/{n}")));
    let h = Helper::create(d, "du", names, cmd).await?;
    let r = h.run(d).await;
    h.remove(d).await;
    // `du` exits 1 on an unreadable entry but still prints the totals.
    let (_, out) = r?;
    for line in out.lines() {
        let mut f = line.split('\t');
        let (Some(bytes), Some(path)) = (f.next(), f.next()) else {
            continue;
        };
        if let (Some(name), Ok(b)) = (path.strip_prefix("/v/"), bytes.trim().parse()) {
            sizes.insert(name.to_string(), b);
        }
    }
    Ok(sizes)
}

/// Helper containers whose `bottle` process is gone (killed during `list`
/// or `export`): their names, for `bottle cleanup`.
pub async fn stale_helpers(d: &Docker) -> Result<Vec<String>, ApplyError> {
    let filters = HashMap::from([("label".to_string(), vec![HELPER_LABEL.to_string()])]);
    let cs = d
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(docker_err("list helper containers"))?;
    Ok(cs
        .into_iter()
        .filter(|c| {
            !c.labels
                .as_ref()
                .and_then(|l| l.get("bottle.pid"))
                .and_then(|p| p.parse().ok())
                .is_some_and(super::teardown::pid_alive)
        })
        .filter_map(|c| c.names.and_then(|n| n.first().cloned()))
        .map(|n| n.trim_start_matches('/').to_string())
        .collect())
}

/// Removes containers by name (force).
pub async fn remove_containers(d: &Docker, names: &[String]) {
    for n in names {
        let _ = d
            .remove_container(
                n,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
}
