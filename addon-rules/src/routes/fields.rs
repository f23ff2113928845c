//! Loading one route, field by field (SPEC §2): `host`, the path lists,
//! `methods`, `strip_headers` and the credential (`auth_scheme`,
//! `auth_header`, `token_env`, `token_file` and the rules between them).
//! Owns every per-field error message and its fix. Must never stop at a
//! field's error: every field of the route is checked and reported.

use std::path::PathBuf;

use http::{HeaderName, Method};

use super::document::{Errs, Fields, Node, as_str, as_str_list, check_keys, describe};
use super::{Credential, Route, TokenSource};
use crate::error::ConfigError;
use crate::host::HostPattern;
use crate::pattern::PatternList;

const ROUTE_KEYS: &[&str] = &[
    "host",
    "path_allowlist",
    "path_denylist",
    "methods",
    "auth_scheme",
    "auth_header",
    "token_env",
    "token_file",
    "strip_headers",
];

/// Headers that carry framing, routing or hop-by-hop meaning: a route may
/// neither inject into them nor strip them (either would break or smuggle).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "x-egress-proxy-decision",
];

/// Loads `routes[i]`; on errors (reported in `errs`) returns its host when
/// that alone is valid, so duplicates are still found.
pub(super) fn load_route(
    i: usize,
    item: &Node,
    errs: &mut Errs<'_>,
) -> Result<Route, Option<HostPattern>> {
    let Node::Map(entries) = item else {
        errs.list.push(ConfigError::new(
            errs.source,
            Some(i),
            None,
            format!("a route must be a mapping, found {}", describe(item)),
            "write `- host: example.com` with the route's fields below it",
        ));
        return Err(None);
    };
    let before = errs.list.len();
    let mut unknown = Vec::new();
    let fields = Fields(check_keys(entries, ROUTE_KEYS, |k, m, f| {
        unknown.push((k.to_string(), m, f))
    }));
    for (k, m, f) in unknown {
        let field = if k.is_empty() { "(key)".to_string() } else { k };
        errs.route(i, &field, m, f);
    }

    // In file-reference order, which is the order errors are reported in.
    let host = host(i, &fields, errs);
    let (allow, deny, deny_folded) = path_lists(i, &fields, errs);
    let methods = methods(i, &fields, errs);
    let strip = strip_headers(i, &fields, errs);
    let credential = credential(i, &fields, host.as_ref(), errs);

    let Some(host) = host else {
        return Err(None);
    };
    if errs.list.len() != before {
        return Err(Some(host));
    }
    let strip = strip_set(credential.as_ref(), strip);
    Ok(Route {
        index: i,
        host_display: host.display(),
        host,
        methods,
        allow,
        deny,
        deny_folded,
        credential,
        strip,
    })
}

/// `host`: required, a name, a wildcard or an IP literal.
fn host(i: usize, fields: &Fields<'_>, errs: &mut Errs<'_>) -> Option<HostPattern> {
    let Some(v) = fields.get("host") else {
        errs.list.push(ConfigError::new(
            errs.source,
            Some(i),
            None,
            "the route has no `host`",
            "add `host: <name>` to it",
        ));
        return None;
    };
    let h = as_str(
        i,
        "host",
        v,
        "write the host as a string, e.g. \"api.example.com\"",
        errs,
    )?;
    match HostPattern::parse(h) {
        Ok(p) => Some(p),
        Err((m, f)) => {
            errs.route(i, "host", m, f);
            None
        }
    }
}

/// `path_allowlist` and `path_denylist`, compiled, and the deny list's
/// folded form (see [`PatternList::folded`]).
fn path_lists(
    i: usize,
    fields: &Fields<'_>,
    errs: &mut Errs<'_>,
) -> (PatternList, PatternList, Option<PatternList>) {
    let mut lists = [PatternList::default(), PatternList::default()];
    for (slot, field) in ["path_allowlist", "path_denylist"].into_iter().enumerate() {
        if let Some(v) = fields.get(field)
            && let Some(entries) = as_str_list(i, field, v, errs)
        {
            match PatternList::compile(&entries) {
                Ok(l) => lists[slot] = l,
                Err(list) => {
                    for (k, m, f) in list {
                        errs.route(i, &format!("{field}[{k}]"), m, f);
                    }
                }
            }
        }
    }
    let [allow, deny] = lists;
    let deny_folded = match deny.folded() {
        Ok(f) => f,
        Err((k, m, f)) => {
            errs.route(i, &format!("path_denylist[{k}]"), m, f);
            None
        }
    };
    (allow, deny, deny_folded)
}

/// `methods`: a non-empty list of method tokens; standard methods in upper
/// case; never `TRACE` or `CONNECT`.
fn methods(i: usize, fields: &Fields<'_>, errs: &mut Errs<'_>) -> Option<Vec<Method>> {
    let list = as_str_list(i, "methods", fields.get("methods")?, errs)?;
    if list.is_empty() {
        errs.route(
            i,
            "methods",
            "is an empty list, which would allow no method",
            "remove `methods` to allow any method, or list them, e.g. [GET, POST]",
        );
        return None;
    }
    let mut out: Vec<Method> = Vec::new();
    let mut ok = true;
    for (k, m) in list.iter().enumerate() {
        let field = format!("methods[{k}]");
        let upper = m.to_ascii_uppercase();
        if m.is_empty() || !m.bytes().all(is_tchar) {
            errs.route(
                i,
                &field,
                format!("{m:?} is not an HTTP method"),
                "write a method name such as GET or POST",
            );
            ok = false;
        } else if upper == "TRACE" || upper == "CONNECT" {
            errs.route(
                i,
                &field,
                format!("{upper} is always refused by the proxy"),
                "remove it",
            );
            ok = false;
        } else if *m != upper && is_standard_method(&upper) {
            errs.route(
                i,
                &field,
                format!("{m:?}: methods are case-sensitive"),
                format!("write {upper:?}"),
            );
            ok = false;
        } else if let Ok(method) = Method::from_bytes(m.as_bytes()) {
            if !out.contains(&method) {
                out.push(method);
            }
        } else {
            errs.route(
                i,
                &field,
                format!("{m:?} is not an HTTP method"),
                "write a method name such as GET or POST",
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

/// `strip_headers`: header names, none reserved.
fn strip_headers(i: usize, fields: &Fields<'_>, errs: &mut Errs<'_>) -> Vec<HeaderName> {
    let Some(list) = fields
        .get("strip_headers")
        .and_then(|v| as_str_list(i, "strip_headers", v, errs))
    else {
        return Vec::new();
    };
    list.iter()
        .enumerate()
        .filter_map(|(k, h)| header_name(i, &format!("strip_headers[{k}]"), h, errs))
        .collect()
}

/// A header a route injects or strips: valid, lowercased, not reserved.
fn header_name(i: usize, field: &str, raw: &str, errs: &mut Errs<'_>) -> Option<HeaderName> {
    let lower = raw.to_ascii_lowercase();
    match HeaderName::from_bytes(lower.as_bytes()) {
        Ok(_) if RESERVED_HEADERS.contains(&lower.as_str()) => {
            errs.route(
                i,
                field,
                format!(
                    "header {raw:?} carries framing or hop-by-hop meaning and cannot be used here"
                ),
                "name another header",
            );
            None
        }
        Ok(h) => Some(h),
        Err(_) => {
            errs.route(
                i,
                field,
                format!("{raw:?} is not a valid header name"),
                "use letters, digits and '-', e.g. \"x-api-key\"",
            );
            None
        }
    }
}

/// `auth_scheme`: one token.
fn auth_scheme(i: usize, fields: &Fields<'_>, errs: &mut Errs<'_>) -> Option<String> {
    let s = as_str(
        i,
        "auth_scheme",
        fields.get("auth_scheme")?,
        "write e.g. `auth_scheme: Bearer`",
        errs,
    )?;
    if s.is_empty() || !s.bytes().all(is_tchar) {
        errs.route(
            i,
            "auth_scheme",
            format!("{s:?} is not a valid scheme token"),
            "write one word such as Bearer, token or Basic",
        );
        None
    } else {
        Some(s.to_string())
    }
}

/// `auth_header`: `None` when absent, `Some(None)` when present but invalid.
fn auth_header(i: usize, fields: &Fields<'_>, errs: &mut Errs<'_>) -> Option<Option<HeaderName>> {
    let h = as_str(
        i,
        "auth_header",
        fields.get("auth_header")?,
        "write e.g. `auth_header: x-api-key`",
        errs,
    )?;
    Some(header_name(i, "auth_header", h, errs))
}

/// `token_env`: an environment variable name.
fn token_env(i: usize, fields: &Fields<'_>, errs: &mut Errs<'_>) -> Option<String> {
    let e = as_str(
        i,
        "token_env",
        fields.get("token_env")?,
        "write the variable name, e.g. `token_env: GITHUB_TOKEN`",
        errs,
    )?;
    let valid = e
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Some(e.to_string())
    } else {
        errs.route(
            i,
            "token_env",
            format!("{e:?} is not an environment variable name"),
            "use letters, digits and '_', not starting with a digit, e.g. GITHUB_TOKEN",
        );
        None
    }
}

/// `token_file`: a non-empty path (read by the proxy, never here).
fn token_file(i: usize, fields: &Fields<'_>, errs: &mut Errs<'_>) -> Option<PathBuf> {
    let f = as_str(
        i,
        "token_file",
        fields.get("token_file")?,
        "write a path, e.g. `token_file: /run/secrets/token`",
        errs,
    )?;
    if f.trim().is_empty() {
        errs.route(
            i,
            "token_file",
            "is empty",
            "write the path of the file holding the secret",
        );
        None
    } else {
        Some(PathBuf::from(f))
    }
}

/// The credential: one token source, a scheme for `Authorization`, never on
/// a wildcard; `auth_scheme`/`auth_header` only with a token source.
fn credential(
    i: usize,
    fields: &Fields<'_>,
    host: Option<&HostPattern>,
    errs: &mut Errs<'_>,
) -> Option<Credential> {
    let scheme = auth_scheme(i, fields, errs);
    let has_scheme = fields.get("auth_scheme").is_some();
    let header = auth_header(i, fields, errs);
    let has_header = header.is_some();
    let env = token_env(i, fields, errs);
    let file = token_file(i, fields, errs);
    let has_env = fields.get("token_env").is_some();
    let has_file = fields.get("token_file").is_some();

    if has_env && has_file {
        errs.route(
            i,
            "token_file",
            "a route has either `token_env` or `token_file`, not both",
            "remove one of them",
        );
        return None;
    }
    if !has_env && !has_file {
        if has_scheme || has_header {
            errs.route(
                i,
                if has_scheme {
                    "auth_scheme"
                } else {
                    "auth_header"
                },
                "`auth_scheme`/`auth_header` without a token source injects nothing",
                "add `token_env` or `token_file`, or remove them",
            );
        }
        return None;
    }
    let header = match header {
        Some(Some(h)) => Some(h),
        Some(None) => None,
        None => Some(http::header::AUTHORIZATION),
    };
    if header.as_ref() == Some(&http::header::AUTHORIZATION) && !has_scheme {
        errs.route(
            i,
            "auth_scheme",
            "is required when the credential goes into Authorization",
            "add `auth_scheme: Bearer` (or the scheme the API expects), or set `auth_header`",
        );
    }
    if matches!(host, Some(HostPattern::Wildcard(_))) {
        errs.route(
            i,
            if has_env { "token_env" } else { "token_file" },
            "a credential on a wildcard route would send the secret to any subdomain",
            "name the host exactly in a route of its own",
        );
    }
    let source = match (env, file) {
        (Some(e), _) => TokenSource::Env(e),
        (_, Some(f)) => TokenSource::File(f),
        _ => return None,
    };
    Some(Credential {
        header: header?,
        scheme,
        source,
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_standard_method(m: &str) -> bool {
    matches!(
        m,
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS"
    )
}

/// The headers removed from the client's request on a route: on a credential
/// route the fixed set, the route's header and `strip_headers`; otherwise
/// only `strip_headers`. Deduplicated, computed once at load.
fn strip_set(credential: Option<&Credential>, extra: Vec<HeaderName>) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    if let Some(c) = credential {
        for h in super::CREDENTIAL_STRIP_HEADERS {
            out.push(HeaderName::from_static(h));
        }
        out.push(c.header.clone());
    }
    out.extend(extra);
    let mut dedup: Vec<HeaderName> = Vec::with_capacity(out.len());
    for h in out {
        if !dedup.contains(&h) {
            dedup.push(h);
        }
    }
    dedup
}
