//! A requested change and what it does to a routes document.
//!
//! Owns the bounds of a request and the one merge both halves use: the
//! sidecar plans against the credential-free view to refuse early, the host
//! plans again against the real routes file before writing it. Either way
//! the result is validated by `addon_rules::Policy`, the engine egress-proxy
//! enforces.
//!
//! A request either adds a new plain route (no credential: the agent never
//! chooses one) or extends an existing route's `path_allowlist` or `methods`.
//! Must never remove or loosen a deny list, add or change a credential field,
//! or touch another route.

use addon_rules::Policy;
use serde_json::Value;

use crate::state::EgressRequest;

/// Bounds on one request (docs/supervise.md, "Bounds").
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_justification_chars: usize,
    pub max_paths: usize,
    pub max_path_bytes: usize,
    pub max_methods: usize,
    pub max_host_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_justification_chars: 2000,
            max_paths: 16,
            max_path_bytes: 512,
            max_methods: 8,
            max_host_bytes: 253,
        }
    }
}

/// Why a request cannot become a proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// Too big, empty, or otherwise out of bounds.
    #[error("{0}")]
    Bounds(String),
    /// The routes file it would produce is refused by addon-rules.
    #[error("the routes file would be invalid:\n{0}")]
    Invalid(String),
    /// The routes already allow it.
    #[error("{0}")]
    NothingToChange(String),
    /// The current routes document itself is unreadable (host side).
    #[error("the current routes file cannot be used: {0}")]
    Document(String),
}

/// Checks the sizes of a request before any work is done on it.
pub fn check_bounds(req: &EgressRequest, l: &Limits) -> Result<(), ChangeError> {
    let b = |m: String| Err(ChangeError::Bounds(m));
    if req.host.trim().is_empty() {
        return b("`host` is empty: name the host, e.g. \"pypi.org\"".into());
    }
    if req.host.len() > l.max_host_bytes {
        return b(format!("`host` is longer than {} bytes", l.max_host_bytes));
    }
    if req.justification.trim().is_empty() {
        return b("`justification` is required: say why the task needs this access".into());
    }
    let chars = req.justification.chars().count();
    if chars > l.max_justification_chars {
        return b(format!(
            "`justification` has {chars} characters; at most {} are accepted",
            l.max_justification_chars
        ));
    }
    if req.paths.len() > l.max_paths {
        return b(format!(
            "{} paths requested; at most {} per request (use a `/prefix/**` pattern)",
            req.paths.len(),
            l.max_paths
        ));
    }
    if let Some(p) = req.paths.iter().find(|p| p.len() > l.max_path_bytes) {
        return b(format!(
            "a path of {} bytes; at most {} bytes each",
            p.len(),
            l.max_path_bytes
        ));
    }
    if req.methods.len() > l.max_methods {
        return b(format!(
            "{} methods requested; at most {}",
            req.methods.len(),
            l.max_methods
        ));
    }
    if let Some(m) = req.methods.iter().find(|m| m.is_empty() || m.len() > 32) {
        return b(format!("method {m:?} is not a method name"));
    }
    Ok(())
}

/// New route or extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    NewRoute,
    Extend,
}

/// A change applied to a document and validated.
#[derive(Debug, Clone)]
pub struct Planned {
    pub kind: Kind,
    /// `routes[index]` is the route added or extended.
    pub index: usize,
    /// The route entry before (an extension), as in the document.
    pub before: Option<Value>,
    /// The route entry after, as in the document.
    pub after: Value,
    /// The whole new document, as written.
    pub text: String,
    /// The new document, as the engine loaded it.
    pub policy: Policy,
    /// The route carries a credential and this widens where it is sent.
    pub widens_credential: bool,
    /// A new exact route for a host a wildcard route covered until now (the
    /// exact route wins, so the wildcard's path rules stop applying to it).
    pub shadows_wildcard: Option<String>,
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn invalid(e: addon_rules::LoadError) -> ChangeError {
    ChangeError::Invalid(e.to_string())
}

/// The host as the engine normalizes it (`API.Example.com.` → `api.example.com`).
/// Errors are the engine's own (public-suffix wildcard, non-ASCII, ...).
fn normalize_host(host: &str) -> Result<String, ChangeError> {
    let one = serde_json::json!({"routes": [{"host": host}]}).to_string();
    let p = Policy::from_text(&one, "request-egress").map_err(invalid)?;
    p.routes()
        .first()
        .map(|r| r.host().to_string())
        .ok_or_else(|| ChangeError::Invalid("host: no route could be made of it".into()))
}

/// Applies `req` to the routes document `doc` (JSON) and validates the
/// result with addon-rules. `source` names the would-be file in errors.
pub fn plan(doc: &Value, req: &EgressRequest, source: &str) -> Result<Planned, ChangeError> {
    let current = Policy::from_text(&doc.to_string(), source)
        .map_err(|e| ChangeError::Document(e.to_string()))?;
    let host = normalize_host(&req.host)?;
    let mut new_doc = doc.clone();
    let routes = new_doc
        .get_mut("routes")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| ChangeError::Document("no `routes` list".into()))?;

    let existing = current.routes().iter().position(|r| r.host() == host);
    let (kind, index, before, widens, shadows) = match existing {
        Some(i) => {
            let entry = routes
                .get_mut(i)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| ChangeError::Document(format!("routes[{i}] is not a mapping")))?;
            let before = Value::Object(entry.clone());
            let mut allow = str_list(entry.get("path_allowlist"));
            // An empty allow list already allows every path: adding entries
            // would narrow the route, so paths only extend a non-empty list.
            if !allow.is_empty() {
                for p in &req.paths {
                    if !allow.contains(p) {
                        allow.push(p.clone());
                    }
                }
                entry.insert("path_allowlist".into(), allow.into());
            }
            if entry.contains_key("methods") {
                let mut ms = str_list(entry.get("methods"));
                for m in &req.methods {
                    if !ms.contains(m) {
                        ms.push(m.clone());
                    }
                }
                entry.insert("methods".into(), ms.into());
            }
            if Value::Object(entry.clone()) == before {
                return Err(nothing_to_change(&current.routes()[i], req));
            }
            let cred = current.routes()[i].credential().is_some();
            (Kind::Extend, i, Some(before), cred, None)
        }
        None => {
            let mut m = serde_json::Map::new();
            m.insert("host".into(), host.clone().into());
            if !req.paths.is_empty() {
                m.insert("path_allowlist".into(), req.paths.clone().into());
            }
            if !req.methods.is_empty() {
                m.insert("methods".into(), req.methods.clone().into());
            }
            let shadows = if host.starts_with("*.") {
                None
            } else {
                current.route_for_host(&host).map(|r| r.host().to_string())
            };
            routes.push(Value::Object(m));
            (Kind::NewRoute, routes.len() - 1, None, false, shadows)
        }
    };
    let after = routes[index].clone();
    let text = serde_json::to_string_pretty(&new_doc)
        .map_err(|e| ChangeError::Document(e.to_string()))?
        + "\n";
    let policy = Policy::from_text(&text, source).map_err(invalid)?;
    Ok(Planned {
        kind,
        index,
        before,
        after,
        text,
        policy,
        widens_credential: widens,
        shadows_wildcard: shadows,
    })
}

fn nothing_to_change(route: &addon_rules::Route, req: &EgressRequest) -> ChangeError {
    let denied: Vec<String> = req
        .paths
        .iter()
        .filter_map(|p| {
            route
                .path_denylist()
                .first_match(p)
                .map(|d| format!("{p:?} (deny entry {d:?})"))
        })
        .collect();
    if denied.is_empty() {
        ChangeError::NothingToChange(format!(
            "routes[{}] ({}) already allows these paths and methods; a refusal there comes from elsewhere (see list-egress-routes)",
            route.index(),
            route.host()
        ))
    } else {
        ChangeError::NothingToChange(format!(
            "routes[{}] ({}) refuses {} by its path_denylist, which request-egress cannot lift; ask the operator",
            route.index(),
            route.host(),
            denied.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(host: &str, paths: &[&str], methods: &[&str]) -> EgressRequest {
        EgressRequest {
            host: host.into(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            methods: methods.iter().map(|s| s.to_string()).collect(),
            justification: "the task needs it".into(),
        }
    }

    fn doc() -> Value {
        json!({"unmatched": "deny", "routes": [
            {"host": "api.github.com", "path_allowlist": ["/repos/acme/widget/issues"],
             "methods": ["GET"], "auth_scheme": "Bearer", "token_env": "EGRESS_PROXY_TOKEN_0"},
            {"host": "pypi.org"},
            {"host": "*.npmjs.org", "path_denylist": ["/-/user"]}
        ]})
    }

    #[test]
    fn new_host_becomes_a_plain_route() {
        let p = plan(
            &doc(),
            &req("Files.Example.COM.", &["/dl/**"], &["GET"]),
            "t",
        )
        .unwrap();
        assert_eq!(p.kind, Kind::NewRoute);
        assert_eq!(p.index, 3);
        assert_eq!(
            p.after,
            json!({"host": "files.example.com", "path_allowlist": ["/dl/**"], "methods": ["GET"]})
        );
        assert!(!p.widens_credential);
        assert!(p.policy.route_for_host("files.example.com").is_some());
    }

    #[test]
    fn extension_keeps_the_credential_and_is_flagged() {
        let p = plan(
            &doc(),
            &req("api.github.com", &["/repos/acme/widget/pulls"], &["POST"]),
            "t",
        )
        .unwrap();
        assert_eq!(p.kind, Kind::Extend);
        assert_eq!(p.index, 0);
        assert!(p.widens_credential);
        assert_eq!(p.after["token_env"], "EGRESS_PROXY_TOKEN_0");
        assert_eq!(
            p.after["path_allowlist"],
            json!(["/repos/acme/widget/issues", "/repos/acme/widget/pulls"])
        );
        assert_eq!(p.after["methods"], json!(["GET", "POST"]));
        assert!(p.policy.routes()[0].credential().is_some());
    }

    #[test]
    fn public_suffix_wildcard_is_refused_with_the_engines_reason() {
        let e = plan(&doc(), &req("*.github.io", &[], &[]), "t").unwrap_err();
        assert!(matches!(e, ChangeError::Invalid(_)), "{e:?}");
        assert!(e.to_string().contains("public suffix"), "{e}");
    }

    #[test]
    fn bad_pattern_is_refused() {
        let e = plan(&doc(), &req("example.com", &["^(unclosed"], &[]), "t").unwrap_err();
        assert!(e.to_string().contains("path_allowlist[0]"), "{e}");
        let e = plan(&doc(), &req("example.com", &["/a/../b"], &[]), "t").unwrap_err();
        assert!(matches!(e, ChangeError::Invalid(_)), "{e:?}");
    }

    #[test]
    fn lowercase_method_is_refused() {
        let e = plan(&doc(), &req("example.com", &[], &["get"]), "t").unwrap_err();
        assert!(e.to_string().contains("case-sensitive"), "{e}");
    }

    #[test]
    fn nothing_new_is_refused() {
        let e = plan(&doc(), &req("pypi.org", &["/simple"], &["GET"]), "t").unwrap_err();
        assert!(matches!(e, ChangeError::NothingToChange(_)), "{e:?}");
        let e = plan(
            &doc(),
            &req("api.github.com", &["/repos/acme/widget/issues"], &[]),
            "t",
        )
        .unwrap_err();
        assert!(matches!(e, ChangeError::NothingToChange(_)), "{e:?}");
    }

    #[test]
    fn exact_route_under_a_wildcard_is_flagged() {
        let p = plan(&doc(), &req("registry.npmjs.org", &[], &[]), "t").unwrap();
        assert_eq!(p.shadows_wildcard.as_deref(), Some("*.npmjs.org"));
    }

    #[test]
    fn bounds_each_refuse() {
        let l = Limits::default();
        let ok = req("example.com", &["/a"], &["GET"]);
        assert_eq!(check_bounds(&ok, &l), Ok(()));
        let mut r = ok.clone();
        r.justification = "  ".into();
        assert!(check_bounds(&r, &l).is_err());
        let mut r = ok.clone();
        r.justification = "x".repeat(l.max_justification_chars + 1);
        assert!(check_bounds(&r, &l).is_err());
        let mut r = ok.clone();
        r.paths = vec!["/a".into(); l.max_paths + 1];
        assert!(check_bounds(&r, &l).is_err());
        let mut r = ok.clone();
        r.paths = vec![format!("/{}", "a".repeat(l.max_path_bytes))];
        assert!(check_bounds(&r, &l).is_err());
        let mut r = ok.clone();
        r.methods = vec!["GET".into(); l.max_methods + 1];
        assert!(check_bounds(&r, &l).is_err());
        let mut r = ok;
        r.host = "a".repeat(l.max_host_bytes + 1);
        assert!(check_bounds(&r, &l).is_err());
    }
}
