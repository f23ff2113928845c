//! The compact text `bottle plan` prints for people (`--json` prints the
//! `Plan` itself).
//!
//! Must never: print a secret value (the plan holds none).

use super::model::{Plan, RoleName};

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
}
