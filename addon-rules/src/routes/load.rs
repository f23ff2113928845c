//! Loading a routes file: the top level (`unmatched`, `routes`) and the
//! route list, including the one-route-per-host rule, so that every error
//! of the file is reported at once with file, route index, field and fix.
//! Must never stop at the first error: a route with errors still claims its
//! host, so a duplicate of it is reported in the same run.

use super::document::{Errs, Node, check_keys, describe, parse_document};
use super::fields::load_route;
use super::{Policy, Unmatched};
use crate::error::LoadError;
use crate::host::HostTable;

const TOP_KEYS: &[&str] = &["unmatched", "routes"];

impl Policy {
    /// Parses and validates a routes file (JSON or YAML). `source` names it in
    /// errors (usually its path). Every problem is reported, not only the first.
    pub fn from_text(text: &str, source: &str) -> Result<Policy, LoadError> {
        load(text, source)
    }
}

fn load(text: &str, source: &str) -> Result<Policy, LoadError> {
    let doc = parse_document(text, source)?;
    let mut errs = Errs {
        source,
        list: Vec::new(),
    };
    let Node::Map(top) = &doc else {
        errs.top(
            None,
            format!("the file holds {}, not a mapping", doc.kind()),
            "start the file with `routes:` (see docs/routes.md)",
        );
        return Err(LoadError { errors: errs.list });
    };
    let mut unknown = Vec::new();
    let fields = check_keys(top, TOP_KEYS, |k, m, f| unknown.push((k.to_string(), m, f)));
    for (k, m, f) in unknown {
        errs.top(Some(&k).filter(|k| !k.is_empty()).map(|k| k.as_str()), m, f);
    }
    let mut unmatched = Unmatched::Deny;
    let mut routes_node = None;
    for (k, v) in fields {
        match k {
            "unmatched" => match v {
                Node::Str(s) if s == "deny" => unmatched = Unmatched::Deny,
                Node::Str(s) if s == "forward" => unmatched = Unmatched::Forward,
                other => errs.top(
                    Some("unmatched"),
                    format!("must be \"deny\" or \"forward\", found {}", describe(other)),
                    "write `unmatched: deny` (refuse hosts without a route) or `unmatched: forward`",
                ),
            },
            _ => routes_node = Some(v),
        }
    }
    let mut routes = Vec::new();
    let mut table = HostTable::default();
    match routes_node {
        None => errs.top(Some("routes"), "the file has no `routes` list", "add `routes:` with one entry per host (an empty list `[]` denies or forwards everything)"),
        Some(Node::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                // A route with errors still claims its host, so a duplicate
                // of it is reported in the same run.
                let loaded = load_route(i, item, &mut errs);
                let host = match &loaded {
                    Ok(route) => Some(&route.host),
                    Err(host) => host.as_ref(),
                };
                if let Some(host) = host
                    && let Some(prev) = table.insert(host, i)
                {
                    errs.route(
                        i,
                        "host",
                        format!("host {:?} already has a route, routes[{prev}]", host.display()),
                        "merge the two routes into one (one route per host)",
                    );
                }
                routes.extend(loaded.ok());
            }
        }
        Some(other) => errs.top(Some("routes"), format!("must be a list, found {}", other.kind()), "write `routes:` followed by `- host: ...` entries"),
    }
    if errs.list.is_empty() {
        Ok(Policy {
            routes,
            unmatched,
            table,
        })
    } else {
        errs.list.sort_by_key(|e| e.route.map_or(0, |r| r + 1));
        Err(LoadError { errors: errs.list })
    }
}
