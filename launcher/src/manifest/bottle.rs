//! The `bottles.<b>` section: `allow`, the outer proxy, `outer_proxy_trust`,
//! `supervise`, `runtime`,
//! and the rules across entries of one bottle (one `claude_code_oauth` role,
//! unique git names). Routes and git entries are read by their own modules;
//! hosts and patterns are the engine's (`routes::engine_check`).
//!
//! Must never: keep a bottle with a problem in the returned manifest.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::collect::{Collector, join, kind};
use crate::model::{
    Bottle, DEFAULT_PIPELOCK_IMAGE, DEFAULT_SQUID_IMAGE, OuterProxyKind, RuntimeChoice,
};

impl Collector {
    pub(super) fn bottle(&mut self, path: &str, name: &str, v: &Value) -> Option<Bottle> {
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
                "supervise",
                "runtime",
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
            supervise: false,
            runtime: RuntimeChoice::Auto,
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
                "supervise" => b.supervise = self.bool(&p, val).unwrap_or(false),
                "runtime" => match self.string(&p, val).as_deref() {
                    Some("auto") => b.runtime = RuntimeChoice::Auto,
                    Some("runc") => b.runtime = RuntimeChoice::Runc,
                    Some("runsc") => b.runtime = RuntimeChoice::Runsc,
                    Some(other) => self.err(
                        &p,
                        format!("unknown runtime `{other}`"),
                        "use `auto` (runsc when the engine has it), `runc` or `runsc`",
                    ),
                    None => {}
                },
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
}
