//! Target syntax (SPEC §3.1): host names, IP literals, ports and authorities as
//! they arrive on the CONNECT line, in `Host`, in `:authority` and in
//! absolute-form URIs. Owns the one definition of an acceptable host.
//! Must never resolve a name or accept a host form that resolvers read in
//! surprising ways (`2130706433`, `0x7f.1`, `127.1`, zones, userinfo).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::reason::{Reason, Refusal};

/// A CONNECT target, normalized: `host` is lowercase ASCII without a trailing
/// dot; an IPv6 literal is stored **without** brackets, in its canonical
/// compressed form (`::1`); use [`ConnectTarget::authority`] to get
/// `host:port` with brackets when needed. `port` is never 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectTarget {
    pub host: String,
    pub port: u16,
}

impl ConnectTarget {
    /// `host:port`, with brackets around an IPv6 literal (for a CONNECT line or a `Host`).
    pub fn authority(&self) -> String {
        authority_string(&self.host, self.port)
    }

    /// The host as an IP address, if it is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// `host:port`, bracketing an IPv6 literal.
pub(crate) fn authority_string(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses the target of a `CONNECT` line (authority-form, `host:port`, port
/// required and not 0), applying the §3.1 host rules.
///
/// ```
/// let t = addon_rules::parse_connect_target("API.GitHub.com.:443").unwrap();
/// assert_eq!((t.host.as_str(), t.port), ("api.github.com", 443));
/// assert!(addon_rules::parse_connect_target("127.1:443").is_err());
/// ```
pub fn parse_connect_target(authority: &str) -> Result<ConnectTarget, Refusal> {
    let a = parse_authority(authority).map_err(|m| bad(format!("CONNECT target: {m}")))?;
    match a.port {
        Some(port) => Ok(ConnectTarget {
            host: a.host.into_owned(),
            port,
        }),
        None => Err(bad(
            "CONNECT target has no port: write host:port".to_string()
        )),
    }
}

fn bad(message: String) -> Refusal {
    Refusal::new(Reason::BadRequest, message)
}

/// A parsed authority (`host[:port]`), host normalized as in [`ConnectTarget`]
/// (borrowed from the text when that was normal already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authority<'a> {
    pub host: Cow<'a, str>,
    pub port: Option<u16>,
}

/// Parses `host[:port]`: no userinfo, host per [`normalize_host`], port
/// 1..=65535 in plain decimal when present. The error is a short phrase.
pub(crate) fn parse_authority(s: &str) -> Result<Authority<'_>, String> {
    if s.is_empty() {
        return Err("empty authority".into());
    }
    // One pass for `@` and the last `:` (the port of a name or IPv4).
    let mut last_colon = None;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        match b {
            b'@' => return Err("userinfo (user@) is not allowed in the authority".into()),
            b':' => last_colon = Some(i),
            _ => {}
        }
    }
    let (host_part, port_part) = if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']').ok_or("IPv6 literal without closing ']'")?;
        let after = &rest[close + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after IPv6 literal")?),
        };
        (&s[..close + 2], port)
    } else {
        match last_colon {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        }
    };
    let host = normalize_host(host_part)?;
    let port = match port_part {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok(Authority { host, port })
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {p:?} is not a number 1-65535"));
    }
    match p.parse::<u16>() {
        Ok(0) => Err("port 0 is not allowed".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("port {p:?} is not a number 1-65535")),
    }
}

/// Normalizes a host as received on the wire (§3.1): a dotted-quad IPv4
/// (four decimal octets, no leading zeros), a bracketed IPv6 literal without
/// a zone, or a name of ASCII letters, digits and hyphens whose last label is
/// not all digits. Lowercases it and drops one trailing dot; IPv6 loses its
/// brackets and is written in canonical form. Borrowed when `h` needs none
/// of that but the dot, as a name or an IPv4 address usually does.
pub(crate) fn normalize_host(h: &str) -> Result<Cow<'_, str>, String> {
    if let Some(inner) = h.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or("IPv6 literal without closing ']'")?;
        if inner.contains('%') {
            return Err("IPv6 zone identifiers are not allowed".into());
        }
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Cow::Owned(ip.to_string()))
            .map_err(|_| format!("{inner:?} is not an IPv6 address"));
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    if is_normal_name(name) {
        return Ok(Cow::Borrowed(name));
    }
    if name.is_empty() {
        return Err("empty host".into());
    }
    if name.len() > 253 {
        return Err("host name longer than 253 characters".into());
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // The strict form is the canonical one: no leading zeros, so the
        // address written back is `name` itself.
        return parse_dotted_quad(name)
            .map(|_| Cow::Borrowed(name))
            .ok_or_else(|| {
                format!("{h:?} is not a dotted-quad IPv4 address (a.b.c.d, no leading zeros)")
            });
    }
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("host {h:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("host {h:?} has a label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "host {h:?} holds a character other than letters, digits, '-' and '.'"
            ));
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "host {h:?} ends in an all-digit label: not a name, not a dotted-quad IPv4"
        ));
    }
    Ok(Cow::Owned(name.to_ascii_lowercase()))
}

/// True when `name` (trailing dot already dropped) passes every name rule of
/// [`normalize_host`] and is lowercase: 1-253 characters, labels of 1-63
/// lowercase letters, digits and `-`, the last not all digits (so it is not an
/// IPv4 address either). One pass instead of one per rule: this runs for
/// `Host`, `:authority` and the SNI of every request.
fn is_normal_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 253 {
        return false;
    }
    // A branch-free fold (vector code) for the characters, then the labels.
    let odd = b.iter().fold(false, |odd, &c| {
        odd | !(c.is_ascii_lowercase() | c.is_ascii_digit() | (c == b'-') | (c == b'.'))
    });
    if odd {
        return false;
    }
    let mut last: &[u8] = &[];
    for label in b.split(|&c| c == b'.') {
        if label.is_empty() || label.len() > 63 {
            return false;
        }
        last = label;
    }
    !last.iter().all(u8::is_ascii_digit)
}

/// Strict dotted-quad: exactly four decimal parts, 0-255, no leading zeros
/// (some resolvers read `010` as octal).
fn parse_dotted_quad(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut n = 0;
    for part in s.split('.') {
        if n == 4 || part.is_empty() || part.len() > 3 || (part.len() > 1 && part.starts_with('0'))
        {
            return None;
        }
        octets[n] = part.parse().ok()?;
        n += 1;
    }
    (n == 4).then(|| Ipv4Addr::from(octets))
}

/// The parts of an absolute-form request target `scheme://authority[path][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AbsoluteTarget<'a> {
    /// Lowercased.
    pub scheme: String,
    pub authority: Authority<'a>,
    /// Raw path, `/` when the URI had none.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// Splits an absolute-form target. Fragments are refused by the caller before.
pub(crate) fn parse_absolute(target: &str) -> Result<AbsoluteTarget<'_>, String> {
    let (scheme, rest) = target.split_once("://").ok_or(
        "request target is neither origin-form (/path) nor absolute-form (http://host/path)",
    )?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err("request target has a malformed scheme".into());
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = parse_authority(&rest[..end])?;
    let tail = &rest[end..];
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok(AbsoluteTarget {
        scheme: scheme.to_ascii_lowercase(),
        authority,
        path,
        query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(normalize_host("Example.COM.").unwrap(), "example.com");
        assert_eq!(
            normalize_host("[::FFFF:1.2.3.4]").unwrap(),
            "::ffff:1.2.3.4"
        );
        for h in [
            "2130706433",
            "0x7f.1",
            "127.1",
            "1.2.3.04",
            "a..b",
            "[fe80::1%eth0]",
            "a_b.c",
            "",
            ".",
            "1.2.3.4.5",
        ] {
            assert!(normalize_host(h).is_err(), "{h}");
        }
    }

    #[test]
    fn authorities() {
        assert_eq!(
            parse_authority("[::1]:8080").unwrap(),
            Authority {
                host: "::1".into(),
                port: Some(8080)
            }
        );
        assert!(parse_authority("a.com:0").is_err());
        assert!(parse_authority("a.com:").is_err());
        assert!(parse_authority("u@a.com").is_err());
        assert!(parse_authority("::1").is_err());
    }

    /// `normalize_host` before its borrowed fast path: the oracle.
    fn reference_normalize_host(h: &str) -> Result<String, String> {
        if let Some(inner) = h.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or("IPv6 literal without closing ']'")?;
            if inner.contains('%') {
                return Err("IPv6 zone identifiers are not allowed".into());
            }
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| ip.to_string())
                .map_err(|_| format!("{inner:?} is not an IPv6 address"));
        }
        let name = h.strip_suffix('.').unwrap_or(h);
        if name.is_empty() {
            return Err("empty host".into());
        }
        if name.len() > 253 {
            return Err("host name longer than 253 characters".into());
        }
        if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return parse_dotted_quad(name)
                .map(|ip| ip.to_string())
                .ok_or_else(|| {
                    format!("{h:?} is not a dotted-quad IPv4 address (a.b.c.d, no leading zeros)")
                });
        }
        let mut last = "";
        for label in name.split('.') {
            if label.is_empty() {
                return Err(format!("host {h:?} has an empty label"));
            }
            if label.len() > 63 {
                return Err(format!("host {h:?} has a label longer than 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(format!(
                    "host {h:?} holds a character other than letters, digits, '-' and '.'"
                ));
            }
            last = label;
        }
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "host {h:?} ends in an all-digit label: not a name, not a dotted-quad IPv4"
            ));
        }
        Ok(name.to_ascii_lowercase())
    }

    fn host_piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a"),
            Just("Z"),
            Just("x-y"),
            Just("-"),
            Just("0"),
            Just("1"),
            Just("01"),
            Just("255"),
            Just("256"),
            Just("."),
            Just(".."),
            Just("["),
            Just("]"),
            Just("::1"),
            Just(":"),
            Just("%"),
            Just("_"),
            Just("é"),
            Just(" "),
            Just("1.2.3.4"),
            Just("xn--e1a"),
            Just("0x7f"),
        ]
        .prop_map(str::to_string)
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::collection::vec(host_piece(), 0..8).prop_map(|p| p.concat()),
            1 => "[a-zA-Z0-9.-]{0,12}",
            1 => "[0-9.]{0,16}",
            1 => "\\PC{0,12}",
            // Length limits: labels of 62-64 characters, names near 253.
            1 => (62usize..=64, 1usize..=5, any::<bool>()).prop_map(|(l, n, dot)| {
                let name = vec!["a".repeat(l); n].join(".");
                if dot { name + "." } else { name }
            }),
        ]
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The borrowed fast path gives exactly what the full rules give.
        #[test]
        fn normalize_host_equals_reference(h in host()) {
            prop_assert_eq!(
                normalize_host(&h).map(Cow::into_owned),
                reference_normalize_host(&h)
            );
        }
    }

    #[test]
    fn normal_hosts_are_borrowed() {
        for h in [
            "example.com",
            "example.com.",
            "a-1.b2",
            "1.2.3.4",
            "0.0.0.0",
            "x",
        ] {
            assert!(matches!(normalize_host(h), Ok(Cow::Borrowed(_))), "{h}");
        }
        for h in ["Example.com", "[::1]"] {
            assert!(matches!(normalize_host(h), Ok(Cow::Owned(_))), "{h}");
        }
    }
}
