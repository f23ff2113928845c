//! The `agents.<a>` section: which bottle, image (or `build`), command, plain
//! environment, workdir, prompt (`prompt` or `prompt_file`) and skills. The bottle reference is recorded and checked
//! once every bottle is read, so an unknown one is reported with every other
//! problem.
//!
//! Must never: accept a variable the launcher owns (proxy, trust, role).

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::collect::{Collector, join, kind};
use crate::model::{Agent, AgentBuild, DEFAULT_AGENT_IMAGE, PromptSource, Skill};

impl Collector {
    pub(super) fn agent(&mut self, path: &str, name: &str, v: &Value) -> Option<Agent> {
        let m = self.mapping(
            path,
            v,
            &[
                "bottle",
                "image",
                "command",
                "env",
                "workdir",
                "prompt",
                "prompt_file",
                "skills",
                "build",
            ],
        )?;
        let before = self.problems.len();
        let mut a = Agent {
            name: name.to_string(),
            bottle: String::new(),
            image: DEFAULT_AGENT_IMAGE.to_string(),
            command: vec!["bash".to_string()],
            env: BTreeMap::new(),
            workdir: None,
            prompt: None,
            skills: Vec::new(),
            build: None,
        };
        let mut has_bottle = false;
        let mut has_image = false;
        let mut prompt_keys = Vec::new();
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
                    has_image = true;
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
                "prompt" => {
                    prompt_keys.push(k.clone());
                    if let Some(t) = self.string(&p, val) {
                        a.prompt = Some(PromptSource::Text(t));
                    }
                }
                "prompt_file" => {
                    prompt_keys.push(k.clone());
                    if let Some(f) = self.path_value(&p, val) {
                        if f.is_file() {
                            a.prompt = Some(PromptSource::File(f));
                        } else {
                            self.err(
                                &p,
                                format!("{} is not a readable file", f.display()),
                                "give the prompt file's path, relative to the manifest",
                            );
                        }
                    }
                }
                "skills" => a.skills = self.skills(&p, val),
                "build" => a.build = self.build(&p, val),
                _ => a.workdir = self.path_value(&p, val),
            }
        }
        if prompt_keys.len() > 1 {
            self.err(
                &join(path, "prompt_file"),
                "both `prompt` and `prompt_file` are given",
                "keep one: `prompt` for text, `prompt_file` for a file",
            );
        }
        if has_image && a.build.is_some() {
            self.err(
                &join(path, "build"),
                "both `image` and `build` are given",
                "keep one: `build` makes the image (tagged bottle-agent-<name>:<hash>)",
            );
        }
        if a.prompt.is_none() && prompt_keys.is_empty() {
            for (i, c) in a.command.iter().enumerate() {
                if c.contains(PROMPT_FILE_PLACEHOLDER) {
                    self.err(
                        &format!("{path}.command[{i}]"),
                        format!("uses `{PROMPT_FILE_PLACEHOLDER}` but the agent has no prompt"),
                        "add `prompt: <text>` or `prompt_file: <path>` to the agent, or remove it from the command",
                    );
                }
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

    /// `skills: [name, ...]`, each a directory `~/.claude/skills/<name>` on the host.
    fn skills(&mut self, path: &str, v: &Value) -> Vec<Skill> {
        let mut out = Vec::new();
        for (i, name) in self.strings(path, v).into_iter().enumerate() {
            let p = format!("{path}[{i}]");
            if name.is_empty()
                || name.starts_with('.')
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                self.err(
                    &p,
                    format!("`{name}` is not a skill name"),
                    "give the name of a directory under ~/.claude/skills (letters, digits, `-`, `_`, `.`)",
                );
                continue;
            }
            let Some(home) = self.home.clone() else {
                self.err(
                    &p,
                    "skills come from ~/.claude/skills but HOME is not set",
                    "set HOME",
                );
                continue;
            };
            let dir = home.join(".claude/skills").join(&name);
            if !dir.is_dir() {
                self.err(
                    &p,
                    format!("skill `{name}` not found: {} is not a directory", dir.display()),
                    format!(
                        "install the skill at {} (a directory with SKILL.md), or remove `{name}` from skills",
                        dir.display()
                    ),
                );
                continue;
            }
            if out.iter().any(|s: &Skill| s.name == name) {
                self.err(
                    &p,
                    format!("skill `{name}` is listed twice"),
                    "list it once",
                );
                continue;
            }
            out.push(Skill { name, path: dir });
        }
        out
    }

    /// `build: {dockerfile, context}`; `context` defaults to the Dockerfile's directory.
    fn build(&mut self, path: &str, v: &Value) -> Option<AgentBuild> {
        let m = self.mapping(path, v, &["dockerfile", "context"])?;
        let mut dockerfile = None;
        let mut context = None;
        for (k, val) in m {
            let p = join(path, &k);
            let f = self.path_value(&p, val);
            if k == "dockerfile" {
                match f {
                    Some(f) if f.is_file() => dockerfile = Some(f),
                    Some(f) => self.err(
                        &p,
                        format!("{} is not a readable file", f.display()),
                        "give the Dockerfile's path, relative to the manifest",
                    ),
                    None => {}
                }
            } else {
                match f {
                    Some(f) if f.is_dir() => context = Some(f),
                    Some(f) => self.err(
                        &p,
                        format!("{} is not a directory", f.display()),
                        "give the build context directory, relative to the manifest",
                    ),
                    None => {}
                }
            }
        }
        let Some(dockerfile) = dockerfile else {
            if !self.problems.iter().any(|x| x.path.starts_with(path)) {
                self.err(
                    &join(path, "dockerfile"),
                    "missing",
                    "add `dockerfile: <path>` (relative to the manifest)",
                );
            }
            return None;
        };
        let context = context.or_else(|| dockerfile.parent().map(|p| p.to_path_buf()))?;
        Some(AgentBuild {
            dockerfile,
            context,
        })
    }
}

/// The placeholder in `command` replaced by the prompt file's path in the agent.
pub const PROMPT_FILE_PLACEHOLDER: &str = "{prompt_file}";

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
    "BOTTLE_MCP_CONFIG",
];

pub fn env_name_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
