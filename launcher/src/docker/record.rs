//! The undo record: what `apply` (and `prepare`, for the state directory)
//! created, in creation order, persisted as `<state dir>/record.json` after
//! each change so `teardown` can undo exactly that even after `bottle run`
//! was killed.
//!
//! Must never: hold a secret (names only).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::firewall::FwRule;

/// What apply created, in creation order; persisted as `record.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The `bottle run` process that owns the bottle (orphan when gone).
    pub pid: u32,
    pub state_dir: PathBuf,
    pub networks: Vec<String>,
    pub containers: Vec<String>,
    pub fw_rules: Vec<FwRule>,
    /// Volumes this run created (the agent's home and workspace on a first
    /// run). Teardown keeps them; they are removed only when the run asks
    /// (`--rm`), or when it failed before the agent started.
    #[serde(default)]
    pub volumes: Vec<String>,
}

/// Shared record, saved after each change.
#[derive(Clone)]
pub struct Recorder(Arc<Mutex<Record>>);

impl Recorder {
    pub fn new(r: Record) -> Self {
        Recorder(Arc::new(Mutex::new(r)))
    }
    pub fn snapshot(&self) -> Record {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }
    pub(crate) fn update(&self, f: impl FnOnce(&mut Record)) {
        if let Ok(mut r) = self.0.lock() {
            f(&mut r);
            let _ = save_record(&r);
        }
    }
}

pub fn save_record(r: &Record) -> std::io::Result<()> {
    let tmp = r.state_dir.join("record.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(r).unwrap_or_default())?;
    std::fs::rename(tmp, r.state_dir.join("record.json"))
}

/// The per-bottle state directory root: `$BOTTLE_STATE_DIR`, else
/// `$XDG_STATE_HOME/bottle`, else `~/.local/state/bottle`.
pub fn state_root() -> PathBuf {
    if let Some(p) = std::env::var_os("BOTTLE_STATE_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_STATE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("bottle");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/state/bottle")
}
