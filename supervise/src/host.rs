//! The host side: what `bottle supervise` calls. It is the only writer of
//! `routes.json`, `view/`, `decisions/`, `approved.json` and `audit.jsonl`.
//!
//! Owns listing proposals (who, what, why, and the route as it would be
//! after), approving (validate again with addon-rules against the real
//! routes file, rewrite it atomically, publish the decision and the new
//! view, keep the approval, audit) and rejecting (decision and audit only;
//! `routes.json` is not touched).
//!
//! Must never trust a proposal file: it was written by the sidecar, which
//! the agent talks to. Its id is re-parsed, its size bounded, its request
//! re-bounded and re-planned against the host's own routes file. Must never
//! put a credential field into a file the sidecar can read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::change::{self, ChangeError, Kind, Limits};
use crate::state::{
    self, Decision, EgressRequest, Layout, Proposal, ProposalId, Status, read_json,
};
use crate::store::Store;
pub use crate::store::{
    Approvals, KeptApproval, Merged, merge_approved, merge_kept, read_approvals, revoke,
};
use crate::view::{View, ViewRoute};

/// Why the host cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{0:?} is not a proposal id (they look like p0123456789abcdef)")]
    BadId(String),
    #[error("no pending or decided proposal {0} in the state directories given")]
    NoSuchProposal(String),
    #[error("proposal {0} was already {1}")]
    AlreadyDecided(String, &'static str),
    #[error("a rejection needs a reason (--why TEXT) of at most 2000 characters")]
    NoReason,
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{0}")]
    Routes(String),
    #[error("proposal {id}: {err}")]
    Change { id: String, err: ChangeError },
    /// An operator's edit that would grant more than the agent asked.
    #[error("proposal {id}: the edit widens what was asked: {why}")]
    EditWidens { id: String, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |err| HostError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// `bottle.json`: what the view is rebuilt from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BottleMeta {
    bottle: String,
    allow: Vec<String>,
    /// Where approvals are kept for the bottle's name (`None`: in the state
    /// directory's `approved.json`, for this run only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store: Option<Store>,
}

/// Creates (or refreshes) a state directory for a bottle: `routes/routes.json` (the
/// launcher's rendered routes, JSON), `bottle.json`, `view/view.json`, and
/// empty `proposals/` and `decisions/`. The routes are validated first.
pub fn init(
    root: &Path,
    bottle: &str,
    routes_json: &str,
    allow: &[String],
) -> Result<Layout, HostError> {
    init_with_store(root, bottle, routes_json, allow, None)
}

/// [`init`], keeping approvals (and a copy of every audit line) for the
/// bottle's name in `store`, outside the state directory, so the next run
/// of the bottle starts with them.
pub fn init_with_store(
    root: &Path,
    bottle: &str,
    routes_json: &str,
    allow: &[String],
    store: Option<&Store>,
) -> Result<Layout, HostError> {
    use std::os::unix::fs::DirBuilderExt;
    let l = Layout::new(root);
    let policy = load_routes(routes_json, &l.routes())?;
    for (dir, mode) in [
        (l.root.clone(), 0o700),
        (l.routes_dir(), 0o755),
        (l.view_dir(), 0o755),
        // The sidecar writes here: the launcher gives it to the sidecar's uid.
        (l.proposals(), 0o755),
        (l.decisions(), 0o755),
    ] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&dir)
            .map_err(io(&dir))?;
    }
    state::write_atomic(&l.routes(), routes_json.as_bytes(), 0o644).map_err(io(&l.routes()))?;
    let meta = BottleMeta {
        bottle: bottle.to_string(),
        allow: allow.to_vec(),
        store: store.cloned(),
    };
    write_json(&l.bottle(), &meta, 0o644)?;
    publish_view(&l, &meta, &policy)?;
    Ok(l)
}

fn load_routes(text: &str, path: &Path) -> Result<addon_rules::Policy, HostError> {
    if serde_json::from_str::<Value>(text).is_err() {
        return Err(HostError::Routes(format!(
            "{}: supervise edits JSON routes files only (the launcher writes JSON)",
            path.display()
        )));
    }
    addon_rules::Policy::from_text(text, &path.display().to_string())
        .map_err(|e| HostError::Routes(e.to_string()))
}

fn write_json<T: Serialize>(path: &Path, v: &T, mode: u32) -> Result<(), HostError> {
    let text =
        serde_json::to_string_pretty(v).map_err(|e| HostError::Routes(e.to_string()))? + "\n";
    state::write_atomic(path, text.as_bytes(), mode).map_err(io(path))
}

fn publish_view(
    l: &Layout,
    meta: &BottleMeta,
    policy: &addon_rules::Policy,
) -> Result<(), HostError> {
    let view = View::new(&meta.bottle, policy, &meta.allow);
    write_json(&l.view_dir().join("view.json"), &view, 0o644)
}

/// A pending proposal as the operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub id: ProposalId,
    /// The state directory it is in.
    pub state: PathBuf,
    pub bottle: String,
    pub created: String,
    /// Who asked: the agent's MCP client.
    pub client: String,
    /// What and why (`justification`).
    pub request: EgressRequest,
    /// `new-route` or `extend`; `None` when it cannot apply now (`problem`).
    pub kind: Option<Kind>,
    /// The route entry now (an extension), credential fields included: this
    /// is the operator's view, never the agent's.
    pub route_before: Option<Value>,
    /// The route entry after approval.
    pub route_after: Option<Value>,
    /// The route carries a credential, and approving sends it to more paths
    /// or methods. Look twice.
    pub widens_credential: bool,
    /// A new exact route for a host a wildcard route covers today.
    pub shadows_wildcard: Option<String>,
    /// Why approving would fail now (e.g. the routes changed since).
    pub problem: Option<String>,
}

fn proposal_ids(l: &Layout) -> Result<Vec<ProposalId>, HostError> {
    let dir = l.proposals();
    match state::proposal_ids(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        r => r.map_err(io(&dir)),
    }
}

fn read_proposal(l: &Layout, id: &ProposalId) -> Result<Option<Proposal>, HostError> {
    let path = l.proposals().join(format!("{id}.json"));
    let p: Option<Proposal> = read_json(&path).map_err(io(&path))?;
    match p {
        // The file name is the id; a file claiming another id is not trusted.
        Some(p) if &p.id != id => Err(HostError::Routes(format!(
            "{}: holds id {}, not {id}",
            path.display(),
            p.id
        ))),
        other => Ok(other),
    }
}

fn read_decision(l: &Layout, id: &ProposalId) -> Result<Option<Decision>, HostError> {
    let path = l.decisions().join(format!("{id}.json"));
    read_json(&path).map_err(io(&path))
}

fn routes_doc(l: &Layout) -> Result<(String, Value), HostError> {
    let path = l.routes();
    let bytes = state::read_bounded(&path)
        .map_err(io(&path))?
        .ok_or_else(|| HostError::Routes(format!("{}: missing", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| HostError::Routes(format!("{}: not UTF-8", path.display())))?;
    let doc = serde_json::from_str(&text).map_err(|e| {
        HostError::Routes(format!(
            "{}: supervise edits JSON routes files only: {e}",
            path.display()
        ))
    })?;
    Ok((text, doc))
}

/// Plans a proposal against the host's routes file, bounds included.
fn plan_for(l: &Layout, p: &Proposal) -> Result<change::Planned, HostError> {
    let (_, doc) = routes_doc(l)?;
    let wrap = |err| HostError::Change {
        id: p.id.to_string(),
        err,
    };
    change::check_bounds(&p.request, &Limits::default()).map_err(wrap)?;
    change::plan(&doc, &p.request, &l.routes().display().to_string()).map_err(wrap)
}

/// The pending proposals of every state directory given, oldest first per
/// directory. A proposal file that cannot be read is skipped with a warning
/// on stderr rather than hiding the others.
pub fn list(state_dirs: &[PathBuf]) -> Result<Vec<Pending>, HostError> {
    let mut out = Vec::new();
    for dir in state_dirs {
        let l = Layout::new(dir);
        let mut ps = Vec::new();
        for id in proposal_ids(&l)? {
            if read_decision(&l, &id)?.is_some() {
                continue;
            }
            match read_proposal(&l, &id) {
                Ok(Some(p)) => ps.push(p),
                Ok(None) => {}
                Err(e) => eprintln!("bottle supervise: skipping {id}: {e}"),
            }
        }
        ps.sort_by(|a, b| a.created.cmp(&b.created));
        for p in ps {
            let planned = plan_for(&l, &p);
            let (kind, before, after, widens, shadows, problem) = match planned {
                Ok(pl) => (
                    Some(pl.kind),
                    pl.before,
                    Some(pl.after),
                    pl.widens_credential,
                    pl.shadows_wildcard,
                    None,
                ),
                Err(e) => (None, None, None, false, None, Some(e.to_string())),
            };
            out.push(Pending {
                id: p.id,
                state: dir.clone(),
                bottle: p.bottle,
                created: p.created,
                client: p.client,
                request: p.request,
                kind,
                route_before: before,
                route_after: after,
                widens_credential: widens,
                shadows_wildcard: shadows,
                problem,
            });
        }
    }
    Ok(out)
}

/// Copies proposals read from a sidecar that is not on this host (the JSON
/// array `bottle-supervise --print-proposals` prints) into `state_dir`'s
/// `proposals/`, so [`list`], [`approve`] and [`reject`] see them. Each is
/// parsed as strictly as a proposal file (unknown fields refused, the id's
/// shape checked); one already there is left as it is (a proposal is
/// written once). Returns how many were new.
pub fn import(state_dir: &Path, json: &[u8]) -> Result<usize, HostError> {
    let l = Layout::new(state_dir);
    let ps: Vec<Proposal> = serde_json::from_slice(json).map_err(|e| {
        HostError::Routes(format!(
            "the sidecar's proposals (bottle-supervise --print-proposals) do not parse: {e}"
        ))
    })?;
    if ps.len() > state::MAX_EXPORTED {
        return Err(HostError::Routes(format!(
            "the sidecar sent {} proposals, more than {}",
            ps.len(),
            state::MAX_EXPORTED
        )));
    }
    let mut new = 0;
    for p in ps {
        let path = l.proposals().join(format!("{}.json", p.id));
        let text = serde_json::to_vec_pretty(&p).map_err(|e| HostError::Routes(e.to_string()))?;
        match state::create_exclusive(&path, &text, 0o644) {
            Ok(()) => new += 1,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Ok(new)
}

/// Finds which state directory holds proposal `id`.
fn locate(state_dirs: &[PathBuf], id: &str) -> Result<(Layout, ProposalId), HostError> {
    let pid = ProposalId::parse(id).ok_or_else(|| HostError::BadId(id.to_string()))?;
    for dir in state_dirs {
        let l = Layout::new(dir);
        if l.proposals().join(format!("{pid}.json")).is_file() {
            return Ok((l, pid));
        }
    }
    Err(HostError::NoSuchProposal(id.to_string()))
}

/// Held while deciding, so two operators cannot both rewrite the routes.
struct Locked(std::fs::File);

fn lock(l: &Layout) -> Result<Locked, HostError> {
    let path = l.lock();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    f.lock().map_err(io(&path))?;
    Ok(Locked(f))
}

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn pending_proposal(l: &Layout, id: &ProposalId) -> Result<Proposal, HostError> {
    if let Some(d) = read_decision(l, id)? {
        let s = match d.status {
            Status::Approved => "approved",
            Status::Rejected => "rejected",
        };
        return Err(HostError::AlreadyDecided(id.to_string(), s));
    }
    read_proposal(l, id)?.ok_or_else(|| HostError::NoSuchProposal(id.to_string()))
}

/// What an audit line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decided {
    Approved,
    Rejected,
    /// A kept approval removed (`bottle approvals revoke`).
    Revoked,
}

/// One line of `audit.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: String,
    pub id: ProposalId,
    pub bottle: String,
    pub decision: Decided,
    /// Who decided (the operator).
    pub operator: String,
    /// Who asked (the agent's MCP client).
    pub client: String,
    /// What was asked, and why.
    pub request: EgressRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// The route entry before and after (the diff of the routes file: one
    /// entry changes or is appended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_after: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The operator's edits, when the approval was edited (`request` is
    /// then what the agent asked, and `route_after` what was applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<Edit>,
}

/// The operator's edits to a proposal before approving it: replace the
/// requested paths or methods. The host stays the one the agent asked for,
/// and the edited change is validated like any other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
}

/// Appends `rec` to the run's `audit.jsonl` and, when approvals are kept
/// for the bottle's name, to the store's audit log too (the run's one goes
/// with the state directory at teardown).
fn audit(l: &Layout, meta: &BottleMeta, rec: &AuditRecord) -> Result<(), HostError> {
    crate::store::append_audit(&l.audit(), rec)?;
    match &meta.store {
        Some(s) => s.audit(&meta.bottle, rec),
        None => Ok(()),
    }
}

fn read_meta(l: &Layout, bottle: &str) -> Result<BottleMeta, HostError> {
    Ok(read_json(&l.bottle())
        .map_err(io(&l.bottle()))?
        .unwrap_or(BottleMeta {
            bottle: bottle.to_string(),
            allow: Vec::new(),
            store: None,
        }))
}

/// What an approval did.
#[derive(Debug, Clone, Serialize)]
pub struct Approved {
    pub id: ProposalId,
    pub kind: Kind,
    /// `routes[index]` of the new routes file.
    pub index: usize,
    pub route_after: Value,
    pub routes_file: PathBuf,
}

/// Approves proposal `id`: validates it again with addon-rules against the
/// live routes file, rewrites that file atomically (egress-proxy
/// `--watch-routes` or a SIGHUP picks it up), appends to `audit.jsonl`,
/// publishes the new view, keeps the approval in `approved.json`, and last
/// publishes the decision. `operator` is who decided.
pub fn approve(state_dirs: &[PathBuf], id: &str, operator: &str) -> Result<Approved, HostError> {
    approve_edited(state_dirs, id, operator, None)
}

/// [`approve`], with the operator's edits to the requested paths or methods
/// applied first (the TUI's "edit"). An edit may only narrow what the agent
/// asked ([`crate::narrow`]); a widening one is refused and nothing changes.
/// The audit keeps both what the agent asked and the edit.
pub fn approve_edited(
    state_dirs: &[PathBuf],
    id: &str,
    operator: &str,
    edit: Option<&Edit>,
) -> Result<Approved, HostError> {
    let (l, pid) = locate(state_dirs, id)?;
    let _lock = lock(&l)?;
    let mut p = pending_proposal(&l, &pid)?;
    let asked = p.request.clone();
    if let Some(e) = edit {
        if let Some(paths) = &e.paths {
            p.request.paths.clone_from(paths);
        }
        if let Some(methods) = &e.methods {
            p.request.methods.clone_from(methods);
        }
    }
    let planned = plan_for(&l, &p)?;
    if edit.is_some() {
        crate::narrow::check(&asked, &p.request, planned.kind).map_err(|why| {
            HostError::EditWidens {
                id: pid.to_string(),
                why,
            }
        })?;
    }
    let time = state::now_rfc3339();
    // The bottle's name is the host's own record, never the proposal's
    // (the sidecar wrote that one).
    let meta = read_meta(&l, &p.bottle)?;

    state::write_atomic(&l.routes(), planned.text.as_bytes(), 0o644).map_err(io(&l.routes()))?;
    audit(
        &l,
        &meta,
        &AuditRecord {
            time: time.clone(),
            id: pid.clone(),
            bottle: meta.bottle.clone(),
            decision: Decided::Approved,
            operator: operator.to_string(),
            client: p.client.clone(),
            request: asked,
            kind: Some(planned.kind),
            route_before: planned.before.clone(),
            route_after: Some(planned.after.clone()),
            reason: None,
            edit: edit.cloned(),
        },
    )?;
    let decision = Decision {
        id: pid.clone(),
        status: Status::Approved,
        time: time.clone(),
        route: planned
            .policy
            .routes()
            .get(planned.index)
            .map(ViewRoute::from_route),
        reason: None,
    };
    publish_view(&l, &meta, &planned.policy)?;

    let keep = KeptApproval {
        id: pid.clone(),
        time,
        operator: operator.to_string(),
        client: p.client.clone(),
        request: p.request,
        route: planned.after.clone(),
    };
    match &meta.store {
        Some(store) => store.add(&meta.bottle, keep)?,
        None => {
            let mut kept = read_approvals(&l.approved())?;
            kept.approved.push(keep);
            crate::store::write_approvals(&l.approved(), &kept)?;
        }
    }
    // Last: once the agent reads "approved", the routes, the view and the
    // kept approval are already in place.
    publish_decision(&l, &decision)?;
    Ok(Approved {
        id: pid,
        kind: planned.kind,
        index: planned.index,
        route_after: planned.after,
        routes_file: l.routes(),
    })
}

fn publish_decision(l: &Layout, d: &Decision) -> Result<(), HostError> {
    let path = l.decisions().join(format!("{}.json", d.id));
    let text =
        serde_json::to_string_pretty(d).map_err(|e| HostError::Routes(e.to_string()))? + "\n";
    state::create_exclusive(&path, text.as_bytes(), 0o644).map_err(io(&path))
}

/// Rejects proposal `id` with a reason the agent will read. The routes file
/// is not touched.
pub fn reject(
    state_dirs: &[PathBuf],
    id: &str,
    why: &str,
    operator: &str,
) -> Result<(), HostError> {
    if why.trim().is_empty() || why.chars().count() > 2000 {
        return Err(HostError::NoReason);
    }
    let (l, pid) = locate(state_dirs, id)?;
    let _lock = lock(&l)?;
    let p = pending_proposal(&l, &pid)?;
    let time = state::now_rfc3339();
    let meta = read_meta(&l, &p.bottle)?;
    audit(
        &l,
        &meta,
        &AuditRecord {
            time: time.clone(),
            id: pid.clone(),
            bottle: meta.bottle.clone(),
            decision: Decided::Rejected,
            operator: operator.to_string(),
            client: p.client,
            request: p.request,
            kind: None,
            route_before: None,
            route_after: None,
            reason: Some(why.to_string()),
            edit: None,
        },
    )?;
    publish_decision(
        &l,
        &Decision {
            id: pid,
            status: Status::Rejected,
            time,
            route: None,
            reason: Some(why.to_string()),
        },
    )
}
