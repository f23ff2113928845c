//! Step 6 of a decision (SPEC §3.6, §2): the route. Owns finding the route
//! of the destination host (or applying `unmatched`), the route's `methods`
//! and method overrides, its deny list against every form of the path an
//! origin may read, and its allow list against the path as sent and without
//! `;` parameters. Must never look at credentials (step 7) or change the path
//! that is sent: the forms here are only matched.

use std::borrow::Cow;

use http::StatusCode;

use crate::facts::RequestFacts;
use crate::method_override;
use crate::pattern::{fold_path, without_parameters};
use crate::reason::{Reason, Refusal};
use crate::routes::{Policy, Route, Unmatched};
use crate::trace::Trace;

/// Step 6: the route `host` maps to, `Ok(None)` under `unmatched: forward`.
pub(crate) fn apply<'p>(
    policy: &'p Policy,
    req: &RequestFacts<'_>,
    host: &str,
    path: &str,
    query: Option<&str>,
    trace: &mut Trace<'_>,
) -> Result<Option<&'p Route>, Refusal> {
    let Some(route) = policy.route_for_host(host) else {
        return match policy.unmatched() {
            Unmatched::Deny => {
                trace.step(|| format!("6 route: none for {host}; unmatched: deny"));
                Err(Refusal::new(
                    Reason::HostNotAllowed,
                    format!("host {host} has no route"),
                ))
            }
            Unmatched::Forward => {
                trace.step(|| {
                    format!("6 route: none for {host}; unmatched: forward (no credential)")
                });
                Ok(None)
            }
        };
    };
    trace.step(|| format!("6 route: routes[{}] {}", route.index(), route.host()));
    let on_route = |r: Refusal| r.on_route(route.host());
    check_methods(route, req, query).map_err(on_route)?;
    check_paths(route, path, trace).map_err(on_route)?;
    Ok(Some(route))
}

/// The route's `methods`, and every method override of the request.
fn check_methods(
    route: &Route,
    req: &RequestFacts<'_>,
    query: Option<&str>,
) -> Result<(), Refusal> {
    let Some(methods) = route.methods() else {
        return Ok(());
    };
    let method = req.method;
    if !methods.contains(method) {
        return Err(Refusal::with_status(
            Reason::MethodNotAllowed,
            StatusCode::FORBIDDEN,
            format!("method {method} is not allowed on host {}", route.host()),
        ));
    }
    if let Some((what, m)) = method_override::find_refused(req.headers, query, |m| {
        !methods.iter().any(|a| a.as_str().eq_ignore_ascii_case(m))
    }) {
        return Err(Refusal::with_status(
            Reason::MethodNotAllowed,
            StatusCode::FORBIDDEN,
            format!(
                "{what} names method {}, which is not allowed on host {}",
                method_override::shorten(&m),
                route.host()
            ),
        ));
    }
    Ok(())
}

/// The deny list, then the allow list (docs/routes.md, path patterns).
fn check_paths(route: &Route, path: &str, trace: &mut Trace<'_>) -> Result<(), Refusal> {
    // `first_match` names the entry for `explain`; `matches` is the fast path.
    // Origins fold what the proxy must not (docs/routes.md): a Tomcat- or
    // Jetty-style origin drops `;` parameters (`/a/secret;x=1/b` serves
    // `/a/secret/b`), forges ignore case, common servers merge `//`. The
    // deny list is checked against every form such an origin may read.
    let unparameterized = without_parameters(path);
    let deny = route.path_denylist();
    if !deny.is_empty() {
        let folded_deny = route.path_denylist_folded();
        let folded = fold_path(path);
        let folded_unparameterized = unparameterized.as_deref().map(fold_path);
        // A folded form equal to its unfolded one, for the same list, was
        // checked already.
        let same_list = std::ptr::eq(folded_deny, deny);
        let new_form = |f: &Cow<'_, str>| !(same_list && matches!(f, Cow::Borrowed(_)));
        let forms = [
            (deny, "as sent", Some(path)),
            (deny, "without ; parameters", unparameterized.as_deref()),
            (
                folded_deny,
                "folded",
                Some(&*folded).filter(|_| new_form(&folded)),
            ),
            (
                folded_deny,
                "folded, without ; parameters",
                folded_unparameterized
                    .as_ref()
                    .filter(|f| new_form(f))
                    .map(|f| &**f),
            ),
        ];
        if let Some((list, form, p)) = forms
            .iter()
            .find_map(|(l, f, p)| p.filter(|p| l.matches(p)).map(|p| (l, f, p)))
        {
            trace.step(|| {
                format!(
                    "6 deny list: {p:?} ({form}) matches {:?}",
                    list.first_match(p).unwrap_or_default()
                )
            });
            return Err(Refusal::new(
                Reason::PathNotAllowed,
                format!("path is denied on host {}", route.host()),
            ));
        }
    }
    // A `;` parameter can turn a denied resource into an allowed-looking
    // path (`/files/secret.key;.txt` for `/files/*.txt`): both the path as
    // sent and its `;`-stripped form must be allowed.
    let allow = route.path_allowlist();
    if allow.is_empty() {
        trace.step(|| "6 allow list: none (every path)".into());
    } else if let Some(missed) = [Some(path), unparameterized.as_deref()]
        .into_iter()
        .flatten()
        .find(|p| !allow.matches(p))
    {
        trace.step(|| format!("6 allow list: no entry matches {missed:?}"));
        return Err(Refusal::new(
            Reason::PathNotAllowed,
            format!("path is not in the allow list of host {}", route.host()),
        ));
    } else {
        trace.step(|| {
            format!(
                "6 allow list: matches {:?}",
                allow.first_match(path).unwrap_or_default()
            )
        });
    }
    Ok(())
}
