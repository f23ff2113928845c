//! The one routes file every proxy under test enforces (SPEC §2 JSON), so each does the
//! same work: an allowlist of hosts, and `Authorization` injection on the credential route.
//!
//! Owns writing that file and reading back the subset the harness's own hudsucker proxy
//! needs. It must never hold or write a token value: the file names an environment
//! variable only.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::Path;

/// Environment variable carrying the injected token to the proxies and the origin.
pub const TOKEN_ENV: &str = "BENCH_TOKEN";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RoutesFile {
    pub unmatched: String,
    pub routes: Vec<Route>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Route {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

/// 127.0.0.1 carries the credential (S1, S2, S4, S5, S6); 127.0.0.2..=127.0.0.<hosts>
/// are plain allowed hosts for the first-contact scenario S3.
pub fn bench_routes(hosts: u8) -> RoutesFile {
    let mut routes = vec![Route {
        host: "127.0.0.1".into(),
        auth_scheme: Some("Bearer".into()),
        token_env: Some(TOKEN_ENV.into()),
    }];
    for i in 2..=hosts {
        routes.push(Route {
            host: Ipv4Addr::new(127, 0, 0, i).to_string(),
            auth_scheme: None,
            token_env: None,
        });
    }
    RoutesFile {
        unmatched: "deny".into(),
        routes,
    }
}

pub fn write(path: &Path, routes: &RoutesFile) -> Result<()> {
    let json = serde_json::to_string_pretty(routes)?;
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
}

pub fn read(path: &Path) -> Result<RoutesFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a harness routes file (JSON with unmatched, routes[].host, auth_scheme, token_env)",
            path.display()
        )
    })
}
