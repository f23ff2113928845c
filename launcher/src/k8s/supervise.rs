//! The supervise state on Kubernetes. In Docker it is one host directory
//! (`<state>/supervise/`) bind-mounted into egress-proxy and the sidecar and
//! written by `bottle supervise` on the host. Two Pods share no directory,
//! so here each part is an object the operator's side writes through the
//! API server and kubelet delivers:
//!
//! | Docker (`supervise/<sub>`) | Kubernetes |
//! |---|---|
//! | `routes/` (egress-proxy, read-only) | ConfigMap `bottle-<id>-live-routes`, key `routes.json` |
//! | `view/` (sidecar, read-only) | ConfigMap `bottle-<id>-supervise-view`, key `view.json` |
//! | `decisions/` (sidecar, read-only) | ConfigMap `bottle-<id>-supervise-decisions`, one key per decision |
//! | `proposals/` (sidecar writes) | an emptyDir of the sidecar's Pod |
//!
//! Each ConfigMap is mounted as a whole directory (never `subPath`, which
//! kubelet does not update): an update is swapped in atomically by kubelet
//! (a `..data` symlink re-pointed), which egress-proxy's `--watch-routes`
//! sees as a new inode and the sidecar reads as the new file.
//!
//! Owns: the names of the three ConfigMaps and what they hold at render.
//!
//! Must never: hold a secret (the view carries `credential: true|false`
//! only), or mount a state ConfigMap writable.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, Volume, VolumeMount};

use super::config::data_bytes;
use super::host::CONFIG_MAP_LIMIT;
use super::{Cx, Error, Object, to_yaml};
use crate::plan::{MountPlan, SUPERVISE_DIR};

/// What a `supervise/<sub>` mount of the plan becomes.
enum Part {
    /// A ConfigMap of this name suffix, mounted read-only as a directory.
    Map(&'static str),
    /// An emptyDir the container writes.
    Scratch,
}

fn part(sub: &str) -> Option<Part> {
    Some(match sub {
        "routes" => Part::Map("live-routes"),
        "view" => Part::Map("supervise-view"),
        "decisions" => Part::Map("supervise-decisions"),
        "proposals" => Part::Scratch,
        _ => return None,
    })
}

/// The volume and mount of the plan's `i`th state mount.
pub(super) fn mount(cx: &Cx<'_>, i: usize, m: &MountPlan) -> Result<(Volume, VolumeMount), Error> {
    let sub = m
        .source
        .strip_prefix(SUPERVISE_DIR)
        .and_then(|s| s.strip_prefix('/'))
        .and_then(part)
        .ok_or_else(|| Error::Mount(m.source.clone(), m.target.clone()))?;
    let name = format!("state-{i}");
    let mut v = Volume {
        name: name.clone(),
        ..Default::default()
    };
    let read_only = match sub {
        Part::Map(suffix) => {
            v.config_map = Some(ConfigMapVolumeSource {
                name: cx.name(suffix),
                default_mode: Some(0o444),
                ..Default::default()
            });
            true
        }
        Part::Scratch => {
            v.empty_dir = Some(Default::default());
            false
        }
    };
    if read_only != m.read_only {
        return Err(Error::Mount(m.source.clone(), m.target.clone()));
    }
    let vm = VolumeMount {
        name,
        mount_path: m.target.clone(),
        read_only: Some(read_only),
        ..Default::default()
    };
    Ok((v, vm))
}

/// The state ConfigMaps: the plan's routes (kept approvals folded in by
/// the caller's plan), the view the sidecar shows the agent, and the
/// decisions given (none at a first render).
pub(super) fn state_maps(
    cx: &Cx<'_>,
    decisions: &BTreeMap<String, String>,
) -> Result<Vec<Object>, Error> {
    let p = cx.p;
    if !p.supervise {
        return Ok(Vec::new());
    }
    let routes = p
        .rendered
        .get("routes.json")
        .ok_or_else(|| Error::HostNotRead("routes.json".into()))?;
    let policy = addon_rules::Policy::from_text(routes, "routes.json")
        .map_err(|e| Error::Routes(e.to_string()))?;
    let view = bottle_supervise::view::View::new(&p.bottle, &policy, &p.allow);
    let view = serde_json::to_string_pretty(&view).map_err(|e| Error::Routes(e.to_string()))?;
    let maps = [
        (
            "live-routes",
            BTreeMap::from([("routes.json".to_string(), routes.clone())]),
        ),
        (
            "supervise-view",
            BTreeMap::from([("view.json".to_string(), view + "\n")]),
        ),
        ("supervise-decisions", decisions.clone()),
    ];
    // Checked before any object is made: `kubectl apply` of a set with one
    // map the API server refuses would apply the others (an approval in the
    // routes, its decision missing: the agent would wait on it forever).
    for (suffix, data) in &maps {
        let bytes = data_bytes(data);
        if bytes > CONFIG_MAP_LIMIT {
            let (what, fix) = match *suffix {
                "supervise-decisions" => (
                    format!("supervise decisions ({} of them)", data.len()),
                    "bring the bottle up again under a new --id: a new bottle starts with no decisions, and the approvals kept for its name still apply",
                ),
                _ => (
                    format!("{suffix} (the manifest's routes and the approvals kept for it)"),
                    "revoke the approvals the bottle no longer needs (`bottle approvals list`, `bottle approvals revoke ID`)",
                ),
            };
            return Err(Error::TooLarge {
                name: cx.name(suffix),
                what,
                bytes,
                fix,
            });
        }
    }
    maps.into_iter()
        .map(|(suffix, data)| {
            let name = cx.name(suffix);
            let cm = ConfigMap {
                metadata: cx.meta(name.clone(), Some("supervise")),
                data: (!data.is_empty()).then_some(data),
                ..Default::default()
            };
            to_yaml("ConfigMap", &name, &cm)
        })
        .collect()
}
