//! A container's files as volumes: rendered files and the agent's prompt
//! from the ConfigMap, skills from their own ConfigMaps, CA material and
//! other host files (git keys, trust) from Secrets, directories and the
//! agent's `/workspace` as emptyDirs, each mounted at the path the plan
//! gives with the plan's mode; the supervise state mounts as
//! `supervise::mount` maps them.
//!
//! Owns: the volume names (`tmp`, `file-<n>`) and the Secret keys the user
//! must create for host files.
//!
//! Must never: read a host file (the prompt and skills come from what
//! `host::read` read), or mount a key or a ConfigMap read-write.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};

use super::{Cx, Error, config};
use crate::plan::{ContainerPlan, RoleName, Source};
use crate::render::paths;

/// The volumes and mounts of one container: an emptyDir at `/tmp`, then
/// one volume per planned file. Secrets it references are added to
/// `secrets` (name → keys); what it cannot carry goes to `notes`.
pub(super) fn volumes(
    cx: &Cx<'_>,
    c: &ContainerPlan,
    secrets: &mut BTreeMap<String, Vec<String>>,
    notes: &mut Vec<String>,
) -> Result<(Vec<Volume>, Vec<VolumeMount>), Error> {
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
            Source::HostFiles(_) if f.path == paths::AGENT_PROMPT => {
                if cx.host.prompt.is_none() {
                    return Err(Error::HostNotRead(f.path.clone()));
                }
                v.config_map = Some(ConfigMapVolumeSource {
                    name: cm_name.clone(),
                    items: Some(vec![KeyToPath {
                        key: config::PROMPT_KEY.into(),
                        path: base.clone(),
                        mode,
                        ..Default::default()
                    }]),
                    ..Default::default()
                })
            }
            Source::HostTree(root) => {
                // One ConfigMap per skill, every file at its path in the
                // tree, executable files 0755, others 0644.
                let files = cx
                    .host
                    .trees
                    .get(root)
                    .ok_or_else(|| Error::HostNotRead(root.display().to_string()))?;
                v.config_map = Some(ConfigMapVolumeSource {
                    name: cx.skill_name(&f.path),
                    items: Some(
                        files
                            .iter()
                            .enumerate()
                            .map(|(i, t)| KeyToPath {
                                key: config::tree_key(i, t),
                                path: t.rel.clone(),
                                mode: Some(if t.executable { 0o755 } else { 0o644 }),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                });
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
            read_only: Some(!matches!(f.source, Source::Directory)),
            ..Default::default()
        });
    }
    for (i, m) in c.mounts.iter().enumerate() {
        let (v, vm) = super::supervise::mount(cx, i, m)?;
        volumes.push(v);
        mounts.push(vm);
    }
    if c.role == RoleName::Agent {
        // The workspace: an empty directory the agent owns (fsGroup); the
        // user copies the tree in or clones from git-gate (docs/kubernetes.md).
        volumes.push(Volume {
            name: "workspace".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "workspace".into(),
            mount_path: paths::WORKSPACE.into(),
            ..Default::default()
        });
        if let Some(w) = &cx.p.workspace {
            notes.push(format!(
                "agent: the workspace ({} files from {}) is not in the YAML: /workspace is an empty directory; copy it in once the Pod runs: tar -C {} -cf - . | kubectl -n {} exec -i deploy/{} -- tar -C {} -xf -",
                w.files,
                w.source.display(),
                w.source.display(),
                cx.ns,
                cx.name("agent"),
                paths::WORKSPACE,
            ));
        }
        for r in &cx.p.git_remotes {
            notes.push(format!(
                "agent: repository {} is served by git-gate: inside the agent, git clone {} {}/{}",
                r.name,
                r.url,
                paths::WORKSPACE,
                r.name
            ));
        }
    }
    Ok((volumes, mounts))
}
