//! The `bottles.<b>.egress_proxy.routes` section: each route's fields as
//! the manifest writes them (secrets by `token_ref`, a `role`), and the
//! check of the whole rendered routes file by `addon_rules::Policy` — the
//! engine egress-proxy enforces — reported at the manifest's key path (SPEC
//! §6). Host syntax, wildcards, public suffixes, path patterns and duplicate
//! hosts are the engine's rules only.
//!
//! Must never: read a secret value, or report one problem twice.

use serde_yaml_ng::Value;

use super::agents::env_name_ok;
use super::collect::{Collector, join};
use crate::model::{Auth, Bottle, Role, Route};

impl Collector {
    /// Checks the bottle's routes as egress-proxy will: renders the routes
    /// file the launcher writes (same bytes as the plan's `routes.json`) and loads it with `addon_rules::Policy`. Its
    /// errors are reported at the manifest's key path; one at a path (or under
    /// a path) already reported by this file's own checks is left out. On
    /// success the hosts take the engine's normalized form.
    pub(super) fn engine_check(&mut self, path: &str, before: usize, b: &mut Bottle) {
        let rendered = crate::render::routes::render(b, |i| b.slot_of(i));
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
    pub(super) fn route(&mut self, path: &str, v: &Value) -> Route {
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

fn header_name_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}
