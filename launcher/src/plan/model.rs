//! The `Plan` value: pure data saying everything `apply` creates. It is what
//! `bottle plan --json` prints (keys are stable: add, never rename) and the
//! one input of every "apply" (Docker today; rendered objects next).
//!
//! Must never: hold a secret value (only `token_ref` names and slot names).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// The egress-proxy port inside the bottle.
pub const PROXY_PORT: u16 = 9099;
/// git daemon port of git-gate.
pub const GATE_PORT: u16 = 9418;
/// The agent's uid/gid in bottle-agent.
pub const AGENT_UID: u64 = 1000;
/// The agent's only upstream DNS server: its own loopback, where nothing
/// answers. Docker's embedded resolver still answers the bottle's names and
/// forwards every other query there, inside the agent's network namespace, so
/// none reaches the host's resolver (CVE-2024-29018) or leaves the bottle.
pub const AGENT_DNS: &str = "127.0.0.1";
/// egress-proxy runs as nobody.
pub const PROXY_UID: u64 = 65534;
/// git-gate's user (docker/git-gate/README.md).
pub const GATE_UID: u64 = 9418;
/// The supervise sidecar's uid (the image's `65534:65534`); owns `proposals/`.
pub const SUPERVISE_UID: u64 = 65534;
/// The supervise sidecar's MCP port (`supervise:9100`).
pub const SUPERVISE_PORT: u16 = 9100;
/// The supervise state directory, inside the bottle's state directory.
pub const SUPERVISE_DIR: &str = "supervise";
/// Where egress-proxy reads the live routes of a supervise bottle (a
/// read-only directory mount: renames in it are seen).
pub const LIVE_ROUTES_DIR: &str = "/etc/egress-proxy/live";
/// Placeholder given to the agent for the `claude_code_oauth` role: not a secret;
/// egress-proxy replaces the header with the real token.
pub const OAUTH_PLACEHOLDER: &str = "bottle-placeholder-not-a-secret";

/// Names of the bottle's Docker resources.
pub fn resource_name(id: &str, what: &str) -> String {
    format!("bottle-{id}-{what}")
}

/// A container role, also the `bottle.role` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    OuterProxy,
    GitGate,
    EgressProxy,
    /// The supervise MCP sidecar (SPEC §8), only with `supervise: true`.
    Supervise,
    Agent,
}

impl RoleName {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::OuterProxy => "outer-proxy",
            RoleName::GitGate => "git-gate",
            RoleName::EgressProxy => "egress-proxy",
            RoleName::Supervise => "supervise",
            RoleName::Agent => "agent",
        }
    }
}

/// The plan `apply` executes.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub id: String,
    pub bottle: String,
    pub agent: String,
    pub networks: Vec<NetworkPlan>,
    /// In start order.
    pub containers: Vec<ContainerPlan>,
    pub token_slots: Vec<TokenSlot>,
    pub outer_proxy: OuterProxyPlan,
    pub git_remotes: Vec<GitRemote>,
    pub workspace: Option<WorkspacePlan>,
    /// Rendered configuration files by name (routes.json, squid.conf, ...).
    pub rendered: BTreeMap<String, String>,
    /// CAs are minted by `bottle run`, never by `plan`.
    pub cas: String,
    /// The agent's runtime as the manifest asks (`auto`, `runc`, `runsc`);
    /// `auto` is resolved against the engine at run.
    pub runtime: String,
    /// The agent's prompt: where it comes from, and its path in the agent.
    pub prompt: Option<PromptPlan>,
    /// Skills copied into the agent: name and host directory.
    pub skills: Vec<SkillPlan>,
    /// The agent image `bottle` builds, when the manifest has `build:`.
    pub build: Option<BuildPlan>,
    /// The agent gets the supervise MCP configuration.
    pub supervise: bool,
    /// The bottle's `allow` hosts (supervise's view lists them).
    #[serde(skip)]
    pub allow: Vec<String>,
    /// The routes as the agent meets them: manifest routes, then one plain
    /// route per `allow` host (what the preflight shows), then the kept
    /// approvals' new routes.
    pub routes: Vec<RoutePlan>,
    /// Approvals kept for this bottle's name (`bottle supervise approve` in
    /// an earlier run) that this plan starts with.
    pub approved_earlier: Vec<super::approved::ApprovedEarlier>,
    /// Kept approvals that no longer apply to the manifest, and why.
    pub approvals_skipped: Vec<super::approved::SkippedApproval>,
    /// The agent's home and workspace volumes (kept after the run, so
    /// `bottle resume` continues the bottle; docs/agents.md).
    pub volumes: Vec<VolumePlan>,
    /// This run resumes the bottle: its volumes exist and the workspace is
    /// not copied from the host again.
    pub resumed: bool,
}

/// A Docker volume mounted into the agent, named after the bottle id.
#[derive(Debug, Clone, Serialize)]
pub struct VolumePlan {
    /// `home` or `workspace`; also the volume's `bottle.role` label.
    pub role: String,
    pub name: String,
    /// The mount point in the agent.
    pub target: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoutePlan {
    pub host: String,
    pub path_allowlist: Vec<String>,
    pub path_denylist: Vec<String>,
    pub methods: Vec<String>,
    /// The token slot whose credential egress-proxy adds, if any.
    pub slot: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptPlan {
    /// `text (N bytes)` or the host file.
    pub source: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkillPlan {
    pub name: String,
    pub source: PathBuf,
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildPlan {
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    /// `bottle-agent-<agent>:<content hash>`.
    pub tag: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkPlan {
    /// `agent`, `relay` or `egress`.
    pub role: String,
    pub name: String,
    pub internal: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    pub network: String,
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerPlan {
    pub role: RoleName,
    pub name: String,
    pub image: String,
    /// The first is the network the container is created on; the others are
    /// connected before start (API 1.41 takes one network at create).
    pub networks: Vec<Attachment>,
    pub command: Vec<String>,
    /// Non-secret environment, name → value.
    pub env: BTreeMap<String, String>,
    /// Secret environment: name → the host variable it comes from. Only egress-proxy has any.
    pub secret_env: BTreeMap<String, String>,
    pub files: Vec<FilePlan>,
    /// Bind mounts from the bottle's state directory (supervise only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountPlan>,
    pub labels: BTreeMap<String, String>,
    pub security: Security,
    /// How `bottle run` decides it is up.
    pub health: Health,
}

#[derive(Debug, Clone, Serialize)]
pub struct Security {
    pub user: Option<String>,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privileges: bool,
    pub privileged: bool,
    pub docker_socket: bool,
    pub host_namespaces: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Health {
    /// `GET http://<ip on network>:<port><path>` answers 200.
    Http {
        network: String,
        port: u16,
        path: String,
    },
    /// A TCP connect to `<ip on network>:<port>` succeeds.
    Tcp { network: String, port: u16 },
    /// The agent: attached, not waited on.
    None,
}

impl Health {
    /// The network the check runs on, if any.
    pub fn network(&self) -> Option<&str> {
        match self {
            Health::Http { network, .. } | Health::Tcp { network, .. } => Some(network),
            Health::None => None,
        }
    }
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "from")]
pub enum Source {
    /// One of `Plan::rendered`.
    Rendered(String),
    InnerCaCert,
    /// Cert + PKCS#8 key (egress-proxy `--ca`).
    InnerCaBundle,
    OuterCaCert,
    /// Cert + key in one file (squid `tls-cert=`).
    OuterCaBundle,
    /// SEC1 key (pipelock).
    OuterCaKeySec1,
    /// The image's system bundle plus the inner CA certificate.
    AgentTrustBundle,
    /// Host files concatenated (outer_proxy_trust).
    HostFiles(Vec<PathBuf>),
    /// A host directory copied whole (regular files, directories and
    /// symlinks as links, never followed), every entry owned by the file's
    /// uid/gid; `mode` applies to the top directory.
    HostTree(PathBuf),
    /// An empty directory owned by the file's uid/gid.
    Directory,
}

/// A host directory bind-mounted into a container. `source` is relative to
/// the bottle's state directory (known at prepare, not at plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountPlan {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilePlan {
    pub path: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub source: Source,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenSlot {
    pub slot: String,
    pub token_ref: String,
    /// Route indexes (0-based) sharing the slot.
    pub routes: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OuterProxyPlan {
    pub kind: String,
    pub image: String,
    pub port: u16,
    pub allowlist: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GitRemote {
    pub name: String,
    pub url: String,
    pub upstream: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkspacePlan {
    pub source: PathBuf,
    pub files: usize,
    pub warnings: Vec<String>,
}
