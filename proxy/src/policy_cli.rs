//! `egress-proxy check` and `egress-proxy explain`: the policy engine on the
//! command line, to validate a routes file before starting the proxy and to
//! see which rule decides a request.
//!
//! Owns the small I/O around the pure `addon_rules` engine: reading the file,
//! checking that every `token_env` variable is set and every `token_file`
//! readable and non-empty. Must never print, log or return a secret value:
//! only variable names and file paths appear in its output.

use std::path::Path;
use std::process::ExitCode;

use addon_rules::{
    BodyHint, Decision, Policy, RequestFacts, TokenSource, Transport, parse_connect_target,
};
use http::{HeaderMap, HeaderValue, Method, Version};

/// Reads and validates a routes file; prints every error (stderr) or a
/// summary (stdout). Exit 0 when the file and its credentials are usable, 2 otherwise.
pub fn check(path: &Path) -> ExitCode {
    let name = path.display().to_string();
    let policy = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let problems = credential_problems(&policy, &name);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!(
            "egress-proxy: {name}: {} error(s); the proxy would not start",
            problems.len()
        );
        return ExitCode::from(2);
    }
    let routes = policy.routes();
    let wild = routes.iter().filter(|r| r.is_wildcard()).count();
    let creds = routes.iter().filter(|r| r.credential().is_some()).count();
    println!(
        "{name}: ok: {} route(s) ({wild} wildcard, {creds} with a credential), unmatched: {}",
        routes.len(),
        policy.unmatched().as_str()
    );
    for r in routes {
        let mut line = format!("  routes[{}] {}", r.index(), r.host());
        if let Some(m) = r.methods() {
            let m: Vec<&str> = m.iter().map(Method::as_str).collect();
            line.push_str(&format!("  methods {}", m.join(",")));
        }
        let (allow, deny) = (
            r.path_allowlist().entries().len(),
            r.path_denylist().entries().len(),
        );
        if allow > 0 {
            line.push_str(&format!("  allow {allow} pattern(s)"));
        } else {
            line.push_str("  every path");
        }
        if deny > 0 {
            line.push_str(&format!("  deny {deny} pattern(s)"));
        }
        if let Some(c) = r.credential() {
            line.push_str(&format!("  credential {} from {}", c.header, c.source));
        }
        println!("{line}");
    }
    ExitCode::SUCCESS
}

/// Prints how the routes file decides `METHOD URL`: an `https://` URL is
/// treated as a request inside a TLS tunnel to that host (CONNECT
/// host:port, SNI = host), an `http://` URL as a plain proxy request.
/// Exit 0 when a decision was printed (allowed or refused), 2 for a bad file,
/// method or URL.
pub fn explain(path: &Path, method: &str, url: &str) -> ExitCode {
    let policy = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        eprintln!("egress-proxy: {method:?} is not an HTTP method: write e.g. GET or POST");
        return ExitCode::from(2);
    };
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http") => {
            (s.to_ascii_lowercase(), r)
        }
        _ => {
            eprintln!("egress-proxy: URL {url:?} must start with https:// or http://");
            return ExitCode::from(2);
        }
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let origin_target = match &rest[end..] {
        "" => "/".to_string(),
        t if t.starts_with('/') => t.to_string(),
        t => format!("/{t}"),
    };
    let mut headers = HeaderMap::new();
    match HeaderValue::from_str(authority) {
        Ok(v) => {
            headers.insert(http::header::HOST, v);
        }
        Err(_) => {
            eprintln!("egress-proxy: URL {url:?} has an authority that cannot be a Host header");
            return ExitCode::from(2);
        }
    }
    println!("{method} {url}");
    let connect;
    let (transport, target) = if scheme == "https" {
        // What a client sends on the CONNECT line: the port is explicit.
        let connect_line = if has_port(authority) {
            authority.to_string()
        } else {
            format!("{authority}:443")
        };
        connect = match parse_connect_target(&connect_line) {
            Ok(c) => c,
            Err(r) => {
                println!("  CONNECT {connect_line}: refused");
                println!(
                    "decision: refuse {} {}: {}",
                    r.status.as_u16(),
                    r.reason,
                    r.message
                );
                return ExitCode::SUCCESS;
            }
        };
        // Clients send no SNI for an IP literal.
        let sni = connect.ip().is_none().then_some(connect.host.as_str());
        println!(
            "  CONNECT {} (TLS, SNI {})",
            connect.authority(),
            sni.unwrap_or("none")
        );
        (
            Transport::Tls {
                connect: &connect,
                sni,
            },
            origin_target.as_str(),
        )
    } else {
        println!("  plain proxy request (cleartext)");
        (Transport::PlainProxy, url)
    };
    let facts = RequestFacts {
        transport,
        method: &method,
        target,
        version: Version::HTTP_11,
        authority: None,
        headers: &headers,
        body: BodyHint::Empty,
    };
    let (decision, steps) = policy.explain(&facts);
    for s in steps.iter().filter(|s| !s.starts_with("=> ")) {
        println!("  {s}");
    }
    match decision {
        Decision::Allow(a) => {
            let route = a
                .route
                .map_or("none (unmatched: forward)".to_string(), |r| {
                    format!("routes[{}] {}", r.index(), r.host())
                });
            println!(
                "decision: allow, route {route}, forward to {} {}",
                a.authority(),
                a.path_and_query
            );
            if let Some(c) = a.credential {
                let scheme = c
                    .scheme
                    .as_deref()
                    .map(|s| format!("{s} "))
                    .unwrap_or_default();
                println!("  injects {}: {scheme}<secret from {}>", c.header, c.source);
            }
            if !a.strip_headers.is_empty() {
                let h: Vec<&str> = a.strip_headers.iter().map(|h| h.as_str()).collect();
                println!("  strips client headers: {}", h.join(", "));
            }
        }
        Decision::Refuse(r) => println!(
            "decision: refuse {} {}: {}",
            r.status.as_u16(),
            r.reason,
            r.message
        ),
    }
    ExitCode::SUCCESS
}

fn has_port(authority: &str) -> bool {
    match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    }
}

/// Reads and parses the file; prints every error and returns exit code 2 on failure.
fn load(path: &Path) -> Result<Policy, ExitCode> {
    let name = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("egress-proxy: cannot read routes file {name}: {e}");
            return Err(ExitCode::from(2));
        }
    };
    Policy::from_text(&text, &name).map_err(|e| {
        eprintln!("{e}");
        eprintln!(
            "egress-proxy: {name}: {} error(s); the proxy would not start",
            e.errors.len()
        );
        ExitCode::from(2)
    })
}

/// Every credential source that the proxy could not read at start, named
/// (never its value), in the same `FILE: routes[i].field: what: fix` form.
fn credential_problems(policy: &Policy, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for r in policy.routes() {
        let Some(c) = r.credential() else { continue };
        match &c.source {
            TokenSource::Env(var) => match std::env::var_os(var) {
                None => out.push(format!(
                    "{name}: routes[{}].token_env: variable {var} is not set: export it in the environment of egress-proxy",
                    r.index()
                )),
                Some(v) if v.to_string_lossy().trim().is_empty() => out.push(format!(
                    "{name}: routes[{}].token_env: variable {var} is empty: set it to the secret for {}",
                    r.index(),
                    r.host()
                )),
                Some(_) => {}
            },
            TokenSource::File(f) => match std::fs::read(f) {
                Err(e) => out.push(format!(
                    "{name}: routes[{}].token_file: cannot read {}: {}: create it or fix the path",
                    r.index(),
                    f.display(),
                    e.kind()
                )),
                Ok(bytes) if String::from_utf8_lossy(&bytes).trim().is_empty() => out.push(format!(
                    "{name}: routes[{}].token_file: {} is empty: write the secret for {} into it",
                    r.index(),
                    f.display(),
                    r.host()
                )),
                Ok(_) => {}
            },
        }
    }
    out
}
