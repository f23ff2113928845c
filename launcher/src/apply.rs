//! Apply: the only code that talks to Docker (via bollard). It executes a
//! `Plan` — networks, host firewall rules, files, containers, health waits —
//! and writes down every resource it creates in a `Record` (persisted in the
//! bottle's state directory) so `teardown` can undo exactly that, even after
//! `bottle run` was killed.
//!
//! Must never: put a secret anywhere but the egress-proxy container's
//! environment (no argv, label, file, log line or error message), give a
//! container the Docker socket, `privileged` or a host namespace, or copy a
//! CA key into the agent.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkingConfig,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, DownloadFromContainerOptions, LogsOptions,
    UploadToContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::pki::BottleCas;
use crate::plan::{ContainerPlan, Health, Plan, RoleName, Source};
use crate::progress::Progress;

/// A secret value: never printed (Debug and Display redact).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Token values by slot name, read from the host environment at run time.
#[derive(Debug, Default, Clone)]
pub struct Secrets(pub BTreeMap<String, Secret>);

impl Secrets {
    /// Reads every slot's `token_ref` (the plan already checked they are set).
    pub fn from_env(plan: &Plan, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ApplyError> {
        let mut m = BTreeMap::new();
        for s in &plan.token_slots {
            match env(&s.token_ref) {
                Some(v) if !v.trim().is_empty() => {
                    m.insert(s.slot.clone(), Secret(v));
                }
                _ => {
                    return Err(ApplyError::Config(format!(
                        "host variable `{}` is not set or empty; fix: export it before `bottle run`",
                        s.token_ref
                    )));
                }
            }
        }
        Ok(Secrets(m))
    }

    /// Replaces any secret value in `text` (used on logs we show).
    pub fn redact(&self, text: &str) -> String {
        let mut t = text.to_string();
        for s in self.0.values() {
            if !s.0.is_empty() {
                t = t.replace(&s.0, "<redacted>");
            }
        }
        t
    }
}

/// Errors of apply; messages never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Config(String),
    #[error("docker: {what}: {source}")]
    Docker {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{0}")]
    Runtime(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl ApplyError {
    /// Exit code: 2 for configuration/usage problems, 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            ApplyError::Config(_) => 2,
            _ => 1,
        }
    }
}

fn docker_err(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> ApplyError {
    let what = what.into();
    move |source| ApplyError::Docker { what, source }
}

/// One iptables rule, as the arguments after `-I`/`-D`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FwRule {
    pub chain: String,
    pub args: Vec<String>,
}

/// What apply created, in creation order; persisted as `record.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The `bottle run` process that owns the bottle (orphan when gone).
    pub pid: u32,
    pub state_dir: PathBuf,
    pub networks: Vec<String>,
    pub containers: Vec<String>,
    pub fw_rules: Vec<FwRule>,
}

/// Shared record, saved after each change.
#[derive(Clone)]
pub struct Recorder(Arc<Mutex<Record>>);

impl Recorder {
    pub fn new(r: Record) -> Self {
        Recorder(Arc::new(Mutex::new(r)))
    }
    pub fn snapshot(&self) -> Record {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }
    fn update(&self, f: impl FnOnce(&mut Record)) {
        if let Ok(mut r) = self.0.lock() {
            f(&mut r);
            let _ = save_record(&r);
        }
    }
}

pub fn save_record(r: &Record) -> std::io::Result<()> {
    let tmp = r.state_dir.join("record.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(r).unwrap_or_default())?;
    std::fs::rename(tmp, r.state_dir.join("record.json"))
}

/// Options of `bottle run` that change apply.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run without the host firewall rule when it cannot be added.
    pub allow_host_access: bool,
    /// Attach a TTY (the host's stdin is a terminal).
    pub tty: bool,
}

/// Connects to the local engine, negotiating the API version (20.10 speaks 1.41).
pub async fn connect() -> Result<Docker, ApplyError> {
    let d = Docker::connect_with_local_defaults()
        .map_err(docker_err("connect to the Docker engine"))?;
    d.negotiate_version()
        .await
        .map_err(docker_err("talk to the Docker engine (is it running?)"))
}

/// The engine's major version (e.g. 20 for 20.10.24).
pub async fn engine_major(d: &Docker) -> Result<u32, ApplyError> {
    let v = d
        .version()
        .await
        .map_err(docker_err("read the engine version"))?;
    Ok(v.version
        .as_deref()
        .and_then(|s| s.split('.').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

/// How the internal networks keep the host out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIsolation {
    /// Engine 28+: `gateway_mode_ipv4=isolated`.
    GatewayIsolated,
    /// Older engines: an INPUT-chain DROP rule per internal bridge.
    Firewall,
    /// The user accepted the risk (`--allow-host-access`).
    None,
}

/// Decides the isolation, refusing when it cannot be had and the user did not accept the risk.
pub fn choose_isolation(engine_major: u32, opts: &Options) -> Result<HostIsolation, ApplyError> {
    if engine_major >= 28 {
        return Ok(HostIsolation::GatewayIsolated);
    }
    match iptables(&["-w", "-S", "INPUT"]) {
        Ok(_) => Ok(HostIsolation::Firewall),
        Err(why) if opts.allow_host_access => {
            eprintln!(
                "bottle: warning: the host is reachable from the bottle's internal networks ({why}); continuing because of --allow-host-access"
            );
            Ok(HostIsolation::None)
        }
        Err(why) => Err(ApplyError::Config(format!(
            "cannot keep the host unreachable from the bottle: Docker {engine_major} needs an iptables INPUT rule and `iptables` failed ({why}); fix: run bottle as root (or with CAP_NET_ADMIN), or pass --allow-host-access to accept the risk"
        ))),
    }
}

/// Runs iptables; Err holds a one-line reason.
pub fn iptables(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("iptables")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| !l.starts_with('#'))
            .unwrap_or("iptables failed")
            .trim()
            .to_string())
    }
}

/// The comment that marks a bottle's firewall rules.
pub fn fw_comment(id: &str) -> String {
    format!("bottle:{id}")
}

/// Brings up everything but the agent's start: networks, firewall, sidecars
/// (healthy), and the agent container created with its files. Returns the
/// agent container's name.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
pub async fn bring_up(
    d: &Docker,
    plan: &Plan,
    secrets: &Secrets,
    cas: &BottleCas,
    mut workspace_tar: Option<Vec<u8>>,
    isolation: HostIsolation,
    opts: &Options,
    rec: &Recorder,
    progress: &Progress,
) -> Result<String, ApplyError> {
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
            let rule = FwRule {
                chain: "INPUT".into(),
                args: vec![
                    "-i".into(),
                    bridge,
                    "-m".into(),
                    "conntrack".into(),
                    "!".into(),
                    "--ctstate".into(),
                    "ESTABLISHED,RELATED".into(),
                    "-m".into(),
                    "comment".into(),
                    "--comment".into(),
                    fw_comment(&plan.id),
                    "-j".into(),
                    "DROP".into(),
                ],
            };
            let mut a: Vec<&str> = vec!["-w", "-I", &rule.chain];
            a.extend(rule.args.iter().map(String::as_str));
            iptables(&a).map_err(|e| {
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
        create(d, plan, c, secrets, opts, rec).await?;
        let mut files = Vec::new();
        for f in &c.files {
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
            };
            files.push((
                f.path.trim_start_matches('/').to_string(),
                f.mode,
                f.uid,
                f.gid,
                data,
            ));
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

async fn create(
    d: &Docker,
    plan: &Plan,
    c: &ContainerPlan,
    secrets: &Secrets,
    opts: &Options,
    rec: &Recorder,
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
            cap_drop: Some(c.security.cap_drop.clone()),
            cap_add: (!c.security.cap_add.is_empty()).then(|| c.security.cap_add.clone()),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            privileged: Some(false),
            init: Some(is_agent),
            dns: is_agent.then(|| vec![crate::plan::AGENT_DNS.to_string()]),
            pids_limit: Some(4096),
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
    let _ = plan;
    Ok(())
}

/// A tar of files at absolute paths (leading `/` stripped), without directory
/// entries so existing directories keep their owners.
pub fn files_tar(files: &[(String, u32, u64, u64, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, mode, uid, gid, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(*mode);
        h.set_uid(*uid);
        h.set_gid(*gid);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, path, &data[..])?;
    }
    b.into_inner()
}

async fn upload(d: &Docker, name: &str, tar: Vec<u8>) -> Result<(), ApplyError> {
    d.upload_to_container(
        name,
        Some(UploadToContainerOptions {
            path: "/".into(),
            ..Default::default()
        }),
        bollard::body_full(tar.into()),
    )
    .await
    .map_err(docker_err(format!("copy files into {name}")))
}

/// One file's content from a (created) container.
async fn download_file(d: &Docker, name: &str, path: &str) -> Result<Vec<u8>, ApplyError> {
    let mut s = d.download_from_container(
        name,
        Some(DownloadFromContainerOptions { path: path.into() }),
    );
    let mut tar = Vec::new();
    while let Some(chunk) = s.next().await {
        tar.extend_from_slice(&chunk.map_err(docker_err(format!("read {path} from {name}")))?);
    }
    let mut a = tar::Archive::new(&tar[..]);
    let entries = a.entries().map_err(|source| ApplyError::Io {
        what: format!("read {path} archive"),
        source,
    })?;
    for e in entries {
        let mut e = e.map_err(|source| ApplyError::Io {
            what: format!("read {path} archive"),
            source,
        })?;
        if e.header().entry_type().is_file() {
            let mut v = Vec::new();
            e.read_to_end(&mut v).map_err(|source| ApplyError::Io {
                what: format!("read {path}"),
                source,
            })?;
            return Ok(v);
        }
    }
    Err(ApplyError::Runtime(format!(
        "{path} in image of {name} is not a regular file"
    )))
}

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

async fn running(d: &Docker, name: &str) -> bool {
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
async fn wait_log_line(
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
                "{} ({}) exited during start-up; its last log lines:\n{}",
                c.role.as_str(),
                c.name,
                logs.trim_end()
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(ApplyError::Runtime(format!(
        "{} ({}) did not log `{needle}` in 90 s",
        c.role.as_str(),
        c.name
    )))
}

/// Waits (bounded) until a sidecar answers its health check.
async fn wait_healthy(d: &Docker, c: &ContainerPlan, secrets: &Secrets) -> Result<(), ApplyError> {
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
            let hint = if c.role == RoleName::EgressProxy {
                "\n(routes[N] in routes.json is egress_proxy.routes[N] of the manifest; indexes past them are `allow` hosts)"
            } else {
                ""
            };
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
        "{} ({}) did not become healthy in 90 s ({last}); its last log lines:\n{}",
        c.role.as_str(),
        c.name,
        logs.trim_end()
    )))
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

/// The per-bottle state directory root: `$BOTTLE_STATE_DIR`, else
/// `$XDG_STATE_HOME/bottle`, else `~/.local/state/bottle`.
pub fn state_root() -> PathBuf {
    if let Some(p) = std::env::var_os("BOTTLE_STATE_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_STATE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("bottle");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/state/bottle")
}

/// Creates the bottle's state directory (0700) and writes the CA material
/// there (keys 0600), so an operator can inspect a `--keep` bottle.
pub fn write_state(dir: &Path, cas: &BottleCas) -> Result<(), ApplyError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |what: &str| {
        let what = what.to_string();
        move |source| ApplyError::Io { what, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create the state directory"))?;
    for (name, data, mode) in [
        ("proxy-ca.pem", cas.inner.cert_pem.as_str(), 0o644),
        ("proxy-ca-key.pem", cas.inner.key_pkcs8_pem.as_str(), 0o600),
        ("outer-ca.pem", cas.outer.cert_pem.as_str(), 0o644),
        ("outer-ca-key.pem", cas.outer.key_sec1_pem.as_str(), 0o600),
    ] {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(dir.join(name))
            .map_err(io("write CA files"))?;
        f.write_all(data.as_bytes()).map_err(io("write CA files"))?;
    }
    Ok(())
}

/// A fresh bottle id: `<bottle>-<8 hex>`.
pub fn new_id(bottle: &str) -> String {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    format!("{bottle}-{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-value".into());
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        let ss = Secrets(BTreeMap::from([("EGRESS_PROXY_TOKEN_0".to_string(), s)]));
        assert!(!format!("{ss:?}").contains("hunter2"));
        assert_eq!(ss.redact("a hunter2-value b"), "a <redacted> b");
    }

    #[test]
    fn files_tar_has_no_directory_entries() {
        let t = files_tar(&[("etc/x/y".into(), 0o600, 65534, 65534, b"k".to_vec())]).unwrap();
        let mut a = tar::Archive::new(&t[..]);
        let e: Vec<_> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                    e.header().uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(e, vec![("etc/x/y".to_string(), 0o600, 65534)]);
    }

    #[test]
    fn ids_are_unique_and_docker_safe() {
        let a = new_id("dev");
        assert_ne!(a, new_id("dev"));
        assert!(a.starts_with("dev-") && a.len() == 12);
    }
}
