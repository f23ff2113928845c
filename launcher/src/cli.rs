//! The command line (clap derive): `check`, `plan`, `run`, `build`, `list`, `supervise`, `approvals`, `cleanup`.
//!
//! Owns: turning arguments into the phases (load -> plan -> prepare -> apply
//! -> run -> teardown, one call each in `run`), the exit codes (2 bad
//! configuration or usage, 1 runtime failure, else the agent's own code; 130
//! after Ctrl-C), and teardown on every path out of `run` once `prepare`
//! made something.
//!
//! Must never: print a secret, or leave a bottle up after `run` returns
//! (unless `--keep`).

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
    /// Bring the bottle up, run the agent attached, tear everything down on exit.
    Run {
        #[arg(long, short)]
        manifest: PathBuf,
        #[arg(long, short)]
        agent: String,
        /// Leave the bottle up after the agent exits (for debugging; remove with `bottle cleanup`).
        #[arg(long)]
        keep: bool,
        /// Start even when the host firewall rule cannot be added (the host stays reachable from the bottle).
        #[arg(long)]
        allow_host_access: bool,
        /// Start without the y/N preflight (it is asked only on a terminal).
        #[arg(long, short)]
        yes: bool,
        /// The agent's command (replaces the manifest's).
        #[arg(last = true)]
        command: Vec<String>,
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
    /// Bottles on this host, their sidecars and whether their `bottle run` still lives.
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
            keep,
            allow_host_access,
            yes,
            command,
        } => {
            let how = RunOptions {
                keep,
                allow_host_access,
                yes,
            };
            run(&progress, &manifest, &agent, how, command).await
        }
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
        Cmd::List => {
            let d = docker::connect().await?;
            let found = docker::teardown::find(&d).await?;
            if found.is_empty() {
                println!("no bottles");
            }
            for f in found {
                println!(
                    "{}  {}",
                    f.id,
                    if f.alive() {
                        "running"
                    } else {
                        "orphan (its bottle run is gone)"
                    }
                );
                for (name, role, state) in &f.containers {
                    println!("  {role:<12} {name}  {state}");
                }
                if !f.fw_rules.is_empty() {
                    println!("  {} host firewall rule(s)", f.fw_rules.len());
                }
            }
            Ok(0)
        }
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
        Cmd::Cleanup { yes, id, all } => {
            let d = docker::connect().await?;
            let found = docker::teardown::find(&d).await?;
            let mut n = 0;
            let mut failed = Vec::new();
            for f in found {
                if id.as_ref().is_some_and(|i| *i != f.id) || (f.alive() && !all) {
                    continue;
                }
                n += 1;
                let what = format!(
                    "{}: {} container(s), {} network(s), {} firewall rule(s){}",
                    f.id,
                    f.containers.len(),
                    f.networks.len(),
                    f.fw_rules.len(),
                    if f.state_dir.is_some() {
                        ", state directory"
                    } else {
                        ""
                    }
                );
                if yes {
                    match docker::teardown::teardown(&d, &f.record()).await {
                        Ok(()) => println!("removed {what}"),
                        Err(e) => failed.push(e.to_string()),
                    }
                } else {
                    println!("would remove {what}");
                }
            }
            if n == 0 {
                println!("nothing to clean up");
            } else if !yes {
                println!("run `bottle cleanup --yes` to remove them");
            }
            if failed.is_empty() {
                Ok(0)
            } else {
                Err(Failure {
                    code: 1,
                    message: failed.join("\n"),
                })
            }
        }
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
    let mut m = manifest::load(manifest_path).map_err(usage)?;
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
    let ws = workspace_for(&m, agent)?;
    Ok((m, ws, ctx))
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
    let ws = ws.map(|w| plan::WorkspacePlan {
        source: w.root.clone(),
        files: w.files.len(),
        warnings: w.warnings.clone(),
    });
    let mut p =
        plan::plan(m, agent, &id, &env_lookup, &|p: &Path| p.exists(), ws).map_err(usage)?;
    // Approvals kept for the bottle's name (issue 14): `plan`, `run` (and
    // anything that plans through here) start with them.
    for w in crate::approvals::fold_into(&mut p, m) {
        Progress::new(false).warn(&w);
    }
    Ok(p)
}

/// The flags of `bottle run`.
struct RunOptions {
    keep: bool,
    allow_host_access: bool,
    yes: bool,
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
    manifest_path: &Path,
    agent: &str,
    how: RunOptions,
    command: Vec<String>,
) -> Result<i32, Failure> {
    let RunOptions {
        keep,
        allow_host_access,
        yes,
    } = how;
    let (m, ws, ctx) = load(manifest_path, agent, command)?;
    let plan = plan(&m, agent, ws.as_ref())?;
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
    preflight(&plan, agent_runtime, yes)?;
    // From here on signals are ours (after the question, so Ctrl-C there
    // still ends `bottle` at once), and everything created is recorded and
    // torn down on every path.
    let mut signals = interrupt::Signals::new();
    let mut prepared = prepare::prepare(&plan, ws.as_ref(), &env_lookup, progress)?;
    prepared.build_context = ctx.map(|c| c.tar);
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let opts = Options {
        allow_host_access,
        tty,
        agent_runtime: Some(agent_runtime.to_string()),
    };
    let work = async {
        let up = docker::apply(&plan, prepared.inputs(), &opts, progress).await?;
        progress.note(&format!("agent {} starting", up.agent));
        docker::run_agent(&up.docker, &up.agent, tty, progress).await
    };
    let result = until_signal(work, signals.as_mut(), progress).await;
    teardown(&plan, &prepared, keep, result, signals.as_mut(), progress).await
}

/// Teardown: undoes the record (unless `--keep` and no signal), keeping the
/// agent's result unless teardown itself failed after a success. Signals
/// during it are acknowledged and do not stop it (`interrupt::shielded`).
async fn teardown(
    plan: &Plan,
    prepared: &prepare::Prepared,
    keep: bool,
    result: Result<i32, Failure>,
    signals: Option<&mut interrupt::Signals>,
    progress: &Progress,
) -> Result<i32, Failure> {
    if keep && !outcome_is_signal(&result) {
        let id = &plan.id;
        progress.note(&format!(
            "--keep: bottle {id} left up; remove it with `bottle cleanup --yes --all --id {id}`"
        ));
        return result;
    }
    let step = progress.step("tearing down");
    let td = interrupt::shielded(
        signals,
        docker::teardown::undo(&prepared.record.snapshot()),
        progress,
    )
    .await;
    step.done();
    if let Err(e) = td {
        progress.warn(&e.to_string());
        if result.is_ok() {
            return Err(Failure::from(e));
        }
    }
    result
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
