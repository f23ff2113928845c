//! The compact text `bottle plan` prints for people (`--json` prints the
//! `Plan` itself).
//!
//! Must never: print a secret value (the plan holds none).

use super::model::{Plan, RoleName, resource_name};

impl Plan {
    /// The runtime as `bottle plan` shows it; `resolved` is what the engine
    /// answered for `auto`, when it could be asked.
    pub fn runtime_line(&self, resolved: Option<&str>) -> String {
        match (self.runtime.as_str(), resolved) {
            ("auto", Some(r)) => format!("auto -> {r} (asked the engine)"),
            ("auto", None) => {
                "auto (resolved at run: runsc when the engine has it, else runc)".into()
            }
            (r, _) => r.to_string(),
        }
    }

    /// The compact summary, `auto` runtime unresolved.
    pub fn summary(&self) -> String {
        self.summary_for(None)
    }

    /// The compact summary `bottle plan` prints for people.
    pub fn summary_for(&self, runtime: Option<&str>) -> String {
        let mut s = format!(
            "bottle `{}` for agent `{}` (id {})\n",
            self.bottle, self.agent, self.id
        );
        s.push_str("networks:\n");
        for n in &self.networks {
            s.push_str(&format!(
                "  {:<7} {}{}\n",
                n.role,
                n.name,
                if n.internal {
                    "  (internal, host blocked)"
                } else {
                    ""
                }
            ));
        }
        s.push_str("containers (start order):\n");
        for c in &self.containers {
            let nets: Vec<String> = c
                .networks
                .iter()
                .map(|a| {
                    let short = a
                        .network
                        .rsplit('-')
                        .next()
                        .unwrap_or(&a.network)
                        .to_string();
                    if a.aliases.is_empty() {
                        short
                    } else {
                        format!("{short} as {}", a.aliases.join(","))
                    }
                })
                .collect();
            s.push_str(&format!(
                "  {:<12} {}  image {}  on {}\n",
                c.role.as_str(),
                c.name,
                c.image,
                nets.join(", ")
            ));
            if !c.secret_env.is_empty() {
                let v: Vec<String> = c
                    .secret_env
                    .iter()
                    .map(|(k, r)| format!("{k} <- ${r}"))
                    .collect();
                s.push_str(&format!(
                    "               secrets (env of this container only): {}\n",
                    v.join(", ")
                ));
            }
        }
        if let Some(a) = self.container(RoleName::Agent) {
            s.push_str(&format!(
                "agent env: {}\n",
                a.env.keys().cloned().collect::<Vec<_>>().join(" ")
            ));
            s.push_str(&format!("agent command: {}\n", a.command.join(" ")));
        }
        s.push_str(&format!("agent runtime: {}\n", self.runtime_line(runtime)));
        if let Some(b) = &self.build {
            s.push_str(&format!(
                "agent image build: {} (context {}) -> {}\n",
                b.dockerfile.display(),
                b.context.display(),
                b.tag
            ));
        }
        match &self.prompt {
            Some(p) => s.push_str(&format!("agent prompt: {} -> {}\n", p.source, p.path)),
            None => s.push_str("agent prompt: none\n"),
        }
        if !self.skills.is_empty() {
            s.push_str("agent skills:\n");
            for k in &self.skills {
                s.push_str(&format!(
                    "  {} ({}) -> {}\n",
                    k.name,
                    k.source.display(),
                    k.path
                ));
            }
        }
        if self.supervise {
            s.push_str(&format!(
                "agent MCP config: {} (supervise at {})\n",
                crate::render::paths::AGENT_MCP,
                crate::render::mcp::SUPERVISE_URL
            ));
        }
        s.push_str(&format!(
            "outer proxy: {} ({}), allowlist: {}\n",
            self.outer_proxy.kind,
            self.outer_proxy.image,
            self.outer_proxy.allowlist.join(" ")
        ));
        if !self.approved_earlier.is_empty() {
            s.push_str("approved earlier (kept for this bottle; `bottle approvals list`):\n");
            for a in &self.approved_earlier {
                s.push_str(&format!(
                    "  {}  {}{}  by {} at {}\n",
                    a.id,
                    a.host,
                    approval_rules(&a.paths, &a.methods),
                    a.operator,
                    a.time
                ));
            }
        }
        for a in &self.approvals_skipped {
            s.push_str(&format!(
                "approved earlier, not applied: {} for {}: {} (`bottle approvals revoke {}`)\n",
                a.id, a.host, a.why, a.id
            ));
        }
        if !self.git_remotes.is_empty() {
            s.push_str("git remotes:\n");
            for g in &self.git_remotes {
                s.push_str(&format!(
                    "  {} -> {} (upstream {})\n",
                    g.name, g.url, g.upstream
                ));
            }
        }
        match &self.workspace {
            Some(w) => {
                s.push_str(&format!(
                    "workspace: {} ({} files) -> /workspace\n",
                    w.source.display(),
                    w.files
                ));
                for x in &w.warnings {
                    s.push_str(&format!("  warning: {x}\n"));
                }
            }
            None => s.push_str("workspace: none\n"),
        }
        s.push_str("CAs: minted at run\n");
        s
    }

    /// What `bottle run` shows before asking y/N: what the agent can reach
    /// and with which credential slot, git remotes, the workspace, the
    /// prompt, skills and runtime. `runtime` is the engine's answer.
    pub fn preflight(&self, runtime: &str) -> String {
        let mut s = format!(
            "bottle `{}` for agent `{}` (image {})\n",
            self.bottle,
            self.agent,
            self.container(RoleName::Agent)
                .map(|a| a.image.as_str())
                .unwrap_or("?")
        );
        s.push_str("reachable (everything else is refused):\n");
        for r in &self.routes {
            let mut rules = Vec::new();
            if !r.methods.is_empty() {
                rules.push(format!("methods {}", r.methods.join(",")));
            }
            if !r.path_allowlist.is_empty() {
                rules.push(format!("paths {}", r.path_allowlist.join(" ")));
            }
            if !r.path_denylist.is_empty() {
                rules.push(format!("not {}", r.path_denylist.join(" ")));
            }
            if rules.is_empty() {
                rules.push("any path".into());
            }
            let cred = match &r.slot {
                Some(slot) => {
                    let from = self
                        .token_slots
                        .iter()
                        .find(|t| &t.slot == slot)
                        .map(|t| format!(" from ${}", t.token_ref))
                        .unwrap_or_default();
                    format!("  credential {slot}{from}")
                }
                None => String::new(),
            };
            s.push_str(&format!("  {:<28} {}{cred}\n", r.host, rules.join("; ")));
        }
        if !self.approved_earlier.is_empty() {
            let ids: Vec<&str> = self
                .approved_earlier
                .iter()
                .map(|a| a.id.as_str())
                .collect();
            s.push_str(&format!(
                "  (includes approvals kept from earlier runs: {}; `bottle approvals list`)\n",
                ids.join(" ")
            ));
        }
        for g in &self.git_remotes {
            s.push_str(&format!("git remote {} -> {}\n", g.name, g.upstream));
        }
        match &self.workspace {
            Some(w) => {
                s.push_str(&format!(
                    "workspace: {} files from {}\n",
                    w.files,
                    w.source.display()
                ));
                for x in &w.warnings {
                    s.push_str(&format!("  warning: {x}\n"));
                }
            }
            None if self.resumed => s.push_str(&format!(
                "workspace: resumed from volume {} (not copied again)\n",
                resource_name(&self.id, "workspace")
            )),
            None => s.push_str("workspace: none (empty /workspace)\n"),
        }
        if let Some(p) = &self.prompt {
            s.push_str(&format!("prompt: {}\n", p.source));
        }
        if !self.skills.is_empty() {
            let n: Vec<&str> = self.skills.iter().map(|k| k.name.as_str()).collect();
            s.push_str(&format!("skills: {}\n", n.join(", ")));
        }
        s.push_str(&format!("runtime: {runtime}\n"));
        s
    }
}

/// ` paths /a /b; methods GET` for a kept approval (empty: unchanged/any).
fn approval_rules(paths: &[String], methods: &[String]) -> String {
    let mut s = String::new();
    if !paths.is_empty() {
        s.push_str(&format!(" paths {}", paths.join(" ")));
    }
    if !methods.is_empty() {
        s.push_str(&format!(" methods {}", methods.join(",")));
    }
    s
}
