//! Whether an operator's edit of a proposal only narrows it.
//!
//! Owns one rule: the operator may approve *less* than the agent asked (fewer
//! or tighter paths, fewer methods), never more. An edit that would widen the
//! proposal is refused, so "approve with edit" can never become a way to grant
//! what nobody asked for or the justification does not cover.
//!
//! The check is conservative: an edited path counts as covered only when the
//! engine's own matcher (`addon_rules`) shows an asked entry covers it:
//!
//! - an entry equal to an asked one;
//! - a plain or glob entry whose literal head (the segments before the first
//!   one with `*`, `/` when none) is matched by an asked plain or glob entry:
//!   such an entry matches everything below what it matches (docs/routes.md),
//!   and the edited entry matches only paths at or below its head;
//! - a regex entry (`^...`) only when it equals an asked one, or when the
//!   asked list covers every path.
//!
//! What "asked nothing" means depends on the kind of change: for a new route
//! no paths or no methods means *every* path or method, so any list narrows
//! it; for an extension it means *no change*, so the edit must not add any.
//!
//! Must never accept an edit it cannot show to be covered.

use crate::change::Kind;
use crate::state::EgressRequest;

/// Refuses `edited` unless it asks for no more than `asked` (same host).
/// The error says which entry widens and what was asked.
pub fn check(asked: &EgressRequest, edited: &EgressRequest, kind: Kind) -> Result<(), String> {
    if !asked.host.eq_ignore_ascii_case(&edited.host) {
        return Err(format!(
            "the host stays the one asked for ({:?}); propose another host separately",
            asked.host
        ));
    }
    check_paths(&asked.paths, &edited.paths, kind)?;
    check_methods(&asked.methods, &edited.methods, kind)
}

fn check_paths(asked: &[String], edited: &[String], kind: Kind) -> Result<(), String> {
    match (kind, asked.is_empty(), edited.is_empty()) {
        // A new route asked for every path: any list narrows it.
        (Kind::NewRoute, true, _) => return Ok(()),
        (Kind::NewRoute, false, true) => {
            return Err(format!(
                "no paths would allow every path on the new route; the agent asked only for {asked:?}"
            ));
        }
        // An extension: no paths means no path change.
        (Kind::Extend, _, true) => return Ok(()),
        (Kind::Extend, true, false) => {
            return Err(format!(
                "the agent asked for no path change on this route; the edit adds {edited:?}"
            ));
        }
        _ => {}
    }
    let matcher = Matcher::new(asked)?;
    for e in edited {
        if !matcher.covers(asked, e) {
            return Err(format!(
                "path {e:?} is not within what the agent asked ({asked:?}); an edit may only narrow"
            ));
        }
    }
    Ok(())
}

fn check_methods(asked: &[String], edited: &[String], kind: Kind) -> Result<(), String> {
    if edited.is_empty() {
        return match kind {
            Kind::Extend => Ok(()),
            Kind::NewRoute if asked.is_empty() => Ok(()),
            Kind::NewRoute => Err(format!(
                "no methods would allow every method on the new route; the agent asked only for {asked:?}"
            )),
        };
    }
    if asked.is_empty() {
        return match kind {
            Kind::NewRoute => Ok(()),
            Kind::Extend => Err(format!(
                "the agent asked for no method change on this route; the edit adds {edited:?}"
            )),
        };
    }
    for m in edited {
        if !asked.iter().any(|a| a.eq_ignore_ascii_case(m)) {
            return Err(format!(
                "method {m:?} was not asked for ({asked:?}); an edit may only narrow"
            ));
        }
    }
    Ok(())
}

/// The asked entries that match everything below what they match (plain and
/// glob ones), compiled by the engine itself.
struct Matcher {
    list: Option<addon_rules::Policy>,
}

const PROBE_HOST: &str = "narrow.invalid";

impl Matcher {
    fn new(asked: &[String]) -> Result<Matcher, String> {
        let below: Vec<&String> = asked.iter().filter(|a| !a.starts_with('^')).collect();
        if below.is_empty() {
            return Ok(Matcher { list: None });
        }
        let doc = serde_json::json!({"routes": [{"host": PROBE_HOST, "path_allowlist": below}]});
        let policy = addon_rules::Policy::from_text(&doc.to_string(), "the asked paths")
            .map_err(|e| format!("the asked paths cannot be read: {e}"))?;
        Ok(Matcher { list: Some(policy) })
    }

    fn matches(&self, path: &str) -> bool {
        addon_rules::is_normalized(path)
            && self
                .list
                .as_ref()
                .and_then(|p| p.route_for_host(PROBE_HOST))
                .is_some_and(|r| r.path_allowlist().matches(path))
    }

    fn covers(&self, asked: &[String], edited: &str) -> bool {
        if asked.iter().any(|a| a == edited) {
            return true;
        }
        if edited.starts_with('^') {
            // A regex's reach is not read here; only "asked covers all" holds.
            return self.matches("/");
        }
        self.matches(&literal_head(edited))
    }
}

/// The segments of a plain or glob entry before its first wildcard segment,
/// as a path (`/dl/*/x` -> `/dl`, `/v*` -> `/`, `/a/b` -> `/a/b`).
fn literal_head(entry: &str) -> String {
    let mut head = String::new();
    for seg in entry.split('/').skip(1) {
        if seg.contains('*') {
            break;
        }
        head.push('/');
        head.push_str(seg);
    }
    if head.is_empty() { "/".into() } else { head }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(paths: &[&str], methods: &[&str]) -> EgressRequest {
        EgressRequest {
            host: "files.example.com".into(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            methods: methods.iter().map(|s| s.to_string()).collect(),
            justification: "why".into(),
        }
    }

    #[test]
    fn narrowing_edits_pass() {
        let ok = |a: EgressRequest, e: EgressRequest, k| {
            check(&a, &e, k).unwrap_or_else(|err| panic!("{a:?} -> {e:?}: {err}"))
        };
        ok(
            req(&["/**"], &[]),
            req(&["/dl/**"], &["GET"]),
            Kind::NewRoute,
        );
        ok(req(&[], &[]), req(&["^/x$"], &["GET"]), Kind::NewRoute);
        ok(
            req(&["/dl"], &["GET", "POST"]),
            req(&["/dl/a/b"], &["get"]),
            Kind::NewRoute,
        );
        ok(
            req(&["/dl/**"], &[]),
            req(&["/dl/*/x", "/dl"], &[]),
            Kind::NewRoute,
        );
        ok(
            req(&["/a/*/c"], &[]),
            req(&["/a/b/c/d"], &[]),
            Kind::NewRoute,
        );
        ok(
            req(&["^/v[0-9]+$"], &[]),
            req(&["^/v[0-9]+$"], &[]),
            Kind::NewRoute,
        );
        ok(req(&["/"], &[]), req(&["^/anything$"], &[]), Kind::NewRoute);
        // An extension: dropping the paths keeps only the method change.
        ok(req(&["/x"], &["POST"]), req(&[], &["POST"]), Kind::Extend);
        ok(req(&["/x"], &["POST"]), req(&["/x"], &[]), Kind::Extend);
    }

    #[test]
    fn widening_edits_are_refused_saying_which_entry() {
        let bad = |a: EgressRequest, e: EgressRequest, k, what: &str| {
            let err = check(&a, &e, k).expect_err(&format!("{a:?} -> {e:?} passed"));
            assert!(err.contains(what), "{err}");
        };
        bad(
            req(&["/dl/**"], &[]),
            req(&["/**"], &[]),
            Kind::NewRoute,
            "\"/**\"",
        );
        bad(
            req(&["/dl"], &[]),
            req(&["/dlx"], &[]),
            Kind::NewRoute,
            "\"/dlx\"",
        );
        bad(
            req(&["/dl/*"], &[]),
            req(&["/dl/**"], &[]),
            Kind::NewRoute,
            "/dl/**",
        );
        bad(
            req(&["/dl/**"], &[]),
            req(&["/d*"], &[]),
            Kind::NewRoute,
            "/d*",
        );
        bad(
            req(&["^/v1$"], &[]),
            req(&["/v1"], &[]),
            Kind::NewRoute,
            "/v1",
        );
        bad(
            req(&["/dl"], &[]),
            req(&["^/dl/.*|^/etc$"], &[]),
            Kind::NewRoute,
            "^/dl",
        );
        bad(
            req(&["/dl"], &[]),
            req(&["/dl/../etc"], &[]),
            Kind::NewRoute,
            "..",
        );
        bad(
            req(&["/dl"], &[]),
            req(&[], &[]),
            Kind::NewRoute,
            "every path",
        );
        bad(
            req(&[], &["GET"]),
            req(&[], &["POST"]),
            Kind::NewRoute,
            "POST",
        );
        bad(
            req(&[], &["GET"]),
            req(&[], &[]),
            Kind::NewRoute,
            "every method",
        );
        bad(
            req(&[], &["GET"]),
            req(&["/x"], &["GET"]),
            Kind::Extend,
            "no path change",
        );
        bad(
            req(&["/x"], &[]),
            req(&["/x"], &["GET"]),
            Kind::Extend,
            "no method change",
        );
        let mut other = req(&["/dl"], &[]);
        other.host = "evil.example.com".into();
        bad(req(&["/dl"], &[]), other, Kind::NewRoute, "host");
    }

    #[test]
    fn literal_heads() {
        assert_eq!(literal_head("/dl/*/x"), "/dl");
        assert_eq!(literal_head("/v*"), "/");
        assert_eq!(literal_head("/**"), "/");
        assert_eq!(literal_head("/a/b"), "/a/b");
        assert_eq!(literal_head("/a/"), "/a/");
    }
}
