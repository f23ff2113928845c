//! The `agents.<a>` section: which bottle, image, command, plain
//! environment and workdir. The bottle reference is recorded and checked
//! once every bottle is read, so an unknown one is reported with every other
//! problem.
//!
//! Must never: accept a variable the launcher owns (proxy, trust, role).

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::collect::{Collector, join, kind};
use crate::model::{Agent, DEFAULT_AGENT_IMAGE};

impl Collector {
    pub(super) fn agent(&mut self, path: &str, name: &str, v: &Value) -> Option<Agent> {
        let m = self.mapping(path, v, &["bottle", "image", "command", "env", "workdir"])?;
        let before = self.problems.len();
        let mut a = Agent {
            name: name.to_string(),
            bottle: String::new(),
            image: DEFAULT_AGENT_IMAGE.to_string(),
            command: vec!["bash".to_string()],
            env: BTreeMap::new(),
            workdir: None,
        };
        let mut has_bottle = false;
        for (k, val) in m {
            let p = join(path, &k);
            match k.as_str() {
                "bottle" => {
                    has_bottle = true;
                    if let Some(b) = self.string(&p, val) {
                        self.bottle_refs.push((p.clone(), b.clone()));
                        a.bottle = b;
                    }
                }
                "image" => {
                    if let Some(i) = self.string(&p, val) {
                        a.image = i;
                    }
                }
                "command" => {
                    let c = self.strings(&p, val);
                    if c.is_empty() {
                        self.err(&p, "is empty", "give the command as a list, e.g. [bash]");
                    } else {
                        a.command = c;
                    }
                }
                "env" => {
                    if let Some(m) = self.mapping(&p, val, &[]) {
                        for (k, val) in m {
                            let ep = join(&p, &k);
                            if !env_name_ok(&k) {
                                self.err(
                                    &ep,
                                    format!("`{k}` is not an environment variable name"),
                                    "use letters, digits and `_`",
                                );
                                continue;
                            }
                            if RESERVED_ENV.iter().any(|r| r.eq_ignore_ascii_case(&k))
                                || k.starts_with("EGRESS_PROXY_")
                            {
                                self.err(&ep, format!("`{k}` is set by bottle"), "remove it: the proxy and trust variables always point at the bottle's egress-proxy and CA");
                                continue;
                            }
                            let value = match val {
                                Value::String(s) => s.clone(),
                                Value::Number(n) => n.to_string(),
                                Value::Bool(b) => b.to_string(),
                                other => {
                                    self.err(
                                        &ep,
                                        format!("expected a plain value, found {}", kind(other)),
                                        "quote the value",
                                    );
                                    continue;
                                }
                            };
                            a.env.insert(k, value);
                        }
                    }
                }
                _ => a.workdir = self.path_value(&p, val),
            }
        }
        if !has_bottle {
            self.err(
                &join(path, "bottle"),
                "missing",
                "add `bottle: <name>` naming a bottle of this manifest",
            );
        }
        (self.problems.len() == before).then_some(a)
    }
}

/// Variables the launcher owns in the agent's environment.
pub const RESERVED_ENV: &[&str] = &[
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CLAUDE_CODE_OAUTH_TOKEN",
];

pub fn env_name_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
