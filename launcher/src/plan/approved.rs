//! Approvals kept for the bottle's name (`bottle supervise approve`, issue
//! 14) folded into a plan: the routes file, the outer proxy's allowlist and
//! config (squid.conf or pipelock.yaml), and the routes the preflight shows.
//! `bottle plan` lists them as "approved earlier".
//!
//! Owns the rule for a kept approval that no longer applies to the edited
//! manifest: it is skipped, named with the reason, and never forced (the
//! caller warns and names `bottle approvals revoke ID`).
//!
//! Must never: read a file (the caller passes the kept approvals in), or add
//! a credential (an approval is a plain route or an extension of a route's
//! path or method lists; the routes keep their own slots).

use serde::Serialize;
use serde_json::Value;

use bottle_supervise::host::{self, KeptApproval};

use super::containers::{self, Cx};
use super::model::{Plan, RoutePlan};
use crate::manifest::Manifest;

/// An approval the plan starts with (`approved_earlier` in `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct ApprovedEarlier {
    pub id: String,
    pub time: String,
    pub operator: String,
    pub host: String,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    pub justification: String,
}

/// A kept approval the plan does not apply (`approvals_skipped`).
#[derive(Debug, Clone, Serialize)]
pub struct SkippedApproval {
    pub id: String,
    pub host: String,
    /// Why (addon-rules' error, or "would change nothing" when the manifest
    /// has it now).
    pub why: String,
}

impl SkippedApproval {
    /// The warning `bottle plan` and `bottle run` print.
    pub fn warning(&self) -> String {
        format!(
            "approval {} for {} (approved earlier) no longer applies and is skipped: {}; remove it with `bottle approvals revoke {}`",
            self.id, self.host, self.why, self.id
        )
    }
}

fn earlier(a: &KeptApproval) -> ApprovedEarlier {
    ApprovedEarlier {
        id: a.id.to_string(),
        time: a.time.clone(),
        operator: a.operator.clone(),
        host: a.request.host.clone(),
        paths: a.request.paths.clone(),
        methods: a.request.methods.clone(),
        justification: a.request.justification.clone(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

impl Plan {
    /// Folds `kept` (in order) into the plan. Each is planned and validated
    /// against the routes this plan rendered, as on approval; one that no
    /// longer applies lands in `approvals_skipped` instead.
    pub fn with_approvals(&mut self, m: &Manifest, kept: &[KeptApproval]) {
        if kept.is_empty() {
            return;
        }
        let (Some(agent), Some(bottle)) = (m.agents.get(&self.agent), m.bottles.get(&self.bottle))
        else {
            return;
        };
        let Some(routes) = self.rendered.get("routes.json") else {
            return;
        };
        let merged = match host::merge_kept(routes, kept) {
            Ok(x) => x,
            Err(e) => {
                // The rendered routes are the launcher's own JSON; this is a bug.
                self.approvals_skipped = kept
                    .iter()
                    .map(|a| SkippedApproval {
                        id: a.id.to_string(),
                        host: a.request.host.clone(),
                        why: e.to_string(),
                    })
                    .collect();
                return;
            }
        };
        self.approvals_skipped = merged
            .skipped
            .iter()
            .map(|(a, why)| SkippedApproval {
                id: a.id.to_string(),
                host: a.request.host.clone(),
                why: why.clone(),
            })
            .collect();
        self.approved_earlier = merged.applied.iter().map(earlier).collect();
        if merged.applied.is_empty() {
            return;
        }
        let doc: Value = serde_json::from_str(&merged.text).unwrap_or_default();
        let entries = doc["routes"].as_array().cloned().unwrap_or_default();
        // The outer proxy allows what egress-proxy routes: new hosts appended.
        for r in &entries {
            if let Some(h) = r["host"].as_str()
                && !self.outer_proxy.allowlist.iter().any(|x| x == h)
            {
                self.outer_proxy.allowlist.push(h.to_string());
            }
        }
        let cx = Cx {
            id: &self.id,
            bottle,
            agent,
        };
        // Re-render the outer proxy's config with the longer allowlist (the
        // container itself is the same; only its rendered file changes).
        let _ = containers::outer_proxy(&cx, &self.outer_proxy.allowlist, &mut self.rendered);
        self.rendered.insert("routes.json".into(), merged.text);
        self.routes = entries
            .iter()
            .map(|r| RoutePlan {
                host: r["host"].as_str().unwrap_or_default().to_string(),
                path_allowlist: strings(&r["path_allowlist"]),
                path_denylist: strings(&r["path_denylist"]),
                methods: strings(&r["methods"]),
                slot: r["token_env"].as_str().map(str::to_string),
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{env_all, manifest};
    use super::*;
    use bottle_supervise::state::{EgressRequest, ProposalId};

    fn kept(id: &str, host: &str, paths: &[&str]) -> KeptApproval {
        KeptApproval {
            id: ProposalId::parse(id).unwrap(),
            time: "2026-12-06T00:00:00Z".into(),
            operator: "op".into(),
            client: "c".into(),
            request: EgressRequest {
                host: host.into(),
                paths: paths.iter().map(|s| s.to_string()).collect(),
                methods: vec![],
                justification: "fixtures".into(),
            },
            route: serde_json::json!({ "host": host }),
        }
    }

    #[test]
    fn kept_approvals_reach_routes_outer_proxy_and_preflight_and_stale_ones_are_skipped() {
        let m = manifest();
        let mut p = super::super::plan(&m, "coder", "dev-0001", &env_all, &|_| true, None).unwrap();
        let before = p.rendered["routes.json"].clone();
        p.with_approvals(
            &m,
            &[
                // a new host
                kept("p00000000000000e1", "files.example.com", &["/dl/**"]),
                // a path extension of a credentialed route
                kept(
                    "p00000000000000e2",
                    "api.github.com",
                    &["/repos/acme/widget/pulls"],
                ),
                // one the engine refuses now
                kept("p00000000000000e3", "*.github.io", &[]),
                // one the manifest has now: changes nothing
                kept("p00000000000000e4", "pypi.org", &[]),
            ],
        );
        let ids: Vec<&str> = p.approved_earlier.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["p00000000000000e1", "p00000000000000e2"]);
        let skipped: Vec<&str> = p.approvals_skipped.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(skipped, ["p00000000000000e3", "p00000000000000e4"]);
        let w = p.approvals_skipped[0].warning();
        assert!(
            w.contains("public suffix") && w.contains("bottle approvals revoke p00000000000000e3"),
            "{w}"
        );
        let routes = &p.rendered["routes.json"];
        assert_ne!(routes, &before);
        let policy = addon_rules::Policy::from_text(routes, "routes.json").unwrap();
        let gh = policy.route_for_host("api.github.com").unwrap();
        assert_eq!(
            gh.path_allowlist().entries(),
            ["/repos/acme/widget/issues", "/repos/acme/widget/pulls"]
        );
        // The credential stays the route's own slot.
        assert!(routes.contains("EGRESS_PROXY_TOKEN_0"));
        assert!(
            p.outer_proxy
                .allowlist
                .iter()
                .any(|h| h == "files.example.com")
        );
        assert!(p.rendered["squid.conf"].contains("files.example.com"));
        let r = p
            .routes
            .iter()
            .find(|r| r.host == "api.github.com")
            .unwrap();
        assert_eq!(r.slot.as_deref(), Some("EGRESS_PROXY_TOKEN_0"));
        assert!(p.routes.iter().any(|r| r.host == "files.example.com"));
        let text = p.summary();
        assert!(
            text.contains("approved earlier (kept") && text.contains("p00000000000000e1"),
            "{text}"
        );
        assert!(text.contains("not applied"), "{text}");
        let pre = p.preflight("runc");
        assert!(
            pre.contains("files.example.com")
                && pre.contains("kept from earlier runs: p00000000000000e1 p00000000000000e2"),
            "{pre}"
        );
    }

    #[test]
    fn pipelock_gets_the_approved_host_too() {
        let m = crate::manifest::parse(
            "bottles:\n  dev:\n    allow: [pypi.org]\nagents:\n  a: {bottle: dev}\n",
            std::path::Path::new("m.yaml"),
            std::path::Path::new("/"),
            None,
        )
        .unwrap();
        let mut p = super::super::plan(&m, "a", "dev-0001", &|_| None, &|_| true, None).unwrap();
        assert!(!p.rendered["pipelock.yaml"].contains("files.example.com"));
        p.with_approvals(&m, &[kept("p00000000000000e1", "files.example.com", &[])]);
        let y: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&p.rendered["pipelock.yaml"]).unwrap();
        let hosts: Vec<&str> = y["api_allowlist"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(hosts, ["files.example.com", "pypi.org"]);
    }
}
