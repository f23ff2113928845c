//! The `bottles.<b>.git` section: one repository per entry, served to the
//! agent by git-gate, which fetches and pushes over ssh only (an `https://`
//! upstream is refused here, with the fix).
//!
//! Must never: read the identity file (only its path is kept).

use serde_yaml_ng::Value;

use super::collect::{Collector, join};
use crate::model::GitEntry;

impl Collector {
    pub(super) fn git(&mut self, path: &str, v: &Value) -> Option<GitEntry> {
        let m = self.mapping(
            path,
            v,
            &[
                "name",
                "upstream",
                "identity_file",
                "known_host_key",
                "allow_force",
            ],
        )?;
        let before = self.problems.len();
        let (mut name, mut upstream, mut id, mut khk, mut force) = (None, None, None, None, false);
        for (k, val) in m {
            let p = join(path, &k);
            match k.as_str() {
                "name" => {
                    name = self.string(&p, val);
                    if let Some(n) = &name
                        && !remote_name_ok(n)
                    {
                        self.err(
                            &p,
                            format!("`{n}` is not a usable remote name"),
                            "use 1-64 letters, digits, `.`, `_` and `-`, starting with a letter or digit, without a `.git` suffix",
                        );
                    }
                }
                "upstream" => {
                    upstream = self.string(&p, val);
                    if let Some(u) = &upstream
                        && u.contains("://")
                        && !u.starts_with("ssh://")
                    {
                        self.err(
                            &p,
                            format!("`{u}` is not an ssh URL: git-gate fetches and pushes over ssh only"),
                            "write the ssh form, ssh://git@host/owner/repo.git or git@host:owner/repo.git, with `identity_file` a key the forge accepts",
                        );
                    } else if let Some(u) = &upstream
                        && !u.starts_with("ssh://")
                        && !u.contains(':')
                    {
                        self.err(
                            &p,
                            format!("`{u}` is not an ssh URL"),
                            "write ssh://git@host/owner/repo.git or git@host:owner/repo.git",
                        );
                    }
                }
                "identity_file" => id = self.path_value(&p, val),
                "known_host_key" => {
                    khk = self.string(&p, val);
                    if let Some(k) = &khk
                        && k.split_whitespace().count() < 3
                    {
                        self.err(&p, "not a known_hosts line", "write `<host> <key-type> <base64 key>`, e.g. from `ssh-keyscan <host>`");
                    }
                }
                _ => force = self.bool(&p, val).unwrap_or(false),
            }
        }
        for (key, missing) in [
            ("name", name.is_none()),
            ("upstream", upstream.is_none()),
            ("identity_file", id.is_none()),
            ("known_host_key", khk.is_none()),
        ] {
            if missing
                && !self
                    .problems
                    .iter()
                    .skip(before)
                    .any(|p| p.path == join(path, key))
            {
                self.err(
                    &join(path, key),
                    "missing",
                    format!("add `{key}:` to the git entry"),
                );
            }
        }
        if self.problems.len() != before {
            return None;
        }
        Some(GitEntry {
            name: name?,
            upstream: upstream?,
            identity_file: id?,
            known_host_key: khk?,
            allow_force: force,
        })
    }
}

/// git-gate's rule (docker/git-gate/README.md): 1-64 of `[A-Za-z0-9._-]`,
/// first a letter or digit, no `.git` suffix.
fn remote_name_ok(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !n.ends_with(".git")
}
