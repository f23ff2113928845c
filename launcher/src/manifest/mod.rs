//! The bottle manifest: reading the file (YAML, or Markdown with YAML front
//! matter) and validating it into the typed values of `crate::model`, one
//! module per section (`bottle`, `routes`, `git`, `agents`), all problems
//! gathered by one collector (`collect`).
//!
//! Owns: every check of user input in the manifest, and the error messages for
//! them (file, key path such as `bottles.dev.egress_proxy.routes[2].auth`, and a
//! fix), all collected and returned at once. A `Manifest` that exists is valid.
//!
//! Must never: read secret values (only the *names* of host variables live
//! here), touch Docker, or create files.

mod agents;
mod bottle;
mod collect;
mod git;
mod routes;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

pub use crate::model::*;
pub use agents::{PROMPT_FILE_PLACEHOLDER, RESERVED_ENV, env_name_ok};
pub use collect::Problem;
use collect::{Collector, join};

/// Every problem of a manifest, reported together.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {file}: {source}; fix: check the path given to --manifest")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

fn render_problems(p: &[Problem]) -> String {
    let mut s = format!("manifest has {} problem(s):", p.len());
    for x in p {
        s.push_str("\n  ");
        s.push_str(&x.to_string());
    }
    s
}

impl ManifestError {
    /// The problems (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ManifestError::Invalid(p) => p,
            ManifestError::Read { .. } => &[],
        }
    }
}

/// Reads and validates a manifest file.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        file: path.display().to_string(),
        source,
    })?;
    // Absolute, so relative paths in messages and in the plan do not depend on the cwd.
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = abs.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, path, &base, home_dir().as_deref())
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Parses manifest text. `base` resolves relative paths; `home` expands `~`.
pub fn parse(
    text: &str,
    file: &Path,
    base: &Path,
    home: Option<&Path>,
) -> Result<Manifest, ManifestError> {
    let mut v = Collector::new(file, base, home);
    let yaml = match front_matter(text) {
        Ok(y) => y,
        Err(msg) => {
            v.err("", msg, "close the front matter with a line `---`");
            return Err(ManifestError::Invalid(v.problems));
        }
    };
    let doc: Value = match serde_yaml_ng::from_str(yaml) {
        Ok(d) => d,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            v.err(
                "",
                format!("not valid YAML{at}: {e}"),
                "fix the YAML syntax (indentation, quoting)",
            );
            return Err(ManifestError::Invalid(v.problems));
        }
    };
    let m = v.manifest(&doc);
    if v.problems.is_empty() {
        Ok(m)
    } else {
        Err(ManifestError::Invalid(v.problems))
    }
}

/// The YAML part of a file: the whole text, or the front matter of a Markdown file.
fn front_matter(text: &str) -> Result<&str, String> {
    let t = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = t
        .strip_prefix("---\n")
        .or_else(|| t.strip_prefix("---\r\n"))
    else {
        return Ok(t);
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" || line.trim_end() == "..." {
            return Ok(&rest[..offset]);
        }
        offset += line.len();
    }
    Err("front matter starts with `---` but never ends".into())
}

impl Collector {
    fn manifest(&mut self, doc: &Value) -> Manifest {
        let mut bottles = BTreeMap::new();
        let mut agents = BTreeMap::new();
        // Bottles written in the file, valid or not: an agent naming an invalid
        // bottle gets that bottle's problems, not a second "unknown bottle".
        let mut declared = BTreeSet::new();
        let file = PathBuf::from(&self.file);
        if let Some(top) = self.mapping("", doc, &["bottles", "agents"]) {
            let mut saw_bottles = false;
            let mut saw_agents = false;
            for (k, val) in top {
                match k.as_str() {
                    "bottles" => {
                        saw_bottles = true;
                        if let Some(m) = self.mapping("bottles", val, &[]) {
                            for (name, b) in m {
                                declared.insert(name.clone());
                                let p = join("bottles", &name);
                                if self.name_ok(&p, &name, "bottle")
                                    && let Some(b) = self.bottle(&p, &name, b)
                                {
                                    bottles.insert(name, b);
                                }
                            }
                        }
                    }
                    _ => {
                        saw_agents = true;
                        if let Some(m) = self.mapping("agents", val, &[]) {
                            for (name, a) in m {
                                let p = join("agents", &name);
                                if self.name_ok(&p, &name, "agent")
                                    && let Some(a) = self.agent(&p, &name, a)
                                {
                                    agents.insert(name, a);
                                }
                            }
                        }
                    }
                }
            }
            if !saw_bottles {
                self.err(
                    "bottles",
                    "missing",
                    "add a `bottles:` mapping with at least one bottle",
                );
            }
            if !saw_agents {
                self.err(
                    "agents",
                    "missing",
                    "add an `agents:` mapping with at least one agent",
                );
            }
        }
        // Cross references, checked once everything parsed, and reported
        // together with every other problem.
        let names: Vec<String> = declared.iter().cloned().collect();
        for (path, bottle) in std::mem::take(&mut self.bottle_refs) {
            if !declared.contains(&bottle) {
                self.err(
                    &path,
                    format!("unknown bottle `{bottle}`"),
                    format!(
                        "use one of: {}",
                        if names.is_empty() {
                            "(none defined)".into()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
            }
        }
        Manifest {
            file,
            bottles,
            agents,
        }
    }
}
