//! A container's files as volumes: rendered files from the ConfigMap, CA
//! material and host files from Secrets, directories as emptyDirs, each
//! mounted at the path the plan gives with the plan's mode.
//!
//! Owns: the volume names (`tmp`, `file-<n>`) and the Secret keys the user
//! must create for host files.
//!
//! Must never: read a host file (host trees are carried by name, the bytes
//! come from what the caller read), or mount a key read-write.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};

use super::{Cx, config};
use crate::plan::{ContainerPlan, Source};

/// The volumes and mounts of one container: an emptyDir at `/tmp`, then
/// one volume per planned file. Secrets it references are added to
/// `secrets` (name → keys); what it cannot carry goes to `notes`.
pub(super) fn volumes(
    cx: &Cx<'_>,
    c: &ContainerPlan,
    secrets: &mut BTreeMap<String, Vec<String>>,
    notes: &mut Vec<String>,
) -> (Vec<Volume>, Vec<VolumeMount>) {
    let role = c.role.as_str();
    let cm_name = cx.config_name();
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    }];
    for (i, f) in c.files.iter().enumerate() {
        let vname = format!("file-{i}");
        let base = f.path.rsplit('/').next().unwrap_or("file").to_string();
        let mode = Some(f.mode as i32);
        let mut v = Volume {
            name: vname.clone(),
            ..Default::default()
        };
        let mut sub = Some(base.clone());
        match &f.source {
            Source::Rendered(r) => {
                v.config_map = Some(ConfigMapVolumeSource {
                    name: cm_name.clone(),
                    items: Some(vec![KeyToPath {
                        key: config::key(r),
                        path: base.clone(),
                        mode,
                        ..Default::default()
                    }]),
                    ..Default::default()
                })
            }
            Source::Directory => {
                v.empty_dir = Some(Default::default());
                sub = None;
            }
            Source::HostFiles(_) => {
                // Host files (git keys, extra trust) are secrets here: the
                // user creates them from the same files.
                let secret = cx.name(&format!("{role}-files"));
                let k = base.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "-");
                secrets.entry(secret.clone()).or_default().push(k.clone());
                v.secret = Some(SecretVolumeSource {
                    secret_name: Some(secret),
                    items: Some(vec![KeyToPath {
                        key: k,
                        path: base.clone(),
                        mode,
                        ..Default::default()
                    }]),
                    ..Default::default()
                })
            }
            s => match cx.secret_for(s) {
                Some((secret, k)) => {
                    secrets.entry(secret.clone()).or_default().push(k.into());
                    v.secret = Some(SecretVolumeSource {
                        secret_name: Some(secret),
                        items: Some(vec![KeyToPath {
                            key: k.into(),
                            path: base.clone(),
                            mode,
                            ..Default::default()
                        }]),
                        ..Default::default()
                    })
                }
                None => {
                    notes.push(format!(
                        "{role}: {} (from the host) is not carried: an empty directory is mounted",
                        f.path
                    ));
                    v.empty_dir = Some(Default::default());
                    sub = None;
                }
            },
        }
        volumes.push(v);
        mounts.push(VolumeMount {
            name: vname,
            mount_path: f.path.clone(),
            sub_path: sub,
            read_only: Some(!matches!(f.source, Source::Directory | Source::HostTree(_))),
            ..Default::default()
        });
    }
    (volumes, mounts)
}
