//! The state directory: the only channel between the sidecar and the host.
//!
//! ```text
//! <state>/                      the host's; never mounted whole into a container
//!   routes/routes.json          the live routes file (egress-proxy --routes, --watch-routes;
//!                               the directory is mounted read-only into egress-proxy)
//!   bottle.json                 {bottle, allow}: what the view is rebuilt from
//!   approved.json               approvals kept for the bottle's next run
//!   audit.jsonl                 one line per decision
//!   .lock                       held (flock) while the host decides
//!   view/view.json              routes without credentials + allow hosts   (sidecar: read-only)
//!   proposals/<id>.json         written by the sidecar                     (sidecar: read-write)
//!   decisions/<id>.json         written by the host only                   (sidecar: read-only)
//! ```
//!
//! Owns the layout, the file formats of proposals and decisions, proposal
//! ids, atomic writes and bounded reads. Must never follow an id that is not
//! of our own shape (no path can be smuggled in), nor read a file without a
//! size bound: proposal files come from the sidecar, which the agent talks to.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::view::ViewRoute;

/// Files this crate reads are small; anything bigger is refused, not read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Paths of one state directory (see the module comment).
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    pub fn routes(&self) -> PathBuf {
        self.root.join("routes").join("routes.json")
    }
    pub fn bottle(&self) -> PathBuf {
        self.root.join("bottle.json")
    }
    pub fn approved(&self) -> PathBuf {
        self.root.join("approved.json")
    }
    pub fn audit(&self) -> PathBuf {
        self.root.join("audit.jsonl")
    }
    pub fn routes_dir(&self) -> PathBuf {
        self.root.join("routes")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join(".lock")
    }
    pub fn view_dir(&self) -> PathBuf {
        self.root.join("view")
    }
    pub fn proposals(&self) -> PathBuf {
        self.root.join("proposals")
    }
    pub fn decisions(&self) -> PathBuf {
        self.root.join("decisions")
    }
}

/// What the sidecar sees of the same directory: `--state DIR` holding
/// `view/`, `proposals/` and `decisions/` (the launcher mounts those three).
#[derive(Debug, Clone)]
pub struct SidecarLayout {
    pub root: PathBuf,
}

impl SidecarLayout {
    pub fn view(&self) -> PathBuf {
        self.root.join("view").join("view.json")
    }
    pub fn proposal(&self, id: &ProposalId) -> PathBuf {
        self.root.join("proposals").join(id.file_name())
    }
    pub fn proposals(&self) -> PathBuf {
        self.root.join("proposals")
    }
    pub fn decision(&self, id: &ProposalId) -> PathBuf {
        self.root.join("decisions").join(id.file_name())
    }
}

/// A proposal id: `p` and 16 lowercase hex digits, random. Parsing is the
/// only way to get one, so an id is always a safe file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ProposalId(String);

impl ProposalId {
    pub fn random() -> std::io::Result<ProposalId> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Ok(ProposalId(format!("p{hex}")))
    }
    pub fn parse(s: &str) -> Option<ProposalId> {
        let ok = s.len() == 17
            && s.starts_with('p')
            && s[1..]
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| ProposalId(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn file_name(&self) -> String {
        format!("{}.json", self.0)
    }
}

impl std::fmt::Display for ProposalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProposalId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ProposalId, D::Error> {
        let s = String::deserialize(d)?;
        ProposalId::parse(&s).ok_or_else(|| serde::de::Error::custom("not a proposal id"))
    }
}

/// What the agent asked for (already bounded and validated by the sidecar;
/// the host validates again, it never trusts this file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRequest {
    pub host: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    pub justification: String,
}

/// `proposals/<id>.json`, written by the sidecar.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    pub id: ProposalId,
    /// RFC 3339, UTC.
    pub created: String,
    /// The bottle name, from the view.
    pub bottle: String,
    /// Who asked: the MCP client's name and version from `initialize`.
    pub client: String,
    pub request: EgressRequest,
}

/// The outcome recorded in `decisions/<id>.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Approved,
    Rejected,
}

/// `decisions/<id>.json`, written by the host only. Carries the route as it
/// now is, without credentials: the agent reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub id: ProposalId,
    pub status: Status,
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<ViewRoute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The ids of the proposal files in `dir`, sorted; other names are skipped.
pub fn proposal_ids(dir: &Path) -> std::io::Result<Vec<ProposalId>> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(ProposalId::parse)
        {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// At most this many proposals are exported or imported at once.
pub const MAX_EXPORTED: usize = 256;

/// The pending proposals of a sidecar's state directory (those without a
/// decision it can see), oldest first, at most [`MAX_EXPORTED`]
/// (`bottle-supervise --print-proposals`: where the operator cannot read
/// the directory, as in a Kubernetes Pod, they read this). Decided ones are
/// left out, so a Pod that has decided thousands still exports what waits;
/// the sidecar itself keeps at most `--max-pending` waiting. A file that is
/// not a proposal is skipped with a warning.
pub fn export_pending(l: &SidecarLayout) -> std::io::Result<Vec<Proposal>> {
    let mut out = Vec::new();
    for id in proposal_ids(&l.proposals())? {
        if l.decision(&id).exists() {
            continue;
        }
        match read_json::<Proposal>(&l.proposal(&id)) {
            Ok(Some(p)) if p.id == id => out.push(p),
            Ok(_) => tracing::warn!(%id, "proposal file changed or holds another id; skipped"),
            Err(e) => tracing::warn!(%id, error = %e, "proposal file skipped"),
        }
    }
    out.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    out.truncate(MAX_EXPORTED);
    Ok(out)
}

/// Now, RFC 3339 UTC (`2026-12-06T01:02:03Z`).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Reads a small file whole; refuses one over [`MAX_FILE_BYTES`].
/// `Ok(None)` when it does not exist.
pub fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(Some(buf))
}

/// Reads and parses a small JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match read_bounded(path)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
    }
}

/// A temporary file next to `path`, written and synced: the caller renames or
/// links it into place. Same directory, so the rename is atomic.
fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut r = [0u8; 6];
    getrandom::fill(&mut r).map_err(|e| std::io::Error::other(e.to_string()))?;
    let suffix: String = r.iter().map(|x| format!("{x:02x}")).collect();
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Replaces `path` atomically: write a temporary file in the same directory,
/// then rename over. A reader (egress-proxy `--watch-routes`) sees the old
/// file or the new one, never half of one; the new inode marks the change.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Creates `path` atomically and exclusively: fails with `AlreadyExists` when
/// it is there (a proposal is decided once).
pub fn create_exclusive(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_only_our_shape() {
        let id = ProposalId::random().unwrap();
        assert_eq!(ProposalId::parse(id.as_str()), Some(id));
        for bad in [
            "",
            "p",
            "../decisions/x",
            "p0123456789abcdeF",
            "p0123456789abcde/",
            "q0123456789abcdef",
            "p0123456789abcdef0",
        ] {
            assert_eq!(ProposalId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn create_exclusive_refuses_a_second_write() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        create_exclusive(&p, b"1", 0o644).unwrap();
        let e = create_exclusive(&p, b"2", 0o644).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"1");
        // no temporary file is left behind
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
