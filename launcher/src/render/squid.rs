//! squid.conf for the `squid` outer proxy: an ssl-bumping proxy with a strict
//! allowlist of the bottle's hosts (routes and `allow`).
//!
//! Must never: allow a host outside the list, cache anything, or add headers
//! that reveal the agent (Via, X-Forwarded-For).

use super::paths;

/// The squid port egress-proxy connects to.
pub const PORT: u16 = 3128;

/// Renders squid.conf. `hosts` are normalized (lower case, `*.` wildcards).
pub fn render(hosts: &[String], has_trust: bool) -> String {
    let mut exact: Vec<&str> = hosts
        .iter()
        .filter(|h| !h.starts_with("*."))
        .map(String::as_str)
        .collect();
    exact.sort_unstable();
    let mut wild: Vec<String> = hosts
        .iter()
        .filter_map(|h| h.strip_prefix("*."))
        // A wildcard covers subdomains, never the apex (SPEC §2): a regex, since
        // squid's `.domain` form would also match the apex.
        .map(|d| format!("\\.{}$", d.replace('.', "\\.")))
        .collect();
    wild.sort_unstable();
    let mut s = String::new();
    s.push_str("# Rendered by bottle: outer proxy allowlist. Do not edit; re-run bottle.\n");
    s.push_str(&format!(
        "http_port {PORT} ssl-bump tls-cert={} generate-host-certificates=on dynamic_cert_mem_cache_size=4MB\n",
        paths::SQUID_CA
    ));
    s.push_str(
        "sslcrtd_program /usr/lib/squid/security_file_certgen -s /var/lib/squid/ssl_db -M 4MB\n",
    );
    s.push_str("sslcrtd_children 4 startup=1 idle=1\n");
    if has_trust {
        s.push_str(&format!(
            "tls_outgoing_options cafile={}\n",
            paths::SQUID_TRUST
        ));
    }
    s.push_str("acl step1 at_step SslBump1\n");
    if exact.is_empty() && wild.is_empty() {
        // No host at all: an acl that matches nothing keeps the file valid.
        s.push_str("acl allowed_hosts dstdomain -n .invalid\n");
    }
    for chunk in exact.chunks(8) {
        s.push_str(&format!(
            "acl allowed_hosts dstdomain -n {}\n",
            chunk.join(" ")
        ));
    }
    for w in &wild {
        s.push_str(&format!("acl allowed_hosts dstdom_regex -n -i {w}\n"));
    }
    s.push_str(concat!(
        "http_access deny !allowed_hosts\n",
        "http_access allow allowed_hosts\n",
        "http_access deny all\n",
        "ssl_bump peek step1\n",
        "ssl_bump bump all\n",
        "cache deny all\n",
        "pinger_enable off\n",
        "via off\n",
        "forwarded_for delete\n",
        "httpd_suppress_version_string on\n",
        "access_log stdio:/dev/stdout\n",
        "cache_log /var/log/squid/cache.log\n",
        "pid_filename /run/squid/squid.pid\n",
        "coredump_dir /var/spool/squid\n",
        "shutdown_lifetime 1 seconds\n",
        "read_timeout 60 minutes\n",
        "client_lifetime 8 hours\n",
    ));
    s
}
