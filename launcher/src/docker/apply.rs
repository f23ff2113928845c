//! Apply: executes a `Plan` on the engine — networks, host firewall rules,
//! containers with their files and secret environment, health waits — and
//! writes every resource it creates into the `Record` before going on, so
//! `teardown` can undo exactly that.
//!
//! Must never: put a secret anywhere but the egress-proxy container's
//! environment, give a container the Docker socket, `privileged` or a host
//! namespace, or copy a CA key into the agent (the plan says which file goes
//! where; this module only follows it).

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkingConfig,
};
use bollard::query_parameters::CreateContainerOptions;

use super::engine::{ApplyError, connect, docker_err, engine_major};
use super::files::{EntryKind, TarEntry, download_file, files_tar, tree_entries, upload};
use super::firewall::{self, HostIsolation};
use super::health::{wait_healthy, wait_log_line};
use super::images;
use super::record::Recorder;
use crate::pki::BottleCas;
use crate::plan::{ContainerPlan, Plan, RoleName, Source};
use crate::progress::Progress;
use crate::secrets::Secrets;

/// Options of `bottle run` that change apply.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run without the host firewall rule when it cannot be added.
    pub allow_host_access: bool,
    /// Attach a TTY (the host's stdin is a terminal).
    pub tty: bool,
    /// The agent's OCI runtime, resolved against the engine (`runtime::resolve`).
    pub agent_runtime: Option<String>,
    /// The manifest's absolute path, a label of the agent's volumes (what
    /// `bottle resume` loads again).
    pub manifest: std::path::PathBuf,
}

/// What apply needs besides the plan (made by `prepare`).
pub struct Inputs<'a> {
    pub secrets: &'a Secrets,
    pub cas: &'a BottleCas,
    /// The workspace, copied into the agent before it starts.
    pub workspace_tar: Option<Vec<u8>>,
    /// Where every created resource is written down.
    pub record: &'a Recorder,
    /// The agent image's build context (`crate::build`), when the plan builds it.
    pub build_context: Option<&'a [u8]>,
}

/// A bottle that is up, its agent created but not started.
pub struct Applied {
    pub docker: Docker,
    /// The agent container's name.
    pub agent: String,
}

/// Connects, makes sure the images exist, chooses how the host is kept out,
/// then brings the bottle up (`bring_up`).
pub async fn apply(
    plan: &Plan,
    inputs: Inputs<'_>,
    opts: &Options,
    progress: &Progress,
) -> Result<Applied, ApplyError> {
    let d = connect().await?;
    images::build_agent(&d, plan, inputs.build_context, progress).await?;
    images::ensure(&d, plan, progress).await?;
    let isolation = firewall::choose_isolation(engine_major(&d).await?, opts.allow_host_access)?;
    let agent = bring_up(&d, plan, inputs, isolation, opts, progress).await?;
    Ok(Applied { docker: d, agent })
}

/// Brings up everything but the agent's start: networks, firewall, sidecars
/// (healthy), and the agent container created with its files. Returns the
/// agent container's name.
async fn bring_up(
    d: &Docker,
    plan: &Plan,
    inputs: Inputs<'_>,
    isolation: HostIsolation,
    opts: &Options,
    progress: &Progress,
) -> Result<String, ApplyError> {
    let Inputs {
        secrets,
        cas,
        mut workspace_tar,
        record: rec,
        build_context: _,
    } = inputs;
    let pid = std::process::id().to_string();
    // Networks.
    let step = progress.step("creating networks");
    for n in &plan.networks {
        let mut labels = HashMap::from([
            ("bottle.id".to_string(), plan.id.clone()),
            ("bottle.network".to_string(), n.role.clone()),
            ("bottle.pid".to_string(), pid.clone()),
        ]);
        labels.insert("bottle.bottle".into(), plan.bottle.clone());
        let mut options = HashMap::new();
        if n.internal && isolation == HostIsolation::GatewayIsolated {
            options.insert(
                "com.docker.network.bridge.gateway_mode_ipv4".to_string(),
                "isolated".to_string(),
            );
        }
        let resp = d
            .create_network(NetworkCreateRequest {
                name: n.name.clone(),
                driver: Some("bridge".into()),
                internal: Some(n.internal),
                enable_ipv6: Some(false),
                labels: Some(labels),
                options: Some(options),
                ..Default::default()
            })
            .await
            .map_err(docker_err(format!("create network {}", n.name)))?;
        rec.update(|r| r.networks.push(n.name.clone()));
        if n.internal && isolation == HostIsolation::Firewall {
            let bridge = format!("br-{}", resp.id.get(..12).unwrap_or(&resp.id));
            let rule = firewall::drop_from_bridge(bridge, &plan.id);
            firewall::add(&rule).map_err(|e| {
                ApplyError::Runtime(format!(
                    "cannot add the host firewall rule for {}: {e}",
                    n.name
                ))
            })?;
            rec.update(|r| r.fw_rules.push(rule));
        }
    }
    step.done();

    let mut agent_name = String::new();
    for c in &plan.containers {
        let step = progress.step(&format!("starting {}", c.role.as_str()));
        let volumes = if c.role == RoleName::Agent {
            super::volumes::ensure(d, plan, &opts.manifest, rec).await?;
            super::volumes::binds(plan)
        } else {
            Vec::new()
        };
        create(d, c, secrets, opts, rec, volumes).await?;
        let mut files = Vec::new();
        for f in &c.files {
            let path = f.path.trim_start_matches('/').to_string();
            let data = match &f.source {
                Source::Rendered(name) => plan
                    .rendered
                    .get(name)
                    .cloned()
                    .unwrap_or_default()
                    .into_bytes(),
                Source::InnerCaCert => cas.inner.cert_pem.clone().into_bytes(),
                Source::InnerCaBundle => cas.inner.bundle_pem().into_bytes(),
                Source::OuterCaCert => cas.outer.cert_pem.clone().into_bytes(),
                Source::OuterCaBundle => cas.outer.bundle_pem().into_bytes(),
                Source::OuterCaKeySec1 => cas.outer.key_sec1_pem.clone().into_bytes(),
                Source::AgentTrustBundle => {
                    let mut b = download_file(d, &c.name, &f.path).await?;
                    if !b.ends_with(b"\n") && !b.is_empty() {
                        b.push(b'\n');
                    }
                    b.extend_from_slice(cas.inner.cert_pem.as_bytes());
                    b
                }
                Source::HostFiles(paths) => {
                    let mut b = Vec::new();
                    for p in paths {
                        let mut x = std::fs::read(p).map_err(|source| ApplyError::Io {
                            what: format!("read {}", p.display()),
                            source,
                        })?;
                        if !x.ends_with(b"\n") {
                            x.push(b'\n');
                        }
                        b.extend(x);
                    }
                    b
                }
                Source::Directory => {
                    files.push(TarEntry::dir(path, f.mode, f.uid, f.gid));
                    continue;
                }
                Source::HostTree(root) => {
                    files.push(TarEntry::dir(path.clone(), f.mode, f.uid, f.gid));
                    tree_entries(root, &path, f.uid, f.gid, &mut files).map_err(|source| {
                        ApplyError::Io {
                            what: format!("copy {}", root.display()),
                            source,
                        }
                    })?;
                    continue;
                }
            };
            files.push(TarEntry {
                path,
                mode: f.mode,
                uid: f.uid,
                gid: f.gid,
                kind: EntryKind::File(data),
            });
        }
        upload(
            d,
            &c.name,
            files_tar(&files).map_err(|source| ApplyError::Io {
                what: "build the file archive".into(),
                source,
            })?,
        )
        .await?;
        if c.role == RoleName::Agent {
            if let Some(tar) = workspace_tar.take() {
                upload(d, &c.name, tar).await?;
            } else if plan.resumed {
                refresh_git_remotes(d, plan, &c.name).await?;
            }
            agent_name = c.name.clone();
            step.done();
            break;
        }
        d.start_container(&c.name, None)
            .await
            .map_err(docker_err(format!("start {}", c.name)))?;
        // Engine 28+ isolated networks have no host address: the host cannot
        // probe a container there, so readiness comes from its log instead.
        let host_blind = isolation == HostIsolation::GatewayIsolated
            && plan
                .networks
                .iter()
                .any(|n| n.internal && c.health.network() == Some(n.name.as_str()));
        if host_blind {
            wait_log_line(d, c, secrets, "listening").await?;
        } else {
            wait_healthy(d, c, secrets).await?;
        }
        step.done();
    }
    Ok(agent_name)
}

/// A resumed workspace keeps its `.git/config`, with the remotes of the
/// manifest as it is now (git-gate's, `render::git_config::with_remotes`).
/// A workspace without one (no repository) is left alone.
async fn refresh_git_remotes(d: &Docker, plan: &Plan, agent: &str) -> Result<(), ApplyError> {
    let path = format!("{}/.git/config", crate::render::paths::WORKSPACE);
    let Ok(old) = download_file(d, agent, &path).await else {
        return Ok(());
    };
    let remotes: Vec<(String, String)> = plan
        .git_remotes
        .iter()
        .map(|g| (g.name.clone(), g.url.clone()))
        .collect();
    let new = crate::render::git_config::with_remotes(&String::from_utf8_lossy(&old), &remotes);
    let uid = crate::plan::AGENT_UID;
    let tar = files_tar(&[TarEntry::file(
        path.trim_start_matches('/'),
        0o644,
        uid,
        uid,
        new.into_bytes(),
    )])
    .map_err(|source| ApplyError::Io {
        what: "build the .git/config archive".into(),
        source,
    })?;
    upload(d, agent, tar).await
}

async fn create(
    d: &Docker,
    c: &ContainerPlan,
    secrets: &Secrets,
    opts: &Options,
    rec: &Recorder,
    volumes: Vec<String>,
) -> Result<(), ApplyError> {
    let mut env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for slot in c.secret_env.keys() {
        let v = secrets
            .0
            .get(slot)
            .ok_or_else(|| ApplyError::Config(format!("no value for {slot}")))?;
        env.push(format!("{slot}={}", v.expose()));
    }
    let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
    labels.insert("bottle.pid".into(), std::process::id().to_string());
    let first = c
        .networks
        .first()
        .ok_or_else(|| ApplyError::Runtime(format!("{} has no network", c.name)))?;
    let is_agent = c.role == RoleName::Agent;
    // Bind mounts come from the bottle's state directory, never elsewhere;
    // the agent's volumes (`volumes`) are the bottle's own named volumes.
    let state_dir = rec.snapshot().state_dir;
    let binds: Vec<String> = volumes
        .into_iter()
        .chain(c.mounts.iter().map(|m| {
            format!(
                "{}:{}:{}",
                state_dir.join(&m.source).display(),
                m.target,
                if m.read_only { "ro" } else { "rw" }
            )
        }))
        .collect();
    let body = ContainerCreateBody {
        image: Some(c.image.clone()),
        cmd: (!c.command.is_empty()).then(|| c.command.clone()),
        env: Some(env),
        user: c.security.user.clone(),
        labels: Some(labels),
        hostname: Some(c.role.as_str().to_string()),
        tty: Some(is_agent && opts.tty),
        open_stdin: Some(is_agent && opts.tty),
        stdin_once: Some(is_agent && opts.tty),
        attach_stdin: Some(is_agent && opts.tty),
        attach_stdout: Some(is_agent),
        attach_stderr: Some(is_agent),
        host_config: Some(HostConfig {
            network_mode: Some(first.network.clone()),
            binds: (!binds.is_empty()).then_some(binds),
            cap_drop: Some(c.security.cap_drop.clone()),
            cap_add: (!c.security.cap_add.is_empty()).then(|| c.security.cap_add.clone()),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            privileged: Some(false),
            init: Some(is_agent),
            dns: is_agent.then(|| vec![crate::plan::AGENT_DNS.to_string()]),
            pids_limit: Some(4096),
            runtime: if is_agent {
                opts.agent_runtime.clone()
            } else {
                None
            },
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                first.network.clone(),
                EndpointSettings {
                    aliases: Some(first.aliases.clone()),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    d.create_container(
        Some(CreateContainerOptions {
            name: Some(c.name.clone()),
            ..Default::default()
        }),
        body,
    )
    .await
    .map_err(docker_err(format!(
        "create container {} (image {})",
        c.name, c.image
    )))?;
    rec.update(|r| r.containers.push(c.name.clone()));
    for a in c.networks.iter().skip(1) {
        d.connect_network(
            &a.network,
            NetworkConnectRequest {
                container: c.name.clone(),
                endpoint_config: Some(EndpointSettings {
                    aliases: Some(a.aliases.clone()),
                    ..Default::default()
                }),
            },
        )
        .await
        .map_err(docker_err(format!("connect {} to {}", c.name, a.network)))?;
    }
    Ok(())
}
