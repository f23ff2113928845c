//! Property tests (proptest). Set PROPTEST_CASES to run longer (the
//! long-run fuzz fallback: PROPTEST_CASES=200000 cargo test --release -p addon-rules --test props).
//!
//! - normalization never panics, is idempotent, never yields an encoded `/`,
//!   `\` or NUL nor a dot segment;
//! - a path that `decide` allows matches an allowlist entry of its route and
//!   no denylist entry, checked against an independent reference matcher;
//! - `decide`, the loader and the CONNECT target parser never panic.

mod common;

use addon_rules::{
    BodyHint, Decision, Policy, RequestFacts, Transport, normalize_path, parse_connect_target,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use proptest::prelude::*;

fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-c]{1,3}".prop_map(|s| s),
        1 => Just(String::new()),
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just("%2e".to_string()),
        1 => Just("%2E%2e".to_string()),
        1 => Just("%2F".to_string()),
        1 => Just("%2f".to_string()),
        1 => Just("%5c".to_string()),
        1 => Just("%00".to_string()),
        1 => Just("%41".to_string()),
        1 => Just("%25".to_string()),
        1 => Just("%zz".to_string()),
        1 => Just("%c3%a9".to_string()),
        1 => Just("%c3".to_string()),
        1 => Just("..;x".to_string()),
        1 => Just("a;b".to_string()),
        1 => Just("%3B".to_string()),
        1 => Just("~".to_string()),
        1 => Just("\\".to_string()),
        1 => "[ -~]{1,4}".prop_map(|s| s),
    ]
}

fn raw_path() -> impl Strategy<Value = String> {
    prop::collection::vec(path_segment(), 0..6).prop_map(|segs| format!("/{}", segs.join("/")))
}

fn has_dot_segment(p: &str) -> bool {
    p.split('/').any(|s| {
        let s = s.split(';').next().unwrap_or(s);
        s == "." || s == ".."
    })
}

proptest! {
    #[test]
    fn normalize_never_panics_on_any_string(s in "\\PC*") {
        let _ = normalize_path(&s);
    }

    #[test]
    fn normalize_never_panics_on_any_bytes(b in prop::collection::vec(any::<u8>(), 0..64)) {
        let s = String::from_utf8_lossy(&b);
        let _ = normalize_path(&s);
    }

    #[test]
    fn normalize_is_idempotent_and_safe(p in raw_path()) {
        if let Ok(n) = normalize_path(&p) {
            prop_assert_eq!(normalize_path(&n).map(|c| c.into_owned()), Ok(n.to_string()));
            let upper = n.to_ascii_uppercase();
            prop_assert!(!upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%00"), "{}", n);
            prop_assert!(!n.contains('\\'));
            prop_assert!(!has_dot_segment(&n), "{}", n);
            prop_assert!(!upper.contains("%2E"), "unreserved '.' left encoded: {}", n);
            prop_assert!(n.starts_with('/'));
        }
    }

    #[test]
    fn connect_target_parser_never_panics(s in "\\PC{0,40}") {
        if let Ok(t) = parse_connect_target(&s) {
            prop_assert!(t.port != 0);
            // Accepted targets are stable under re-parsing.
            let again = parse_connect_target(&t.authority()).expect("re-parse");
            prop_assert_eq!(again, t);
        }
    }

    #[test]
    fn loader_never_panics(s in "\\PC{0,200}") {
        let _ = Policy::from_text(&s, "fuzz");
    }
}

// ---- allowed paths match their route's allowlist (reference matcher)

fn pattern_segment() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-c]{1,2}".prop_map(|s| s), 1 => Just("*".to_string()), 1 => Just("**".to_string()), 1 => Just("a*".to_string()), 1 => Just("*b".to_string())]
}

fn pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(pattern_segment(), 1..4).prop_map(|s| format!("/{}", s.join("/")))
}

/// `*` = one or more chars of one segment.
fn seg_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (1..=s.len()).any(|k| seg_match(&p[1..], &s[k..])),
        Some(c) => s.first() == Some(c) && seg_match(&p[1..], &s[1..]),
    }
}

/// Pattern segments against path segments; a pattern matches its path and
/// everything below it.
fn segs_match(p: &[&str], s: &[&str]) -> bool {
    match p.first() {
        None => true,
        Some(&"**") => segs_match(&p[1..], s) || (!s.is_empty() && segs_match(p, &s[1..])),
        Some(ps) => {
            !s.is_empty()
                && seg_match(ps.as_bytes(), s[0].as_bytes())
                && segs_match(&p[1..], &s[1..])
        }
    }
}

fn reference_matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern[1..].split('/').collect();
    let s: Vec<&str> = path[1..].split('/').collect();
    segs_match(&p, &s)
}

fn collapse(p: &str) -> String {
    let mut out = String::new();
    for c in p.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

fn simple_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![4 => "[a-c]{1,3}".prop_map(|s| s), 1 => Just(String::new()), 1 => Just("%61".to_string())], 0..5)
        .prop_map(|s| format!("/{}", s.join("/")))
}

proptest! {
    #[test]
    fn allowed_path_matches_an_allowlist_entry_and_no_denylist_entry(
        allow in prop::collection::vec(pattern(), 1..4),
        deny in prop::collection::vec(pattern(), 0..2),
        paths in prop::collection::vec(simple_path(), 1..16),
    ) {
        let q = |v: &Vec<String>| v.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ");
        let text = format!("routes:\n  - host: h.example.com\n    path_allowlist: [{}]\n    path_denylist: [{}]\n", q(&allow), q(&deny));
        let policy = Policy::from_text(&text, "prop").expect("generated routes are valid");
        let connect = parse_connect_target("h.example.com:443").expect("target");
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("h.example.com"));
        for raw in &paths {
            let facts = RequestFacts {
                transport: Transport::Tls { connect: &connect, sni: Some("h.example.com") },
                method: &Method::GET,
                target: raw,
                version: Version::HTTP_11,
                authority: None,
                headers: &headers,
                body: BodyHint::Empty,
            };
            let normalized = normalize_path(raw).expect("simple paths normalize").into_owned();
            // SPEC §2: the deny list is also checked with `/` runs collapsed
            // (these paths and patterns are lowercase already).
            let denied = |p: &String| reference_matches(p, &normalized) || reference_matches(&collapse(p), &collapse(&normalized));
            let want_allow = allow.iter().any(|p| reference_matches(p, &normalized)) && !deny.iter().any(denied);
            match policy.decide(&facts) {
                Decision::Allow(a) => {
                    prop_assert_eq!(&a.path_and_query, &normalized);
                    prop_assert!(want_allow, "allowed {} (normalized {}) with allow {:?} deny {:?}", raw, normalized, allow, deny);
                }
                Decision::Refuse(r) => {
                    prop_assert!(!want_allow, "refused {} ({}) with allow {:?} deny {:?}: {}", raw, normalized, allow, deny, r);
                }
            }
        }
    }

    #[test]
    fn decide_never_panics_on_arbitrary_facts(
        target in "\\PC{0,60}",
        method in "[A-Z]{1,8}",
        host in proptest::option::of("\\PC{0,30}"),
        authority in proptest::option::of("\\PC{0,30}"),
        extra in prop::collection::vec(("(content-length|transfer-encoding|upgrade|connection|content-type|host)", "[ -~]{0,20}"), 0..4),
        via in 0u8..3,
        h2 in any::<bool>(),
    ) {
        let policy = common::policy("table.yaml");
        let connect = parse_connect_target("api.github.com:443").expect("target");
        let mut headers = HeaderMap::new();
        if let Some(h) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(http::header::HOST, h);
        }
        for (k, v) in &extra {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                headers.append(k, v);
            }
        }
        let method = Method::from_bytes(method.as_bytes()).expect("token");
        let transport = match via {
            0 => Transport::Tls { connect: &connect, sni: authority.as_deref() },
            1 => Transport::CleartextTunnel { connect: &connect },
            _ => Transport::PlainProxy,
        };
        let facts = RequestFacts {
            transport,
            method: &method,
            target: &target,
            version: if h2 { Version::HTTP_2 } else { Version::HTTP_11 },
            authority: authority.as_deref(),
            headers: &headers,
            body: BodyHint::Unknown,
        };
        match policy.decide(&facts) {
            Decision::Allow(a) => {
                // Whatever got through is normalized and goes to a valid host.
                let path = a.path_and_query.split('?').next().unwrap_or("");
                let renorm = normalize_path(path);
                prop_assert_eq!(renorm.as_deref(), Ok(path));
                prop_assert!(parse_connect_target(&a.authority()).is_ok());
            }
            Decision::Refuse(r) => prop_assert!(!r.message.contains('\n') && !r.message.contains('\r')),
        }
    }
}

// ---- a path the deny list refuses stays refused under what origins fold

/// A path the deny list of [`FOLD_ROUTES`] refuses, spelled as the routes file does.
fn denied_base() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,4}".prop_map(|t| format!("/repos/acme/widget/git/{t}")),
        "[a-z]{1,4}".prop_map(|t| format!("/Admin/{t}/keys")),
        "[a-z]{1,4}".prop_map(|t| format!("/v1/Private/{t}")),
        Just("/secret.key".to_string()),
    ]
}

const FOLD_ROUTES: &str = r#"routes:
  - host: h.example.com
    path_denylist: ["/repos/acme/widget/git/**", "/Admin/*/keys", "^/v1/Private/[a-z]+", "/secret.key"]
"#;

/// One spelling change an origin undoes: flip the case of the byte at `at`,
/// double the `/` at `at`, or insert `;x` at the end of the segment at `at`.
#[derive(Debug, Clone, Copy)]
enum Change {
    Case(usize),
    DoubleSlash(usize),
    Param(usize),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        any::<usize>().prop_map(Change::Case),
        any::<usize>().prop_map(Change::DoubleSlash),
        any::<usize>().prop_map(Change::Param),
    ]
}

fn apply(path: &str, c: Change) -> String {
    let b = path.as_bytes();
    let mut out = path.to_string();
    match c {
        Change::Case(i) => {
            let i = i % b.len();
            let flipped = if b[i].is_ascii_lowercase() {
                b[i].to_ascii_uppercase()
            } else {
                b[i].to_ascii_lowercase()
            };
            out.replace_range(i..=i, &(flipped as char).to_string());
        }
        Change::DoubleSlash(i) => {
            let slashes: Vec<usize> = path.match_indices('/').map(|(k, _)| k).collect();
            out.insert(slashes[i % slashes.len()], '/');
        }
        Change::Param(i) => {
            // Segment ends: before each '/' but the first, and the end.
            let mut ends: Vec<usize> = path.match_indices('/').map(|(k, _)| k).skip(1).collect();
            ends.push(path.len());
            out.insert_str(ends[i % ends.len()], ";x");
        }
    }
    out
}

proptest! {
    #[test]
    fn denied_path_stays_denied_under_case_slash_and_parameter_changes(
        base in denied_base(),
        changes in prop::collection::vec(change(), 0..6),
    ) {
        let policy = Policy::from_text(FOLD_ROUTES, "prop").expect("routes");
        let connect = parse_connect_target("h.example.com:443").expect("target");
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("h.example.com"));
        let mut path = base;
        for c in changes {
            path = apply(&path, c);
        }
        let facts = RequestFacts {
            transport: Transport::Tls { connect: &connect, sni: Some("h.example.com") },
            method: &Method::GET,
            target: &path,
            version: Version::HTTP_11,
            authority: None,
            headers: &headers,
            body: BodyHint::Empty,
        };
        match policy.decide(&facts) {
            Decision::Refuse(r) => prop_assert_eq!(r.reason.as_str(), "path-not-allowed", "{}", path),
            Decision::Allow(_) => prop_assert!(false, "{} was allowed", path),
        }
    }
}
