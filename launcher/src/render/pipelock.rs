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

use serde::Serialize;

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

/// pipelock.yaml, typed: the keys are pipelock's (`internal/config/schema.go`),
/// in its order; serde renders them.
#[derive(Serialize)]
struct Config<'a> {
    version: u32,
    mode: &'static str,
    enforce: bool,
    api_allowlist: Vec<&'a str>,
    fetch_proxy: FetchProxy,
    forward_proxy: ForwardProxy,
    tls_interception: TlsInterception,
    request_body_scanning: RequestBodyScanning<'a>,
    dlp: Dlp,
    response_scanning: ResponseScanning,
    logging: Logging,
    sentry: Enabled,
}

#[derive(Serialize)]
struct FetchProxy {
    listen: String,
    monitoring: Monitoring,
}

#[derive(Serialize)]
struct Monitoring {
    max_requests_per_minute: u64,
    max_url_length: u64,
}

#[derive(Serialize)]
struct ForwardProxy {
    enabled: bool,
    max_tunnel_seconds: u64,
    idle_timeout_seconds: u64,
}

#[derive(Serialize)]
struct TlsInterception {
    enabled: bool,
    ca_cert: &'static str,
    ca_key: &'static str,
    max_response_bytes: u64,
}

#[derive(Serialize)]
struct RequestBodyScanning<'a> {
    enabled: bool,
    action: &'static str,
    max_body_bytes: u64,
    header_mode: &'static str,
    sensitive_headers: Vec<&'a str>,
}

/// `action` stays unset: pipelock.md says DLP's action must be empty.
#[derive(Serialize)]
struct Dlp {
    scan_env: bool,
    include_defaults: bool,
}

#[derive(Serialize)]
struct ResponseScanning {
    enabled: bool,
    action: &'static str,
    sse_streaming: SseStreaming,
}

#[derive(Serialize)]
struct SseStreaming {
    enabled: bool,
    action: &'static str,
    max_event_bytes: u64,
}

#[derive(Serialize)]
struct Logging {
    format: &'static str,
    output: &'static str,
}

#[derive(Serialize)]
struct Enabled {
    enabled: bool,
}

const HEADER: &str = "# Rendered by bottle. Keys: pipelock internal/config/schema.go (v2.3.0).\n";

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
    let config = Config {
        version: 1,
        mode: "strict",
        enforce: true,
        api_allowlist: hosts,
        fetch_proxy: FetchProxy {
            listen: format!("0.0.0.0:{PORT}"),
            monitoring: Monitoring {
                max_requests_per_minute: 1_000_000,
                max_url_length: 16384,
            },
        },
        forward_proxy: ForwardProxy {
            enabled: true,
            max_tunnel_seconds: 86400,
            idle_timeout_seconds: 3600,
        },
        tls_interception: TlsInterception {
            enabled: true,
            ca_cert: paths::PIPELOCK_CA,
            ca_key: paths::PIPELOCK_KEY,
            max_response_bytes: 1 << 30,
        },
        request_body_scanning: RequestBodyScanning {
            enabled: true,
            action: "warn",
            max_body_bytes: 256 << 20,
            header_mode: "sensitive",
            sensitive_headers: sensitive,
        },
        dlp: Dlp {
            scan_env: true,
            include_defaults: true,
        },
        response_scanning: ResponseScanning {
            enabled: true,
            action: "warn",
            sse_streaming: SseStreaming {
                enabled: true,
                action: "warn",
                max_event_bytes: 16 << 20,
            },
        },
        logging: Logging {
            format: "json",
            output: "stdout",
        },
        sentry: Enabled { enabled: false },
    };
    // Serializing plain structs of strings, numbers and booleans cannot fail.
    let body = serde_yaml_ng::to_string(&config).unwrap_or_default();
    format!("{HEADER}{body}")
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

    /// The serde render means exactly what the hand-written (`format!`) one
    /// meant: the golden before the switch, parsed, equals the new output,
    /// parsed (only flow lists and quoting changed).
    #[test]
    fn serde_render_means_what_the_format_render_meant() {
        const BEFORE: &str = r#"# Rendered by bottle. Keys: pipelock internal/config/schema.go (v2.3.0).
version: 1
mode: strict
enforce: true
api_allowlist: ["*.npmjs.org", "api.github.com"]
fetch_proxy:
  listen: "0.0.0.0:8888"
  monitoring:
    max_requests_per_minute: 1000000
    max_url_length: 16384
forward_proxy:
  enabled: true
  max_tunnel_seconds: 86400
  idle_timeout_seconds: 3600
tls_interception:
  enabled: true
  ca_cert: /etc/pipelock/ca.pem
  ca_key: /etc/pipelock/ca-key.pem
  max_response_bytes: 1073741824
request_body_scanning:
  enabled: true
  action: warn
  max_body_bytes: 268435456
  header_mode: sensitive
  sensitive_headers: ["Cookie", "X-Token", "Proxy-Authorization", "X-Goog-Api-Key"]
dlp:
  scan_env: true
  include_defaults: true
response_scanning:
  enabled: true
  action: warn
  sse_streaming:
    enabled: true
    action: warn
    max_event_bytes: 16777216
logging:
  format: json
  output: stdout
sentry:
  enabled: false
"#;
        let now = render(
            &["api.github.com".into(), "*.npmjs.org".into()],
            &["Authorization".into(), "X-Api-Key".into()],
        );
        assert!(now.starts_with(HEADER));
        let before: Value = serde_yaml_ng::from_str(BEFORE).unwrap();
        let after: Value = serde_yaml_ng::from_str(&now).unwrap();
        assert_eq!(before, after, "{now}");
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
