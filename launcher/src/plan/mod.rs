//! The plan: a pure function from (manifest, agent name, bottle id, host
//! environment lookup, workspace) to a `Plan` value saying everything `apply`
//! will create — networks, containers (image, networks, aliases, env names,
//! files, labels, security options), token slots, rendered files, git remotes.
//!
//! Owns: naming (containers, networks, aliases), token slot numbering, the
//! agent's proxy/trust/role environment, and the JSON shape `bottle plan
//! --json` prints (keys are stable: add, never rename).
//!
//! Must never: hold or print a secret value (only `token_ref` names and slot
//! names), create anything, or talk to Docker. Unset/empty `token_ref`s fail here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::manifest::{Bottle, Manifest, OuterProxyKind, Role};
use crate::render::{self, paths};
use crate::workspace::WorkspaceInfo;

/// The egress-proxy port inside the bottle.
pub const PROXY_PORT: u16 = 9099;
/// git daemon port of git-gate.
pub const GATE_PORT: u16 = 9418;
/// The agent's uid/gid in bottle-agent.
pub const AGENT_UID: u64 = 1000;
/// egress-proxy runs as nobody.
pub const PROXY_UID: u64 = 65534;
/// git-gate's user (docker/git-gate/README.md).
pub const GATE_UID: u64 = 9418;
/// Placeholder given to the agent for the `claude_code_oauth` role: not a secret;
/// egress-proxy replaces the header with the real token.
pub const OAUTH_PLACEHOLDER: &str = "bottle-placeholder-not-a-secret";

/// A container role, also the `bottle.role` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    OuterProxy,
    GitGate,
    EgressProxy,
    Agent,
}

impl RoleName {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::OuterProxy => "outer-proxy",
            RoleName::GitGate => "git-gate",
            RoleName::EgressProxy => "egress-proxy",
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

/// Why there is no plan.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{file}: agents: no agent `{agent}`; fix: use one of: {known}")]
    UnknownAgent {
        file: String,
        agent: String,
        known: String,
    },
    #[error(
        "{file}: {path}: host variable `{var}` is {state}; fix: export {var}=<secret> before `bottle run` (or remove the route)"
    )]
    TokenRef {
        file: String,
        path: String,
        var: String,
        state: &'static str,
    },
    #[error("{file}: {path}: file {file_path} does not exist; fix: point it at an existing file")]
    MissingFile {
        file: String,
        path: String,
        file_path: String,
    },
}

/// Everything that can stop a plan, all at once.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct PlanErrors(pub Vec<PlanError>);

/// A fresh bottle id, `<bottle>-<8 hex>`, from the operating system's random
/// source. The plan itself stays a pure function of the id it is given.
pub fn new_id(bottle: &str) -> Result<String, getrandom::Error> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b)?;
    Ok(format!(
        "{bottle}-{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3]
    ))
}

/// Names of the bottle's Docker resources.
pub fn resource_name(id: &str, what: &str) -> String {
    format!("bottle-{id}-{what}")
}

/// Builds the plan. `env` looks up host environment variables (the values are
/// only checked for presence here); `file_exists` checks host files.
pub fn plan(
    m: &Manifest,
    agent_name: &str,
    id: &str,
    env: &dyn Fn(&str) -> Option<String>,
    file_exists: &dyn Fn(&std::path::Path) -> bool,
    workspace: Option<&WorkspaceInfo>,
) -> Result<Plan, PlanErrors> {
    let file = m.file.display().to_string();
    let Some(agent) = m.agents.get(agent_name) else {
        return Err(PlanErrors(vec![PlanError::UnknownAgent {
            file,
            agent: agent_name.to_string(),
            known: m.agents.keys().cloned().collect::<Vec<_>>().join(", "),
        }]));
    };
    let Some(b) = m.bottles.get(&agent.bottle) else {
        return Err(PlanErrors(vec![PlanError::UnknownAgent {
            file,
            agent: agent_name.to_string(),
            known: m.agents.keys().cloned().collect::<Vec<_>>().join(", "),
        }]));
    };
    let mut errors = Vec::new();
    let bp = format!("bottles.{}", b.name);

    // Token slots, numbered in first-use order.
    let mut slots: Vec<TokenSlot> = Vec::new();
    let mut route_slot: BTreeMap<usize, String> = BTreeMap::new();
    for (i, r) in b.routes.iter().enumerate() {
        let Some(a) = &r.auth else { continue };
        let idx = match slots.iter().position(|s| s.token_ref == a.token_ref) {
            Some(p) => p,
            None => {
                let state = match env(&a.token_ref) {
                    None => Some("not set"),
                    Some(v) if v.trim().is_empty() => Some("empty"),
                    Some(_) => None,
                };
                if let Some(state) = state {
                    errors.push(PlanError::TokenRef {
                        file: file.clone(),
                        path: format!("{bp}.egress_proxy.routes[{i}].auth.token_ref"),
                        var: a.token_ref.clone(),
                        state,
                    });
                }
                slots.push(TokenSlot {
                    slot: format!("EGRESS_PROXY_TOKEN_{}", slots.len()),
                    token_ref: a.token_ref.clone(),
                    routes: Vec::new(),
                });
                slots.len() - 1
            }
        };
        slots[idx].routes.push(i);
        route_slot.insert(i, slots[idx].slot.clone());
    }
    for (i, t) in b.outer_proxy_trust.iter().enumerate() {
        if !file_exists(t) {
            errors.push(PlanError::MissingFile {
                file: file.clone(),
                path: format!("{bp}.outer_proxy_trust[{i}]"),
                file_path: t.display().to_string(),
            });
        }
    }
    for (i, g) in b.git.iter().enumerate() {
        if !file_exists(&g.identity_file) {
            errors.push(PlanError::MissingFile {
                file: file.clone(),
                path: format!("{bp}.git[{i}].identity_file"),
                file_path: g.identity_file.display().to_string(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(PlanErrors(errors));
    }

    let net = |role: &str| resource_name(id, role);
    let networks = vec![
        NetworkPlan {
            role: "agent".into(),
            name: net("agent"),
            internal: true,
        },
        NetworkPlan {
            role: "relay".into(),
            name: net("relay"),
            internal: true,
        },
        NetworkPlan {
            role: "egress".into(),
            name: net("egress"),
            internal: false,
        },
    ];
    let labels = |role: RoleName| {
        BTreeMap::from([
            ("bottle.id".to_string(), id.to_string()),
            ("bottle.role".to_string(), role.as_str().to_string()),
            ("bottle.bottle".to_string(), b.name.clone()),
            ("bottle.agent".to_string(), agent.name.clone()),
        ])
    };
    let hosts = allowlist(b);
    let mut rendered = BTreeMap::new();
    rendered.insert(
        "routes.json".to_string(),
        render::routes::render(b, |i| route_slot.get(&i).cloned()),
    );

    // The outer proxy.
    let (outer_port, outer) = match b.outer_proxy {
        OuterProxyKind::Squid => {
            rendered.insert(
                "squid.conf".into(),
                render::squid::render(&hosts, !b.outer_proxy_trust.is_empty()),
            );
            let mut files = vec![
                FilePlan {
                    path: paths::SQUID_CONF.into(),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    source: Source::Rendered("squid.conf".into()),
                },
                FilePlan {
                    path: paths::SQUID_CA.into(),
                    mode: 0o600,
                    uid: 0,
                    gid: 0,
                    source: Source::OuterCaBundle,
                },
            ];
            if !b.outer_proxy_trust.is_empty() {
                files.push(FilePlan {
                    path: paths::SQUID_TRUST.into(),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    source: Source::HostFiles(b.outer_proxy_trust.clone()),
                });
            }
            let port = render::squid::PORT;
            (
                port,
                ContainerPlan {
                    role: RoleName::OuterProxy,
                    name: resource_name(id, "outer-proxy"),
                    image: b.outer_proxy_image.clone(),
                    networks: vec![
                        Attachment {
                            network: net("relay"),
                            aliases: vec!["outer-proxy".into()],
                        },
                        Attachment {
                            network: net("egress"),
                            aliases: vec![],
                        },
                    ],
                    command: vec![],
                    env: BTreeMap::new(),
                    secret_env: BTreeMap::new(),
                    files,
                    labels: labels(RoleName::OuterProxy),
                    // squid starts as root to set up, then runs as `proxy`.
                    security: security(
                        None,
                        &[
                            "CHOWN",
                            "SETUID",
                            "SETGID",
                            "DAC_OVERRIDE",
                            "FOWNER",
                            "KILL",
                        ],
                    ),
                    health: Health::Tcp {
                        network: net("egress"),
                        port,
                    },
                },
            )
        }
        OuterProxyKind::Pipelock => {
            let injected: Vec<String> = b
                .routes
                .iter()
                .filter_map(|r| r.auth.as_ref())
                .map(|a| a.header.clone().unwrap_or_else(|| "Authorization".into()))
                .collect();
            rendered.insert(
                "pipelock.yaml".into(),
                render::pipelock::render(&hosts, &injected),
            );
            let port = render::pipelock::PORT;
            (
                port,
                ContainerPlan {
                    role: RoleName::OuterProxy,
                    name: resource_name(id, "outer-proxy"),
                    image: b.outer_proxy_image.clone(),
                    networks: vec![
                        Attachment {
                            network: net("relay"),
                            aliases: vec!["outer-proxy".into()],
                        },
                        Attachment {
                            network: net("egress"),
                            aliases: vec![],
                        },
                    ],
                    command: vec![
                        "run".into(),
                        "--config".into(),
                        paths::PIPELOCK_CONF.into(),
                        "--listen".into(),
                        format!("0.0.0.0:{port}"),
                    ],
                    env: BTreeMap::new(),
                    secret_env: BTreeMap::new(),
                    files: vec![
                        FilePlan {
                            path: paths::PIPELOCK_CONF.into(),
                            mode: 0o644,
                            uid: 0,
                            gid: 0,
                            source: Source::Rendered("pipelock.yaml".into()),
                        },
                        FilePlan {
                            path: paths::PIPELOCK_CA.into(),
                            mode: 0o644,
                            uid: 0,
                            gid: 0,
                            source: Source::OuterCaCert,
                        },
                        FilePlan {
                            path: paths::PIPELOCK_KEY.into(),
                            mode: 0o600,
                            uid: 0,
                            gid: 0,
                            source: Source::OuterCaKeySec1,
                        },
                    ],
                    labels: labels(RoleName::OuterProxy),
                    security: security(None, &["NET_BIND_SERVICE"]),
                    health: Health::Http {
                        network: net("egress"),
                        port,
                        path: "/health".into(),
                    },
                },
            )
        }
    };
    let mut containers = vec![outer];

    // git-gate, only with `git:` entries.
    let mut git_remotes = Vec::new();
    if !b.git.is_empty() {
        rendered.insert("git-gate.json".into(), render::git_gate::render(&b.git));
        let mut files = vec![FilePlan {
            path: paths::GATE_CONF.into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            source: Source::Rendered("git-gate.json".into()),
        }];
        for g in &b.git {
            let kh = format!("known_hosts/{}", g.name);
            rendered.insert(kh.clone(), render::git_gate::known_hosts(g));
            files.push(FilePlan {
                path: render::git_gate::known_hosts_path(&g.name),
                mode: 0o644,
                uid: 0,
                gid: 0,
                source: Source::Rendered(kh),
            });
            files.push(FilePlan {
                path: render::git_gate::identity_path(&g.name),
                mode: 0o600,
                uid: GATE_UID,
                gid: GATE_UID,
                source: Source::HostFiles(vec![g.identity_file.clone()]),
            });
            git_remotes.push(GitRemote {
                name: g.name.clone(),
                url: format!("git://git-gate:{GATE_PORT}/{}.git", g.name),
                upstream: g.upstream.clone(),
            });
        }
        containers.push(ContainerPlan {
            role: RoleName::GitGate,
            name: resource_name(id, "git-gate"),
            image: "bottle-git-gate:latest".into(),
            networks: vec![
                Attachment {
                    network: net("agent"),
                    aliases: vec!["git-gate".into()],
                },
                Attachment {
                    network: net("egress"),
                    aliases: vec![],
                },
            ],
            command: vec![],
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            files,
            labels: labels(RoleName::GitGate),
            security: security(None, &[]),
            health: Health::Tcp {
                network: net("egress"),
                port: GATE_PORT,
            },
        });
    }

    // egress-proxy: the agent's only way out.
    containers.push(ContainerPlan {
        role: RoleName::EgressProxy,
        name: resource_name(id, "egress-proxy"),
        image: "egress-proxy:latest".into(),
        networks: vec![
            Attachment {
                network: net("relay"),
                aliases: vec![],
            },
            Attachment {
                network: net("agent"),
                aliases: vec!["egress-proxy".into()],
            },
        ],
        command: vec![
            "--routes".into(),
            paths::ROUTES.into(),
            "--ca".into(),
            paths::PROXY_CA.into(),
            "--listen".into(),
            format!("0.0.0.0:{PROXY_PORT}"),
            "--upstream-proxy".into(),
            format!("http://outer-proxy:{outer_port}"),
        ],
        env: BTreeMap::from([(
            "EGRESS_PROXY_UPSTREAM_CA".to_string(),
            paths::PROXY_UPSTREAM_CA.to_string(),
        )]),
        secret_env: slots
            .iter()
            .map(|s| (s.slot.clone(), s.token_ref.clone()))
            .collect(),
        files: vec![
            FilePlan {
                path: paths::ROUTES.into(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                source: Source::Rendered("routes.json".into()),
            },
            FilePlan {
                path: paths::PROXY_CA.into(),
                mode: 0o600,
                uid: PROXY_UID,
                gid: PROXY_UID,
                source: Source::InnerCaBundle,
            },
            FilePlan {
                path: paths::PROXY_UPSTREAM_CA.into(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                source: Source::OuterCaCert,
            },
        ],
        labels: labels(RoleName::EgressProxy),
        security: security(Some(format!("{PROXY_UID}:{PROXY_UID}")), &[]),
        health: Health::Http {
            network: net("agent"),
            port: PROXY_PORT,
            path: "/healthz".into(),
        },
    });

    // The agent.
    let proxy = format!("http://egress-proxy:{PROXY_PORT}");
    let mut env: BTreeMap<String, String> = agent.env.clone();
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.insert(k.into(), proxy.clone());
    }
    for k in ["NO_PROXY", "no_proxy"] {
        env.insert(k.into(), "git-gate,localhost,127.0.0.1,::1".into());
    }
    env.insert("NODE_EXTRA_CA_CERTS".into(), paths::AGENT_CA.into());
    env.insert("SSL_CERT_FILE".into(), paths::AGENT_BUNDLE.into());
    env.insert("REQUESTS_CA_BUNDLE".into(), paths::AGENT_BUNDLE.into());
    env.insert("GIT_SSL_CAINFO".into(), paths::AGENT_BUNDLE.into());
    if b.routes
        .iter()
        .any(|r| r.role == Some(Role::ClaudeCodeOauth))
    {
        env.insert("CLAUDE_CODE_OAUTH_TOKEN".into(), OAUTH_PLACEHOLDER.into());
        env.insert(
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
            "1".into(),
        );
        env.insert("DISABLE_ERROR_REPORTING".into(), "1".into());
    }
    containers.push(ContainerPlan {
        role: RoleName::Agent,
        name: resource_name(id, "agent"),
        image: agent.image.clone(),
        networks: vec![Attachment {
            network: net("agent"),
            aliases: vec![],
        }],
        command: agent.command.clone(),
        env,
        secret_env: BTreeMap::new(),
        files: vec![
            FilePlan {
                path: paths::AGENT_CA.into(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                source: Source::InnerCaCert,
            },
            FilePlan {
                path: paths::AGENT_BUNDLE.into(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                source: Source::AgentTrustBundle,
            },
        ],
        labels: labels(RoleName::Agent),
        security: security(Some(format!("{AGENT_UID}:{AGENT_UID}")), &[]),
        health: Health::None,
    });

    Ok(Plan {
        id: id.to_string(),
        bottle: b.name.clone(),
        agent: agent.name.clone(),
        networks,
        containers,
        token_slots: slots,
        outer_proxy: OuterProxyPlan {
            kind: b.outer_proxy.as_str().into(),
            image: b.outer_proxy_image.clone(),
            port: outer_port,
            allowlist: hosts,
        },
        git_remotes,
        workspace: workspace.map(|w| WorkspacePlan {
            source: w.root.clone(),
            files: w.files.len(),
            warnings: w.warnings.clone(),
        }),
        rendered,
        cas: "minted at run".into(),
    })
}

fn security(user: Option<String>, cap_add: &[&str]) -> Security {
    Security {
        user,
        cap_drop: vec!["ALL".into()],
        cap_add: cap_add.iter().map(|s| s.to_string()).collect(),
        no_new_privileges: true,
        privileged: false,
        docker_socket: false,
        host_namespaces: false,
    }
}

/// The outer proxy's allowlist: route hosts, then `allow` hosts.
pub fn allowlist(b: &Bottle) -> Vec<String> {
    b.routes
        .iter()
        .map(|r| r.host.clone())
        .chain(b.allow.iter().cloned())
        .collect()
}

impl Plan {
    pub fn container(&self, role: RoleName) -> Option<&ContainerPlan> {
        self.containers.iter().find(|c| c.role == role)
    }

    /// The compact summary `bottle plan` prints for people.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "bottle `{}` for agent `{}` (id {})\n",
            self.bottle, self.agent, self.id
        );
        s.push_str("networks:\n");
        for n in &self.networks {
            s.push_str(&format!(
                "  {:<7} {}{}\n",
                n.role,
                n.name,
                if n.internal {
                    "  (internal, host blocked)"
                } else {
                    ""
                }
            ));
        }
        s.push_str("containers (start order):\n");
        for c in &self.containers {
            let nets: Vec<String> = c
                .networks
                .iter()
                .map(|a| {
                    let short = a
                        .network
                        .rsplit('-')
                        .next()
                        .unwrap_or(&a.network)
                        .to_string();
                    if a.aliases.is_empty() {
                        short
                    } else {
                        format!("{short} as {}", a.aliases.join(","))
                    }
                })
                .collect();
            s.push_str(&format!(
                "  {:<12} {}  image {}  on {}\n",
                c.role.as_str(),
                c.name,
                c.image,
                nets.join(", ")
            ));
            if !c.secret_env.is_empty() {
                let v: Vec<String> = c
                    .secret_env
                    .iter()
                    .map(|(k, r)| format!("{k} <- ${r}"))
                    .collect();
                s.push_str(&format!(
                    "               secrets (env of this container only): {}\n",
                    v.join(", ")
                ));
            }
        }
        if let Some(a) = self.container(RoleName::Agent) {
            s.push_str(&format!(
                "agent env: {}\n",
                a.env.keys().cloned().collect::<Vec<_>>().join(" ")
            ));
            s.push_str(&format!("agent command: {}\n", a.command.join(" ")));
        }
        s.push_str(&format!(
            "outer proxy: {} ({}), allowlist: {}\n",
            self.outer_proxy.kind,
            self.outer_proxy.image,
            self.outer_proxy.allowlist.join(" ")
        ));
        if !self.git_remotes.is_empty() {
            s.push_str("git remotes:\n");
            for g in &self.git_remotes {
                s.push_str(&format!(
                    "  {} -> {} (upstream {})\n",
                    g.name, g.url, g.upstream
                ));
            }
        }
        match &self.workspace {
            Some(w) => {
                s.push_str(&format!(
                    "workspace: {} ({} files) -> /workspace\n",
                    w.source.display(),
                    w.files
                ));
                for x in &w.warnings {
                    s.push_str(&format!("  warning: {x}\n"));
                }
            }
            None => s.push_str("workspace: none\n"),
        }
        s.push_str("CAs: minted at run\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use std::path::Path;

    const M: &str = r#"
bottles:
  dev:
    allow: [pypi.org]
    outer_proxy: squid
    egress_proxy:
      routes:
        - host: api.github.com
          path_allowlist: ["/repos/acme/widget/issues"]
          methods: [GET, POST]
          auth: {scheme: Bearer, token_ref: GH_PAT}
        - host: uploads.github.com
          auth: {scheme: Bearer, token_ref: GH_PAT}
        - host: api.anthropic.com
          auth: {header: x-api-key, token_ref: ANTHROPIC}
          role: claude_code_oauth
        - host: "*.npmjs.org"
    git:
      - name: widget
        upstream: ssh://git@github.com/acme/widget.git
        identity_file: /keys/id
        known_host_key: "github.com ssh-ed25519 AAAA"
agents:
  coder:
    bottle: dev
    env: {TERM: xterm}
"#;

    fn manifest() -> Manifest {
        manifest::parse(M, Path::new("m.yaml"), Path::new("/"), None).unwrap()
    }

    fn env_all(k: &str) -> Option<String> {
        match k {
            "GH_PAT" => Some("ghp_supersecretvalue".into()),
            "ANTHROPIC" => Some("sk-ant-secret".into()),
            _ => None,
        }
    }

    fn the_plan() -> Plan {
        plan(&manifest(), "coder", "dev-0001", &env_all, &|_| true, None).unwrap()
    }

    #[test]
    fn ids_are_unique_and_docker_safe() {
        let a = new_id("dev").unwrap();
        assert_ne!(a, new_id("dev").unwrap());
        assert!(a.starts_with("dev-") && a.len() == 12);
    }

    #[test]
    fn slots_are_shared_and_numbered_in_first_use_order() {
        let p = the_plan();
        let s: Vec<(&str, &str, Vec<usize>)> = p
            .token_slots
            .iter()
            .map(|s| (s.slot.as_str(), s.token_ref.as_str(), s.routes.clone()))
            .collect();
        assert_eq!(
            s,
            vec![
                ("EGRESS_PROXY_TOKEN_0", "GH_PAT", vec![0, 1]),
                ("EGRESS_PROXY_TOKEN_1", "ANTHROPIC", vec![2])
            ]
        );
        let ep = p.container(RoleName::EgressProxy).unwrap();
        assert_eq!(
            ep.secret_env
                .get("EGRESS_PROXY_TOKEN_0")
                .map(String::as_str),
            Some("GH_PAT")
        );
    }

    #[test]
    fn secrets_never_appear_in_the_plan() {
        let p = the_plan();
        let json = serde_json::to_string(&p).unwrap();
        let text = p.summary();
        for secret in ["ghp_supersecretvalue", "sk-ant-secret"] {
            assert!(!json.contains(secret) && !text.contains(secret));
        }
    }

    #[test]
    fn unset_and_empty_token_refs_fail_naming_the_variable() {
        let env = |k: &str| {
            if k == "GH_PAT" {
                Some("  ".to_string())
            } else {
                None
            }
        };
        let e = plan(&manifest(), "coder", "x", &env, &|_| true, None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(
                "bottles.dev.egress_proxy.routes[0].auth.token_ref: host variable `GH_PAT` is empty"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("routes[2].auth.token_ref: host variable `ANTHROPIC` is not set"),
            "{msg}"
        );
        assert_eq!(e.0.len(), 2, "a shared token_ref is reported once");
    }

    #[test]
    fn unknown_agent_and_missing_files() {
        let e = plan(&manifest(), "nobody", "x", &env_all, &|_| true, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("no agent `nobody`; fix: use one of: coder")
        );
        let e = plan(&manifest(), "coder", "x", &env_all, &|_| false, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("bottles.dev.git[0].identity_file: file /keys/id does not exist")
        );
    }

    #[test]
    fn agent_env_and_hardening() {
        let p = the_plan();
        let a = p.container(RoleName::Agent).unwrap();
        for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
            assert_eq!(a.env[k], "http://egress-proxy:9099");
        }
        assert!(a.env["NO_PROXY"].contains("git-gate") && a.env["no_proxy"].contains("localhost"));
        assert_eq!(a.env["NODE_EXTRA_CA_CERTS"], "/etc/bottle/ca.pem");
        assert_eq!(a.env["CLAUDE_CODE_OAUTH_TOKEN"], OAUTH_PLACEHOLDER);
        assert_eq!(a.env["DISABLE_ERROR_REPORTING"], "1");
        assert_eq!(a.env["TERM"], "xterm");
        assert!(a.secret_env.is_empty());
        assert_eq!(a.security.user.as_deref(), Some("1000:1000"));
        assert_eq!(a.security.cap_drop, vec!["ALL"]);
        assert!(a.security.cap_add.is_empty() && a.security.no_new_privileges);
        assert_eq!(a.networks.len(), 1);
        for c in &p.containers {
            assert!(
                !c.security.privileged && !c.security.docker_socket && !c.security.host_namespaces
            );
            if c.role != RoleName::EgressProxy {
                assert!(c.secret_env.is_empty());
            }
        }
        assert!(
            !a.files.iter().any(|f| matches!(
                f.source,
                Source::InnerCaBundle | Source::OuterCaBundle | Source::OuterCaKeySec1
            )),
            "no key enters the agent"
        );
    }

    #[test]
    fn plan_json_golden() {
        let p = the_plan();
        let got = serde_json::to_string_pretty(&p).unwrap() + "\n";
        golden("plan.json", &got);
        golden("routes.json", &p.rendered["routes.json"]);
        golden("squid.conf", &p.rendered["squid.conf"]);
        golden("git-gate.json", &p.rendered["git-gate.json"]);
        golden("plan.txt", &p.summary());
    }

    #[test]
    fn pipelock_render_golden() {
        let m = manifest::parse(
            &M.replace("outer_proxy: squid", "outer_proxy: pipelock"),
            Path::new("m.yaml"),
            Path::new("/"),
            None,
        )
        .unwrap();
        let p = plan(&m, "coder", "dev-0001", &env_all, &|_| true, None).unwrap();
        golden("pipelock.yaml", &p.rendered["pipelock.yaml"]);
        assert_eq!(p.outer_proxy.port, 8888);
        let ep = p.container(RoleName::EgressProxy).unwrap();
        assert!(ep.command.contains(&"http://outer-proxy:8888".to_string()));
    }

    /// Compares with `tests/golden/<name>`; `BOTTLE_BLESS=1` rewrites it.
    pub(crate) fn golden(name: &str, got: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("BOTTLE_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, got).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!("missing golden {}: run with BOTTLE_BLESS=1", path.display())
        });
        assert_eq!(
            got, want,
            "golden {name} differs (BOTTLE_BLESS=1 to accept)"
        );
    }
}
