//! `bottle run` and `bottle resume`: load -> plan -> preflight -> prepare ->
//! apply -> the agent -> teardown, one call each; teardown on every path out
//! once `prepare` made something, shielded from later signals.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::load_plan::{load, load_agent, plan, plan_as};
use super::{Failure, RunFlags, env_lookup};
use crate::build::BuildContext;
use crate::docker::{self, ApplyError, Options};
use crate::interrupt;
use crate::manifest::{self, Manifest};
use crate::plan::Plan;
use crate::prepare;
use crate::progress::Progress;
use crate::workspace::WorkspaceInfo;

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
pub(super) enum Start {
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

pub(super) async fn run(
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
pub(super) fn volumes_to_drop(
    plan: &Plan,
    record: &docker::Record,
    rm: bool,
    filled: bool,
) -> Vec<String> {
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
