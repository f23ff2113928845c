//! The routes file (SPEC §2): its model, and loading it from JSON or YAML into
//! a validated [`Policy`] ("parse, don't validate": a `Route` that exists has a
//! normalized host and compiled patterns).
//! Owns field-by-field validation so that every error of a file is reported at
//! once with file, route index, field and fix. Must never read the
//! environment or a token file: that is the proxy's job at start and reload.

use std::net::IpAddr;
use std::path::PathBuf;

use http::{HeaderName, Method};

use crate::error::{ConfigError, LoadError};
use crate::host::{HostPattern, HostTable};
use crate::pattern::PatternList;

/// What happens to a request whose host has no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmatched {
    /// 403 `host-not-allowed` (the default).
    #[default]
    Deny,
    /// Forwarded without credentials (the git-push block still applies).
    Forward,
}

impl Unmatched {
    pub fn as_str(self) -> &'static str {
        match self {
            Unmatched::Deny => "deny",
            Unmatched::Forward => "forward",
        }
    }
}

/// Where a credential's secret comes from. The value itself is never held here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// An environment variable of the proxy process, read once at start.
    Env(String),
    /// A file, read at start and on every reload; surrounding whitespace trimmed.
    File(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Env(v) => write!(f, "env {v}"),
            TokenSource::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// A credential to inject: `header: <scheme> <secret>` (or `<secret>` without scheme).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Lowercase; `authorization` unless `auth_header` says otherwise.
    pub header: HeaderName,
    pub scheme: Option<String>,
    pub source: TokenSource,
}

/// One validated route.
#[derive(Debug, Clone)]
pub struct Route {
    pub(crate) index: usize,
    pub(crate) host: HostPattern,
    pub(crate) host_display: String,
    pub(crate) methods: Option<Vec<Method>>,
    pub(crate) allow: PatternList,
    pub(crate) deny: PatternList,
    /// The deny list as an origin that folds case and slashes applies it
    /// ([`PatternList::folded`]); `None` when it is `deny` itself.
    pub(crate) deny_folded: Option<PatternList>,
    pub(crate) credential: Option<Credential>,
    /// Precomputed client headers to strip (see [`crate::Allowed::strip_headers`]).
    pub(crate) strip: Vec<HeaderName>,
}

impl Route {
    /// The 0-based position in the routes file (`routes[i]`).
    pub fn index(&self) -> usize {
        self.index
    }
    /// The normalized host as written: `api.github.com`, `*.npmjs.org`, `::1`.
    pub fn host(&self) -> &str {
        &self.host_display
    }
    pub fn host_pattern(&self) -> &HostPattern {
        &self.host
    }
    pub fn is_wildcard(&self) -> bool {
        matches!(self.host, HostPattern::Wildcard(_))
    }
    /// True when the route's host is this IP literal (for direct mode's
    /// "the route names that IP literally"). IPv4-mapped IPv6 and IPv4 compare equal.
    pub fn names_ip(&self, ip: &IpAddr) -> bool {
        matches!(&self.host, HostPattern::Ip(r) if r.to_canonical() == ip.to_canonical())
    }
    /// `None`: any method.
    pub fn methods(&self) -> Option<&[Method]> {
        self.methods.as_deref()
    }
    pub fn path_allowlist(&self) -> &PatternList {
        &self.allow
    }
    pub fn path_denylist(&self) -> &PatternList {
        &self.deny
    }
    /// The deny list matched against folded paths (lowercase, `/` runs
    /// collapsed; see docs/routes.md).
    pub(crate) fn path_denylist_folded(&self) -> &PatternList {
        self.deny_folded.as_ref().unwrap_or(&self.deny)
    }
    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }
    /// Client headers removed on this route.
    pub fn strip_headers(&self) -> &[HeaderName] {
        &self.strip
    }
}

/// A loaded, validated routes file. `Send + Sync`; share it in an `Arc` and
/// swap the `Arc` on reload.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) routes: Vec<Route>,
    pub(crate) unmatched: Unmatched,
    pub(crate) table: HostTable,
}

impl Policy {
    /// Parses and validates a routes file (JSON or YAML). `source` names it in
    /// errors (usually its path). Every problem is reported, not only the first.
    pub fn from_text(text: &str, source: &str) -> Result<Policy, LoadError> {
        crate::routes::load(text, source)
    }

    /// The routes, in file order (`routes()[i].index() == i`).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn unmatched(&self) -> Unmatched {
        self.unmatched
    }

    /// The route that a normalized host (as in [`crate::ConnectTarget`]) maps to.
    pub fn route_for_host(&self, host: &str) -> Option<&Route> {
        self.table.lookup(host).and_then(|i| self.routes.get(i))
    }
}

/// A parsed document before validation: like a JSON value, but keeping map
/// entries in order and duplicates, so a repeated key is an error instead of
/// a silent overwrite (a second `path_allowlist` must not win quietly).
#[derive(Debug, Clone)]
enum Node {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing (null)",
            Node::Bool(_) => "a boolean",
            Node::Num(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a routes file value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Num(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Num(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Num(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
        let mut v = Vec::new();
        while let Some(n) = a.next_element()? {
            v.push(n);
        }
        Ok(Node::Seq(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
        let mut v = Vec::new();
        while let Some((k, val)) = a.next_entry()? {
            v.push((k, val));
        }
        Ok(Node::Map(v))
    }
}

/// Collects errors for one file.
struct Errs<'s> {
    source: &'s str,
    list: Vec<ConfigError>,
}

impl Errs<'_> {
    fn top(&mut self, field: Option<&str>, msg: impl Into<String>, fix: impl Into<String>) {
        self.list.push(ConfigError::new(
            self.source,
            None,
            field.map(str::to_string),
            msg,
            fix,
        ));
    }
    fn route(&mut self, i: usize, field: &str, msg: impl Into<String>, fix: impl Into<String>) {
        self.list.push(ConfigError::new(
            self.source,
            Some(i),
            Some(field.to_string()),
            msg,
            fix,
        ));
    }
}

const TOP_KEYS: &[&str] = &["unmatched", "routes"];
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

fn parse_document(text: &str, source: &str) -> Result<Node, LoadError> {
    let one = |msg: String, fix: &str| LoadError {
        errors: vec![ConfigError::new(source, None, None, msg, fix)],
    };
    if text.trim().is_empty() {
        return Err(one(
            "the file is empty".into(),
            "write at least `routes: []` (see docs/routes.md)",
        ));
    }
    // JSON gets serde_json for exact line/column messages; everything else is YAML.
    if text.trim_start().starts_with('{') {
        serde_json::from_str::<Node>(text).map_err(|e| {
            one(
                format!("not valid JSON: {e}"),
                "fix the JSON syntax at that line and column",
            )
        })
    } else {
        serde_yaml_ng::from_str::<Node>(text).map_err(|e| {
            one(
                format!(
                    "not valid YAML: {}",
                    e.to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                "fix the YAML syntax at that line and column",
            )
        })
    }
}

fn key_str(k: &Node) -> Option<&str> {
    match k {
        Node::Str(s) => Some(s),
        _ => None,
    }
}

/// Checks keys of a mapping against `known`: unknown and duplicate keys are
/// errors. Returns the entries with string keys, first occurrence only.
fn check_keys<'n>(
    entries: &'n [(Node, Node)],
    known: &[&str],
    mut report: impl FnMut(&str, String, String),
) -> Vec<(&'n str, &'n Node)> {
    let mut out: Vec<(&str, &Node)> = Vec::new();
    for (k, v) in entries {
        let Some(k) = key_str(k) else {
            report(
                "",
                format!("a key is {}, not a string", k.kind()),
                format!("use one of: {}", known.join(", ")),
            );
            continue;
        };
        if !known.contains(&k) {
            let fix = match did_you_mean(k, known) {
                Some(s) => format!("did you mean {s:?}? known keys: {}", known.join(", ")),
                None => format!("remove it; known keys: {}", known.join(", ")),
            };
            report(k, format!("unknown key {k:?}"), fix);
            continue;
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            report(
                k,
                format!("key {k:?} appears twice"),
                "keep one of them".into(),
            );
            continue;
        }
        out.push((k, v));
    }
    out
}

fn did_you_mean<'a>(k: &str, known: &[&'a str]) -> Option<&'a str> {
    let k = k.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .copied()
        .map(|c| (edit_distance(&k, c), c))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
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

fn describe(n: &Node) -> String {
    match n {
        Node::Str(s) => format!("{s:?}"),
        Node::Num(s) => format!("the number {s}"),
        Node::Bool(b) => format!("the boolean {b}"),
        other => other.kind().to_string(),
    }
}

fn as_str<'n>(
    i: usize,
    field: &str,
    v: &'n Node,
    fix: &str,
    errs: &mut Errs<'_>,
) -> Option<&'n str> {
    match v {
        Node::Str(s) => Some(s),
        other => {
            errs.route(
                i,
                field,
                format!("must be a string, found {}", describe(other)),
                fix,
            );
            None
        }
    }
}

fn as_str_list(i: usize, field: &str, v: &Node, errs: &mut Errs<'_>) -> Option<Vec<String>> {
    let Node::Seq(items) = v else {
        let fix = match v {
            Node::Null => "give a list such as [\"/a\"], or remove the key".to_string(),
            Node::Str(s) => format!("write a list: [{s:?}]"),
            _ => "write a list of strings".to_string(),
        };
        errs.route(
            i,
            field,
            format!("must be a list of strings, found {}", describe(v)),
            fix,
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (k, item) in items.iter().enumerate() {
        match item {
            Node::Str(s) => out.push(s.clone()),
            other => {
                ok = false;
                errs.route(
                    i,
                    &format!("{field}[{k}]"),
                    format!("must be a string, found {}", describe(other)),
                    "quote the entry",
                );
            }
        }
    }
    ok.then_some(out)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Loads `routes[i]`; on errors (reported in `errs`) returns its host when
/// that alone is valid, so duplicates are still found.
fn load_route(i: usize, item: &Node, errs: &mut Errs<'_>) -> Result<Route, Option<HostPattern>> {
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
    let fields = check_keys(entries, ROUTE_KEYS, |k, m, f| {
        unknown.push((k.to_string(), m, f))
    });
    for (k, m, f) in unknown {
        let field = if k.is_empty() { "(key)".to_string() } else { k };
        errs.route(i, &field, m, f);
    }
    let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);

    let host = match get("host") {
        None => {
            errs.list.push(ConfigError::new(
                errs.source,
                Some(i),
                None,
                "the route has no `host`",
                "add `host: <name>` to it",
            ));
            None
        }
        Some(v) => as_str(
            i,
            "host",
            v,
            "write the host as a string, e.g. \"api.example.com\"",
            errs,
        )
        .and_then(|h| match HostPattern::parse(h) {
            Ok(p) => Some(p),
            Err((m, f)) => {
                errs.route(i, "host", m, f);
                None
            }
        }),
    };

    let mut lists = [PatternList::default(), PatternList::default()];
    for (slot, field) in ["path_allowlist", "path_denylist"].into_iter().enumerate() {
        if let Some(v) = get(field)
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

    let methods = get("methods")
        .and_then(|v| as_str_list(i, "methods", v, errs))
        .and_then(|list| {
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
        });

    let header_name = |field: &str, raw: &str, errs: &mut Errs<'_>| -> Option<HeaderName> {
        let lower = raw.to_ascii_lowercase();
        match HeaderName::from_bytes(lower.as_bytes()) {
            Ok(_) if RESERVED_HEADERS.contains(&lower.as_str()) => {
                errs.route(i, field, format!("header {raw:?} carries framing or hop-by-hop meaning and cannot be used here"), "name another header");
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
    };

    let strip: Vec<HeaderName> =
        match get("strip_headers").and_then(|v| as_str_list(i, "strip_headers", v, errs)) {
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(k, h)| header_name(&format!("strip_headers[{k}]"), h, errs))
                .collect(),
            None => Vec::new(),
        };

    let scheme = get("auth_scheme")
        .and_then(|v| {
            as_str(
                i,
                "auth_scheme",
                v,
                "write e.g. `auth_scheme: Bearer`",
                errs,
            )
        })
        .and_then(|s| {
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
        });
    let has_scheme = get("auth_scheme").is_some();
    let header = get("auth_header")
        .and_then(|v| {
            as_str(
                i,
                "auth_header",
                v,
                "write e.g. `auth_header: x-api-key`",
                errs,
            )
        })
        .map(|h| header_name("auth_header", h, errs));
    let has_header = header.is_some();
    let env = get("token_env")
        .and_then(|v| {
            as_str(
                i,
                "token_env",
                v,
                "write the variable name, e.g. `token_env: GITHUB_TOKEN`",
                errs,
            )
        })
        .and_then(|e| {
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
        });
    let file = get("token_file")
        .and_then(|v| {
            as_str(
                i,
                "token_file",
                v,
                "write a path, e.g. `token_file: /run/secrets/token`",
                errs,
            )
        })
        .and_then(|f| {
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
        });
    let has_env = get("token_env").is_some();
    let has_file = get("token_file").is_some();

    let mut credential = None;
    if has_env && has_file {
        errs.route(
            i,
            "token_file",
            "a route has either `token_env` or `token_file`, not both",
            "remove one of them",
        );
    } else if has_env || has_file {
        let header = match &header {
            Some(Some(h)) => Some(h.clone()),
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
            (Some(e), _) => Some(TokenSource::Env(e)),
            (_, Some(f)) => Some(TokenSource::File(f)),
            _ => None,
        };
        if let (Some(header), Some(source)) = (header, source) {
            credential = Some(Credential {
                header,
                scheme: scheme.clone(),
                source,
            });
        }
    } else if has_scheme || has_header {
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

    let Some(host) = host else {
        return Err(None);
    };
    if errs.list.len() != before {
        return Err(Some(host));
    }
    let strip = strip_set(credential.as_ref(), strip);
    let route = Route {
        index: i,
        host_display: host.display(),
        host,
        methods,
        allow,
        deny,
        deny_folded,
        credential,
        strip,
    };
    Ok(route)
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
        for h in crate::CREDENTIAL_STRIP_HEADERS {
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
