//! The ConfigMap: every file the plan rendered (`routes.json`,
//! `squid.conf` or `pipelock.yaml`, `git-gate.json`, `known_hosts_<repo>`,
//! `mcp.json`, `prompt.md`), keyed by a ConfigMap-safe name.
//!
//! Must never: hold a secret value (token values and keys are Secrets).

use k8s_openapi::api::core::v1::ConfigMap;

use super::{Cx, Error, Object, to_yaml};

/// The ConfigMap key of a rendered file (`/` is not allowed in a key).
pub(super) fn key(f: &str) -> String {
    f.replace('/', "_")
}

impl Cx<'_> {
    /// The name of the bottle's ConfigMap.
    pub(super) fn config_name(&self) -> String {
        self.name("config")
    }
}

pub(super) fn config_map(cx: &Cx<'_>) -> Result<Object, Error> {
    let name = cx.config_name();
    let cm = ConfigMap {
        metadata: cx.meta(name.clone(), None),
        data: Some(
            cx.p.rendered
                .iter()
                .map(|(k, v)| (key(k), v.clone()))
                .collect(),
        ),
        ..Default::default()
    };
    to_yaml("ConfigMap", &name, &cm)
}
