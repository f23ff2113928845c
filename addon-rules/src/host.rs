//! Route hosts (SPEC §2 `host`): parsing a route's host entry, the wildcard
//! and public-suffix rules, and the lookup table from a request host to its
//! route (exact beats wildcard, longer wildcard beats shorter).
//! Must never let a wildcard cover a public suffix, match an apex with a
//! wildcard, or match an IP literal (IPv4-mapped included) against a name.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::target::normalize_host;

/// A route's host, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// A name, lowercase, no trailing dot.
    Exact(String),
    /// `*.suffix`: any name ending in `.suffix` (not `suffix` itself). Holds the suffix.
    Wildcard(String),
    /// An IP literal; matches only a request naming exactly this address.
    Ip(IpAddr),
}

impl HostPattern {
    /// Parses a routes-file `host` entry; the error is `(message, fix)`.
    pub(crate) fn parse(raw: &str) -> Result<HostPattern, (String, String)> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err((
                "host is empty".into(),
                "write a host name such as \"api.github.com\"".into(),
            ));
        }
        if trimmed != raw {
            return Err((
                format!("host {raw:?} has surrounding whitespace"),
                format!("write {trimmed:?}"),
            ));
        }
        if let Some((scheme, rest)) = raw.split_once("://") {
            let h = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            return Err((
                format!("host {raw:?} holds a URL scheme {scheme:?}"),
                format!("write the host alone: {h:?}"),
            ));
        }
        if raw.contains(['/', '?', '#']) {
            let h = raw.split(['/', '?', '#']).next().unwrap_or(raw);
            return Err((
                format!("host {raw:?} holds a path"),
                format!("write the host alone ({h:?}) and put the path in path_allowlist"),
            ));
        }
        if !raw.is_ascii() {
            return Err(match idna::domain_to_ascii(raw) {
                Ok(a) if !a.is_empty() => (
                    format!("host {raw:?} is not ASCII"),
                    format!("write it as {a:?}"),
                ),
                _ => (
                    format!("host {raw:?} is not ASCII and not a valid international name"),
                    "write the host in its ASCII (punycode) form".into(),
                ),
            });
        }
        // IP literals: bare or bracketed IPv6, dotted-quad IPv4.
        let unbracketed = raw
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(raw);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(HostPattern::Ip(ip));
        }
        if raw.starts_with('[') || raw.matches(':').count() > 1 {
            return Err((
                format!("host {raw:?} is not a valid IPv6 address"),
                "write an IPv6 literal such as \"::1\" (no zone, no port)".into(),
            ));
        }
        if let Some((h, port)) = raw.rsplit_once(':')
            && port.bytes().all(|b| b.is_ascii_digit())
        {
            {
                return Err((
                    format!("host {raw:?} has a port"),
                    format!("write {h:?}: a route covers every port of its host"),
                ));
            }
        }
        if let Some(suffix) = raw.strip_prefix("*.") {
            let suffix = suffix.strip_suffix('.').unwrap_or(suffix);
            if suffix.contains('*') {
                return Err(wild_err(raw));
            }
            let norm = normalize_host(suffix).map_err(|m| {
                (
                    format!("host {raw:?} is not valid: {m}"),
                    "write a wildcard as \"*.\" followed by a host name".into(),
                )
            })?;
            if norm.parse::<IpAddr>().is_ok() {
                return Err((
                    format!("host {raw:?}: a wildcard cannot cover an IP address"),
                    "write the IP address alone".into(),
                ));
            }
            if norm.split('.').count() < 2 {
                return Err((
                    format!("host {raw:?}: a wildcard needs at least two labels after \"*.\""),
                    "name a domain you control, e.g. \"*.example.com\"".into(),
                ));
            }
            if is_public_suffix(&norm) {
                return Err((
                    format!(
                        "host {raw:?}: {norm:?} is a public suffix; the wildcard would cover domains of unrelated owners"
                    ),
                    format!("write one route per host you need, e.g. \"name.{norm}\""),
                ));
            }
            return Ok(HostPattern::Wildcard(norm.into_owned()));
        }
        if raw.contains('*') {
            return Err(wild_err(raw));
        }
        match normalize_host(raw) {
            Ok(h) => Ok(HostPattern::Exact(h.into_owned())),
            Err(m) => Err((format!("host {raw:?} is not valid: {m}"), "write a DNS name (letters, digits, '-', '.') or an IP literal, without port or path".into())),
        }
    }

    /// The host as it appears in logs and `explain`: `api.github.com`, `*.npmjs.org`, `::1`.
    pub fn display(&self) -> String {
        match self {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Wildcard(s) => format!("*.{s}"),
            HostPattern::Ip(ip) => ip.to_string(),
        }
    }
}

fn wild_err(raw: &str) -> (String, String) {
    (
        format!("host {raw:?}: '*' is only allowed as a leading \"*.\""),
        "write \"*.example.com\" to cover every subdomain of example.com".into(),
    )
}

/// True when `domain` is itself a public suffix (ICANN or private section of
/// the PSL, e.g. `co.uk`, `github.io`).
fn is_public_suffix(domain: &str) -> bool {
    match psl::suffix(domain.as_bytes()) {
        // psl's default rule `*` makes any unknown TLD a suffix; only an
        // exact equality says "this whole domain is a public suffix".
        Some(s) => s.as_bytes() == domain.as_bytes() && (s.is_known() || !domain.contains('.')),
        None => true,
    }
}

/// Maps a normalized request host to a route index.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostTable {
    exact: HashMap<String, usize, Hasher>,
    ip: HashMap<IpAddr, usize, Hasher>,
    wild: HashMap<String, usize, Hasher>,
}

/// foldhash instead of std's SipHash: hashing the host was half of a
/// lookup. A weaker hash only matters against keys an attacker chooses
/// (collisions built into the table); the keys here come from the routes
/// file, a request only looks one up, and the seed is random per process.
type Hasher = foldhash::fast::RandomState;

impl HostTable {
    /// Inserts; returns the index of an earlier route with the same pattern.
    pub(crate) fn insert(&mut self, p: &HostPattern, idx: usize) -> Option<usize> {
        let prev = match p {
            HostPattern::Exact(h) => self.exact.get(h).copied(),
            HostPattern::Wildcard(s) => self.wild.get(s).copied(),
            HostPattern::Ip(ip) => self.ip.get(ip).copied(),
        };
        if prev.is_some() {
            return prev;
        }
        match p {
            HostPattern::Exact(h) => self.exact.insert(h.clone(), idx),
            HostPattern::Wildcard(s) => self.wild.insert(s.clone(), idx),
            HostPattern::Ip(ip) => self.ip.insert(*ip, idx),
        };
        None
    }

    /// The route for a host normalized by [`normalize_host`] (IPv6 without brackets).
    pub(crate) fn lookup(&self, host: &str) -> Option<usize> {
        if may_be_ip(host)
            && let Ok(ip) = host.parse::<IpAddr>()
        {
            return self.ip.get(&ip).copied();
        }
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        if self.wild.is_empty() {
            return None;
        }
        // Proper suffixes, longest first: a.b.example.com -> b.example.com -> example.com -> com.
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(i) = self.wild.get(rest) {
                return Some(*i);
            }
        }
        None
    }
}

/// False when `host` cannot parse as an [`IpAddr`]: std's IPv4 syntax is
/// digits and dots only, and every IPv6 text holds a `:`. A name then skips
/// the address parser, which costs more than the hash lookup after it.
fn may_be_ip(host: &str) -> bool {
    host.bytes().all(|b| b.is_ascii_digit() || b == b'.') || host.as_bytes().contains(&b':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The prefilter never turns away what std parses as an address.
        #[test]
        fn may_be_ip_passes_every_address(
            s in prop_oneof!["[0-9a-fA-F.:%\\[\\]]{0,40}", "\\PC{0,20}"],
            ip in any::<IpAddr>(),
        ) {
            prop_assert!(may_be_ip(&s) || s.parse::<IpAddr>().is_err(), "{}", s);
            prop_assert!(may_be_ip(&ip.to_string()));
        }
    }

    #[test]
    fn parse() {
        assert_eq!(
            HostPattern::parse("API.GitHub.com.").unwrap(),
            HostPattern::Exact("api.github.com".into())
        );
        assert_eq!(
            HostPattern::parse("*.npmjs.org").unwrap(),
            HostPattern::Wildcard("npmjs.org".into())
        );
        assert!(matches!(
            HostPattern::parse("[::1]").unwrap(),
            HostPattern::Ip(_)
        ));
        for bad in [
            "*",
            "*.com",
            "*.co.uk",
            "*.github.io",
            "a.*.b",
            "*.*.example.com",
            "api.github.com:443",
            "https://x.com",
            "x.com/a",
            "Bücher.example",
            "127.1",
            "",
            " a.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        let (_, fix) = HostPattern::parse("Bücher.example").unwrap_err();
        assert!(fix.contains("xn--bcher-kva.example"), "{fix}");
    }
}
