//! Direct-mode destination checks (SPEC §4).
//!
//! Owns: which resolved addresses the proxy may connect to without an
//! upstream proxy. Must never: resolve a name (the caller resolves once and
//! connects only to the addresses this module accepted).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// Why an address is refused, for the refusal message.
pub fn refused_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return v4_kind(v4);
            }
            let s = v6.segments();
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("private (unique local)")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else {
                None
            }
        }
    }
}

fn v4_kind(v4: Ipv4Addr) -> Option<&'static str> {
    let o = v4.octets();
    if v4.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("CGNAT")
    } else if v4.is_multicast() {
        Some("multicast")
    } else if v4.is_broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

/// IPv4 addresses hidden in IPv6 forms that reach the IPv4 host: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`) and NAT64 (`64:ff9b::/96`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(tail);
    }
    None
}

/// The address check of direct mode. `route_names_ip`: the request's route
/// names this IP literally (then private addresses are allowed for it).
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    pub allow_ranges: Vec<IpNet>,
    pub listen: SocketAddr,
}

impl AddressPolicy {
    /// `Ok(())` when `addr` may be connected to, else the refusal message.
    pub fn check(&self, addr: SocketAddr, route_names_ip: bool) -> Result<(), String> {
        let ip = addr.ip();
        if self.is_own_listener(addr) {
            return Err(format!("{addr} is the proxy's own listen address"));
        }
        let Some(kind) = refused_kind(ip) else {
            return Ok(());
        };
        if route_names_ip || self.allow_ranges.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        Err(format!(
            "{ip} is a {kind} address; name it in a route or allow it with --allow-range"
        ))
    }

    fn is_own_listener(&self, addr: SocketAddr) -> bool {
        if addr.port() != self.listen.port() {
            return false;
        }
        let ip = canonical(addr.ip());
        let lip = canonical(self.listen.ip());
        ip == lip
            || (lip.is_unspecified() && refused_kind(ip).is_some())
            || (ip.is_loopback() && lip.is_loopback())
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ranges: &[&str]) -> AddressPolicy {
        AddressPolicy {
            allow_ranges: ranges.iter().map(|r| r.parse().unwrap()).collect(),
            listen: "127.0.0.1:9099".parse().unwrap(),
        }
    }

    #[test]
    fn private_forms_are_refused() {
        for a in [
            "127.0.0.1:443",
            "10.1.2.3:443",
            "172.16.0.1:443",
            "192.168.1.1:443",
            "169.254.169.254:80",
            "100.64.0.1:443",
            "224.0.0.1:443",
            "0.0.0.0:443",
            "[::1]:443",
            "[::]:443",
            "[fd00::1]:443",
            "[fe80::1]:443",
            "[::ffff:127.0.0.1]:443",
            "[::ffff:169.254.169.254]:80",
            "[64:ff9b::a9fe:a9fe]:80",
            "[ff02::1]:443",
        ] {
            assert!(p(&[]).check(a.parse().unwrap(), false).is_err(), "{a}");
        }
        for a in ["1.1.1.1:443", "[2606:4700::1111]:443", "100.128.0.1:443"] {
            assert!(p(&[]).check(a.parse().unwrap(), false).is_ok(), "{a}");
        }
    }

    #[test]
    fn allow_range_and_named_ip_open_but_never_own_listener() {
        let pol = p(&["127.0.0.0/8"]);
        assert!(pol.check("127.0.0.1:8443".parse().unwrap(), false).is_ok());
        assert!(pol.check("127.0.0.1:9099".parse().unwrap(), false).is_err());
        assert!(pol.check("127.0.0.2:9099".parse().unwrap(), true).is_err());
        assert!(p(&[]).check("10.0.0.5:443".parse().unwrap(), true).is_ok());
    }
}
