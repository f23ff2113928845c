//! Token slots: routes sharing a `token_ref` share one slot
//! `EGRESS_PROXY_TOKEN_<n>`, numbered in first-use order (SPEC §6); and the
//! host checks a plan needs (every `token_ref` set and non-empty, every
//! referenced host file present), all reported at once.
//!
//! Must never: read a value further than "is it set and non-empty".

use super::error::{PlanError, PlanErrors};
use super::model::TokenSlot;
use crate::model::{Bottle, slot_name};

/// The slots (numbered by `Bottle::token_refs`), after checking the host: variables set, files present.
pub(super) fn slots(
    b: &Bottle,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    file_exists: &dyn Fn(&std::path::Path) -> bool,
) -> Result<Vec<TokenSlot>, PlanErrors> {
    let mut errors = Vec::new();
    let bp = format!("bottles.{}", b.name);
    let mut slots: Vec<TokenSlot> = Vec::new();
    for (n, (token_ref, routes)) in b.token_refs().into_iter().enumerate() {
        let state = match env(token_ref) {
            None => Some("not set"),
            Some(v) if v.trim().is_empty() => Some("empty"),
            Some(_) => None,
        };
        if let Some(state) = state {
            errors.push(PlanError::TokenRef {
                file: file.to_string(),
                path: format!("{bp}.egress_proxy.routes[{}].auth.token_ref", routes[0]),
                var: token_ref.to_string(),
                state,
            });
        }
        slots.push(TokenSlot {
            slot: slot_name(n),
            token_ref: token_ref.to_string(),
            routes,
        });
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
    Ok(slots)
}
