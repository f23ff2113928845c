//! The host firewall: on engines before 28, an INPUT-chain DROP rule per
//! internal bridge keeps the host unreachable from the bottle (SPEC §6).
//! Rules carry the comment `bottle:<id>` so `cleanup` finds them.
//!
//! Must never: add or delete a rule without that comment.

use serde::{Deserialize, Serialize};

use super::engine::ApplyError;

/// One iptables rule, as the arguments after `-I`/`-D`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FwRule {
    pub chain: String,
    pub args: Vec<String>,
}

/// How the internal networks keep the host out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIsolation {
    /// Engine 28+: `gateway_mode_ipv4=isolated`.
    GatewayIsolated,
    /// Older engines: an INPUT-chain DROP rule per internal bridge.
    Firewall,
    /// The user accepted the risk (`--allow-host-access`).
    None,
}

/// Decides the isolation, refusing when it cannot be had and the user did not accept the risk.
pub fn choose_isolation(
    engine_major: u32,
    allow_host_access: bool,
) -> Result<HostIsolation, ApplyError> {
    if engine_major >= 28 {
        return Ok(HostIsolation::GatewayIsolated);
    }
    match iptables(&["-w", "-S", "INPUT"]) {
        Ok(_) => Ok(HostIsolation::Firewall),
        Err(why) if allow_host_access => {
            eprintln!(
                "bottle: warning: the host is reachable from the bottle's internal networks ({why}); continuing because of --allow-host-access"
            );
            Ok(HostIsolation::None)
        }
        Err(why) => Err(ApplyError::Config(format!(
            "cannot keep the host unreachable from the bottle: Docker {engine_major} needs an iptables INPUT rule and `iptables` failed ({why}); fix: run bottle as root (or with CAP_NET_ADMIN), or pass --allow-host-access to accept the risk"
        ))),
    }
}

/// Runs iptables; Err holds a one-line reason.
pub fn iptables(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("iptables")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| !l.starts_with('#'))
            .unwrap_or("iptables failed")
            .trim()
            .to_string())
    }
}

/// The comment that marks a bottle's firewall rules.
pub fn fw_comment(id: &str) -> String {
    format!("bottle:{id}")
}

/// The rule that drops new connections from an internal bridge to the host.
pub fn drop_from_bridge(bridge: String, id: &str) -> FwRule {
    FwRule {
        chain: "INPUT".into(),
        args: vec![
            "-i".into(),
            bridge,
            "-m".into(),
            "conntrack".into(),
            "!".into(),
            "--ctstate".into(),
            "ESTABLISHED,RELATED".into(),
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            fw_comment(id),
            "-j".into(),
            "DROP".into(),
        ],
    }
}

/// Inserts a rule.
pub fn add(rule: &FwRule) -> Result<(), String> {
    let mut a: Vec<&str> = vec!["-w", "-I", &rule.chain];
    a.extend(rule.args.iter().map(String::as_str));
    iptables(&a).map(|_| ())
}

/// Deletes a rule; one already gone is not a failure.
pub fn delete(rule: &FwRule, failures: &mut Vec<String>) {
    let mut a: Vec<&str> = vec!["-w", "-D", &rule.chain];
    a.extend(rule.args.iter().map(String::as_str));
    if let Err(e) = iptables(&a)
        && !e.contains("does a matching rule exist")
        && !e.contains("Bad rule")
    {
        failures.push(format!("firewall rule {}: {e}", rule.args.join(" ")));
    }
}

/// The bottle rules in the INPUT chain, by bottle id (empty when iptables
/// cannot be read).
pub fn list() -> Vec<(String, FwRule)> {
    let mut out = Vec::new();
    if let Ok(rules) = iptables(&["-w", "-S", "INPUT"]) {
        for line in rules.lines() {
            let Some(rest) = line.strip_prefix("-A INPUT ") else {
                continue;
            };
            let args: Vec<String> = rest
                .split_whitespace()
                .map(|a| a.trim_matches('"').to_string())
                .collect();
            let Some(id) = args.iter().find_map(|a| a.strip_prefix("bottle:")) else {
                continue;
            };
            out.push((
                id.to_string(),
                FwRule {
                    chain: "INPUT".into(),
                    args,
                },
            ));
        }
    }
    out
}
