//! Approvals kept per bottle **name**, outside any run's state directory
//! (a run's directory is removed at teardown, and its id is new each run):
//!
//! ```text
//! <store>/                      0700, e.g. <state root>/approvals
//!   <bottle>.json               {"approved": [KeptApproval, ...]}   0600
//!   <bottle>.audit.jsonl        every decision about the bottle      0600
//!   .<bottle>.lock              flock held while the file changes
//! ```
//!
//! Owns the file formats of kept approvals, re-applying them to a freshly
//! rendered routes file (each one planned and validated again with
//! addon-rules; one that no longer applies is skipped and reported, never
//! forced), revoking one (audited), and the audit line writer.
//!
//! Must never follow a symlink planted at one of its names (files are
//! opened with `O_NOFOLLOW` and replaced by temp + rename), accept a bottle
//! name that is not a plain file name, or hold a credential: a kept route
//! carries slot names at most, as the routes file does.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::change;
use crate::host::{AuditRecord, HostError};
use crate::state::{self, EgressRequest, MAX_FILE_BYTES, ProposalId};

/// One kept approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptApproval {
    pub id: ProposalId,
    pub time: String,
    pub operator: String,
    /// Who asked (the agent's MCP client).
    #[serde(default)]
    pub client: String,
    /// What was applied (with the operator's edits), and why.
    pub request: EgressRequest,
    /// The routes-file entry as it was after the approval.
    pub route: Value,
}

/// A kept-approvals file: re-applied on the bottle's next run, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Approvals {
    pub approved: Vec<KeptApproval>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |err| HostError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Reads a small file without following a symlink at its name; `Ok(None)`
/// when it does not exist.
fn read_nofollow(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(std::io::Error::other(format!(
                "{} is a symlink; refusing to follow it (remove it)",
                path.display()
            )));
        }
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

/// Reads a kept-approvals file (empty when missing).
pub fn read_approvals(path: &Path) -> Result<Approvals, HostError> {
    match read_nofollow(path).map_err(io(path))? {
        None => Ok(Approvals::default()),
        Some(b) => serde_json::from_slice(&b)
            .map_err(|e| HostError::Routes(format!("{}: {e}", path.display()))),
    }
}

pub(crate) fn write_approvals(path: &Path, a: &Approvals) -> Result<(), HostError> {
    let text =
        serde_json::to_string_pretty(a).map_err(|e| HostError::Routes(e.to_string()))? + "\n";
    // The temporary file is created exclusively and renamed over the name:
    // a symlink planted there is replaced, never written through.
    state::write_atomic(path, text.as_bytes(), 0o600).map_err(io(path))
}

/// Appends one audit line (0600, `O_APPEND`, never through a symlink).
pub(crate) fn append_audit(path: &Path, rec: &AuditRecord) -> Result<(), HostError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut line = serde_json::to_string(rec).map_err(|e| HostError::Routes(e.to_string()))?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io(path))?;
    // One write per record: O_APPEND keeps concurrent lines whole.
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(io(path))
}

/// What re-applying kept approvals did to a freshly rendered routes file.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The routes file to start the next run with.
    pub text: String,
    /// Approvals applied, in order.
    pub applied: Vec<KeptApproval>,
    /// Approvals not applied and why (already in the manifest, or no longer
    /// valid against it).
    pub skipped: Vec<(KeptApproval, String)>,
}

/// Re-applies `kept` (in order) to the routes the launcher rendered for the
/// next run. Each is planned and validated as on approval; one that no
/// longer applies is skipped and reported, never forced.
pub fn merge_kept(routes_json: &str, kept: &[KeptApproval]) -> Result<Merged, HostError> {
    let mut doc: Value = serde_json::from_str(routes_json)
        .map_err(|e| HostError::Routes(format!("rendered routes: not JSON: {e}")))?;
    let mut text = routes_json.to_string();
    let (mut applied, mut skipped) = (Vec::new(), Vec::new());
    for a in kept {
        match change::plan(&doc, &a.request, "routes.json (with approvals)") {
            Ok(pl) => {
                text = pl.text;
                doc = serde_json::from_str(&text).map_err(|e| HostError::Routes(e.to_string()))?;
                applied.push(a.clone());
            }
            Err(e) => skipped.push((a.clone(), e.to_string())),
        }
    }
    Ok(Merged {
        text,
        applied,
        skipped,
    })
}

/// [`merge_kept`] over a kept-approvals file.
pub fn merge_approved(routes_json: &str, approved_file: &Path) -> Result<Merged, HostError> {
    merge_kept(routes_json, &read_approvals(approved_file)?.approved)
}

/// Removes a kept approval from a kept-approvals file.
pub fn revoke(approved_file: &Path, id: &str) -> Result<KeptApproval, HostError> {
    let pid = ProposalId::parse(id).ok_or_else(|| HostError::BadId(id.to_string()))?;
    let mut kept = read_approvals(approved_file)?;
    let pos = kept
        .approved
        .iter()
        .position(|a| a.id == pid)
        .ok_or_else(|| HostError::NoSuchProposal(id.to_string()))?;
    let gone = kept.approved.remove(pos);
    write_approvals(approved_file, &kept)?;
    Ok(gone)
}

/// A bottle name usable as a file name here (the launcher's own rule for
/// bottle names is stricter: lower case, digits, `-`, `_`).
fn name_ok(bottle: &str) -> bool {
    !bottle.is_empty()
        && bottle.len() <= 64
        && !bottle.starts_with(['.', '-'])
        && bottle
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The per-bottle-name store (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Store {
    pub root: PathBuf,
}

/// Held while a bottle's kept approvals change (two bottles of one name
/// may run at once).
struct Locked(std::fs::File);

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    fn checked(&self, bottle: &str) -> Result<(), HostError> {
        if name_ok(bottle) {
            Ok(())
        } else {
            Err(HostError::Routes(format!(
                "{bottle:?} is not a bottle name approvals can be kept for"
            )))
        }
    }

    /// `<store>/<bottle>.json`.
    pub fn file(&self, bottle: &str) -> PathBuf {
        self.root.join(format!("{bottle}.json"))
    }

    /// `<store>/<bottle>.audit.jsonl`.
    pub fn audit_file(&self, bottle: &str) -> PathBuf {
        self.root.join(format!("{bottle}.audit.jsonl"))
    }

    /// Creates the store directory (0700); refuses one that is a symlink.
    fn ensure(&self) -> Result<(), HostError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        match std::fs::symlink_metadata(&self.root) {
            Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                return Err(HostError::Routes(format!(
                    "{} is not a directory (a symlink?); refusing to keep approvals there",
                    self.root.display()
                )));
            }
            Ok(m) => {
                if m.permissions().mode() & 0o077 != 0 {
                    std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
                        .map_err(io(&self.root))?;
                }
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&self.root)(e)),
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io(&self.root))
    }

    fn lock(&self, bottle: &str) -> Result<Locked, HostError> {
        use std::os::unix::fs::OpenOptionsExt;
        self.ensure()?;
        let path = self.root.join(format!(".{bottle}.lock"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io(&path))?;
        f.lock().map_err(io(&path))?;
        Ok(Locked(f))
    }

    /// The kept approvals of `bottle` (empty when none).
    pub fn read(&self, bottle: &str) -> Result<Approvals, HostError> {
        self.checked(bottle)?;
        read_approvals(&self.file(bottle))
    }

    /// Appends an approval to `bottle`'s kept approvals.
    pub fn add(&self, bottle: &str, a: KeptApproval) -> Result<(), HostError> {
        self.checked(bottle)?;
        let _lock = self.lock(bottle)?;
        let path = self.file(bottle);
        let mut kept = read_approvals(&path)?;
        kept.approved.push(a);
        write_approvals(&path, &kept)
    }

    /// Appends an audit line to `bottle`'s audit log.
    pub fn audit(&self, bottle: &str, rec: &AuditRecord) -> Result<(), HostError> {
        self.checked(bottle)?;
        self.ensure()?;
        append_audit(&self.audit_file(bottle), rec)
    }

    /// Bottle names with a kept-approvals file, sorted.
    pub fn bottles(&self) -> Result<Vec<String>, HostError> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.root)(e)),
        };
        let mut v: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let n = e.file_name().to_str()?.strip_suffix(".json")?.to_string();
                name_ok(&n).then_some(n)
            })
            .collect();
        v.sort();
        Ok(v)
    }

    /// Revokes kept approval `id` of whichever bottle holds it, and audits
    /// it there (`decision: revoked`, `route_before`: the route as approved).
    /// Returns the bottle name and the approval removed.
    pub fn revoke(&self, id: &str, operator: &str) -> Result<(String, KeptApproval), HostError> {
        let pid = ProposalId::parse(id).ok_or_else(|| HostError::BadId(id.to_string()))?;
        for bottle in self.bottles()? {
            if !self.read(&bottle)?.approved.iter().any(|a| a.id == pid) {
                continue;
            }
            let gone = {
                let _lock = self.lock(&bottle)?;
                revoke(&self.file(&bottle), id)?
            };
            self.audit(
                &bottle,
                &AuditRecord {
                    time: state::now_rfc3339(),
                    id: pid,
                    bottle: bottle.clone(),
                    decision: crate::host::Decided::Revoked,
                    operator: operator.to_string(),
                    client: gone.client.clone(),
                    request: gone.request.clone(),
                    kind: None,
                    route_before: Some(gone.route.clone()),
                    route_after: None,
                    reason: Some("revoked: the next run starts without it".into()),
                    edit: None,
                },
            )?;
            return Ok((bottle, gone));
        }
        Err(HostError::NoSuchProposal(format!(
            "{id} (no kept approval with that id in {})",
            self.root.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(id: &str, host: &str) -> KeptApproval {
        KeptApproval {
            id: ProposalId::parse(id).unwrap(),
            time: "2026-12-06T00:00:00Z".into(),
            operator: "op".into(),
            client: "c".into(),
            request: EgressRequest {
                host: host.into(),
                paths: vec![],
                methods: vec![],
                justification: "why".into(),
            },
            route: serde_json::json!({ "host": host }),
        }
    }

    #[test]
    fn add_read_revoke_audits_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("approvals"));
        s.add("dev", kept("p00000000000000a1", "a.example.com"))
            .unwrap();
        s.add("dev", kept("p00000000000000a2", "b.example.com"))
            .unwrap();
        assert_eq!(s.bottles().unwrap(), ["dev"]);
        assert_eq!(s.read("dev").unwrap().approved.len(), 2);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&s.root), 0o700);
        assert_eq!(mode(&s.file("dev")), 0o600);
        let (b, gone) = s.revoke("p00000000000000a1", "op2").unwrap();
        assert_eq!(
            (b.as_str(), gone.request.host.as_str()),
            ("dev", "a.example.com")
        );
        assert_eq!(s.read("dev").unwrap().approved.len(), 1);
        let audit = std::fs::read_to_string(s.audit_file("dev")).unwrap();
        let rec: Value = serde_json::from_str(audit.trim()).unwrap();
        assert_eq!(rec["decision"], "revoked");
        assert_eq!(rec["operator"], "op2");
        assert_eq!(rec["route_before"]["host"], "a.example.com");
        assert_eq!(mode(&s.audit_file("dev")), 0o600);
        let e = s.revoke("p00000000000000a1", "op").unwrap_err().to_string();
        assert!(e.contains("no kept approval"), "{e}");
        assert!(matches!(s.revoke("../x", "op"), Err(HostError::BadId(_))));
    }

    #[test]
    fn a_planted_symlink_is_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path().join("approvals"));
        s.add("dev", kept("p00000000000000a1", "a.example.com"))
            .unwrap();
        let target = d.path().join("elsewhere.json");
        std::fs::write(&target, "{\"approved\": []}").unwrap();
        std::fs::remove_file(s.file("dev")).unwrap();
        std::os::unix::fs::symlink(&target, s.file("dev")).unwrap();
        let e = s.read("dev").unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        // A write replaces the link; the file it pointed at is unchanged.
        write_approvals(&s.file("dev"), &Approvals::default()).unwrap();
        assert!(
            !std::fs::symlink_metadata(s.file("dev"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "{\"approved\": []}"
        );
        // The audit log is not written through a link either.
        s.add("dev", kept("p00000000000000a1", "a.example.com"))
            .unwrap();
        std::os::unix::fs::symlink(&target, s.audit_file("dev")).unwrap();
        assert!(s.revoke("p00000000000000a1", "op").is_err());
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "{\"approved\": []}"
        );
        // Nor a store directory that is a link.
        let s2 = Store::new(d.path().join("link"));
        std::os::unix::fs::symlink(d.path(), &s2.root).unwrap();
        let e = s2
            .add("dev", kept("p00000000000000a1", "a.example.com"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn names_that_are_not_plain_file_names_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        for bad in ["", "../x", "a/b", ".hidden", "-x"] {
            assert!(s.read(bad).is_err(), "{bad:?}");
        }
    }
}
