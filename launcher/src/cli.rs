//! The command line (clap derive): `check`, `plan`, `run`, `resume`, `build`,
//! `render`, `images`, `list`, `rm`, `export`, `supervise`, `approvals`, `cleanup`.
//!
//! Owns: turning arguments into the phases (load -> plan -> prepare -> apply
//! -> run -> teardown, one call each in `run`), the exit codes (2 bad
//! configuration or usage, 1 runtime failure, else the agent's own code; 130
//! after Ctrl-C), and teardown on every path out of `run` once `prepare`
//! made something.
//!
//! Must never: print a secret, or leave a bottle up after `run` returns
//! (unless `--keep`). Its volumes stay (unless `--rm`): that is a stopped
//! bottle, not one left up (`resume`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::build::{self, BuildContext};
use crate::docker::{self, ApplyError, Options};
use crate::interrupt;
use crate::manifest::{self, Manifest};
use crate::plan::{self, Plan};
use crate::prepare::{self, PrepareError};
use crate::progress::Progress;
use crate::workspace::{self, WorkspaceInfo};

#[derive(Debug, Parser)]
#[command(
    name = "bottle",
    version,
    about = "Run an AI coding agent in a container whose only way out is egress-proxy."
)]
pub struct Cli {
    /// Print only warnings and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Validate a manifest and report every problem at once.
    Check {
        #[arg(long, short)]
        manifest: PathBuf,
    },
    /// Show what `run` would start; creates nothing (no container, no key).
    Plan {
        #[arg(long, short)]
        manifest: PathBuf,
        #[arg(long, short)]
        agent: String,
        /// Machine-readable output (stable keys; see docs/launcher.md).
        #[arg(long)]
        json: bool,
    },
    /// Bring the bottle up, run the agent attached, tear it down on exit
    /// (its home and workspace volumes stay: `bottle resume ID`).
    Run {
        #[arg(long, short, required_unless_present = "resume")]
        manifest: Option<PathBuf>,
        #[arg(long, short, required_unless_present = "resume")]
        agent: Option<String>,
        /// Continue stopped bottle ID (as `bottle resume ID`).
        #[arg(long, value_name = "ID", conflicts_with_all = ["manifest", "agent"])]
        resume: Option<String>,
        #[command(flatten)]
        how: RunFlags,
        /// The agent's command (replaces the manifest's).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Bring stopped bottle ID back: its home and workspace volumes, fresh CAs,
    /// the sidecars rendered from the manifest as it is now.
    Resume {
        id: String,
        #[command(flatten)]
        how: RunFlags,
        /// The agent's command (replaces the manifest's).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Remove stopped bottle ID: its volumes and anything a killed run left.
    Rm { id: String },
    /// Copy bottle ID's workspace out of its volume into DIR.
    Export {
        id: String,
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Write into DIR even when it is not empty.
        #[arg(long)]
        force: bool,
    },
    /// Build the agent's image from its `build:` (skipped when its content-hash tag exists).
    Build {
        #[arg(long, short)]
        manifest: PathBuf,
        #[arg(long, short)]
        agent: String,
    },
    /// Render the bottle for another engine (`--format k8s`: Kubernetes YAML; docs/kubernetes.md).
    /// Talks to no engine, mints nothing, writes no secret value.
    Render {
        #[arg(long, short)]
        manifest: PathBuf,
        #[arg(long, short)]
        agent: String,
        /// Only `k8s` today.
        #[arg(long, value_parser = ["k8s"])]
        format: String,
        /// Render into this existing namespace instead of a `bottle-<id>` one.
        #[arg(long)]
        namespace: Option<String>,
        /// The bottle id (default: `<bottle>-<hash of bottle and agent>`, stable across renders).
        #[arg(long)]
        id: Option<String>,
        /// The cluster's Service range; the sidecars get fixed `clusterIP`s in it.
        #[arg(long, default_value = crate::k8s::DEFAULT_SERVICE_CIDR)]
        service_cidr: String,
        /// Write one file per object kind here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also mint the bottle's two CAs into `DIR/ca-secrets.yaml` (0600;
        /// Secret manifests to apply separately; never on stdout).
        #[arg(long, value_name = "DIR")]
        mint_cas: Option<PathBuf>,
        /// FOR THROWAWAY CLUSTERS ONLY: put the token values (read from the
        /// host variables) and freshly minted CAs into the output as Secrets.
        #[arg(long, conflicts_with = "mint_cas")]
        include_secrets: bool,
        /// Pull every image from this registry (`R/<image>`; push them there first).
        #[arg(long, value_name = "R")]
        image_registry: Option<String>,
    },
    /// The images a cluster pulls (docs/kubernetes.md).
    Images {
        #[command(subcommand)]
        cmd: ImagesCmd,
    },
    /// Bottles on this host: running, orphaned, or stopped (volumes, with age and size).
    List,
    /// The supervise proposals of the running bottles (docs/supervise.md).
    /// Without a subcommand: the terminal UI (on a terminal; the list otherwise).
    Supervise {
        #[command(subcommand)]
        cmd: Option<SuperviseCmd>,
    },
    /// Approvals kept per bottle name; the next `bottle run` starts with them (docs/supervise.md).
    Approvals {
        #[command(subcommand)]
        cmd: ApprovalsCmd,
    },
    /// Remove bottles whose `bottle run` is gone (orphans). Without --yes, only lists them.
    Cleanup {
        #[arg(long)]
        yes: bool,
        /// Only this bottle id.
        #[arg(long)]
        id: Option<String>,
        /// Also remove bottles whose `bottle run` is still alive.
        #[arg(long)]
        all: bool,
        /// Also remove the volumes (home, workspace) of those bottles and of stopped ones.
        #[arg(long)]
        volumes: bool,
    },
}

/// `bottle images ...`.
#[derive(Debug, Subcommand)]
pub enum ImagesCmd {
    /// Tag the local images as `R/<image>` (the names `bottle render
    /// --image-registry R` writes) and push them; prints `R/<image>:<tag>@<digest>`.
    Push {
        /// The registry (and optional path): `host[:port][/path]`, no scheme.
        #[arg(long, value_name = "R")]
        registry: String,
        /// Push this bottle's images instead of the offline-built ones.
        #[arg(long, short, requires = "agent")]
        manifest: Option<PathBuf>,
        /// The agent of `--manifest` whose bottle is pushed.
        #[arg(long, short, requires = "manifest")]
        agent: Option<String>,
    },
}

/// The flags `run` and `resume` share.
#[derive(Debug, clap::Args)]
pub struct RunFlags {
    /// Leave the bottle up after the agent exits (for debugging; remove with `bottle cleanup`).
    #[arg(long)]
    keep: bool,
    /// Remove the home and workspace volumes too on exit: nothing survives the run.
    #[arg(long, conflicts_with = "keep")]
    rm: bool,
    /// Start even when the host firewall rule cannot be added (the host stays reachable from the bottle).
    #[arg(long)]
    allow_host_access: bool,
    /// Start without the y/N preflight (it is asked only on a terminal).
    #[arg(long, short)]
    yes: bool,
}

/// `bottle supervise ...`; the operator is `$USER`.
#[derive(Debug, Subcommand)]
pub enum SuperviseCmd {
    /// Pending proposals of every running supervised bottle.
    List {
        /// Machine-readable output (`bottle_supervise::host::Pending`).
        #[arg(long)]
        json: bool,
    },
    /// Approve a proposal: the route is live within seconds, nothing restarts.
    Approve {
        id: String,
        /// Edit the proposed paths and methods in `$EDITOR` (else `vi`) first;
        /// an edit may only narrow what was asked.
        #[arg(long, conflicts_with_all = ["paths", "methods"])]
        edit: bool,
        /// Approve only these paths (narrowing the proposal's).
        #[arg(long, num_args = 1.., value_name = "PATH")]
        paths: Option<Vec<String>>,
        /// Approve only these methods (narrowing the proposal's).
        #[arg(long, num_args = 1.., value_name = "METHOD")]
        methods: Option<Vec<String>>,
    },
    /// Reject a proposal; the agent gets the reason.
    Reject {
        id: String,
        #[arg(long)]
        why: String,
    },
}

/// `bottle approvals ...`; the operator is `$USER`.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCmd {
    /// The kept approvals, of every bottle or of one.
    List {
        #[arg(long)]
        bottle: Option<String>,
        /// Machine-readable output (the kept approvals, each with `bottle`).
        #[arg(long)]
        json: bool,
    },
    /// Drop a kept approval: the bottle's next run starts without it (audited).
    Revoke { id: String },
}

/// A failure with its exit code; the message is one line (or a short list).
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl From<ApplyError> for Failure {
    fn from(e: ApplyError) -> Self {
        Failure {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

impl From<PrepareError> for Failure {
    fn from(e: PrepareError) -> Self {
        Failure {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

pub(crate) fn usage(message: impl ToString) -> Failure {
    Failure {
        code: 2,
        message: message.to_string(),
    }
}

/// Who decides (`bottle supervise`, `bottle approvals`): `$USER`.
fn operator() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn env_lookup(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Runs the command; Ok holds the process exit code.
pub async fn main(cli: Cli) -> Result<i32, Failure> {
    let progress = Progress::new(cli.quiet);
    match cli.cmd {
        Cmd::Check { manifest } => {
            let m = manifest::load(&manifest).map_err(usage)?;
            if !cli.quiet {
                println!(
                    "{}: ok ({} bottle(s), {} agent(s))",
                    manifest.display(),
                    m.bottles.len(),
                    m.agents.len()
                );
            }
            Ok(0)
        }
        Cmd::Plan {
            manifest,
            agent,
            json,
        } => {
            let (m, ws, _) = load(&manifest, &agent, Vec::new())?;
            let p = plan(&m, &agent, ws.as_ref())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&p).map_err(|e| Failure {
                        code: 1,
                        message: e.to_string()
                    })?
                );
            } else {
                let resolved = engine_runtime(&m, &p).await;
                print!("{}", p.summary_for(resolved.as_deref()));
                println!("(names use a fresh id at each run)");
            }
            Ok(0)
        }
        Cmd::Run {
            manifest,
            agent,
            resume,
            how,
            command,
        } => {
            let start = match (resume, manifest, agent) {
                (Some(id), _, _) => Start::Resume(id),
                (None, Some(manifest), Some(agent)) => Start::Fresh { manifest, agent },
                _ => {
                    return Err(usage(
                        "`bottle run` needs --manifest and --agent, or --resume ID",
                    ));
                }
            };
            run(&progress, start, how, command).await
        }
        Cmd::Resume { id, how, command } => run(&progress, Start::Resume(id), how, command).await,
        Cmd::Rm { id } => crate::resume::rm(&id).await,
        Cmd::Export { id, to, force } => crate::resume::export(&id, &to, force).await,
        Cmd::Build { manifest, agent } => {
            let (m, ws, ctx) = load(&manifest, &agent, Vec::new())?;
            let p = plan(&m, &agent, ws.as_ref())?;
            let Some(ctx) = ctx else {
                return Err(usage(format!(
                    "{}: agents.{agent}: has no `build:`; fix: add `build: {{dockerfile: ..., context: ...}}` to the agent, or use `image:` without building",
                    manifest.display()
                )));
            };
            let d = docker::connect().await?;
            docker::images::build_agent(&d, &p, Some(&ctx.tar), &progress).await?;
            println!("{}", ctx.tag);
            Ok(0)
        }
        Cmd::Render {
            manifest,
            agent,
            format: _,
            namespace,
            id,
            service_cidr,
            out,
            mint_cas,
            include_secrets,
            image_registry,
        } => crate::k8s::command::render(
            &manifest,
            &agent,
            crate::k8s::command::RenderArgs {
                namespace,
                id,
                service_cidr,
                out,
                mint_cas,
                include_secrets,
                image_registry,
            },
        ),
        Cmd::Images {
            cmd:
                ImagesCmd::Push {
                    registry,
                    manifest,
                    agent,
                },
        } => {
            let m = manifest.as_deref().zip(agent.as_deref());
            crate::k8s::command::images_push(&registry, m, &progress).await
        }
        Cmd::List => crate::resume::list().await,
        Cmd::Approvals { cmd } => match cmd {
            ApprovalsCmd::List { bottle, json } => crate::approvals::list(bottle.as_deref(), json),
            ApprovalsCmd::Revoke { id } => crate::approvals::revoke(&id, &operator()),
        },
        Cmd::Supervise { cmd } => {
            let operator = operator();
            Ok(match cmd {
                None => crate::tui::run(operator).await?,
                Some(SuperviseCmd::List { json }) => crate::supervise::list(json).await?,
                Some(SuperviseCmd::Approve {
                    id,
                    edit,
                    paths,
                    methods,
                }) => {
                    crate::tui::editor::approve_command(&id, &operator, edit, paths, methods)
                        .await?
                }
                Some(SuperviseCmd::Reject { id, why }) => {
                    crate::supervise::reject(&id, &why, &operator).await?
                }
            })
        }
        Cmd::Cleanup {
            yes,
            id,
            all,
            volumes,
        } => crate::resume::cleanup(yes, id.as_deref(), all, volumes).await,
    }
}

/// `bottle plan`'s view of `auto`: asks the engine when it answers within
/// a few seconds, else None ("resolved at run"). Never an error: plan must
/// work without Docker.
async fn engine_runtime(m: &Manifest, p: &Plan) -> Option<String> {
    let want = m.bottles.get(&p.bottle)?.runtime;
    let ask = async {
        let d = docker::connect().await.ok()?;
        docker::runtime::resolve(&d, want)
            .await
            .ok()
            .map(String::from)
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), ask)
        .await
        .ok()
        .flatten()
}

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
fn load_agent(
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
fn workspace_for(m: &Manifest, agent: &str) -> Result<Option<WorkspaceInfo>, Failure> {
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
fn plan(m: &Manifest, agent: &str, ws: Option<&WorkspaceInfo>) -> Result<Plan, Failure> {
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
fn plan_as(
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

/// The manifest, the plan, the workspace, the build context and the
/// manifest's absolute path.
type Loaded = (
    Manifest,
    Plan,
    Option<WorkspaceInfo>,
    Option<BuildContext>,
    PathBuf,
);

/// What `run` starts: a new bottle, or a stopped one again.
enum Start {
    Fresh { manifest: PathBuf, agent: String },
    Resume(String),
}

/// Load and plan for `start`: a fresh bottle copies the workspace; a
/// resumed one keeps its id and volumes and reads the manifest its volumes
/// name, as that manifest is now. Returns the manifest's absolute path too
/// (a label of the volumes).
async fn load_and_plan(start: Start, command: Vec<String>) -> Result<Loaded, Failure> {
    match start {
        Start::Fresh { manifest, agent } => {
            let (m, ws, ctx) = load(&manifest, &agent, command)?;
            let p = plan(&m, &agent, ws.as_ref())?;
            // Canonical: a resume from another directory must find it, and
            // `bottle list` shows it without `..`.
            let abs = std::fs::canonicalize(&manifest)
                .or_else(|_| std::path::absolute(&manifest))
                .unwrap_or(manifest);
            Ok((m, p, ws, ctx, abs))
        }
        Start::Resume(id) => {
            let r = crate::resume::locate(&id).await?;
            let m = manifest::load(&r.manifest).map_err(|e| crate::resume::manifest_gone(&r, e))?;
            crate::resume::check_manifest(&r, &m)?;
            let (m, ctx) = load_agent(m, &r.agent, command)?;
            let mut p = plan_as(&m, &r.agent, None, &r.id)?;
            p.resumed = true;
            Ok((m, p, None, ctx, r.manifest))
        }
    }
}

/// The y/N preflight: asked only when stdin and stderr are terminals and
/// `--yes` is not given. Anything but `y`/`yes` declines.
fn preflight(plan: &Plan, runtime: &str, yes: bool) -> Result<(), Failure> {
    use std::io::{BufRead, Write};
    if yes || !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Ok(());
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "{}Start this bottle? [y/N] ", plan.preflight(runtime));
    let _ = err.flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure {
            code: 1,
            message: "not started: declined at the preflight (nothing was created)".into(),
        }),
    }
}

async fn run(
    progress: &Progress,
    start: Start,
    how: RunFlags,
    command: Vec<String>,
) -> Result<i32, Failure> {
    let (m, plan, ws, ctx, manifest_abs) = load_and_plan(start, command).await?;
    // The runtime is resolved before anything is made: `runsc` asked for and
    // not registered stops here.
    let want = m
        .bottles
        .get(&plan.bottle)
        .map(|b| b.runtime)
        .unwrap_or_default();
    let d = docker::connect().await?;
    let agent_runtime = docker::runtime::resolve(&d, want).await?;
    progress.note(&format!("agent runtime: {agent_runtime}"));
    preflight(&plan, agent_runtime, how.yes)?;
    // From here on signals are ours (after the question, so Ctrl-C there
    // still ends `bottle` at once), and everything created is recorded and
    // torn down on every path.
    let mut signals = interrupt::Signals::new();
    let mut prepared = prepare::prepare(&plan, ws.as_ref(), &env_lookup, progress)?;
    prepared.build_context = ctx.map(|c| c.tar);
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let opts = Options {
        allow_host_access: how.allow_host_access,
        tty,
        agent_runtime: Some(agent_runtime.to_string()),
        manifest: manifest_abs,
    };
    // Set once the agent exists with its volumes filled: from then on the
    // volumes hold the agent's work and outlive the run.
    let filled = std::cell::Cell::new(false);
    let work = async {
        let up = docker::apply(&plan, prepared.inputs(), &opts, progress).await?;
        filled.set(true);
        progress.note(&format!("agent {} starting", up.agent));
        docker::run_agent(&up.docker, &up.agent, tty, progress).await
    };
    let result = until_signal(work, signals.as_mut(), progress).await;
    teardown(
        &plan,
        &prepared,
        &how,
        filled.get(),
        result,
        signals.as_mut(),
        progress,
    )
    .await
}

/// Teardown: undoes the record (unless `--keep` and no signal), keeping the
/// agent's result unless teardown itself failed after a success. The
/// volumes stay once filled (the way to resume is printed), unless `--rm`;
/// volumes this run created before its agent existed go with the rest.
/// Signals during it are acknowledged and do not stop it
/// (`interrupt::shielded`).
async fn teardown(
    plan: &Plan,
    prepared: &prepare::Prepared,
    how: &RunFlags,
    filled: bool,
    result: Result<i32, Failure>,
    signals: Option<&mut interrupt::Signals>,
    progress: &Progress,
) -> Result<i32, Failure> {
    let id = &plan.id;
    if how.keep && !outcome_is_signal(&result) {
        progress.note(&format!(
            "--keep: bottle {id} left up; remove it with `bottle cleanup --yes --all --id {id}` (add --volumes to drop its home and workspace too)"
        ));
        return result;
    }
    let step = progress.step("tearing down");
    let record = prepared.record.snapshot();
    let drop_volumes = volumes_to_drop(plan, &record, how.rm, filled);
    let undo = async {
        docker::teardown::undo(&record).await?;
        if drop_volumes.is_empty() {
            return Ok(());
        }
        docker::volumes::remove_all(&drop_volumes).await
    };
    let td = interrupt::shielded(signals, undo, progress).await;
    step.done();
    if let Err(e) = td {
        progress.warn(&e.to_string());
        if result.is_ok() {
            return Err(Failure::from(e));
        }
    } else if filled && !how.rm {
        // Printed even with --quiet: it is the only place the id is shown.
        eprintln!(
            "bottle: bottle {id} stopped; its home and workspace are kept. Resume: `bottle resume {id}`. Copy the workspace out: `bottle export {id} --to DIR`. Remove: `bottle rm {id}`"
        );
    }
    result
}

/// The volumes teardown removes: all of the bottle's with `--rm`; else
/// those this run created when its agent never got them filled (a first
/// run that failed or was interrupted during apply); else none.
fn volumes_to_drop(plan: &Plan, record: &docker::Record, rm: bool, filled: bool) -> Vec<String> {
    if rm {
        plan.volumes.iter().map(|v| v.name.clone()).collect()
    } else if !filled {
        record.volumes.clone()
    } else {
        Vec::new()
    }
}

/// Runs apply and the agent until they end or a signal comes (130 then;
/// dropping `work` restores the terminal, teardown removes what was made).
async fn until_signal(
    work: impl std::future::Future<Output = Result<i64, ApplyError>>,
    signals: Option<&mut interrupt::Signals>,
    progress: &Progress,
) -> Result<i32, Failure> {
    match interrupt::until(signals, work).await {
        Ok(Ok(code)) => Ok(i32::try_from(code).unwrap_or(1)),
        Ok(Err(e)) => Err(Failure::from(e)),
        Err(name) => {
            progress.warn(&format!("{name}: tearing the bottle down"));
            Ok(130)
        }
    }
}

fn outcome_is_signal(r: &Result<i32, Failure>) -> bool {
    matches!(r, Ok(130))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `run` takes a manifest and an agent, or `--resume ID`, never both;
    /// `--keep` and `--rm` contradict each other.
    #[test]
    fn run_takes_a_manifest_or_a_resume_id_and_keep_or_rm() {
        let parse = |a: &[&str]| Cli::try_parse_from([&["bottle"], a].concat());
        assert!(parse(&["run", "--resume", "dev-00000001"]).is_ok());
        assert!(parse(&["run", "-m", "m.yaml", "-a", "a", "--rm"]).is_ok());
        assert!(parse(&["resume", "dev-00000001", "--yes", "--", "bash"]).is_ok());
        for bad in [
            &["run"][..],
            &["run", "-m", "m.yaml"],
            &["run", "--resume", "x", "-m", "m.yaml"],
            &["run", "--resume", "x", "-a", "a"],
            &["run", "-m", "m.yaml", "-a", "a", "--keep", "--rm"],
            &["resume"],
            &["export", "x"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// Volumes outlive a run once the agent has them; a first run that
    /// fails before drops the ones it made, a resumed one never drops the
    /// bottle's (it made none); `--rm` drops them all.
    #[test]
    fn teardown_keeps_filled_volumes_and_drops_unfilled_new_ones() {
        let m = manifest::parse(
            "bottles:\n  dev: {}\nagents:\n  a: {bottle: dev}\n",
            Path::new("m.yaml"),
            Path::new("/"),
            None,
        )
        .unwrap();
        let Ok(mut p) = plan_as(&m, "a", None, "dev-00000001") else {
            panic!("plan failed");
        };
        let all = vec![
            "bottle-dev-00000001-home".to_string(),
            "bottle-dev-00000001-workspace".to_string(),
        ];
        let first = docker::Record {
            volumes: all.clone(),
            ..Default::default()
        };
        assert!(volumes_to_drop(&p, &first, false, true).is_empty());
        assert_eq!(volumes_to_drop(&p, &first, false, false), all);
        assert_eq!(volumes_to_drop(&p, &first, true, true), all);
        assert!(
            p.preflight("runc")
                .contains("workspace: none (empty /workspace)")
        );
        p.resumed = true;
        // The preflight of a resume says where the workspace comes from.
        assert!(
            p.preflight("runc").contains(
                "workspace: resumed from volume bottle-dev-00000001-workspace (not copied again)"
            ),
            "{}",
            p.preflight("runc")
        );
        let resumed = docker::Record::default();
        assert!(volumes_to_drop(&p, &resumed, false, false).is_empty());
        assert_eq!(volumes_to_drop(&p, &resumed, true, true), all);
    }

    /// `check` and `plan` refuse, at the manifest's key path, what
    /// egress-proxy would refuse at start (SPEC §6), with every other problem.
    #[tokio::test]
    async fn check_and_plan_refuse_what_the_engine_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.yaml");
        std::fs::write(
            &m,
            "bottles:\n  dev:\n    allow: [\"*.co.uk\"]\n    egress_proxy:\n      routes:\n        - host: api.example.com\n          path_allowlist: [\"/a/../b\"]\n    git:\n      - {name: w, upstream: \"https://github.com/acme/w.git\", identity_file: /k, known_host_key: \"h ssh-ed25519 AAAA\"}\nagents:\n  coder: {bottle: prod}\n",
        )
        .unwrap();
        let commands = [
            Cmd::Check {
                manifest: m.clone(),
            },
            Cmd::Plan {
                manifest: m.clone(),
                agent: "coder".into(),
                json: true,
            },
        ];
        for cmd in commands {
            let Err(f) = main(Cli { quiet: true, cmd }).await else {
                panic!("accepted");
            };
            assert_eq!(f.code, 2);
            for want in [
                "bottles.dev.allow[0]: host \"*.co.uk\"",
                "bottles.dev.egress_proxy.routes[0].path_allowlist[0]: pattern \"/a/../b\"",
                "bottles.dev.git[0].upstream: `https://github.com/acme/w.git` is not an ssh URL",
                "agents.coder.bottle: unknown bottle `prod`",
            ] {
                assert!(f.message.contains(want), "{want}:\n{}", f.message);
            }
        }
    }
}
