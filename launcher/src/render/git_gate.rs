//! git-gate's `/etc/git-gate/config.json` and known_hosts files.
//!
//! Must never: contain key material (identity files are copied, not rendered).

use serde_json::json;

use crate::model::GitEntry;

pub fn identity_path(name: &str) -> String {
    format!("/etc/git-gate/keys/{name}")
}

pub fn known_hosts_path(name: &str) -> String {
    format!("/etc/git-gate/known_hosts/{name}")
}

/// The gate's config (stable key order, pretty JSON).
pub fn render(entries: &[GitEntry]) -> String {
    let repos: Vec<_> = entries
        .iter()
        .map(|g| {
            json!({
                "name": g.name,
                "upstream": g.upstream,
                "identity_file": identity_path(&g.name),
                "known_hosts_file": known_hosts_path(&g.name),
                "allow_force": g.allow_force,
            })
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&json!({ "repos": repos })).unwrap_or_default();
    s.push('\n');
    s
}

/// A known_hosts file with the one pinned key line.
pub fn known_hosts(entry: &GitEntry) -> String {
    format!("{}\n", entry.known_host_key.trim())
}
