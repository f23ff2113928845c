//! The view: the live routes as the agent may see them (`view/view.json`).
//!
//! Owns the credential-free shape of a route. Built by the host from a
//! validated [`addon_rules::Policy`], so it says only what the engine
//! enforces. Must never carry a token source, an environment variable name,
//! a file path or a value: `credential` is a boolean, and `strip_headers`,
//! `auth_header` and `auth_scheme` stay on the host.

use serde::{Deserialize, Serialize};

/// One route without its credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewRoute {
    pub host: String,
    #[serde(default)]
    pub path_allowlist: Vec<String>,
    #[serde(default)]
    pub path_denylist: Vec<String>,
    /// `None`: any method.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Whether egress-proxy injects a credential on this route.
    pub credential: bool,
}

impl ViewRoute {
    pub fn from_route(r: &addon_rules::Route) -> ViewRoute {
        ViewRoute {
            host: r.host().to_string(),
            path_allowlist: r.path_allowlist().entries().to_vec(),
            path_denylist: r.path_denylist().entries().to_vec(),
            methods: r
                .methods()
                .map(|m| m.iter().map(|m| m.as_str().to_string()).collect()),
            credential: r.credential().is_some(),
        }
    }

    /// The route as a routes-file entry without any credential field, for
    /// validating a change on the sidecar (a credential changes nothing
    /// about whether paths, methods or hosts are valid).
    pub fn to_plain_entry(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("host".into(), self.host.clone().into());
        if !self.path_allowlist.is_empty() {
            m.insert("path_allowlist".into(), self.path_allowlist.clone().into());
        }
        if !self.path_denylist.is_empty() {
            m.insert("path_denylist".into(), self.path_denylist.clone().into());
        }
        if let Some(ms) = &self.methods {
            m.insert("methods".into(), ms.clone().into());
        }
        serde_json::Value::Object(m)
    }
}

/// `view/view.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    pub bottle: String,
    /// `deny` or `forward`.
    pub unmatched: String,
    /// In routes-file order (`routes[i]`).
    pub routes: Vec<ViewRoute>,
    /// The bottle's `allow` hosts (each is also a plain route in `routes`).
    pub allow: Vec<String>,
}

impl View {
    pub fn new(bottle: &str, policy: &addon_rules::Policy, allow: &[String]) -> View {
        View {
            bottle: bottle.to_string(),
            unmatched: policy.unmatched().as_str().to_string(),
            routes: policy.routes().iter().map(ViewRoute::from_route).collect(),
            allow: allow.to_vec(),
        }
    }

    /// A routes document equivalent to the live one minus credentials.
    pub fn to_plain_document(&self) -> serde_json::Value {
        serde_json::json!({
            "unmatched": self.unmatched,
            "routes": self.routes.iter().map(ViewRoute::to_plain_entry).collect::<Vec<_>>(),
        })
    }
}
