//! The manifest's model: the typed, validated values `manifest` produces and
//! `plan` and `render` read. A value that exists is valid ("parse, don't
//! validate"); the checks and their messages live in `manifest/`.
//!
//! Must never: hold a secret value (only the *names* of host variables).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The default pipelock image; pinned so a bottle never runs an unknown build.
pub const DEFAULT_PIPELOCK_IMAGE: &str = "ghcr.io/luckypipewrench/pipelock:2.3.0";
/// The default squid image, built offline by `docker/build-images.sh`.
pub const DEFAULT_SQUID_IMAGE: &str = "bottle-squid:latest";
/// The default agent image, built offline by `docker/build-images.sh`.
pub const DEFAULT_AGENT_IMAGE: &str = "bottle-agent:latest";

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it was read from (for messages).
    pub file: PathBuf,
    pub bottles: BTreeMap<String, Bottle>,
    pub agents: BTreeMap<String, Agent>,
}

/// Which outer proxy stands between egress-proxy and the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterProxyKind {
    Pipelock,
    Squid,
}

impl OuterProxyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OuterProxyKind::Pipelock => "pipelock",
            OuterProxyKind::Squid => "squid",
        }
    }
}

/// One bottle: the sidecars and the policy around an agent.
#[derive(Debug, Clone)]
pub struct Bottle {
    pub name: String,
    /// Hosts reachable without credentials (lower case, no trailing dot).
    pub allow: Vec<String>,
    pub outer_proxy: OuterProxyKind,
    /// The outer proxy's image (a default per kind).
    pub outer_proxy_image: String,
    /// Extra CA files the outer proxy trusts, resolved against the manifest's directory.
    pub outer_proxy_trust: Vec<PathBuf>,
    pub routes: Vec<Route>,
    pub git: Vec<GitEntry>,
    /// The supervise sidecar runs in the bottle and the agent gets its MCP
    /// configuration (SPEC §8, docs/supervise.md).
    pub supervise: bool,
    /// The OCI runtime the agent runs under.
    pub runtime: RuntimeChoice,
}

/// `runtime:` of a bottle: `auto` takes gVisor's `runsc` when the engine has
/// it registered, else `runc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeChoice {
    #[default]
    Auto,
    Runc,
    Runsc,
}

impl RuntimeChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeChoice::Auto => "auto",
            RuntimeChoice::Runc => "runc",
            RuntimeChoice::Runsc => "runsc",
        }
    }
}

impl Bottle {
    /// The distinct `token_ref`s in first-use order, each with the routes
    /// (0-based) naming it: the n-th is slot `EGRESS_PROXY_TOKEN_<n>` (SPEC §6).
    pub fn token_refs(&self) -> Vec<(&str, Vec<usize>)> {
        let mut out: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let Some(a) = &r.auth else { continue };
            match out.iter_mut().find(|(t, _)| *t == a.token_ref) {
                Some((_, routes)) => routes.push(i),
                None => out.push((&a.token_ref, vec![i])),
            }
        }
        out
    }

    /// The token slot of route `i`, if it has a credential.
    pub fn slot_of(&self, i: usize) -> Option<String> {
        self.token_refs()
            .iter()
            .position(|(_, routes)| routes.contains(&i))
            .map(slot_name)
    }
}

/// The name of the n-th token slot, the only name of a secret the routes
/// file and the plan carry.
pub fn slot_name(n: usize) -> String {
    format!("EGRESS_PROXY_TOKEN_{n}")
}

/// A route as the manifest writes it: SPEC §2 fields with the secret by reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub path_allowlist: Vec<String>,
    pub path_denylist: Vec<String>,
    pub methods: Vec<String>,
    pub strip_headers: Vec<String>,
    pub auth: Option<Auth>,
    pub role: Option<Role>,
}

/// Credential injection for a route; `token_ref` names a host environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub scheme: Option<String>,
    pub header: Option<String>,
    pub token_ref: String,
}

/// A route role that changes the agent's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ClaudeCodeOauth,
}

/// A repository served to the agent by git-gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitEntry {
    pub name: String,
    pub upstream: String,
    /// Host path of the ssh identity (`~` expanded, relative to the manifest).
    pub identity_file: PathBuf,
    pub known_host_key: String,
    pub allow_force: bool,
}

/// An agent: which bottle, which image, which command.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub bottle: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// A host directory copied in as the workspace instead of the current git repository.
    pub workdir: Option<PathBuf>,
    /// The agent's prompt, written into the agent readable only by it.
    pub prompt: Option<PromptSource>,
    /// Skills copied from the host's `~/.claude/skills/<name>`.
    pub skills: Vec<Skill>,
    /// A Dockerfile `bottle` builds the agent's image from (then `image` is its tag).
    pub build: Option<AgentBuild>,
}

/// Where the agent's prompt comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptSource {
    Text(String),
    /// A host file (resolved against the manifest's directory).
    File(PathBuf),
}

/// A skill: its name and the host directory it is copied from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    pub name: String,
    pub path: PathBuf,
}

/// `agents.<a>.build`: host paths, resolved against the manifest's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBuild {
    pub dockerfile: PathBuf,
    pub context: PathBuf,
}
