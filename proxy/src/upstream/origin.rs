//! An origin and its names: `host:port` as an h2 request's `:authority` and
//! the value of an HTTP/1 request's `Host`, each kept for the last origin a
//! worker thread asked for.
//!
//! Owns: how an origin is written (IPv6 in brackets, the `Host` port only
//! when it is not the scheme's default). Must never: hand out a name made
//! for another origin (the cache is keyed by the whole origin, scheme
//! included).

use bytes::Bytes;
use http::HeaderValue;
use http::uri::Authority;

/// Where a request goes: the CONNECT target or the plain request's authority.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub tls: bool,
    /// Lowercase, IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// `host:port` with brackets for IPv6.
    pub fn authority(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(self.host.len() + 8);
        let _ = if self.host.contains(':') {
            write!(s, "[{}]:{}", self.host, self.port)
        } else {
            write!(s, "{}:{}", self.host, self.port)
        };
        s
    }

    /// The value of a `Host` header: the port only when it is not the default.
    pub fn host_header(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            if self.host.contains(':') {
                format!("[{}]", self.host)
            } else {
                self.host.clone()
            }
        } else {
            self.authority()
        }
    }
}

/// The last origin's value of one kind on this worker thread.
type Last<T> = std::cell::RefCell<Option<(Origin, T)>>;

thread_local! {
    static LAST_AUTHORITY: Last<Authority> = const { std::cell::RefCell::new(None) };
    static LAST_HOST: Last<HeaderValue> = const { std::cell::RefCell::new(None) };
}

/// `make`'s value for `o`, made again only when `o` is not the last origin
/// this worker thread asked for: a connection's requests go to one origin,
/// and formatting and parsing its names for each request was 1.4% (h2's
/// `:authority`) and 2% (HTTP/1's `Host`) of an S1 request's instructions
/// (callgrind). A clone shares its bytes.
fn cached<T: Clone>(
    last: &'static std::thread::LocalKey<Last<T>>,
    o: &Origin,
    make: impl FnOnce() -> Option<T>,
) -> Option<T> {
    last.with_borrow_mut(|last| {
        if let Some((origin, v)) = last.as_ref()
            && origin == o
        {
            return Some(v.clone());
        }
        let v = make()?;
        *last = Some((o.clone(), v.clone()));
        Some(v)
    })
}

/// `o`'s `host:port` as an h2 request's `:authority`.
pub(super) fn authority_of(o: &Origin) -> Option<Authority> {
    // One allocation, handed to the `Authority` as it is.
    cached(&LAST_AUTHORITY, o, || {
        Authority::from_maybe_shared(Bytes::from(o.authority())).ok()
    })
}

/// `o`'s `Host` header value for an HTTP/1 request.
pub(super) fn host_header_of(o: &Origin) -> Option<HeaderValue> {
    cached(&LAST_HOST, o, || {
        HeaderValue::from_maybe_shared(Bytes::from(o.host_header())).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached `:authority` and `Host` are what the origin's own methods
    /// give, for the same origin asked twice in a row (the second from the
    /// cache) and for origins that differ in any one part, the scheme
    /// included (the `Host` port is left out only at the scheme's default).
    #[test]
    fn an_origins_names_are_the_same_from_the_cache() {
        // scheme, host, port, then the `:authority` and the `Host` wanted.
        let table = "
            https example.com 443  example.com:443    example.com
            https example.com 443  example.com:443    example.com
            http  example.com 443  example.com:443    example.com:443
            http  example.com 80   example.com:80     example.com
            https example.com 8443 example.com:8443   example.com:8443
            https 2001:db8::1 443  [2001:db8::1]:443  [2001:db8::1]
            https 2001:db8::1 443  [2001:db8::1]:443  [2001:db8::1]
            https 2001:db8::1 8443 [2001:db8::1]:8443 [2001:db8::1]:8443
            https example.org 443  example.org:443    example.org";
        for row in table.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = row.split_whitespace().collect();
            let origin = Origin {
                tls: f[0] == "https",
                host: f[1].into(),
                port: f[2].parse().unwrap(),
            };
            assert_eq!(authority_of(&origin).unwrap().as_str(), f[3], "{row}");
            assert_eq!(origin.authority(), f[3]);
            assert_eq!(host_header_of(&origin).unwrap(), f[4], "{row}");
            assert_eq!(origin.host_header(), f[4]);
        }
    }
}
