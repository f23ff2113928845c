//! `bottle approvals list|revoke` and the kept approvals of a bottle's name
//! (issue 14, docs/supervise.md): `bottle supervise approve` keeps every
//! approval in `<state root>/approvals/<bottle>.json`; the next `bottle run`
//! (and `bottle plan`) of that bottle starts with them.
//!
//! Owns where the store is, reading it for a plan (a store that cannot be
//! read is a warning, and the run starts without it: stricter, never
//! looser), and the two commands. Revoking changes the store only: a running
//! bottle keeps the route until it stops (its next run starts without it).
//!
//! Must never: print a secret (kept routes carry slot names at most), or
//! touch a running bottle.

use bottle_supervise::host::HostError;
use bottle_supervise::store::Store;

use crate::cli::Failure;
use crate::docker::record::state_root;
use crate::manifest::Manifest;
use crate::plan::Plan;

/// The store of kept approvals: `<state root>/approvals`.
pub fn store() -> Store {
    Store::new(state_root().join("approvals"))
}

/// Folds the approvals kept for `plan.bottle` into `plan`
/// ([`Plan::with_approvals`]); returns the warnings to show (kept ones that
/// no longer apply, or a store that cannot be read).
pub fn fold_into(plan: &mut Plan, m: &Manifest) -> Vec<String> {
    let s = store();
    let kept = match s.read(&plan.bottle) {
        Ok(k) => k.approved,
        Err(e) => {
            return vec![format!(
                "the approvals kept for bottle `{}` cannot be read, so this run starts without them: {e}",
                plan.bottle
            )];
        }
    };
    plan.with_approvals(m, &kept);
    plan.approvals_skipped.iter().map(|a| a.warning()).collect()
}

/// A host-library error as the CLI reports it: a malformed id or a missing
/// reason is the operator's usage (2), anything else a failure (1).
pub(crate) fn failure(e: HostError) -> Failure {
    let code = match e {
        HostError::BadId(_) | HostError::NoReason => 2,
        _ => 1,
    };
    Failure {
        code,
        message: e.to_string(),
    }
}

/// `bottle approvals list [--bottle NAME] [--json]`.
pub fn list(bottle: Option<&str>, json: bool) -> Result<i32, Failure> {
    let s = store();
    let names = match bottle {
        Some(b) => vec![b.to_string()],
        None => s.bottles().map_err(failure)?,
    };
    let mut rows = Vec::new();
    for name in &names {
        for a in s.read(name).map_err(failure)?.approved {
            rows.push((name.clone(), a));
        }
    }
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(b, a)| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                v["bottle"] = serde_json::json!(b);
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| "[]".into())
        );
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no kept approvals (in {})", s.root.display());
    }
    for (b, a) in &rows {
        println!(
            "{}  bottle {}  {}  by {}  from {}",
            a.id, b, a.time, a.operator, a.client
        );
        println!(
            "  host {} paths {:?} methods {:?}",
            a.request.host, a.request.paths, a.request.methods
        );
        println!("  why:   {}", a.request.justification);
        println!("  route: {}", a.route);
    }
    Ok(0)
}

/// `bottle approvals revoke ID`: the next run of the bottle starts without
/// it; audited in `<store>/<bottle>.audit.jsonl`.
pub fn revoke(id: &str, operator: &str) -> Result<i32, Failure> {
    let (bottle, gone) = store().revoke(id, operator).map_err(failure)?;
    println!(
        "revoked {} ({}) for bottle {bottle}: its next run starts without it (a running bottle keeps it until it stops)",
        gone.id, gone.request.host
    );
    Ok(0)
}
