//! Prepare: everything `apply` needs that is not in the plan, made on this
//! host without Docker — the token values (read from the host environment),
//! the bottle's two CAs, its state directory (with the undo record), and the
//! workspace archive with its fresh `.git/config`.
//!
//! Owns the order "state directory first, then the record": from the moment
//! the directory exists the record names it, so teardown removes it on every
//! path out of `bottle run`.
//!
//! Must never: print a secret, write a key outside the 0700 state directory,
//! or talk to Docker.

use std::io::Write;
use std::path::Path;

use crate::docker::{Inputs, Record, Recorder, record};
use crate::pki::{self, BottleCas};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::render;
use crate::secrets::{MissingSecret, Secrets};
use crate::workspace::{self, WorkspaceInfo};

/// What `prepare` made for one `bottle run`.
pub struct Prepared {
    pub secrets: Secrets,
    pub cas: BottleCas,
    /// Shared with apply; names the state directory from the start.
    pub record: Recorder,
    pub workspace_tar: Option<Vec<u8>>,
    /// The agent image's build context, made at load (its hash is the plan's tag).
    pub build_context: Option<Vec<u8>>,
}

impl Prepared {
    /// The inputs of `docker::apply` (the workspace archive moves into it).
    pub fn inputs(&mut self) -> Inputs<'_> {
        Inputs {
            secrets: &self.secrets,
            cas: &self.cas,
            workspace_tar: self.workspace_tar.take(),
            record: &self.record,
            build_context: self.build_context.as_deref(),
        }
    }
}

/// Why a bottle could not be prepared; never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Secret(#[from] MissingSecret),
    #[error(transparent)]
    Ca(#[from] pki::PkiError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl PrepareError {
    /// 2 for configuration (a missing variable), 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            PrepareError::Secret(_) => 2,
            _ => 1,
        }
    }
}

/// Prepares a bottle for `plan`. On failure nothing is left behind.
pub fn prepare(
    plan: &Plan,
    ws: Option<&WorkspaceInfo>,
    env: &dyn Fn(&str) -> Option<String>,
    progress: &Progress,
) -> Result<Prepared, PrepareError> {
    let secrets = Secrets::from_env(plan, env)?;
    match ws {
        Some(w) => {
            for x in &w.warnings {
                progress.warn(x);
            }
        }
        // A resumed bottle keeps its workspace volume: nothing is copied.
        None if plan.resumed => {}
        None => progress.warn(
            "not inside a git repository and no `workdir`: the agent gets an empty /workspace",
        ),
    }
    let cas = pki::mint_bottle_cas(&plan.id)?;
    let state_dir = record::state_root().join(&plan.id);
    write_state(&state_dir, &cas)?;
    let rec = Recorder::new(Record {
        id: plan.id.clone(),
        pid: std::process::id(),
        state_dir: state_dir.clone(),
        ..Default::default()
    });
    let _ = record::save_record(&rec.snapshot());
    progress.note(&format!(
        "bottle {} (state in {})",
        plan.id,
        state_dir.display()
    ));
    if plan.supervise
        && let Err(e) = supervise_state(plan, &state_dir)
    {
        let _ = std::fs::remove_dir_all(&state_dir);
        return Err(e);
    }
    let workspace_tar = match ws.map(|w| workspace_archive(plan, w)).transpose() {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&state_dir);
            return Err(e);
        }
    };
    Ok(Prepared {
        secrets,
        cas,
        record: rec,
        workspace_tar,
        build_context: None,
    })
}

/// The workspace as a tar, its `.git/config` rendered fresh with git-gate's remotes.
fn workspace_archive(plan: &Plan, w: &WorkspaceInfo) -> Result<Vec<u8>, PrepareError> {
    let original = w
        .git_dir
        .as_ref()
        .and_then(|g| std::fs::read_to_string(g.join("config")).ok());
    let remotes: Vec<(String, String)> = plan
        .git_remotes
        .iter()
        .map(|g| (g.name.clone(), g.url.clone()))
        .collect();
    let cfg = render::git_config::render(original.as_deref(), &remotes);
    workspace::archive(w, &cfg).map_err(|source| PrepareError::Io {
        what: "workspace archive".into(),
        source,
    })
}

/// The supervise state directory (`<state>/supervise`, docs/supervise.md):
/// the rendered routes (no secret: slot names only; kept approvals already
/// folded in by the plan), the allow hosts, where approvals are kept for the
/// bottle's name, and `proposals/` given to the sidecar's uid.
fn supervise_state(plan: &Plan, state_dir: &Path) -> Result<(), PrepareError> {
    let dir = state_dir.join(crate::plan::SUPERVISE_DIR);
    let routes = plan
        .rendered
        .get("routes.json")
        .map(String::as_str)
        .unwrap_or("{\"routes\": []}");
    // Approvals are kept for the bottle's name, outside this run's directory.
    let store = crate::approvals::store();
    let l = bottle_supervise::host::init_with_store(
        &dir,
        &plan.bottle,
        routes,
        &plan.allow,
        Some(&store),
    )
    .map_err(|e| PrepareError::Io {
        what: "the supervise state directory".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let uid = crate::plan::SUPERVISE_UID as u32;
    std::os::unix::fs::chown(l.proposals(), Some(uid), Some(uid)).map_err(|source| {
        PrepareError::Io {
            what: format!(
                "give {} to the supervise sidecar (uid {uid}; needs root or CAP_CHOWN)",
                l.proposals().display()
            ),
            source,
        }
    })?;
    Ok(())
}

/// Creates the bottle's state directory (0700) and writes the CA material
/// there (keys 0600), so an operator can inspect a `--keep` bottle.
fn write_state(dir: &Path, cas: &BottleCas) -> Result<(), PrepareError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |what: &str| {
        let what = what.to_string();
        move |source| PrepareError::Io { what, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create the state directory"))?;
    for (name, data, mode) in [
        ("proxy-ca.pem", cas.inner.cert_pem.as_str(), 0o644),
        ("proxy-ca-key.pem", cas.inner.key_pkcs8_pem.as_str(), 0o600),
        ("outer-ca.pem", cas.outer.cert_pem.as_str(), 0o644),
        ("outer-ca-key.pem", cas.outer.key_sec1_pem.as_str(), 0o600),
    ] {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(dir.join(name))
            .map_err(io("write CA files"))?;
        f.write_all(data.as_bytes()).map_err(io("write CA files"))?;
    }
    Ok(())
}
