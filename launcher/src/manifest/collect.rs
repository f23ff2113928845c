//! The error collector of manifest validation: every problem with the file,
//! its key path (`bottles.dev.egress_proxy.routes[2].auth`) and a fix, all
//! kept so they are reported at once; and the typed readers of YAML values
//! each section uses (mapping with known keys and did-you-mean, string,
//! bool, list, path).
//!
//! Must never: stop at the first problem, or panic on any document.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// One problem in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// Key path, e.g. `bottles.dev.egress_proxy.routes[2].auth`.
    pub path: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(top level)"
        } else {
            &self.path
        };
        write!(
            f,
            "{}: {}: {}; fix: {}",
            self.file, path, self.message, self.fix
        )
    }
}

/// Collects the problems of one manifest; the sections (`bottle`, `routes`,
/// `git`, `agents`) add their checks as methods.
pub(super) struct Collector {
    pub file: String,
    base: PathBuf,
    pub home: Option<PathBuf>,
    pub problems: Vec<Problem>,
    /// Every `agents.<a>.bottle` written, with its key path (checked at the end,
    /// whatever else is wrong with the agent).
    pub bottle_refs: Vec<(String, String)>,
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The known key closest to `k` (edit distance at most 3, `-` read as `_`).
fn did_you_mean<'a>(k: &str, known: &[&'a str]) -> Option<&'a str> {
    let k = k.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|c| (strsim::levenshtein(&k, c), *c))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

impl Collector {
    pub fn new(file: &Path, base: &Path, home: Option<&Path>) -> Self {
        Collector {
            file: file.display().to_string(),
            base: base.to_path_buf(),
            home: home.map(Path::to_path_buf),
            problems: Vec::new(),
            bottle_refs: Vec::new(),
        }
    }

    pub fn err(&mut self, path: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            path: path.to_string(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// A mapping with string keys, checking them against `allowed`.
    pub fn mapping<'a>(
        &mut self,
        path: &str,
        v: &'a Value,
        allowed: &[&str],
    ) -> Option<Vec<(String, &'a Value)>> {
        let Value::Mapping(m) = v else {
            self.err(
                path,
                format!("expected a mapping, found {}", kind(v)),
                "write `key: value` pairs here",
            );
            return None;
        };
        let mut out = Vec::new();
        for (k, val) in m {
            let Some(k) = k.as_str() else {
                self.err(
                    path,
                    format!("a key is {}, not a string", kind(k)),
                    "use plain text keys",
                );
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&k) {
                let known = allowed.join(", ");
                let fix = match did_you_mean(k, allowed) {
                    Some(s) => format!("did you mean `{s}`? use one of: {known}"),
                    None => format!("use one of: {known}"),
                };
                self.err(&join(path, k), format!("unknown key `{k}`"), fix);
                continue;
            }
            out.push((k.to_string(), val));
        }
        Some(out)
    }

    pub fn string(&mut self, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::String(_) => {
                self.err(path, "is empty", "give a value or remove the key");
                None
            }
            other => {
                self.err(
                    path,
                    format!("expected a string, found {}", kind(other)),
                    "quote the value",
                );
                None
            }
        }
    }

    pub fn bool(&mut self, path: &str, v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.err(
                    path,
                    format!("expected true or false, found {}", kind(other)),
                    "write true or false",
                );
                None
            }
        }
    }

    pub fn strings(&mut self, path: &str, v: &Value) -> Vec<String> {
        let Value::Sequence(items) = v else {
            self.err(
                path,
                format!("expected a list, found {}", kind(v)),
                "write a list like [a, b]",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.string(&format!("{path}[{i}]"), item) {
                out.push(s);
            }
        }
        out
    }

    pub fn path_value(&mut self, path: &str, v: &Value) -> Option<PathBuf> {
        let s = self.string(path, v)?;
        let p = if s == "~" || s.starts_with("~/") {
            let Some(home) = &self.home else {
                self.err(
                    path,
                    "uses `~` but HOME is not set",
                    "write an absolute path",
                );
                return None;
            };
            home.join(s.trim_start_matches('~').trim_start_matches('/'))
        } else {
            PathBuf::from(&s)
        };
        Some(if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        })
    }

    /// Bottle and agent names become parts of Docker resource names.
    pub fn name_ok(&mut self, path: &str, name: &str, what: &str) -> bool {
        let ok = !name.is_empty()
            && name.len() <= 40
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            self.err(
                path,
                format!("`{name}` is not a valid {what} name"),
                "use lower-case letters, digits, `-` and `_` (at most 40, starting with a letter or digit)",
            );
        }
        ok
    }
}
