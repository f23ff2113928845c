//! Token slots: routes sharing a `token_ref` share one slot
//! `EGRESS_PROXY_TOKEN_<n>`, numbered in first-use order (SPEC §6); and the
//! host checks a plan needs (every `token_ref` set and non-empty, every
//! referenced host file present), all reported at once.
//!
//! Must never: read a value further than "is it set and non-empty".

use std::collections::BTreeMap;

use super::error::{PlanError, PlanErrors};
use super::model::TokenSlot;
use crate::manifest::Bottle;

/// The bottle's slots, and which route uses which.
pub(super) struct Slots {
    pub list: Vec<TokenSlot>,
    by_route: BTreeMap<usize, String>,
}

impl Slots {
    /// The slot name of route `i` (0-based), if it has a credential.
    pub fn slot_of(&self, i: usize) -> Option<String> {
        self.by_route.get(&i).cloned()
    }
}

/// Numbers the slots and checks the host: variables set, files present.
pub(super) fn slots(
    b: &Bottle,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    file_exists: &dyn Fn(&std::path::Path) -> bool,
) -> Result<Slots, PlanErrors> {
    let mut errors = Vec::new();
    let bp = format!("bottles.{}", b.name);
    let mut slots: Vec<TokenSlot> = Vec::new();
    let mut route_slot: BTreeMap<usize, String> = BTreeMap::new();
    for (i, r) in b.routes.iter().enumerate() {
        let Some(a) = &r.auth else { continue };
        let idx = match slots.iter().position(|s| s.token_ref == a.token_ref) {
            Some(p) => p,
            None => {
                let state = match env(&a.token_ref) {
                    None => Some("not set"),
                    Some(v) if v.trim().is_empty() => Some("empty"),
                    Some(_) => None,
                };
                if let Some(state) = state {
                    errors.push(PlanError::TokenRef {
                        file: file.to_string(),
                        path: format!("{bp}.egress_proxy.routes[{i}].auth.token_ref"),
                        var: a.token_ref.clone(),
                        state,
                    });
                }
                slots.push(TokenSlot {
                    slot: format!("EGRESS_PROXY_TOKEN_{}", slots.len()),
                    token_ref: a.token_ref.clone(),
                    routes: Vec::new(),
                });
                slots.len() - 1
            }
        };
        slots[idx].routes.push(i);
        route_slot.insert(i, slots[idx].slot.clone());
    }
    for (i, t) in b.outer_proxy_trust.iter().enumerate() {
        if !file_exists(t) {
            errors.push(PlanError::MissingFile {
                file: file.to_string(),
                path: format!("{bp}.outer_proxy_trust[{i}]"),
                file_path: t.display().to_string(),
            });
        }
    }
    for (i, g) in b.git.iter().enumerate() {
        if !file_exists(&g.identity_file) {
            errors.push(PlanError::MissingFile {
                file: file.to_string(),
                path: format!("{bp}.git[{i}].identity_file"),
                file_path: g.identity_file.display().to_string(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(PlanErrors(errors));
    }
    Ok(Slots {
        list: slots,
        by_route: route_slot,
    })
}
