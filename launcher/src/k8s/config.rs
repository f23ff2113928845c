//! The ConfigMaps: `bottle-<id>-config` holds every file the plan rendered
//! (`routes.json`, `squid.conf` or `pipelock.yaml`, `git-gate.json`,
//! `known_hosts_<repo>`, `mcp.json`, `prompt.md`; a `prompt_file`'s text
//! too), keyed by a ConfigMap-safe name; `bottle-<id>-skill-<name>` holds
//! one skill tree each (text in `data`, other bytes in `binaryData`).
//!
//! Owns: the keys, and the 1 MiB check of each ConfigMap (the API server
//! refuses a larger one; better refused here, with the fix).
//!
//! Must never: hold a secret value (token values and keys are Secrets).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;

use super::host::{CONFIG_MAP_LIMIT, TreeFile};
use super::{Cx, Error, Object, to_yaml};
use crate::plan::{RoleName, Source};

/// The ConfigMap key of a rendered file (`/` is not allowed in a key).
pub(super) fn key(f: &str) -> String {
    f.replace('/', "_")
}

/// The key of a prompt file's text (a `prompt:` text is `prompt.md` of the
/// plan's rendered files; the two never come together).
pub(super) const PROMPT_KEY: &str = "prompt.md";

impl Cx<'_> {
    /// The name of the bottle's ConfigMap.
    pub(super) fn config_name(&self) -> String {
        self.name("config")
    }

    /// The ConfigMap of the skill mounted at `path` (`.../skills/<name>`).
    pub(super) fn skill_name(&self, path: &str) -> String {
        self.name(&format!(
            "skill-{}",
            path.rsplit('/').next().unwrap_or(path)
        ))
    }
}

/// What a ConfigMap's text data counts against the API server's limit: its
/// keys and values.
pub(super) fn data_bytes(data: &BTreeMap<String, String>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

pub(super) fn config_map(cx: &Cx<'_>) -> Result<Object, Error> {
    let name = cx.config_name();
    let mut data: BTreeMap<String, String> =
        cx.p.rendered
            .iter()
            .map(|(k, v)| (key(k), v.clone()))
            .collect();
    if let Some(prompt) = &cx.host.prompt {
        data.insert(PROMPT_KEY.into(), prompt.clone());
    }
    let size = data_bytes(&data);
    if size > CONFIG_MAP_LIMIT {
        return Err(Error::TooLarge {
            name,
            what: "the bottle's config and its prompt".into(),
            bytes: size,
            fix: "make the prompt smaller, or mount it from a volume you provide",
        });
    }
    let cm = ConfigMap {
        metadata: cx.meta(name.clone(), None),
        data: Some(data),
        ..Default::default()
    };
    to_yaml("ConfigMap", &name, &cm)
}

/// The key of the `i`th file of a tree: its index (unique) and its path
/// with every character a key cannot hold as `_`, at most 253 long.
pub(super) fn tree_key(i: usize, f: &TreeFile) -> String {
    let mut k = format!("{i:03}-{}", f.rel);
    k = k
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    k.truncate(253);
    k
}

/// One ConfigMap per skill tree of the agent, in the plan's order.
pub(super) fn skill_maps(cx: &Cx<'_>) -> Result<Vec<Object>, Error> {
    let mut out = Vec::new();
    let Some(agent) = cx.p.containers.iter().find(|c| c.role == RoleName::Agent) else {
        return Ok(out);
    };
    for f in &agent.files {
        let Source::HostTree(root) = &f.source else {
            continue;
        };
        let files = cx
            .host
            .trees
            .get(root)
            .ok_or_else(|| Error::HostNotRead(root.display().to_string()))?;
        let name = cx.skill_name(&f.path);
        let mut data = BTreeMap::new();
        let mut binary = BTreeMap::new();
        let mut size = 0;
        for (i, t) in files.iter().enumerate() {
            let k = tree_key(i, t);
            size += k.len() + t.bytes.len();
            match std::str::from_utf8(&t.bytes) {
                Ok(s) => {
                    data.insert(k, s.to_string());
                }
                Err(_) => {
                    binary.insert(k, ByteString(t.bytes.clone()));
                }
            }
        }
        if size > CONFIG_MAP_LIMIT {
            return Err(Error::TooLarge {
                name,
                what: format!("the skill {}", root.display()),
                bytes: size,
                fix: "make the skill smaller, or mount it from a volume you provide",
            });
        }
        let cm = ConfigMap {
            metadata: cx.meta(name.clone(), Some("agent")),
            data: (!data.is_empty()).then_some(data),
            binary_data: (!binary.is_empty()).then_some(binary),
            ..Default::default()
        };
        out.push(to_yaml("ConfigMap", &name, &cm)?);
    }
    Ok(out)
}
