//! The plan: a pure function from (manifest, agent name, bottle id, host
//! environment lookup, workspace) to a `Plan` value (`model`) saying
//! everything `apply` will create — networks, containers (image, networks,
//! aliases, env names, files, labels, security options), token slots,
//! rendered files, git remotes. `plan()` is a list of named steps: slots,
//! networks, outer proxy, git-gate, egress-proxy, agent (`containers`).
//!
//! Approvals kept for the bottle's name are folded in afterwards by
//! `Plan::with_approvals` (`approved`), still without I/O: the caller reads
//! them.
//!
//! Owns: naming (containers, networks, aliases), token slot numbering, the
//! agent's proxy/trust/role environment, and the JSON shape `bottle plan
//! --json` prints (keys are stable: add, never rename).
//!
//! Must never: hold or print a secret value (only `token_ref` names and slot
//! names), create anything, or talk to Docker. Unset/empty `token_ref`s fail here.

mod approved;
mod containers;
mod error;
mod model;
mod slots;
mod summary;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;

use crate::manifest::{Bottle, Manifest};
use crate::render;

pub use approved::{ApprovedEarlier, SkippedApproval};
pub use error::{PlanError, PlanErrors};
pub use model::{
    AGENT_DNS, AGENT_UID, Attachment, BuildPlan, ContainerPlan, FilePlan, GATE_PORT, GATE_UID,
    GitRemote, Health, LIVE_ROUTES_DIR, MountPlan, NetworkPlan, OAUTH_PLACEHOLDER, OuterProxyPlan,
    PROXY_PORT, PROXY_UID, Plan, PromptPlan, RoleName, RoutePlan, SUPERVISE_DIR, SUPERVISE_PORT,
    SUPERVISE_UID, Security, SkillPlan, Source, TokenSlot, VolumePlan, WorkspacePlan,
    resource_name,
};

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

/// Builds the plan. `env` looks up host environment variables (the values are
/// only checked for presence here); `file_exists` checks host files.
pub fn plan(
    m: &Manifest,
    agent_name: &str,
    id: &str,
    env: &dyn Fn(&str) -> Option<String>,
    file_exists: &dyn Fn(&std::path::Path) -> bool,
    workspace: Option<WorkspacePlan>,
) -> Result<Plan, PlanErrors> {
    let unknown = || {
        PlanErrors(vec![PlanError::UnknownAgent {
            file: m.file.display().to_string(),
            agent: agent_name.to_string(),
            known: m.agents.keys().cloned().collect::<Vec<_>>().join(", "),
        }])
    };
    let agent = m.agents.get(agent_name).ok_or_else(unknown)?;
    let b = m.bottles.get(&agent.bottle).ok_or_else(unknown)?;
    let file = m.file.display().to_string();
    let slots = slots::slots(b, &file, env, file_exists)?;
    let cx = containers::Cx {
        id,
        bottle: b,
        agent,
    };
    let hosts = allowlist(b);
    let mut rendered = BTreeMap::new();
    rendered.insert(
        "routes.json".to_string(),
        render::routes::render(b, |i| b.slot_of(i)),
    );
    let networks = containers::networks(id);
    let (outer_port, outer) = containers::outer_proxy(&cx, &hosts, &mut rendered);
    let mut containers = vec![outer];
    let mut git_remotes = Vec::new();
    if let Some((gate, remotes)) = containers::git_gate(&cx, &mut rendered) {
        containers.push(gate);
        git_remotes = remotes;
    }
    containers.push(containers::egress_proxy(&cx, &slots, outer_port));
    if b.supervise {
        containers.push(containers::supervise(&cx));
    }
    if let Some(crate::manifest::PromptSource::Text(t)) = &cx.agent.prompt {
        rendered.insert("prompt.md".into(), t.clone());
    }
    if b.supervise {
        rendered.insert("mcp.json".into(), render::mcp::render());
    }
    containers.push(containers::agent(&cx));
    let prompt = agent.prompt.as_ref().map(|p| PromptPlan {
        source: match p {
            crate::manifest::PromptSource::Text(t) => format!("text ({} bytes)", t.len()),
            crate::manifest::PromptSource::File(f) => f.display().to_string(),
        },
        path: render::paths::AGENT_PROMPT.into(),
    });
    let skills = agent
        .skills
        .iter()
        .map(|s| SkillPlan {
            name: s.name.clone(),
            source: s.path.clone(),
            path: format!("{}/{}", render::paths::AGENT_SKILLS, s.name),
        })
        .collect();
    let build = agent.build.as_ref().map(|bd| BuildPlan {
        dockerfile: bd.dockerfile.clone(),
        context: bd.context.clone(),
        tag: agent.image.clone(),
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
        workspace,
        rendered,
        cas: "minted at run".into(),
        runtime: b.runtime.as_str().into(),
        prompt,
        skills,
        build,
        supervise: b.supervise,
        allow: b.allow.clone(),
        approved_earlier: Vec::new(),
        approvals_skipped: Vec::new(),
        routes: b
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| RoutePlan {
                host: r.host.clone(),
                path_allowlist: r.path_allowlist.clone(),
                path_denylist: r.path_denylist.clone(),
                methods: r.methods.clone(),
                slot: b.slot_of(i),
            })
            .chain(b.allow.iter().map(|h| RoutePlan {
                host: h.clone(),
                path_allowlist: Vec::new(),
                path_denylist: Vec::new(),
                methods: Vec::new(),
                slot: None,
            }))
            .collect(),
        volumes: containers::volumes(id),
        resumed: false,
    })
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
}
