//! The command line: flags, environment fallbacks and subcommands.
//!
//! Owns: the SPEC §4/§5 CLI (clap derive) and turning it into a `Config`.
//! Must never: take a secret as a flag (secrets come from the environment or
//! files named in the routes file).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ipnet::IpNet;

use crate::log::LogFormat;

const EXAMPLE: &str = "\
Examples:
  # Standalone: ephemeral CA (its certificate path is printed), 127.0.0.1:9099
  egress-proxy --routes examples/routes.yaml
  curl -x http://127.0.0.1:9099 --cacert /tmp/egress-proxy-XXXXXX/ca-cert.pem https://api.github.com/

  # In a bottle (what the launcher runs)
  EGRESS_PROXY_UPSTREAM_CA=/etc/egress-proxy/upstream-ca.pem \\
  egress-proxy --routes /etc/egress-proxy/routes.json --ca /etc/egress-proxy/ca.pem \\
               --listen 0.0.0.0:9099 --upstream-proxy http://pipelock:8888

  # Testing against local origins in direct mode
  egress-proxy --routes routes.yaml --allow-range 127.0.0.0/8

  egress-proxy ca new --out ./ca            # ca.pem (cert+key, 0600), ca-cert.pem; --force replaces
  egress-proxy check --routes routes.yaml   # validate a routes file
  egress-proxy explain --routes routes.yaml GET https://api.github.com/repos/acme/widget/issues";

/// A MITM egress proxy for sandboxed agents: per-route path rules,
/// credential injection, git-push block.
#[derive(Debug, Parser)]
#[command(name = "egress-proxy", version, after_help = EXAMPLE, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The routes file (JSON or YAML).
    #[arg(long, env = "EGRESS_PROXY_ROUTES", value_name = "PATH")]
    pub routes: Option<PathBuf>,

    /// Address to listen on.
    #[arg(
        long,
        env = "EGRESS_PROXY_LISTEN",
        default_value = "127.0.0.1:9099",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// One PEM file holding the CA certificate and its private key (mitmproxy layout).
    #[arg(long, env = "EGRESS_PROXY_CA", value_name = "PATH", conflicts_with_all = ["ca_cert", "ca_key"])]
    pub ca: Option<PathBuf>,

    /// The CA certificate (with --ca-key).
    #[arg(
        long,
        env = "EGRESS_PROXY_CA_CERT",
        value_name = "PATH",
        requires = "ca_key"
    )]
    pub ca_cert: Option<PathBuf>,

    /// The CA private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) PEM (with --ca-cert).
    #[arg(
        long,
        env = "EGRESS_PROXY_CA_KEY",
        value_name = "PATH",
        requires = "ca_cert"
    )]
    pub ca_key: Option<PathBuf>,

    /// Where to write the ephemeral CA's certificate when no CA is given
    /// (default: ca-cert.pem in a new private directory under $TMPDIR, removed
    /// on exit; its path is logged).
    #[arg(long, env = "EGRESS_PROXY_CA_OUT", value_name = "PATH")]
    pub ca_out: Option<PathBuf>,

    /// Extra CA certificates (PEM) trusted for origins, e.g. the outer proxy's CA.
    #[arg(long, env = "EGRESS_PROXY_UPSTREAM_CA", value_name = "PATH")]
    pub upstream_ca: Option<PathBuf>,

    /// Send every outbound connection through this HTTP proxy with CONNECT
    /// (http://host:port).
    #[arg(long, env = "EGRESS_PROXY_UPSTREAM_PROXY", value_name = "URL")]
    pub upstream_proxy: Option<String>,

    /// Direct mode: also allow destinations in this range (repeatable).
    #[arg(
        long = "allow-range",
        env = "EGRESS_PROXY_ALLOW_RANGES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub allow_range: Vec<IpNet>,

    /// Serve /healthz and /metrics on this address (default off).
    #[arg(long, env = "EGRESS_PROXY_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// Log format on stderr.
    #[arg(
        long,
        env = "EGRESS_PROXY_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,

    /// Seconds to drain in-flight requests on SIGTERM/SIGINT.
    #[arg(
        long,
        env = "EGRESS_PROXY_GRACE",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub grace: u64,

    /// Seconds to wait for an upstream response head (504 upstream-timeout).
    #[arg(
        long,
        env = "EGRESS_PROXY_UPSTREAM_TIMEOUT",
        default_value_t = 120,
        value_name = "SECS"
    )]
    pub upstream_timeout: u64,

    /// Concurrent client connections; beyond them a new client gets 503 `overloaded`.
    #[arg(long, env = "EGRESS_PROXY_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub max_connections: u32,

    /// Concurrent HTTP/2 streams per client connection.
    #[arg(long, env = "EGRESS_PROXY_MAX_H2_STREAMS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub max_h2_streams: u32,

    /// Seconds for a client to send a request head (slowloris bound); also
    /// how long an idle HTTP/1 keep-alive connection is kept.
    #[arg(long, env = "EGRESS_PROXY_HEADER_READ_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..), value_name = "SECS")]
    pub header_read_timeout: u64,

    /// Seconds a client connection inside a tunnel may stay open with no
    /// request in flight (h2 included; a streaming response is in flight).
    #[arg(long, env = "EGRESS_PROXY_IDLE_TIMEOUT", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..), value_name = "SECS")]
    pub idle_timeout: u64,

    /// Seconds for the first bytes and the TLS handshake inside a CONNECT tunnel.
    #[arg(long, env = "EGRESS_PROXY_HANDSHAKE_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..), value_name = "SECS")]
    pub handshake_timeout: u64,

    /// Leaf certificates (one per CONNECT host) kept in the cache.
    #[arg(long, env = "EGRESS_PROXY_LEAF_CACHE_SIZE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub leaf_cache_size: u32,

    /// Also reload when the routes file or a token file changes (polled every
    /// 2 s); SIGHUP always reloads.
    #[arg(long, env = "EGRESS_PROXY_WATCH_ROUTES")]
    pub watch_routes: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// CA management.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Validate a routes file (exit 2 on errors).
    Check {
        #[arg(long, value_name = "FILE")]
        routes: PathBuf,
    },
    /// Show how the routes file decides one request.
    Explain {
        #[arg(long, value_name = "FILE")]
        routes: PathBuf,
        /// HTTP method, e.g. GET.
        method: String,
        /// Full URL, e.g. https://api.github.com/repos/acme/widget/issues.
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Mint a new CA: DIR/ca.pem (certificate and key, mode 0600) and DIR/ca-cert.pem.
    /// Existing files are refused unless --force.
    New {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace existing files: new files are written under a random name in
        /// DIR and renamed over the old ones (never opened, never followed).
        #[arg(long)]
        force: bool,
    },
}

/// `http://host:port` or `host:port` -> `host:port`.
pub fn parse_upstream_proxy(url: &str) -> Result<String, String> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.contains("://") {
        return Err(format!(
            "--upstream-proxy {url}: only http:// proxies are supported (CONNECT over plain HTTP)"
        ));
    } else {
        url
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('@') {
        return Err("--upstream-proxy: credentials in the URL are not supported".into());
    }
    if rest.is_empty() || rest.contains('/') {
        return Err(format!("--upstream-proxy {url}: expected http://host:port"));
    }
    let has_port = rest
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
    if !has_port {
        return Err(format!(
            "--upstream-proxy {url}: a port is required, e.g. http://pipelock:8888"
        ));
    }
    Ok(rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_proxy_urls() {
        assert_eq!(
            parse_upstream_proxy("http://pipelock:8888").unwrap(),
            "pipelock:8888"
        );
        assert_eq!(
            parse_upstream_proxy("http://127.0.0.1:3128/").unwrap(),
            "127.0.0.1:3128"
        );
        assert!(parse_upstream_proxy("https://p:1").is_err());
        assert!(parse_upstream_proxy("http://u:p@h:1").is_err());
        assert!(parse_upstream_proxy("http://h").is_err());
    }

    #[test]
    fn cli_parses_the_bottle_command_line() {
        let c = Cli::try_parse_from([
            "egress-proxy",
            "--routes",
            "/etc/egress-proxy/routes.json",
            "--ca",
            "/etc/egress-proxy/ca.pem",
            "--listen",
            "0.0.0.0:9099",
            "--upstream-proxy",
            "http://outer:8888",
            "--allow-range",
            "127.0.0.0/8",
            "--allow-range",
            "10.0.0.0/8",
        ])
        .unwrap();
        assert_eq!(c.allow_range.len(), 2);
        assert!(c.command.is_none());
        let c = Cli::try_parse_from(["egress-proxy", "ca", "new", "--out", "/tmp/x"]).unwrap();
        assert!(matches!(c.command, Some(Command::Ca { .. })));
    }
}
