//! `bottle supervise --k8s`: the operator's side of supervise for a bottle
//! rendered for Kubernetes (docs/kubernetes.md, "supervise"). The same host
//! library as on Docker decides, on a local copy of the bottle's supervise
//! state (`<state root>/k8s/<namespace>/<id>/supervise`); `kubectl` carries
//! the proposals out of the sidecar's Pod (`exec ... --print-proposals`)
//! and the decision back in (`apply` of the bottle's ConfigMaps, rendered
//! again with the approvals kept for the bottle's name and the decisions).
//!
//! Owns: the local copy, and every `kubectl` command line.
//!
//! Must never: send a secret through kubectl (the ConfigMaps hold none; the
//! render never reads a token), or apply anything but the bottle's
//! ConfigMaps and a restart of its outer proxy.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bottle_supervise::host::{self, Edit};

use super::command::plan_for;
use super::{Options, Rendered};
use crate::approvals::failure;
use crate::cli::{Failure, usage};
use crate::plan::Plan;

/// Which rendered bottle: the flags `bottle render` was given.
#[derive(Debug, Clone)]
pub struct Target {
    pub manifest: PathBuf,
    pub agent: String,
    pub namespace: Option<String>,
    pub id: Option<String>,
}

/// What `supervise --k8s` decides: list, approve (with a narrowing edit), reject.
pub enum Action {
    List { json: bool },
    Approve { id: String, edit: Option<Edit> },
    Reject { id: String, why: String },
}

/// The kubectl to run: `$BOTTLE_KUBECTL`, else `kubectl` on `PATH`.
fn kubectl_program() -> String {
    std::env::var("BOTTLE_KUBECTL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kubectl".into())
}

/// The most of kubectl's output read: the sidecar's proposals are at most
/// 256 small files, and a sidecar the agent may have subverted must not be
/// able to fill the operator's memory.
const MAX_OUTPUT: u64 = 16 << 20;

/// Runs kubectl with `args` (and `stdin`); its stdout on success.
fn kubectl(args: &[String], stdin: Option<&[u8]>) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let program = kubectl_program();
    let shown = format!("{program} {}", args.join(" "));
    let failed = |message: String| Failure { code: 1, message };
    let mut child = Command::new(&program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure {
            code: 2,
            message: format!(
                "cannot run {program}: {e}; fix: install kubectl, or set BOTTLE_KUBECTL to it"
            ),
        })?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A kubectl that exits early closes the pipe: its stderr says why.
        let _ = pipe.write_all(bytes);
    }
    // stderr on its own thread, so a chatty kubectl cannot block on it
    // while stdout is read.
    let err = child.stderr.take().map(|e| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = e.take(64 << 10).read_to_string(&mut text);
            text
        })
    });
    let mut out = Vec::new();
    if let Some(o) = child.stdout.take() {
        o.take(MAX_OUTPUT + 1)
            .read_to_end(&mut out)
            .map_err(|e| failed(format!("{shown}: {e}")))?;
    }
    if out.len() as u64 > MAX_OUTPUT {
        let _ = child.kill();
        let _ = child.wait();
        return Err(failed(format!(
            "{shown}: more than {MAX_OUTPUT} bytes of output; refused"
        )));
    }
    let status = child.wait().map_err(|e| failed(format!("{shown}: {e}")))?;
    let err = err.and_then(|t| t.join().ok()).unwrap_or_default();
    if !status.success() {
        return Err(failed(format!("{shown} failed ({status}): {}", err.trim())));
    }
    Ok(out)
}

/// The bottle as rendered now (kept approvals folded in), with `decisions`.
struct Bottle {
    plan: Plan,
    rendered: Rendered,
}

fn render(t: &Target, decisions: BTreeMap<String, String>) -> Result<Bottle, Failure> {
    let plan = plan_for(&t.manifest, &t.agent, t.id.clone())?;
    if !plan.supervise {
        return Err(Failure {
            code: 2,
            message: format!(
                "bottle {}: `supervise: false` in {}, so nothing asks for access; fix: set `supervise: true` and render again",
                plan.bottle,
                t.manifest.display()
            ),
        });
    }
    let o = Options {
        namespace: t.namespace.clone(),
        host: super::host::read(&plan).map_err(usage)?,
        decisions,
        ..Default::default()
    };
    let rendered = super::render(&plan, &o).map_err(usage)?;
    Ok(Bottle { plan, rendered })
}

/// The local copy of the bottle's supervise state.
fn state_dir(b: &Bottle) -> PathBuf {
    crate::docker::record::state_root()
        .join("k8s")
        .join(&b.rendered.namespace)
        .join(super::dns_label(&b.plan.id))
        .join("supervise")
}

fn name(b: &Bottle, role: &str) -> String {
    super::object_name(&b.plan.id, role)
}

/// The decisions of the local copy, file name → JSON (the decisions
/// ConfigMap's data).
fn decisions(dir: &Path) -> Result<BTreeMap<String, String>, Failure> {
    let d = dir.join("decisions");
    let io = |p: &Path, e: std::io::Error| Failure {
        code: 1,
        message: format!("{}: {e}", p.display()),
    };
    let mut out = BTreeMap::new();
    // Decision files are named as proposals are: `<id>.json`.
    for id in bottle_supervise::state::proposal_ids(&d).map_err(|e| io(&d, e))? {
        let n = format!("{id}.json");
        let p = d.join(&n);
        let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
        out.insert(n, text);
    }
    Ok(out)
}

/// Brings the local copy up to date: routes and view from the render, then
/// the proposals out of the sidecar's Pod.
fn pull(t: &Target) -> Result<(Bottle, PathBuf), Failure> {
    let b = render(t, BTreeMap::new())?;
    let dir = state_dir(&b);
    let routes = b
        .plan
        .rendered
        .get("routes.json")
        .map(String::as_str)
        .unwrap_or("{\"routes\": []}");
    host::init_with_store(
        &dir,
        &b.plan.bottle,
        routes,
        &b.plan.allow,
        Some(&crate::approvals::store()),
    )
    .map_err(failure)?;
    let out = kubectl(
        &[
            "-n".into(),
            b.rendered.namespace.clone(),
            "exec".into(),
            format!("deploy/{}", name(&b, "supervise")),
            "--".into(),
            "/bottle-supervise".into(),
            "--state".into(),
            "/state".into(),
            "--print-proposals".into(),
        ],
        None,
    )?;
    host::import(&dir, &out).map_err(failure)?;
    Ok((b, dir))
}

/// Applies the bottle's ConfigMaps rendered again (the kept approvals, so
/// the new one, folded in; the decisions of the local copy), and restarts
/// the outer proxy when its allowlist changed (its config is a `subPath`
/// mount, which kubelet does not update).
fn push(t: &Target, dir: &Path, before: &Bottle) -> Result<(), Failure> {
    let b = render(t, decisions(dir)?)?;
    let maps: String = b
        .rendered
        .objects
        .iter()
        .filter(|o| o.kind == "ConfigMap" && !o.name.contains("-skill-"))
        .map(|o| format!("---\n{}", o.yaml))
        .collect();
    kubectl(
        &["apply".into(), "-f".into(), "-".into()],
        Some(maps.as_bytes()),
    )?;
    let ns = &b.rendered.namespace;
    println!(
        "applied ConfigMaps {}, {}, {}, {} in namespace {ns}",
        name(&b, "config"),
        name(&b, "live-routes"),
        name(&b, "supervise-view"),
        name(&b, "supervise-decisions"),
    );
    if b.plan.outer_proxy.allowlist != before.plan.outer_proxy.allowlist {
        let outer = name(&b, "outer-proxy");
        kubectl(
            &[
                "-n".into(),
                ns.clone(),
                "rollout".into(),
                "restart".into(),
                format!("deploy/{outer}"),
            ],
            None,
        )?;
        println!(
            "outer proxy ({}) restarted for its new allowlist: {} host(s)",
            b.plan.outer_proxy.kind,
            b.plan.outer_proxy.allowlist.len()
        );
    }
    Ok(())
}

/// `bottle supervise --k8s -m F -a A [list|approve|reject]`.
pub fn run(t: &Target, action: Action, operator: &str) -> Result<i32, Failure> {
    let (before, dir) = pull(t)?;
    let dirs = [dir.clone()];
    match action {
        Action::List { json } => {
            let pending = host::list(&dirs).map_err(failure)?;
            crate::supervise::print_pending(&pending, json, "in this bottle");
            Ok(0)
        }
        Action::Approve { id, edit } => {
            let a = host::approve_edited(&dirs, &id, operator, edit.as_ref()).map_err(failure)?;
            println!("approved {}: routes[{}] = {}", a.id, a.index, a.route_after);
            push(t, &dir, &before)?;
            println!("egress-proxy loads it when kubelet updates the ConfigMap (about a minute)");
            Ok(0)
        }
        Action::Reject { id, why } => {
            host::reject(&dirs, &id, &why, operator).map_err(failure)?;
            println!("rejected {id}");
            push(t, &dir, &before)?;
            Ok(0)
        }
    }
}
