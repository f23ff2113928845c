//! The agent's MCP configuration: one `http` server, the bottle's supervise
//! sidecar. The file and its keys are agreed with the supervise work (issue
//! 14); it is the shape Claude Code reads with `--mcp-config FILE`
//! (https://docs.anthropic.com/en/docs/claude-code/mcp, "mcpServers" with
//! `"type": "http"`).
//!
//! Must never: name anything outside the bottle.

/// The supervise sidecar's MCP endpoint inside the bottle.
pub const SUPERVISE_URL: &str = "http://supervise:9100/mcp";

pub fn render() -> String {
    let v = serde_json::json!({
        "mcpServers": {"supervise": {"type": "http", "url": SUPERVISE_URL}}
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_supervise_url() {
        let v: serde_json::Value = serde_json::from_str(&super::render()).unwrap();
        assert_eq!(
            v["mcpServers"]["supervise"],
            serde_json::json!({"type": "http", "url": "http://supervise:9100/mcp"})
        );
    }
}
