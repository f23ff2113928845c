//! Teardown: undoes exactly what the record holds (apply's containers,
//! networks and host firewall rules; prepare's state directory), and finds
//! what a killed `bottle run` left behind (by the `bottle.id` label, the
//! `bottle:<id>` rule comment and the state directories) and the stopped
//! bottles (their volumes, `volumes`) for `bottle list`, `bottle cleanup`,
//! `bottle rm` and `bottle resume`.
//!
//! The agent's volumes are not part of an undo: they outlive the run on
//! purpose, and are removed only by `volumes::remove` when asked.
//!
//! Must never: remove a resource without bottle's labels/comment, or a live
//! bottle's resources unless asked for that id.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, RemoveContainerOptions,
};

use super::engine::{ApplyError, connect};
use super::firewall::{self, FwRule};
use super::record::{Record, state_root};
use super::volumes::{self, Stored};

/// Undoes a record of this process: connects to the engine only when the
/// record holds containers or networks, so a bottle that failed before
/// Docker was reached still loses its state directory.
pub async fn undo(r: &Record) -> Result<(), ApplyError> {
    if r.containers.is_empty() && r.networks.is_empty() {
        return finish(r, Vec::new());
    }
    match connect().await {
        Ok(d) => teardown(&d, r).await,
        Err(e) => finish(r, vec![e.to_string()]),
    }
}

/// Removes everything in the record; keeps going past failures and reports them.
pub async fn teardown(d: &Docker, r: &Record) -> Result<(), ApplyError> {
    let mut failures = Vec::new();
    for c in r.containers.iter().rev() {
        match d
            .remove_container(
                c,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => failures.push(format!("container {c}: {e}")),
        }
    }
    for n in r.networks.iter().rev() {
        match d.remove_network(n).await {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => failures.push(format!("network {n}: {e}")),
        }
    }
    finish(r, failures)
}

/// The host side of teardown: firewall rules, then the state directory.
fn finish(r: &Record, mut failures: Vec<String>) -> Result<(), ApplyError> {
    for rule in r.fw_rules.iter().rev() {
        firewall::delete(rule, &mut failures);
    }
    if !r.state_dir.as_os_str().is_empty()
        && r.state_dir.file_name().is_some_and(|n| n == r.id.as_str())
        && let Err(e) = std::fs::remove_dir_all(&r.state_dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        failures.push(format!("state directory {}: {e}", r.state_dir.display()));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::Runtime(format!(
            "teardown of bottle {} left: {}; fix: run `bottle cleanup --yes`",
            r.id,
            failures.join("; ")
        )))
    }
}

/// True while process `p` is a `bottle`.
pub fn pid_alive(p: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "bottle")
}

/// A bottle found on this host.
#[derive(Debug, Default, Clone)]
pub struct Found {
    pub id: String,
    /// (name, role, state)
    pub containers: Vec<(String, String, String)>,
    pub networks: Vec<String>,
    pub fw_rules: Vec<FwRule>,
    pub state_dir: Option<PathBuf>,
    pub pid: Option<u32>,
    /// The agent's home and workspace volumes.
    pub volumes: Vec<Stored>,
}

impl Found {
    /// True while the owning `bottle run` process lives.
    pub fn alive(&self) -> bool {
        self.pid.is_some_and(pid_alive)
    }

    /// Containers, networks, firewall rules or a state directory remain:
    /// a running bottle, or the leftovers of a killed one.
    pub fn has_run_parts(&self) -> bool {
        !self.containers.is_empty()
            || !self.networks.is_empty()
            || !self.fw_rules.is_empty()
            || self.state_dir.is_some()
    }

    /// Only its volumes remain: a bottle that can be resumed.
    pub fn stopped(&self) -> bool {
        !self.has_run_parts() && !self.volumes.is_empty()
    }

    /// The names of its volumes.
    pub fn volume_names(&self) -> Vec<String> {
        self.volumes.iter().map(|v| v.name.clone()).collect()
    }

    pub fn record(&self) -> Record {
        Record {
            id: self.id.clone(),
            pid: self.pid.unwrap_or(0),
            state_dir: self.state_dir.clone().unwrap_or_default(),
            networks: self.networks.clone(),
            containers: self.containers.iter().map(|c| c.0.clone()).collect(),
            fw_rules: self.fw_rules.clone(),
            volumes: Vec::new(),
        }
    }
}

/// Every bottle resource on this host, grouped by bottle id.
pub async fn find(d: &Docker) -> Result<Vec<Found>, ApplyError> {
    let mut by: BTreeMap<String, Found> = BTreeMap::new();
    let filters = HashMap::from([("label".to_string(), vec!["bottle.id".to_string()])]);
    let cs = d
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await
        .map_err(|source| ApplyError::Docker {
            what: "list containers".into(),
            source,
        })?;
    for c in cs {
        let labels = c.labels.unwrap_or_default();
        let Some(id) = labels.get("bottle.id") else {
            continue;
        };
        let f = by.entry(id.clone()).or_insert_with(|| Found {
            id: id.clone(),
            ..Default::default()
        });
        let name = c
            .names
            .and_then(|n| n.first().cloned())
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let role = labels.get("bottle.role").cloned().unwrap_or_default();
        let state = c.state.map(|s| s.to_string()).unwrap_or_default();
        f.containers.push((name, role, state));
        if f.pid.is_none() {
            f.pid = labels.get("bottle.pid").and_then(|p| p.parse().ok());
        }
    }
    let ns = d
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|source| ApplyError::Docker {
            what: "list networks".into(),
            source,
        })?;
    for n in ns {
        let labels = n.labels.unwrap_or_default();
        let Some(id) = labels.get("bottle.id") else {
            continue;
        };
        let f = by.entry(id.clone()).or_insert_with(|| Found {
            id: id.clone(),
            ..Default::default()
        });
        f.networks.push(n.name.unwrap_or_default());
        if f.pid.is_none() {
            f.pid = labels.get("bottle.pid").and_then(|p| p.parse().ok());
        }
    }
    for (id, rule) in firewall::list() {
        let f = by.entry(id.clone()).or_insert_with(|| Found {
            id,
            ..Default::default()
        });
        f.fw_rules.push(rule);
    }
    if let Ok(dirs) = std::fs::read_dir(state_root()) {
        for e in dirs.flatten() {
            let p = e.path();
            let Ok(text) = std::fs::read_to_string(p.join("record.json")) else {
                continue;
            };
            let Ok(r) = serde_json::from_str::<Record>(&text) else {
                continue;
            };
            if p.file_name().is_none_or(|n| n != r.id.as_str()) {
                continue;
            }
            let f = by.entry(r.id.clone()).or_insert_with(|| Found {
                id: r.id.clone(),
                ..Default::default()
            });
            f.state_dir = Some(p);
            f.pid = f.pid.or(Some(r.pid));
        }
    }
    for (id, v) in volumes::list(d).await? {
        by.entry(id.clone())
            .or_insert_with(|| Found {
                id,
                ..Default::default()
            })
            .volumes
            .push(v);
    }
    Ok(by.into_values().collect())
}
