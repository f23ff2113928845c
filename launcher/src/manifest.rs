//! The bottle manifest: reading the file (YAML, or Markdown with YAML front
//! matter) and validating it into typed values.
//!
//! Owns: every check of user input in the manifest, and the error messages for
//! them (file, key path such as `bottles.dev.egress_proxy.routes[2].auth`, and a
//! fix), all collected and returned at once. A `Manifest` that exists is valid.
//!
//! Must never: read secret values (only the *names* of host variables live
//! here), touch Docker, or create files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// The default pipelock image; pinned so a bottle never runs an unknown build.
pub const DEFAULT_PIPELOCK_IMAGE: &str = "ghcr.io/luckypipewrench/pipelock:2.3.0";
/// The default squid image, built offline by `docker/build-images.sh`.
pub const DEFAULT_SQUID_IMAGE: &str = "bottle-squid:latest";
/// The default agent image, built offline by `docker/build-images.sh`.
pub const DEFAULT_AGENT_IMAGE: &str = "bottle-agent:latest";

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it was read from (for messages).
    pub file: PathBuf,
    pub bottles: BTreeMap<String, Bottle>,
    pub agents: BTreeMap<String, Agent>,
}

/// Which outer proxy stands between egress-proxy and the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterProxyKind {
    Pipelock,
    Squid,
}

impl OuterProxyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OuterProxyKind::Pipelock => "pipelock",
            OuterProxyKind::Squid => "squid",
        }
    }
}

/// One bottle: the sidecars and the policy around an agent.
#[derive(Debug, Clone)]
pub struct Bottle {
    pub name: String,
    /// Hosts reachable without credentials (lower case, no trailing dot).
    pub allow: Vec<String>,
    pub outer_proxy: OuterProxyKind,
    /// The outer proxy's image (a default per kind).
    pub outer_proxy_image: String,
    /// Extra CA files the outer proxy trusts, resolved against the manifest's directory.
    pub outer_proxy_trust: Vec<PathBuf>,
    pub routes: Vec<Route>,
    pub git: Vec<GitEntry>,
}

/// A route as the manifest writes it: SPEC §2 fields with the secret by reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub path_allowlist: Vec<String>,
    pub path_denylist: Vec<String>,
    pub methods: Vec<String>,
    pub strip_headers: Vec<String>,
    pub auth: Option<Auth>,
    pub role: Option<Role>,
}

/// Credential injection for a route; `token_ref` names a host environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub scheme: Option<String>,
    pub header: Option<String>,
    pub token_ref: String,
}

/// A route role that changes the agent's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ClaudeCodeOauth,
}

/// A repository served to the agent by git-gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitEntry {
    pub name: String,
    pub upstream: String,
    /// Host path of the ssh identity (`~` expanded, relative to the manifest).
    pub identity_file: PathBuf,
    pub known_host_key: String,
    pub allow_force: bool,
}

/// An agent: which bottle, which image, which command.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub bottle: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// A host directory copied in as the workspace instead of the current git repository.
    pub workdir: Option<PathBuf>,
}

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
    let mut v = Validator {
        file: file.display().to_string(),
        base: base.to_path_buf(),
        home: home.map(Path::to_path_buf),
        problems: Vec::new(),
        bottle_refs: Vec::new(),
    };
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

struct Validator {
    file: String,
    base: PathBuf,
    home: Option<PathBuf>,
    problems: Vec<Problem>,
    /// Every `agents.<a>.bottle` written, with its key path (checked at the end,
    /// whatever else is wrong with the agent).
    bottle_refs: Vec<(String, String)>,
}

fn kind(v: &Value) -> &'static str {
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

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Validator {
    fn err(&mut self, path: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            path: path.to_string(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// A mapping with string keys, checking them against `allowed`.
    fn mapping<'a>(
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
                self.err(
                    &join(path, k),
                    format!("unknown key `{k}`"),
                    format!("use one of: {}", allowed.join(", ")),
                );
                continue;
            }
            out.push((k.to_string(), val));
        }
        Some(out)
    }

    fn string(&mut self, path: &str, v: &Value) -> Option<String> {
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

    fn bool(&mut self, path: &str, v: &Value) -> Option<bool> {
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

    fn strings(&mut self, path: &str, v: &Value) -> Vec<String> {
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

    fn path_value(&mut self, path: &str, v: &Value) -> Option<PathBuf> {
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

    /// Bottle and agent names become parts of Docker resource names.
    fn name_ok(&mut self, path: &str, name: &str, what: &str) -> bool {
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

    fn bottle(&mut self, path: &str, name: &str, v: &Value) -> Option<Bottle> {
        let m = self.mapping(
            path,
            v,
            &[
                "allow",
                "outer_proxy",
                "outer_proxy_image",
                "outer_proxy_trust",
                "egress_proxy",
                "git",
            ],
        )?;
        let before = self.problems.len();
        let mut b = Bottle {
            name: name.to_string(),
            allow: Vec::new(),
            outer_proxy: OuterProxyKind::Pipelock,
            outer_proxy_image: String::new(),
            outer_proxy_trust: Vec::new(),
            routes: Vec::new(),
            git: Vec::new(),
        };
        let mut image = None;
        for (k, val) in m {
            let p = join(path, &k);
            match k.as_str() {
                // Hosts are checked by the engine below (`engine_check`); an
                // entry that is not a string stays as "" so indexes line up.
                "allow" => match val {
                    Value::Sequence(items) => {
                        for (i, item) in items.iter().enumerate() {
                            let h = self.string(&format!("{p}[{i}]"), item);
                            b.allow.push(h.unwrap_or_default());
                        }
                    }
                    _ => {
                        self.strings(&p, val);
                    }
                },
                "outer_proxy" => match self.string(&p, val).as_deref() {
                    Some("pipelock") => b.outer_proxy = OuterProxyKind::Pipelock,
                    Some("squid") => b.outer_proxy = OuterProxyKind::Squid,
                    Some(other) => self.err(
                        &p,
                        format!("unknown outer proxy `{other}`"),
                        "use `pipelock` or `squid`",
                    ),
                    None => {}
                },
                "outer_proxy_image" => image = self.string(&p, val),
                "outer_proxy_trust" => {
                    let Value::Sequence(items) = val else {
                        self.err(
                            &p,
                            format!("expected a list of CA files, found {}", kind(val)),
                            "write [./ca.pem]",
                        );
                        continue;
                    };
                    for (i, item) in items.iter().enumerate() {
                        if let Some(f) = self.path_value(&format!("{p}[{i}]"), item) {
                            b.outer_proxy_trust.push(f);
                        }
                    }
                }
                "egress_proxy" => {
                    if let Some(ep) = self.mapping(&p, val, &["routes"]) {
                        for (_, routes) in ep {
                            let rp = join(&p, "routes");
                            let Value::Sequence(items) = routes else {
                                self.err(
                                    &rp,
                                    format!("expected a list of routes, found {}", kind(routes)),
                                    "write `- host: ...` items",
                                );
                                continue;
                            };
                            for (i, r) in items.iter().enumerate() {
                                // Kept even when invalid, so route indexes line up
                                // with the rendered routes file the engine checks.
                                b.routes.push(self.route(&format!("{rp}[{i}]"), r));
                            }
                        }
                    }
                }
                _ => {
                    let Value::Sequence(items) = val else {
                        self.err(
                            &p,
                            format!("expected a list of repositories, found {}", kind(val)),
                            "write `- name: ...` items",
                        );
                        continue;
                    };
                    for (i, g) in items.iter().enumerate() {
                        if let Some(g) = self.git(&format!("{p}[{i}]"), g) {
                            b.git.push(g);
                        }
                    }
                }
            }
        }
        b.outer_proxy_image = image.unwrap_or_else(|| {
            match b.outer_proxy {
                OuterProxyKind::Pipelock => DEFAULT_PIPELOCK_IMAGE,
                OuterProxyKind::Squid => DEFAULT_SQUID_IMAGE,
            }
            .to_string()
        });
        self.bottle_rules(path, &b);
        self.engine_check(path, before, &mut b);
        (self.problems.len() == before).then_some(b)
    }

    /// Rules across entries of one bottle.
    fn bottle_rules(&mut self, path: &str, b: &Bottle) {
        let roles: Vec<usize> = b
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.role.is_some())
            .map(|(i, _)| i)
            .collect();
        if roles.len() > 1 {
            self.err(
                &format!("{path}.egress_proxy.routes[{}].role", roles[1]),
                format!(
                    "role `claude_code_oauth` is already on routes[{}]",
                    roles[0]
                ),
                "give the role to one route only",
            );
        }
        let mut names = BTreeSet::new();
        for (i, g) in b.git.iter().enumerate() {
            if !names.insert(g.name.as_str()) {
                self.err(
                    &format!("{path}.git[{i}].name"),
                    format!("duplicate git name `{}`", g.name),
                    "give every git entry its own name",
                );
            }
        }
    }

    /// Checks the bottle's routes as egress-proxy will: renders the routes
    /// file the launcher writes and loads it with `addon_rules::Policy`. Its
    /// errors are reported at the manifest's key path; one at a path (or under
    /// a path) already reported by this file's own checks is left out. On
    /// success the hosts take the engine's normalized form.
    fn engine_check(&mut self, path: &str, before: usize, b: &mut Bottle) {
        let rendered = crate::render::routes::render(b, |_| Some("EGRESS_PROXY_TOKEN_0".into()));
        let n = b.routes.len();
        let route_path = |i: usize| {
            if i < n {
                format!("{path}.egress_proxy.routes[{i}]")
            } else {
                format!("{path}.allow[{}]", i - n)
            }
        };
        match addon_rules::Policy::from_text(&rendered, "routes.json") {
            Ok(policy) => {
                let hosts: Vec<String> = policy
                    .routes()
                    .iter()
                    .map(|r| r.host().to_string())
                    .collect();
                for (i, h) in hosts.into_iter().enumerate() {
                    if i < n {
                        b.routes[i].host = h;
                    } else if let Some(a) = b.allow.get_mut(i - n) {
                        *a = h;
                    }
                }
            }
            Err(e) => {
                for ce in e.errors {
                    let key = match ce.route {
                        Some(i) if i >= n => route_path(i),
                        Some(i) => match ce.field.as_deref() {
                            None => route_path(i),
                            Some(f) => format!("{}.{}", route_path(i), manifest_field(f)),
                        },
                        None => format!("{path}.egress_proxy.routes"),
                    };
                    let reported = self.problems[before..].iter().any(|p| {
                        key == p.path
                            || key
                                .strip_prefix(p.path.as_str())
                                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
                    });
                    if reported {
                        continue;
                    }
                    let allow_entry = ce.route.is_some_and(|i| i >= n);
                    let fix = if allow_entry && ce.message.contains("already has a route") {
                        "list a host once: in `allow` or as a route".to_string()
                    } else {
                        ce.fix
                    };
                    let message = rendered_refs_to_paths(&ce.message, &route_path);
                    self.err(&key, message, fix);
                }
            }
        }
    }

    /// A route, filled as far as it is valid (problems are recorded).
    fn route(&mut self, path: &str, v: &Value) -> Route {
        let empty = Route {
            host: String::new(),
            path_allowlist: Vec::new(),
            path_denylist: Vec::new(),
            methods: Vec::new(),
            strip_headers: Vec::new(),
            auth: None,
            role: None,
        };
        let Some(m) = self.mapping(
            path,
            v,
            &[
                "host",
                "path_allowlist",
                "path_denylist",
                "methods",
                "strip_headers",
                "auth",
                "role",
            ],
        ) else {
            return empty;
        };
        let before = self.problems.len();
        let mut r = empty;
        let mut has_host = false;
        for (k, val) in m {
            let p = join(path, &k);
            match k.as_str() {
                "host" => {
                    has_host = true;
                    // Syntax, wildcards and public suffixes: `engine_check`.
                    if let Some(h) = self.string(&p, val) {
                        r.host = h;
                    }
                }
                // Patterns are compiled by `engine_check`.
                "path_allowlist" | "path_denylist" => {
                    let list = self.strings(&p, val);
                    if k == "path_allowlist" {
                        r.path_allowlist = list
                    } else {
                        r.path_denylist = list
                    }
                }
                "methods" => {
                    for (i, meth) in self.strings(&p, val).into_iter().enumerate() {
                        if meth.chars().all(|c| c.is_ascii_alphabetic()) {
                            r.methods.push(meth.to_ascii_uppercase());
                        } else {
                            self.err(
                                &format!("{p}[{i}]"),
                                format!("`{meth}` is not an HTTP method"),
                                "use names like GET, POST",
                            );
                        }
                    }
                }
                "strip_headers" => {
                    for (i, h) in self.strings(&p, val).into_iter().enumerate() {
                        if header_name_ok(&h) {
                            r.strip_headers.push(h)
                        } else {
                            self.err(
                                &format!("{p}[{i}]"),
                                format!("`{h}` is not a header name"),
                                "use letters, digits and `-`",
                            );
                        }
                    }
                }
                "auth" => r.auth = self.auth(&p, val),
                _ => match self.string(&p, val).as_deref() {
                    Some("claude_code_oauth") => r.role = Some(Role::ClaudeCodeOauth),
                    Some(other) => self.err(
                        &p,
                        format!("unknown role `{other}`"),
                        "use `claude_code_oauth` or remove `role`",
                    ),
                    None => {}
                },
            }
        }
        if !has_host {
            self.err(
                &join(path, "host"),
                "missing",
                "add `host: <name>` to the route",
            );
        }
        if r.auth.is_some() && r.host.starts_with("*.") {
            self.err(
                &join(path, "auth"),
                format!("credentials on wildcard host `{}`", r.host),
                "a secret goes only to a host named exactly: name the host",
            );
        }
        if r.role.is_some() && r.auth.is_none() && self.problems.len() == before {
            self.err(
                &join(path, "role"),
                "role `claude_code_oauth` on a route without `auth`",
                "add `auth: {scheme: Bearer, token_ref: <VAR>}`",
            );
        }
        r
    }

    fn auth(&mut self, path: &str, v: &Value) -> Option<Auth> {
        let m = self.mapping(path, v, &["scheme", "header", "token_ref"])?;
        let mut scheme = None;
        let mut header = None;
        let mut token_ref = None;
        for (k, val) in m {
            let p = join(path, &k);
            match k.as_str() {
                "scheme" => scheme = self.string(&p, val),
                "header" => {
                    header = self.string(&p, val);
                    if let Some(h) = &header
                        && !header_name_ok(h)
                    {
                        self.err(
                            &p,
                            format!("`{h}` is not a header name"),
                            "use letters, digits and `-`, e.g. x-api-key",
                        );
                    }
                }
                _ => {
                    token_ref = self.string(&p, val);
                    if let Some(t) = &token_ref
                        && !env_name_ok(t)
                    {
                        self.err(
                            &p,
                            format!("`{t}` is not an environment variable name"),
                            "name a host variable like GH_PAT (letters, digits, `_`)",
                        );
                    }
                }
            }
        }
        let Some(token_ref) = token_ref else {
            self.err(
                &join(path, "token_ref"),
                "missing",
                "add `token_ref: <HOST_ENV_VAR>` naming the variable that holds the secret",
            );
            return None;
        };
        let is_authz = header
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case("authorization"));
        if is_authz && scheme.is_none() {
            self.err(
                &join(path, "scheme"),
                "missing for the Authorization header",
                "add `scheme: Bearer` (or set `header:` to another header)",
            );
        }
        Some(Auth {
            scheme,
            header,
            token_ref,
        })
    }

    fn git(&mut self, path: &str, v: &Value) -> Option<GitEntry> {
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

    fn agent(&mut self, path: &str, name: &str, v: &Value) -> Option<Agent> {
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

/// The manifest's name of a routes-file field (`auth_scheme` is `auth.scheme`).
fn manifest_field(f: &str) -> String {
    match f {
        "auth_header" => "auth.header".into(),
        "auth_scheme" => "auth.scheme".into(),
        "token_env" | "token_file" => "auth.token_ref".into(),
        other => other.to_string(),
    }
}

/// Rewrites `routes[K]` in an engine message (an index into the rendered
/// file) as the manifest's key path of that entry.
fn rendered_refs_to_paths(msg: &str, path_of: &dyn Fn(usize) -> String) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(at) = rest.find("routes[") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "routes[".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match (
            after[..digits].parse::<usize>(),
            after[digits..].strip_prefix(']'),
        ) {
            (Ok(k), Some(tail)) => {
                out.push_str(&path_of(k));
                rest = tail;
            }
            _ => {
                out.push_str("routes[");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
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

/// git-gate's rule (docker/git-gate/README.md): 1-64 of `[A-Za-z0-9._-]`,
/// first a letter or digit, no `.git` suffix.
fn remote_name_ok(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !n.ends_with(".git")
}

fn header_name_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Manifest, ManifestError> {
        parse(
            s,
            Path::new("m.yaml"),
            Path::new("/base"),
            Some(Path::new("/home/u")),
        )
    }

    fn paths(s: &str) -> Vec<String> {
        match parse_str(s) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.problems().iter().map(|p| p.path.clone()).collect(),
        }
    }

    const GOOD: &str = r#"
bottles:
  dev:
    allow: [pypi.org, Files.PythonHosted.org.]
    outer_proxy: squid
    outer_proxy_trust: [./private-ca.pem]
    egress_proxy:
      routes:
        - host: api.github.com
          path_allowlist: ["/repos/acme/widget/issues"]
          methods: [get, POST]
          auth: {scheme: Bearer, token_ref: GH_PAT}
        - host: api.anthropic.com
          auth: {scheme: Bearer, token_ref: CLAUDE_OAUTH}
          role: claude_code_oauth
    git:
      - name: widget
        upstream: ssh://git@github.com/acme/widget.git
        identity_file: ~/.ssh/id_ed25519
        known_host_key: "github.com ssh-ed25519 AAAA"
agents:
  coder:
    bottle: dev
    command: [bash]
    env: {TERM: xterm}
"#;

    #[test]
    fn good_manifest_parses_and_normalizes() {
        let m = parse_str(GOOD).unwrap();
        let b = &m.bottles["dev"];
        assert_eq!(b.allow, vec!["pypi.org", "files.pythonhosted.org"]);
        assert_eq!(b.outer_proxy, OuterProxyKind::Squid);
        assert_eq!(b.outer_proxy_image, DEFAULT_SQUID_IMAGE);
        assert_eq!(
            b.outer_proxy_trust,
            vec![PathBuf::from("/base/./private-ca.pem")]
        );
        assert_eq!(b.routes[0].methods, vec!["GET", "POST"]);
        assert_eq!(b.routes[1].role, Some(Role::ClaudeCodeOauth));
        assert_eq!(
            b.git[0].identity_file,
            PathBuf::from("/home/u/.ssh/id_ed25519")
        );
        assert!(!b.git[0].allow_force);
        assert_eq!(m.agents["coder"].image, DEFAULT_AGENT_IMAGE);
    }

    #[test]
    fn markdown_front_matter_is_read() {
        let md = format!("---\n{GOOD}\n---\n# Notes\n\nbody: [not yaml\n");
        assert!(parse_str(&md).is_ok());
        let open = "---\nbottles: {}\n";
        assert_eq!(paths(open), vec![""]);
    }

    #[test]
    fn unknown_keys_everywhere_are_reported_at_once() {
        let s = GOOD
            .replace(
                "    outer_proxy: squid",
                "    outer_proxy: squid\n    outr: 1",
            )
            .replace(
                "methods: [get, POST]",
                "methods: [get, POST]\n          auht: x",
            )
            .replace(
                "{scheme: Bearer, token_ref: GH_PAT}",
                "{scheme: Bearer, token_ref: GH_PAT, tokn: 1}",
            )
            .replace("    command: [bash]", "    command: [bash]\n    imgae: x");
        let p = paths(&s);
        assert_eq!(
            p,
            vec![
                "bottles.dev.outr",
                "bottles.dev.egress_proxy.routes[0].auht",
                "bottles.dev.egress_proxy.routes[0].auth.tokn",
                "agents.coder.imgae",
            ]
        );
        let e = parse_str(&s).unwrap_err().to_string();
        assert!(e.contains("m.yaml: bottles.dev.egress_proxy.routes[0].auth.tokn: unknown key `tokn`; fix: use one of: scheme, header, token_ref"), "{e}");
    }

    #[test]
    fn refusals_table() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "unknown agent bottle",
                "    bottle: dev",
                "    bottle: prod",
                "agents.coder.bottle",
            ),
            (
                "two oauth roles",
                "{scheme: Bearer, token_ref: GH_PAT}",
                "{scheme: Bearer, token_ref: GH_PAT}\n          role: claude_code_oauth",
                "bottles.dev.egress_proxy.routes[1].role",
            ),
            (
                "unknown role",
                "role: claude_code_oauth",
                "role: admin",
                "bottles.dev.egress_proxy.routes[1].role",
            ),
            (
                "duplicate host",
                "host: api.anthropic.com",
                "host: API.github.com",
                "bottles.dev.egress_proxy.routes[1].host",
            ),
            (
                "allow overlaps route",
                "[pypi.org, Files.PythonHosted.org.]",
                "[pypi.org, api.github.com]",
                "bottles.dev.allow[1]",
            ),
            (
                "wrong type",
                "allow: [pypi.org, Files.PythonHosted.org.]",
                "allow: pypi.org",
                "bottles.dev.allow",
            ),
            (
                "host with scheme",
                "host: api.github.com",
                "host: https://api.github.com",
                "bottles.dev.egress_proxy.routes[0].host",
            ),
            (
                "host with port",
                "host: api.github.com",
                "host: api.github.com:443",
                "bottles.dev.egress_proxy.routes[0].host",
            ),
            (
                "unicode host",
                "host: api.github.com",
                "host: bücher.de",
                "bottles.dev.egress_proxy.routes[0].host",
            ),
            (
                "broad wildcard",
                "[pypi.org, Files.PythonHosted.org.]",
                "[pypi.org, \"*.com\"]",
                "bottles.dev.allow[1]",
            ),
            (
                "credential on wildcard",
                "host: api.github.com",
                "host: \"*.github.com\"",
                "bottles.dev.egress_proxy.routes[0].auth",
            ),
            (
                "missing scheme",
                "{scheme: Bearer, token_ref: GH_PAT}",
                "{token_ref: GH_PAT}",
                "bottles.dev.egress_proxy.routes[0].auth.scheme",
            ),
            (
                "bad token_ref",
                "token_ref: GH_PAT",
                "token_ref: GH-PAT",
                "bottles.dev.egress_proxy.routes[0].auth.token_ref",
            ),
            (
                "missing token_ref",
                "{scheme: Bearer, token_ref: GH_PAT}",
                "{scheme: Bearer}",
                "bottles.dev.egress_proxy.routes[0].auth.token_ref",
            ),
            (
                "bad pattern",
                "\"/repos/acme/widget/issues\"",
                "\"repos\"",
                "bottles.dev.egress_proxy.routes[0].path_allowlist[0]",
            ),
            (
                "duplicate git name",
                "        allow_force_placeholder",
                "",
                "",
            ),
            (
                "reserved env",
                "env: {TERM: xterm}",
                "env: {HTTPS_PROXY: http://x}",
                "agents.coder.env.HTTPS_PROXY",
            ),
            (
                "unknown outer proxy",
                "outer_proxy: squid",
                "outer_proxy: nginx",
                "bottles.dev.outer_proxy",
            ),
            ("bad bottle name", "  dev:", "  Dev:", "bottles.Dev"),
            (
                "missing git key",
                "        known_host_key: \"github.com ssh-ed25519 AAAA\"",
                "",
                "bottles.dev.git[0].known_host_key",
            ),
            (
                "bool as string",
                "    command: [bash]",
                "    command: bash",
                "agents.coder.command",
            ),
            // The engine's own rules (addon-rules), at the manifest's key path.
            (
                "public-suffix wildcard in allow",
                "[pypi.org, Files.PythonHosted.org.]",
                "[pypi.org, \"*.co.uk\"]",
                "bottles.dev.allow[1]",
            ),
            (
                "dot segments in a path pattern",
                "\"/repos/acme/widget/issues\"",
                "\"/a/../b\"",
                "bottles.dev.egress_proxy.routes[0].path_allowlist[0]",
            ),
            (
                "public-suffix wildcard route",
                "host: api.anthropic.com\n          auth: {scheme: Bearer, token_ref: CLAUDE_OAUTH}\n          role: claude_code_oauth",
                "host: \"*.github.io\"",
                "bottles.dev.egress_proxy.routes[1].host",
            ),
            (
                "https git upstream",
                "upstream: ssh://git@github.com/acme/widget.git",
                "upstream: https://github.com/acme/widget.git",
                "bottles.dev.git[0].upstream",
            ),
        ];
        for (name, from, to, want) in cases {
            if want.is_empty() {
                continue;
            }
            assert!(GOOD.contains(from), "{name}: fixture lacks {from}");
            let p = paths(&GOOD.replacen(from, to, 1));
            assert!(
                p.iter().any(|x| x == want),
                "{name}: want {want}, got {p:?}"
            );
        }
    }

    #[test]
    fn engine_errors_name_the_manifest_path_and_the_fix() {
        let e = parse_str(&GOOD.replace(
            "[pypi.org, Files.PythonHosted.org.]",
            "[pypi.org, \"*.co.uk\", api.github.com]",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("m.yaml: bottles.dev.allow[1]: host \"*.co.uk\"")
                && e.contains("public suffix"),
            "{e}"
        );
        // A rendered index in the engine's message is the manifest's path too.
        assert!(
            e.contains("m.yaml: bottles.dev.allow[2]: host \"api.github.com\" already has a route, bottles.dev.egress_proxy.routes[0]; fix: list a host once"),
            "{e}"
        );
        let e = parse_str(&GOOD.replace("\"/repos/acme/widget/issues\"", "\"/a/../b\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bottles.dev.egress_proxy.routes[0].path_allowlist[0]: "),
            "{e}"
        );
        let e = parse_str(&GOOD.replace(
            "upstream: ssh://git@github.com/acme/widget.git",
            "upstream: https://github.com/acme/widget.git",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("bottles.dev.git[0].upstream: `https://github.com/acme/widget.git` is not an ssh URL") && e.contains("fix: write the ssh form"),
            "{e}"
        );
    }

    #[test]
    fn unknown_bottle_is_reported_with_every_other_problem() {
        let s = GOOD
            .replace("    bottle: dev", "    bottle: prod\n    imgae: x")
            .replace("outer_proxy: squid", "outer_proxy: nginx")
            .replace("[pypi.org, Files.PythonHosted.org.]", "[\"*.co.uk\"]");
        let p = paths(&s);
        for want in [
            "bottles.dev.outer_proxy",
            "bottles.dev.allow[0]",
            "agents.coder.imgae",
            "agents.coder.bottle",
        ] {
            assert!(p.iter().any(|x| x == want), "want {want}, got {p:?}");
        }
        // A bottle that exists but is invalid is not also "unknown".
        let p = paths(&GOOD.replace("outer_proxy: squid", "outer_proxy: nginx"));
        assert!(!p.iter().any(|x| x == "agents.coder.bottle"), "{p:?}");
    }

    #[test]
    fn duplicate_git_names_and_many_problems_at_once() {
        let s = GOOD.replace(
            "    git:\n",
            "    git:\n      - {name: widget, upstream: \"git@h:a/b.git\", identity_file: /k, known_host_key: \"h ssh-ed25519 AAAA\"}\n",
        ).replace("outer_proxy: squid", "outer_proxy: 3");
        let p = paths(&s);
        assert!(p.contains(&"bottles.dev.git[1].name".to_string()), "{p:?}");
        assert!(p.contains(&"bottles.dev.outer_proxy".to_string()), "{p:?}");
    }

    #[test]
    fn yaml_syntax_error_names_the_line() {
        let e = parse_str("bottles: [\n").unwrap_err().to_string();
        assert!(e.contains("m.yaml") && e.contains("line"), "{e}");
    }

    #[test]
    fn never_panics_on_odd_documents() {
        for doc in [
            "",
            "~",
            "[]",
            "3",
            "bottles: 3\nagents: []",
            "bottles: {a: []}\nagents: {b: 1}",
            "bottles: {a: {egress_proxy: {routes: [1, {host: [x]}]}}}\nagents: {}",
            "? [a]\n: b",
            "!!binary aGVsbG8=",
        ] {
            let _ = parse_str(doc);
        }
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    fn parse_any(s: &str) -> Result<Manifest, ManifestError> {
        parse(s, Path::new("p.yaml"), Path::new("/b"), None)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary text never panics; an error always says where and how to fix.
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            if let Err(ManifestError::Invalid(p)) = parse_any(&s) {
                prop_assert!(!p.is_empty());
                for x in p {
                    prop_assert!(!x.fix.is_empty() && x.file == "p.yaml");
                }
            }
        }

        /// Structured documents with random keys and values at the known places:
        /// every problem is reported with a key path under the document.
        #[test]
        fn random_keys_are_reported_with_their_path(
            key in "[a-z_]{1,12}",
            val in prop_oneof![Just("1".to_string()), Just("[a, b]".to_string()), Just("{x: 1}".to_string()), "[a-z.*]{1,20}".prop_map(|v| format!("\"{v}\""))],
        ) {
            let doc = format!(
                "bottles:\n  b:\n    {key}: {val}\n    egress_proxy:\n      routes:\n        - host: h.example\n          {key}: {val}\nagents:\n  a:\n    bottle: b\n    {key}: {val}\n"
            );
            match parse_any(&doc) {
                Ok(m) => prop_assert!(m.bottles.contains_key("b")),
                Err(e) => {
                    for p in e.problems() {
                        prop_assert!(p.path.starts_with("bottles.b") || p.path.starts_with("agents.a"), "{}", p);
                    }
                }
            }
        }
    }
}
