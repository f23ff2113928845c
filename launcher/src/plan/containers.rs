//! The plan's networks and containers, one function per role, in start
//! order: outer proxy (squid or pipelock, one function), git-gate,
//! egress-proxy, agent. Owns naming (containers, networks, aliases), the
//! files each container gets, its security options and health check, and
//! the agent's proxy/trust/role environment.
//!
//! Must never: give a container a secret value (egress-proxy gets slot
//! names -> host variable names only), or the agent a key.

use std::collections::BTreeMap;

use super::model::{
    AGENT_UID, Attachment, ContainerPlan, FilePlan, GATE_PORT, GATE_UID, GitRemote, Health,
    LIVE_ROUTES_DIR, MountPlan, NetworkPlan, OAUTH_PLACEHOLDER, PROXY_PORT, PROXY_UID, RoleName,
    SUPERVISE_DIR, SUPERVISE_PORT, SUPERVISE_UID, Security, Source, TokenSlot, VolumePlan,
    resource_name,
};
use crate::manifest::{Agent, Bottle, OuterProxyKind, PROMPT_FILE_PLACEHOLDER, PromptSource, Role};
use crate::render::{self, paths};

/// What every container of one bottle shares.
pub(super) struct Cx<'a> {
    pub id: &'a str,
    pub bottle: &'a Bottle,
    pub agent: &'a Agent,
}

impl Cx<'_> {
    /// A network's name by role (`agent`, `relay`, `egress`).
    fn net(&self, role: &str) -> String {
        resource_name(self.id, role)
    }

    fn labels(&self, role: RoleName) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("bottle.id".to_string(), self.id.to_string()),
            ("bottle.role".to_string(), role.as_str().to_string()),
            ("bottle.bottle".to_string(), self.bottle.name.clone()),
            ("bottle.agent".to_string(), self.agent.name.clone()),
        ])
    }

    fn attach(&self, role: &str, alias: Option<&str>) -> Attachment {
        Attachment {
            network: self.net(role),
            aliases: alias.into_iter().map(String::from).collect(),
        }
    }
}

/// A file owned by `owner:owner`.
fn file(path: impl Into<String>, mode: u32, owner: u64, source: Source) -> FilePlan {
    FilePlan {
        path: path.into(),
        mode,
        uid: owner,
        gid: owner,
        source,
    }
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

/// `agent` and `relay` are internal; `egress` reaches the internet.
pub(super) fn networks(id: &str) -> Vec<NetworkPlan> {
    [("agent", true), ("relay", true), ("egress", false)]
        .into_iter()
        .map(|(role, internal)| NetworkPlan {
            role: role.into(),
            name: resource_name(id, role),
            internal,
        })
        .collect()
}

/// The agent's two volumes: its home and `/workspace`.
pub(super) fn volumes(id: &str) -> Vec<VolumePlan> {
    [("home", paths::AGENT_HOME), ("workspace", paths::WORKSPACE)]
        .into_iter()
        .map(|(role, target)| VolumePlan {
            role: role.into(),
            name: resource_name(id, role),
            target: target.into(),
        })
        .collect()
}

/// The outer proxy (squid or pipelock), on `relay` as `outer-proxy` and on
/// `egress`; renders its config into `rendered`. Returns its port too.
pub(super) fn outer_proxy(
    cx: &Cx<'_>,
    hosts: &[String],
    rendered: &mut BTreeMap<String, String>,
) -> (u16, ContainerPlan) {
    let b = cx.bottle;
    let (port, command, files, cap_add, health): (u16, Vec<String>, Vec<FilePlan>, &[&str], _) =
        match b.outer_proxy {
            OuterProxyKind::Squid => {
                rendered.insert(
                    "squid.conf".into(),
                    render::squid::render(hosts, !b.outer_proxy_trust.is_empty()),
                );
                let mut files = vec![
                    file(
                        paths::SQUID_CONF,
                        0o644,
                        0,
                        Source::Rendered("squid.conf".into()),
                    ),
                    file(paths::SQUID_CA, 0o600, 0, Source::OuterCaBundle),
                ];
                if !b.outer_proxy_trust.is_empty() {
                    files.push(file(
                        paths::SQUID_TRUST,
                        0o644,
                        0,
                        Source::HostFiles(b.outer_proxy_trust.clone()),
                    ));
                }
                let port = render::squid::PORT;
                (
                    port,
                    vec![],
                    files,
                    // squid starts as root to set up, then runs as `proxy`.
                    &[
                        "CHOWN",
                        "SETUID",
                        "SETGID",
                        "DAC_OVERRIDE",
                        "FOWNER",
                        "KILL",
                    ],
                    Health::Tcp {
                        network: cx.net("egress"),
                        port,
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
                    render::pipelock::render(hosts, &injected),
                );
                let port = render::pipelock::PORT;
                (
                    port,
                    vec![
                        "run".into(),
                        "--config".into(),
                        paths::PIPELOCK_CONF.into(),
                        "--listen".into(),
                        format!("0.0.0.0:{port}"),
                    ],
                    vec![
                        file(
                            paths::PIPELOCK_CONF,
                            0o644,
                            0,
                            Source::Rendered("pipelock.yaml".into()),
                        ),
                        file(paths::PIPELOCK_CA, 0o644, 0, Source::OuterCaCert),
                        file(paths::PIPELOCK_KEY, 0o600, 0, Source::OuterCaKeySec1),
                    ],
                    &["NET_BIND_SERVICE"],
                    Health::Http {
                        network: cx.net("egress"),
                        port,
                        path: "/health".into(),
                    },
                )
            }
        };
    let c = ContainerPlan {
        role: RoleName::OuterProxy,
        name: resource_name(cx.id, "outer-proxy"),
        image: b.outer_proxy_image.clone(),
        networks: vec![
            cx.attach("relay", Some("outer-proxy")),
            cx.attach("egress", None),
        ],
        command,
        env: BTreeMap::new(),
        secret_env: BTreeMap::new(),
        files,
        mounts: vec![],
        labels: cx.labels(RoleName::OuterProxy),
        security: security(None, cap_add),
        health,
    };
    (port, c)
}

/// git-gate, only with `git:` entries: its container and the remotes the
/// agent's workspace gets.
pub(super) fn git_gate(
    cx: &Cx<'_>,
    rendered: &mut BTreeMap<String, String>,
) -> Option<(ContainerPlan, Vec<GitRemote>)> {
    let b = cx.bottle;
    if b.git.is_empty() {
        return None;
    }
    rendered.insert("git-gate.json".into(), render::git_gate::render(&b.git));
    let mut files = vec![file(
        paths::GATE_CONF,
        0o644,
        0,
        Source::Rendered("git-gate.json".into()),
    )];
    let mut remotes = Vec::new();
    for g in &b.git {
        let kh = format!("known_hosts/{}", g.name);
        rendered.insert(kh.clone(), render::git_gate::known_hosts(g));
        files.push(file(
            render::git_gate::known_hosts_path(&g.name),
            0o644,
            0,
            Source::Rendered(kh),
        ));
        files.push(file(
            render::git_gate::identity_path(&g.name),
            0o600,
            GATE_UID,
            Source::HostFiles(vec![g.identity_file.clone()]),
        ));
        remotes.push(GitRemote {
            name: g.name.clone(),
            url: format!("git://git-gate:{GATE_PORT}/{}.git", g.name),
            upstream: g.upstream.clone(),
        });
    }
    let c = ContainerPlan {
        role: RoleName::GitGate,
        name: resource_name(cx.id, "git-gate"),
        image: "bottle-git-gate:latest".into(),
        networks: vec![
            cx.attach("agent", Some("git-gate")),
            cx.attach("egress", None),
        ],
        command: vec![],
        env: BTreeMap::new(),
        secret_env: BTreeMap::new(),
        files,
        mounts: vec![],
        labels: cx.labels(RoleName::GitGate),
        security: security(None, &[]),
        health: Health::Tcp {
            network: cx.net("egress"),
            port: GATE_PORT,
        },
    };
    Some((c, remotes))
}

/// A bind mount of `<state>/supervise/<sub>`.
fn sup_mount(sub: &str, target: impl Into<String>, read_only: bool) -> MountPlan {
    MountPlan {
        source: format!("{SUPERVISE_DIR}/{sub}"),
        target: target.into(),
        read_only,
    }
}

/// egress-proxy: the agent's only way out, on `relay` and on `agent` as
/// `egress-proxy`; the one container with secret environment (slot names).
/// In a supervise bottle its routes come from the supervise state
/// directory's `routes/` (read-only) and it watches them (`--watch-routes`).
pub(super) fn egress_proxy(cx: &Cx<'_>, slots: &[TokenSlot], outer_port: u16) -> ContainerPlan {
    let supervise = cx.bottle.supervise;
    let live_routes = format!("{LIVE_ROUTES_DIR}/routes.json");
    let mut command = vec![
        "--routes".into(),
        if supervise {
            live_routes
        } else {
            paths::ROUTES.into()
        },
        "--ca".into(),
        paths::PROXY_CA.into(),
        "--listen".into(),
        format!("0.0.0.0:{PROXY_PORT}"),
        "--upstream-proxy".into(),
        format!("http://outer-proxy:{outer_port}"),
    ];
    let mut files = vec![
        file(paths::PROXY_CA, 0o600, PROXY_UID, Source::InnerCaBundle),
        file(paths::PROXY_UPSTREAM_CA, 0o644, 0, Source::OuterCaCert),
    ];
    let mut mounts = vec![];
    if supervise {
        command.push("--watch-routes".into());
        mounts.push(sup_mount("routes", LIVE_ROUTES_DIR, true));
    } else {
        files.insert(
            0,
            file(
                paths::ROUTES,
                0o644,
                0,
                Source::Rendered("routes.json".into()),
            ),
        );
    }
    ContainerPlan {
        role: RoleName::EgressProxy,
        name: resource_name(cx.id, "egress-proxy"),
        image: "egress-proxy:latest".into(),
        networks: vec![
            cx.attach("relay", None),
            cx.attach("agent", Some("egress-proxy")),
        ],
        command,
        env: BTreeMap::from([(
            "EGRESS_PROXY_UPSTREAM_CA".to_string(),
            paths::PROXY_UPSTREAM_CA.to_string(),
        )]),
        secret_env: slots
            .iter()
            .map(|s| (s.slot.clone(), s.token_ref.clone()))
            .collect(),
        files,
        mounts,
        labels: cx.labels(RoleName::EgressProxy),
        security: security(Some(format!("{PROXY_UID}:{PROXY_UID}")), &[]),
        health: Health::Http {
            network: cx.net("agent"),
            port: PROXY_PORT,
            path: "/healthz".into(),
        },
    }
}

/// The supervise sidecar (docs/supervise.md): on `agent` only as
/// `supervise`, non-root, no capabilities, no environment and no file of
/// its own; it sees the supervise state directory's `view/` and
/// `decisions/` read-only and writes `proposals/` (owned by its uid).
pub(super) fn supervise(cx: &Cx<'_>) -> ContainerPlan {
    ContainerPlan {
        role: RoleName::Supervise,
        name: resource_name(cx.id, "supervise"),
        image: "bottle-supervise:latest".into(),
        networks: vec![cx.attach("agent", Some("supervise"))],
        // The image's entrypoint: `--state /state`, listening on 0.0.0.0:9100.
        command: vec![],
        env: BTreeMap::new(),
        secret_env: BTreeMap::new(),
        files: vec![],
        mounts: vec![
            sup_mount("view", "/state/view", true),
            sup_mount("proposals", "/state/proposals", false),
            sup_mount("decisions", "/state/decisions", true),
        ],
        labels: cx.labels(RoleName::Supervise),
        security: security(Some(format!("{SUPERVISE_UID}:{SUPERVISE_UID}")), &[]),
        // Ready when it accepts on the agent network (or, where the host
        // cannot probe that network, when it logs `listening`): the agent
        // starts only after, so its first MCP call finds the sidecar.
        health: Health::Tcp {
            network: cx.net("agent"),
            port: SUPERVISE_PORT,
        },
    }
}

/// The agent: on `agent` only, its proxy and trust environment pointing at
/// the bottle, the role's variables, the inner CA certificate (never a key),
/// its prompt (0400, its own), skills, and the supervise MCP configuration
/// when the bottle asks for it.
pub(super) fn agent(cx: &Cx<'_>) -> ContainerPlan {
    let b = cx.bottle;
    let proxy = format!("http://egress-proxy:{PROXY_PORT}");
    let mut env: BTreeMap<String, String> = cx.agent.env.clone();
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.insert(k.into(), proxy.clone());
    }
    let no_proxy = if b.supervise {
        "git-gate,supervise,localhost,127.0.0.1,::1"
    } else {
        "git-gate,localhost,127.0.0.1,::1"
    };
    for k in ["NO_PROXY", "no_proxy"] {
        env.insert(k.into(), no_proxy.into());
    }
    let mut files = vec![
        file(paths::AGENT_CA, 0o644, 0, Source::InnerCaCert),
        file(paths::AGENT_BUNDLE, 0o644, 0, Source::AgentTrustBundle),
    ];
    if b.supervise {
        env.insert("BOTTLE_MCP_CONFIG".into(), paths::AGENT_MCP.into());
        files.push(file(
            paths::AGENT_MCP,
            0o644,
            0,
            Source::Rendered("mcp.json".into()),
        ));
    }
    if let Some(p) = &cx.agent.prompt {
        let dir = paths::AGENT_PROMPT
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or(paths::AGENT_HOME);
        files.push(file(dir, 0o700, AGENT_UID, Source::Directory));
        let source = match p {
            PromptSource::Text(_) => Source::Rendered("prompt.md".into()),
            PromptSource::File(f) => Source::HostFiles(vec![f.clone()]),
        };
        files.push(file(paths::AGENT_PROMPT, 0o400, AGENT_UID, source));
    }
    if !cx.agent.skills.is_empty() {
        let claude = paths::AGENT_SKILLS
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or(paths::AGENT_HOME);
        files.push(file(claude, 0o755, AGENT_UID, Source::Directory));
        files.push(file(
            paths::AGENT_SKILLS,
            0o755,
            AGENT_UID,
            Source::Directory,
        ));
        for s in &cx.agent.skills {
            files.push(file(
                format!("{}/{}", paths::AGENT_SKILLS, s.name),
                0o755,
                AGENT_UID,
                Source::HostTree(s.path.clone()),
            ));
        }
    }
    let command = cx
        .agent
        .command
        .iter()
        .map(|c| c.replace(PROMPT_FILE_PLACEHOLDER, paths::AGENT_PROMPT))
        .collect();
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
    ContainerPlan {
        role: RoleName::Agent,
        name: resource_name(cx.id, "agent"),
        image: cx.agent.image.clone(),
        networks: vec![cx.attach("agent", None)],
        command,
        env,
        secret_env: BTreeMap::new(),
        files,
        mounts: vec![],
        labels: cx.labels(RoleName::Agent),
        security: security(Some(format!("{AGENT_UID}:{AGENT_UID}")), &[]),
        health: Health::None,
    }
}
