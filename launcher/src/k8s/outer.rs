//! The outer proxy without root. In Docker, bottle-squid's entrypoint starts
//! as root (it creates squid's TLS certificate database and `chown`s it and
//! the cache, log and pid directories to `proxy`) and squid then drops to
//! `proxy`. Here every Pod runs as a non-root uid from the start, so the
//! entrypoint cannot run (its `chown` fails as 65534): the container runs
//! squid directly, an init container of the same image creates the
//! certificate database, and every directory squid writes is an emptyDir
//! (group-writable by the Pod's `fsGroup` 65534), so the root filesystem is
//! read-only. squid listens on 3128 (>= 1024): no capability is needed.
//! Checked here with Docker: bottle-squid as `--user 65534 --read-only
//! --cap-drop ALL` with tmpfs at these paths starts, bumps TLS and refuses
//! a host outside its allowlist (docs/kubernetes.md).
//!
//! pipelock (a static binary on 8888) needs nothing of this; its image is
//! not available offline here, so only its structure is checked.
//!
//! Must never: give the outer proxy a capability or a writable root.

use k8s_openapi::api::core::v1::{Container, Volume, VolumeMount};

use crate::plan::{ContainerPlan, Plan, RoleName};
use crate::render::paths;

/// The directories squid writes: certificate database, cache, logs, pid.
pub const SQUID_DIRS: &[&str] = &[
    "/run/squid",
    "/var/lib/squid",
    "/var/log/squid",
    "/var/spool/squid",
];

/// The certificate database squid.conf's `sslcrtd_program` uses.
const SSL_DB: &str = "/var/lib/squid/ssl_db";

/// What a role needs beyond its plan to run as non-root.
#[derive(Default)]
pub(super) struct NonRoot {
    /// Replaces the image's entrypoint.
    pub command: Option<Vec<String>>,
    /// emptyDirs (volume, mount).
    pub dirs: Vec<(Volume, VolumeMount)>,
    /// Runs before the container, same image, uid and hardening, with `dirs`.
    pub init_command: Option<Vec<String>>,
    /// The root filesystem can be read-only.
    pub read_only_root: bool,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub(super) fn non_root(p: &Plan, c: &ContainerPlan) -> NonRoot {
    match c.role {
        // Static binaries that write nothing but their emptyDirs.
        RoleName::EgressProxy | RoleName::Supervise => NonRoot {
            read_only_root: true,
            ..Default::default()
        },
        RoleName::OuterProxy if p.outer_proxy.kind == "squid" => NonRoot {
            command: Some(strings(&["/usr/sbin/squid", "-N", "-f", paths::SQUID_CONF])),
            dirs: SQUID_DIRS
                .iter()
                .map(|d| {
                    let name = d.trim_start_matches('/').replace('/', "-");
                    (
                        Volume {
                            name: name.clone(),
                            empty_dir: Some(Default::default()),
                            ..Default::default()
                        },
                        VolumeMount {
                            name,
                            mount_path: d.to_string(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            init_command: Some(strings(&[
                "/usr/lib/squid/security_file_certgen",
                "-c",
                "-s",
                SSL_DB,
                "-M",
                "4MB",
            ])),
            read_only_root: true,
        },
        _ => NonRoot::default(),
    }
}

/// The init container: the main container's image, resources and security
/// context, only the emptyDirs mounted.
pub(super) fn init_container(main: &Container, nr: &NonRoot) -> Option<Container> {
    let command = nr.init_command.clone()?;
    Some(Container {
        name: "init".into(),
        image: main.image.clone(),
        image_pull_policy: main.image_pull_policy.clone(),
        command: Some(command),
        resources: main.resources.clone(),
        security_context: main.security_context.clone(),
        volume_mounts: Some(nr.dirs.iter().map(|(_, m)| m.clone()).collect()),
        ..Default::default()
    })
}
