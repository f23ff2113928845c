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

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::docker::{self, ApplyError};
use crate::manifest::{self, Manifest};
use crate::plan::Plan;
use crate::prepare::PrepareError;
use crate::progress::Progress;

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
        /// A bottle rendered for Kubernetes instead of the running Docker
        /// bottles: proposals through `kubectl exec`, decisions applied as
        /// its ConfigMaps (docs/kubernetes.md, "supervise"). Needs -m and -a.
        #[arg(long, global = true, requires_all = ["manifest", "agent"])]
        k8s: bool,
        /// With --k8s: the manifest the bottle was rendered from.
        #[arg(long, short, global = true)]
        manifest: Option<PathBuf>,
        /// With --k8s: the agent it was rendered for.
        #[arg(long, short, global = true)]
        agent: Option<String>,
        /// With --k8s: the namespace given to `bottle render`, if any.
        #[arg(long, global = true)]
        namespace: Option<String>,
        /// With --k8s: the id given to `bottle render`, if any.
        #[arg(long = "id", global = true)]
        bottle_id: Option<String>,
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
        Cmd::Supervise {
            cmd,
            k8s: true,
            manifest: Some(manifest),
            agent: Some(agent),
            namespace,
            bottle_id: id,
        } => {
            use crate::k8s::operate::{Action, Target, run};
            let t = Target {
                manifest,
                agent,
                namespace,
                id,
            };
            let action = match cmd {
                None => Action::List { json: false },
                Some(SuperviseCmd::List { json }) => Action::List { json },
                Some(SuperviseCmd::Approve {
                    id,
                    edit,
                    paths,
                    methods,
                }) => {
                    if edit {
                        return Err(usage(
                            "--edit is not offered with --k8s; narrow with --paths and --methods",
                        ));
                    }
                    let edit = (paths.is_some() || methods.is_some())
                        .then_some(bottle_supervise::host::Edit { paths, methods });
                    Action::Approve { id, edit }
                }
                Some(SuperviseCmd::Reject { id, why }) => Action::Reject { id, why },
            };
            run(&t, action, &operator())
        }
        Cmd::Supervise {
            cmd,
            manifest,
            agent,
            namespace,
            bottle_id,
            ..
        } => {
            if manifest.is_some() || agent.is_some() || namespace.is_some() || bottle_id.is_some() {
                return Err(usage(
                    "-m, -a, --namespace and --id name a bottle rendered for Kubernetes: add --k8s (the running Docker bottles are found without them)",
                ));
            }
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

mod load_plan;
mod session;

pub(crate) use load_plan::load;
use load_plan::plan;
use session::{Start, run};
#[cfg(test)]
mod tests;
