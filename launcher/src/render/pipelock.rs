//! pipelock.yaml for the `pipelock` outer proxy (facts: shared/pipelock.md).
//!
//! strict mode (the only mode that enforces the allowlist), forward proxy and
//! TLS interception on with the bottle's outer CA (key as SEC1, mode 0600),
//! rate and size limits raised so a busy agent and long SSE streams are not
//! cut, DLP on but the headers egress-proxy injects left unscanned (they carry
//! the credential on purpose), Sentry off.
//!
//! Must never: render a key pipelock does not know (it rejects unknown keys;
//! the tests check every key against its schema), or a secret.

use super::paths;

/// pipelock's proxy port.
pub const PORT: u16 = 8888;

/// pipelock's default sensitive headers (request_body_scanning.sensitive_headers).
const DEFAULT_SENSITIVE: &[&str] = &[
    "Authorization",
    "Cookie",
    "X-Api-Key",
    "X-Token",
    "Proxy-Authorization",
    "X-Goog-Api-Key",
];

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Renders pipelock.yaml. `injected_headers` are the routes' credential headers.
pub fn render(hosts: &[String], injected_headers: &[String]) -> String {
    let mut hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    hosts.sort_unstable();
    let mut sensitive: Vec<&str> = DEFAULT_SENSITIVE
        .iter()
        .copied()
        .filter(|d| !injected_headers.iter().any(|h| h.eq_ignore_ascii_case(d)))
        .collect();
    if sensitive.is_empty() {
        // An empty list would restore pipelock's defaults (Authorization included).
        sensitive.push("X-Bottle-Unused");
    }
    let list = |v: &[&str]| v.iter().map(|h| quote(h)).collect::<Vec<_>>().join(", ");
    format!(
        "# Rendered by bottle. Keys: pipelock internal/config/schema.go (v2.3.0).\n\
version: 1\n\
mode: strict\n\
enforce: true\n\
api_allowlist: [{allow}]\n\
fetch_proxy:\n\
\x20 listen: \"0.0.0.0:{PORT}\"\n\
\x20 monitoring:\n\
\x20   max_requests_per_minute: 1000000\n\
\x20   max_url_length: 16384\n\
forward_proxy:\n\
\x20 enabled: true\n\
\x20 max_tunnel_seconds: 86400\n\
\x20 idle_timeout_seconds: 3600\n\
tls_interception:\n\
\x20 enabled: true\n\
\x20 ca_cert: {ca}\n\
\x20 ca_key: {key}\n\
\x20 max_response_bytes: 1073741824\n\
request_body_scanning:\n\
\x20 enabled: true\n\
\x20 action: warn\n\
\x20 max_body_bytes: 268435456\n\
\x20 header_mode: sensitive\n\
\x20 sensitive_headers: [{sensitive}]\n\
dlp:\n\
\x20 scan_env: true\n\
\x20 include_defaults: true\n\
response_scanning:\n\
\x20 enabled: true\n\
\x20 action: warn\n\
\x20 sse_streaming:\n\
\x20   enabled: true\n\
\x20   action: warn\n\
\x20   max_event_bytes: 16777216\n\
logging:\n\
\x20 format: json\n\
\x20 output: stdout\n\
sentry:\n\
\x20 enabled: false\n",
        allow = list(&hosts),
        ca = paths::PIPELOCK_CA,
        key = paths::PIPELOCK_KEY,
        sensitive = list(&sensitive),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml_ng::Value;

    /// Keys pipelock accepts, per struct, copied from luckyPipewrench/pipelock
    /// `internal/config/schema.go` at 40865129 (v2.3.0 + 6; `internal/config` is
    /// identical in v2.3.0). pipelock rejects unknown keys at any depth.
    const SCHEMA: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "version",
                "mode",
                "enforce",
                "explain_blocks",
                "api_allowlist",
                "suppress",
                "fetch_proxy",
                "forward_proxy",
                "websocket_proxy",
                "dlp",
                "canary_tokens",
                "response_scanning",
                "mcp_input_scanning",
                "mcp_tool_scanning",
                "mcp_tool_policy",
                "git_protection",
                "logging",
                "session_profiling",
                "adaptive_enforcement",
                "mcp_session_binding",
                "request_body_scanning",
                "kill_switch",
                "sentry",
                "metrics_listen",
                "emit",
                "tool_chain_detection",
                "mcp_ws_listener",
                "tls_interception",
                "cross_request_detection",
                "reverse_proxy",
                "scan_api",
                "address_protection",
                "seed_phrase_detection",
                "rules",
                "file_sentry",
                "sandbox",
                "flight_recorder",
                "mcp_binary_integrity",
                "mcp_tool_provenance",
                "behavioral_baseline",
                "airlock",
                "browser_shield",
                "media_policy",
                "a2a_scanning",
                "taint",
                "mediation_envelope",
                "redaction",
                "agents",
                "default_agent_identity",
                "bind_default_agent_identity",
                "license_key",
                "license_file",
                "license_public_key",
                "internal",
                "trusted_domains",
                "ssrf",
            ],
        ),
        (
            "fetch_proxy",
            &[
                "listen",
                "timeout_seconds",
                "max_response_mb",
                "user_agent",
                "monitoring",
            ],
        ),
        (
            "fetch_proxy.monitoring",
            &[
                "max_url_length",
                "entropy_threshold",
                "subdomain_entropy_threshold",
                "max_requests_per_minute",
                "max_data_per_minute",
                "blocklist",
                "subdomain_entropy_exclusions",
            ],
        ),
        (
            "forward_proxy",
            &[
                "enabled",
                "max_tunnel_seconds",
                "idle_timeout_seconds",
                "sni_verification",
                "redirect_websocket_hosts",
            ],
        ),
        (
            "tls_interception",
            &[
                "enabled",
                "ca_cert",
                "ca_key",
                "passthrough_domains",
                "cert_ttl",
                "cert_cache_size",
                "max_response_bytes",
            ],
        ),
        (
            "request_body_scanning",
            &[
                "enabled",
                "action",
                "max_body_bytes",
                "scan_headers",
                "header_mode",
                "sensitive_headers",
                "ignore_headers",
            ],
        ),
        (
            "response_scanning",
            &[
                "enabled",
                "action",
                "ask_timeout_seconds",
                "include_defaults",
                "patterns",
                "exempt_domains",
                "sse_streaming",
            ],
        ),
        (
            "response_scanning.sse_streaming",
            &["enabled", "action", "max_event_bytes"],
        ),
        (
            "logging",
            &[
                "format",
                "output",
                "file",
                "include_allowed",
                "include_blocked",
            ],
        ),
        (
            "sentry",
            &["enabled", "dsn", "environment", "sample_rate", "debug"],
        ),
        (
            "dlp",
            &[
                "scan_env",
                "secrets_file",
                "min_env_secret_length",
                "include_defaults",
                "patterns",
                "action",
            ],
        ),
    ];

    fn check(prefix: &str, v: &Value, seen: &mut Vec<String>) {
        let Value::Mapping(m) = v else { return };
        let allowed = SCHEMA
            .iter()
            .find(|(p, _)| *p == prefix)
            .unwrap_or_else(|| panic!("rendered section `{prefix}` has no schema list in this test: add it from schema.go"))
            .1;
        for (k, val) in m {
            let k = k.as_str().expect("string keys");
            assert!(allowed.contains(&k), "pipelock would reject `{prefix}.{k}`");
            let path = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            seen.push(path.clone());
            if matches!(val, Value::Mapping(_)) {
                check(&path, val, seen);
            }
        }
    }

    #[test]
    fn every_rendered_key_is_in_pipelocks_schema() {
        let y = render(
            &["api.github.com".into(), "*.npmjs.org".into()],
            &["Authorization".into()],
        );
        let v: Value = serde_yaml_ng::from_str(&y).unwrap();
        let mut seen = Vec::new();
        check("", &v, &mut seen);
        assert!(seen.len() > 25, "{seen:?}");
        // Values pipelock.md says must hold.
        assert_eq!(v["mode"], Value::from("strict"));
        assert_eq!(v["forward_proxy"]["enabled"], Value::from(true));
        assert_eq!(v["tls_interception"]["enabled"], Value::from(true));
        assert_eq!(v["sentry"]["enabled"], Value::from(false));
        assert_eq!(v["dlp"].get("action"), None, "dlp.action must be empty");
        let sens: Vec<&str> = v["request_body_scanning"]["sensitive_headers"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|x| x.as_str())
            .collect();
        assert!(
            !sens.iter().any(|h| h.eq_ignore_ascii_case("authorization")),
            "the injected header is not scanned"
        );
        assert!(!sens.is_empty(), "an empty list would restore the defaults");
        let allow: Vec<&str> = v["api_allowlist"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|x| x.as_str())
            .collect();
        assert_eq!(allow, vec!["*.npmjs.org", "api.github.com"]);
    }

    #[test]
    fn all_default_headers_injected_still_leaves_a_list() {
        let all: Vec<String> = DEFAULT_SENSITIVE.iter().map(|s| s.to_string()).collect();
        let v: Value = serde_yaml_ng::from_str(&render(&["a.example".into()], &all)).unwrap();
        assert_eq!(
            v["request_body_scanning"]["sensitive_headers"]
                .as_sequence()
                .unwrap()
                .len(),
            1
        );
    }
}
