//! Load and plan for the commands: the manifest, the agent's build context,
//! the workspace scan, and the pure plan with the bottle's kept approvals
//! folded in.

use std::path::Path;

use super::{Failure, env_lookup, usage};
use crate::build::{self, BuildContext};
use crate::manifest::{self, Manifest};
use crate::plan::{self, Plan};
use crate::progress::Progress;
use crate::workspace::{self, WorkspaceInfo};

/// Load: the manifest (validated, the agent's command replaced when one is
/// given) and the workspace (scanned, not yet copied).
/// With `build:`, the build context is read here and the agent's image
/// becomes its content-hash tag, so the plan names the image it will run.
pub(crate) fn load(
    manifest_path: &Path,
    agent: &str,
    command: Vec<String>,
) -> Result<(Manifest, Option<WorkspaceInfo>, Option<BuildContext>), Failure> {
    let (m, ctx) = load_agent(
        manifest::load(manifest_path).map_err(usage)?,
        agent,
        command,
    )?;
    let ws = workspace_for(&m, agent)?;
    Ok((m, ws, ctx))
}

/// The agent's part of load: its command replaced, its build context read.
pub(super) fn load_agent(
    mut m: Manifest,
    agent: &str,
    command: Vec<String>,
) -> Result<(Manifest, Option<BuildContext>), Failure> {
    let manifest_path = m.file.clone();
    let mut ctx = None;
    if let Some(a) = m.agents.get_mut(agent) {
        if !command.is_empty() {
            if a.prompt.is_none()
                && command
                    .iter()
                    .any(|c| c.contains(manifest::PROMPT_FILE_PLACEHOLDER))
            {
                return Err(usage(format!(
                    "the command after `--` uses `{}` but agent `{agent}` has no prompt; fix: add `prompt:` or `prompt_file:` to agents.{agent} in {}",
                    manifest::PROMPT_FILE_PLACEHOLDER,
                    manifest_path.display()
                )));
            }
            a.command = command;
        }
        if let Some(b) = &a.build {
            let c = build::context(agent, b).map_err(|e| {
                usage(format!(
                    "{}: agents.{agent}.build: {e}; fix: check the Dockerfile and context paths",
                    manifest_path.display()
                ))
            })?;
            a.image = c.tag.clone();
            ctx = Some(c);
        }
    }
    Ok((m, ctx))
}

/// The workspace: the agent's `workdir`, else the current git repository, else none.
pub(super) fn workspace_for(m: &Manifest, agent: &str) -> Result<Option<WorkspaceInfo>, Failure> {
    let Some(a) = m.agents.get(agent) else {
        return Ok(None);
    };
    let root = match &a.workdir {
        Some(w) => Some(w.clone()),
        None => std::env::current_dir()
            .ok()
            .and_then(|d| workspace::git_toplevel(&d)),
    };
    match root {
        Some(r) => workspace::scan(&r).map(Some).map_err(usage),
        None => Ok(None),
    }
}

/// Plan: a fresh id, then the pure plan (host variables and files only checked).
pub(super) fn plan(m: &Manifest, agent: &str, ws: Option<&WorkspaceInfo>) -> Result<Plan, Failure> {
    let bottle = m
        .agents
        .get(agent)
        .map(|a| a.bottle.as_str())
        .unwrap_or("bottle");
    let id = plan::new_id(bottle).map_err(|e| Failure {
        code: 1,
        message: format!("cannot make a bottle id: the system's random source failed ({e})"),
    })?;
    plan_as(m, agent, ws, &id)
}

/// The pure plan for bottle `id` (a fresh one, or the id being resumed).
pub(super) fn plan_as(
    m: &Manifest,
    agent: &str,
    ws: Option<&WorkspaceInfo>,
    id: &str,
) -> Result<Plan, Failure> {
    let ws = ws.map(|w| plan::WorkspacePlan {
        source: w.root.clone(),
        files: w.files.len(),
        warnings: w.warnings.clone(),
    });
    let mut p = plan::plan(m, agent, id, &env_lookup, &|p: &Path| p.exists(), ws).map_err(usage)?;
    // Approvals kept for the bottle's name (issue 14): `plan`, `run` (and
    // anything that plans through here) start with them.
    for w in crate::approvals::fold_into(&mut p, m) {
        Progress::new(false).warn(&w);
    }
    Ok(p)
}
