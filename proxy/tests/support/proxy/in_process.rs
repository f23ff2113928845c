//! egress-proxy started in-process (`egress_proxy::start`), for tests that need
//! what the CLI cannot give: a custom resolver, exact limits, the `Running`
//! handle. Everything else should use the child process ([`super::Proxy`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The proxy running in-process.
pub struct TestProxy {
    pub running: egress_proxy::Running,
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub dir: tempfile::TempDir,
}

pub struct ProxySetup {
    pub routes: String,
    pub env: Vec<(String, String)>,
    pub upstream_ca: Option<String>,
    pub upstream_proxy: Option<String>,
    pub allow: Vec<String>,
    pub upstream_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    /// Direct mode's resolver; the system's when `None`.
    pub resolver: Option<egress_proxy::upstream::resolve::Resolver>,
}

impl ProxySetup {
    pub fn new(routes: &str) -> ProxySetup {
        ProxySetup {
            routes: routes.into(),
            env: Vec::new(),
            upstream_ca: None,
            upstream_proxy: None,
            allow: vec!["127.0.0.0/8".into()],
            upstream_timeout: None,
            max_connections: None,
            resolver: None,
        }
    }

    pub async fn start(self) -> TestProxy {
        let dir = tempfile::tempdir().unwrap();
        let routes = dir.path().join("routes.yaml");
        std::fs::write(&routes, &self.routes).unwrap();
        let upstream_ca = self.upstream_ca.map(|pem| {
            let p = dir.path().join("upstream-ca.pem");
            std::fs::write(&p, pem).unwrap();
            p
        });
        let cert_out: PathBuf = dir.path().join("proxy-ca.pem");
        let mut limits = egress_proxy::limits::Limits::default();
        if let Some(t) = self.upstream_timeout {
            limits.upstream_response_timeout = t;
        }
        if let Some(m) = self.max_connections {
            limits.max_connections = m;
        }
        let config = egress_proxy::Config {
            routes,
            listen: "127.0.0.1:0".parse().unwrap(),
            ca: egress_proxy::CaSource::Ephemeral {
                cert_out: cert_out.clone(),
            },
            upstream_ca,
            upstream_proxy: self.upstream_proxy,
            allow_ranges: self.allow.iter().map(|a| a.parse().unwrap()).collect(),
            limits,
            env: self.env.into_iter().collect(),
            resolver: self.resolver.unwrap_or_default(),
        };
        let running = egress_proxy::start(config).await.expect("proxy starts");
        let ca_pem = std::fs::read_to_string(&cert_out).unwrap();
        TestProxy {
            addr: running.addr,
            running,
            ca_pem,
            dir,
        }
    }
}

/// Routes for an origin on `localhost` with a credential.
pub fn routes_with_credential(extra: &str) -> String {
    format!(
        "unmatched: deny\nroutes:\n  - host: localhost\n    auth_scheme: Bearer\n    token_env: TEST_TOKEN\n    path_allowlist: [\"/allowed\", \"/sse\", \"/slow\", \"/ws\"]\n    path_denylist: [\"/allowed/secret\"]\n{extra}"
    )
}

pub const SECRET: &str = "s3cr3t-token-value-7f1c";
