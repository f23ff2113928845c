//! Renderers: pure functions from the validated manifest (and token slots) to
//! the text of each sidecar's configuration file.
//!
//! Owns: the exact bytes of routes.json, squid.conf, pipelock.yaml, git-gate's
//! config.json and the agent workspace's scrubbed `.git/config`.
//!
//! Must never: see a secret value (only slot names), do I/O, or talk to Docker.

pub mod git_config;
pub mod git_gate;
pub mod mcp;
pub mod pipelock;
pub mod routes;
pub mod squid;

/// Paths inside the containers, shared by the renderers and the plan.
pub mod paths {
    pub const ROUTES: &str = "/etc/egress-proxy/routes.json";
    pub const PROXY_CA: &str = "/etc/egress-proxy/ca.pem";
    pub const PROXY_UPSTREAM_CA: &str = "/etc/egress-proxy/upstream-ca.pem";
    pub const SQUID_CONF: &str = "/etc/squid/squid.conf";
    pub const SQUID_CA: &str = "/etc/squid/bottle-ca.pem";
    pub const SQUID_TRUST: &str = "/etc/squid/upstream-trust.pem";
    pub const PIPELOCK_CONF: &str = "/etc/pipelock/pipelock.yaml";
    pub const PIPELOCK_CA: &str = "/etc/pipelock/ca.pem";
    pub const PIPELOCK_KEY: &str = "/etc/pipelock/ca-key.pem";
    pub const GATE_CONF: &str = "/etc/git-gate/config.json";
    pub const AGENT_CA: &str = "/etc/bottle/ca.pem";
    pub const AGENT_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
    pub const WORKSPACE: &str = "/workspace";
    pub const AGENT_HOME: &str = "/home/agent";
    /// The agent's prompt (`{prompt_file}` in its command), 0400, owned by the agent.
    pub const AGENT_PROMPT: &str = "/home/agent/.bottle/prompt.md";
    /// Where skills go, one directory each.
    pub const AGENT_SKILLS: &str = "/home/agent/.claude/skills";
    /// The agent's MCP configuration (agreed with supervise, issue 14).
    pub const AGENT_MCP: &str = "/etc/bottle/mcp.json";
}
