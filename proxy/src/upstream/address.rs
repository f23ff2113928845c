//! Direct-mode destination checks (SPEC §4).
//!
//! Owns: which resolved addresses the proxy may connect to without an
//! upstream proxy. The rule: an address is dialled only when it is globally
//! reachable. "Globally reachable" is what the IANA special-purpose address
//! registries say, one table row per registry entry with its RFC (`V4`, `V6`,
//! the most specific row wins, as the registries intend), plus the few ranges
//! those registries leave to others (multicast, the deprecated IPv6
//! site-local and IPv4-compatible forms, and any IPv6 address outside the
//! global unicast space `2000::/3`). IPv6 forms that carry an IPv4 address to
//! a host (IPv4-mapped, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by
//! that IPv4 address. Must never: resolve a name (the caller resolves once and
//! connects only to the addresses this module accepted).
//!
//! Registries as of 2025-06:
//! <https://www.iana.org/assignments/iana-ipv4-special-registry/>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry/>.
//! Entries whose "Globally Reachable" is N/A (6to4 relay anycast, Teredo,
//! the old ORCHID block) are refused, except 6to4, judged by its IPv4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// What a row decides for the addresses it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Globally reachable: dialled.
    Global,
    /// Not globally reachable: refused unless a route names the IP or
    /// `--allow-range` covers it.
    Refuse,
    /// An IPv6 form carrying an IPv4 address: judged by that address.
    ViaIpv4(Embed),
}

/// Where an IPv6 form carries its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embed {
    /// `::ffff:a.b.c.d` and `64:ff9b::a.b.c.d`: the last 32 bits.
    Low32,
    /// 6to4 `2002:AABB:CCDD::/48` carries `AA.BB.CC.DD` (RFC 3056, 2).
    SixToFour,
}

impl Embed {
    pub fn ipv4(self, a: Ipv6Addr) -> Ipv4Addr {
        let o = a.octets();
        match self {
            Embed::Low32 => Ipv4Addr::new(o[12], o[13], o[14], o[15]),
            Embed::SixToFour => Ipv4Addr::new(o[2], o[3], o[4], o[5]),
        }
    }
}

/// One row of a special-purpose address table.
#[derive(Debug, Clone, Copy)]
pub struct Row<N> {
    pub net: N,
    pub name: &'static str,
    pub rfc: &'static str,
    pub verdict: Verdict,
}

const fn v4(
    o: [u8; 4],
    len: u8,
    name: &'static str,
    rfc: &'static str,
    global: bool,
) -> Row<Ipv4Net> {
    Row {
        net: Ipv4Net::new_assert(Ipv4Addr::new(o[0], o[1], o[2], o[3]), len),
        name,
        rfc,
        verdict: if global {
            Verdict::Global
        } else {
            Verdict::Refuse
        },
    }
}

const fn v6(
    s: [u16; 8],
    len: u8,
    name: &'static str,
    rfc: &'static str,
    verdict: Verdict,
) -> Row<Ipv6Net> {
    Row {
        net: Ipv6Net::new_assert(
            Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
            len,
        ),
        name,
        rfc,
        verdict,
    }
}

const G: bool = true;
const R: bool = false;

/// The IANA IPv4 Special-Purpose Address Registry, one row per entry, then
/// multicast (SPEC §4 names it; its own registry is RFC 5771's).
#[rustfmt::skip]
pub const V4: &[Row<Ipv4Net>] = &[
    v4([0, 0, 0, 0], 8, "\"this network\"", "RFC 791", R),
    v4([0, 0, 0, 0], 32, "\"this host on this network\"", "RFC 1122", R),
    v4([10, 0, 0, 0], 8, "private-use", "RFC 1918", R),
    v4([100, 64, 0, 0], 10, "shared address space (CGNAT)", "RFC 6598", R),
    v4([127, 0, 0, 0], 8, "loopback", "RFC 1122", R),
    v4([169, 254, 0, 0], 16, "link-local", "RFC 3927", R),
    v4([172, 16, 0, 0], 12, "private-use", "RFC 1918", R),
    v4([192, 0, 0, 0], 24, "IETF protocol assignments", "RFC 6890", R),
    v4([192, 0, 0, 0], 29, "IPv4 service continuity prefix", "RFC 7335", R),
    v4([192, 0, 0, 8], 32, "IPv4 dummy address", "RFC 7600", R),
    v4([192, 0, 0, 9], 32, "Port Control Protocol anycast", "RFC 7723", G),
    v4([192, 0, 0, 10], 32, "TURN anycast", "RFC 8155", G),
    v4([192, 0, 0, 170], 32, "NAT64/DNS64 discovery", "RFC 8880", R),
    v4([192, 0, 0, 171], 32, "NAT64/DNS64 discovery", "RFC 8880", R),
    v4([192, 0, 2, 0], 24, "documentation (TEST-NET-1)", "RFC 5737", R),
    v4([192, 31, 196, 0], 24, "AS112-v4", "RFC 7535", G),
    v4([192, 52, 193, 0], 24, "AMT", "RFC 7450", G),
    v4([192, 88, 99, 0], 24, "deprecated 6to4 relay anycast", "RFC 7526", R),
    v4([192, 88, 99, 2], 32, "6a44 relay anycast", "RFC 6751", R),
    v4([192, 168, 0, 0], 16, "private-use", "RFC 1918", R),
    v4([192, 175, 48, 0], 24, "direct delegation AS112 service", "RFC 7534", G),
    v4([198, 18, 0, 0], 15, "benchmarking", "RFC 2544", R),
    v4([198, 51, 100, 0], 24, "documentation (TEST-NET-2)", "RFC 5737", R),
    v4([203, 0, 113, 0], 24, "documentation (TEST-NET-3)", "RFC 5737", R),
    v4([240, 0, 0, 0], 4, "reserved", "RFC 1112", R),
    v4([255, 255, 255, 255], 32, "limited broadcast", "RFC 919", R),
    // Beyond the special-purpose registry.
    v4([224, 0, 0, 0], 4, "multicast", "RFC 5771", R),
];

const VIA_LOW32: Verdict = Verdict::ViaIpv4(Embed::Low32);
const VIA_6TO4: Verdict = Verdict::ViaIpv4(Embed::SixToFour);
const GL: Verdict = Verdict::Global;
const RF: Verdict = Verdict::Refuse;

/// The IANA IPv6 Special-Purpose Address Registry, one row per entry, then
/// the ranges the IPv6 Address Space registry reserves that an origin is
/// never on. Any address outside these rows and outside `2000::/3` is refused
/// as well (`check_v6`).
#[rustfmt::skip]
pub const V6: &[Row<Ipv6Net>] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", "RFC 4291", RF),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", "RFC 4291", RF),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped", "RFC 4291", VIA_LOW32),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "NAT64 well-known prefix", "RFC 6052", VIA_LOW32),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use IPv4/IPv6 translation", "RFC 8215", RF),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", "RFC 6666", RF),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "dummy IPv6 prefix", "RFC 9780", RF),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF protocol assignments", "RFC 2928", RF),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo", "RFC 4380", RF),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128, "Port Control Protocol anycast", "RFC 7723", GL),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128, "TURN anycast", "RFC 8155", GL),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 3], 128, "DNS-SD SRP anycast", "RFC 9665", GL),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking", "RFC 5180", RF),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT", "RFC 7450", GL),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112-v6", "RFC 7535", GL),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "deprecated ORCHID", "RFC 4843", RF),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2", "RFC 7343", GL),
    v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28, "drone remote ID entity tags", "RFC 9374", GL),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation", "RFC 3849", RF),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4", "RFC 3056", VIA_6TO4),
    v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48, "direct delegation AS112 service", "RFC 7534", GL),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation", "RFC 9637", RF),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "SRv6 SIDs", "RFC 9602", RF),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local", "RFC 4193", RF),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local", "RFC 4291", RF),
    // Beyond the special-purpose registry (IANA IPv6 Address Space).
    v6([0, 0, 0, 0, 0, 0, 0, 0], 96, "IPv4-compatible (deprecated)", "RFC 4291", RF),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local (deprecated)", "RFC 3879", RF),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", "RFC 4291", RF),
];

/// The global unicast space (RFC 4291 2.4; IANA IPv6 Address Space).
const GLOBAL_UNICAST: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// The most specific row of `table` holding `ip`.
fn most_specific<N: Copy, A: Copy>(
    table: &'static [Row<N>],
    ip: A,
    contains: impl Fn(&N, A) -> bool,
    len: impl Fn(&N) -> u8,
) -> Option<&'static Row<N>> {
    table
        .iter()
        .filter(|r| contains(&r.net, ip))
        .max_by_key(|r| len(&r.net))
}

/// The row that decides an IPv4 address, if any (none: globally reachable).
pub fn v4_row(ip: Ipv4Addr) -> Option<&'static Row<Ipv4Net>> {
    most_specific(V4, ip, |n, a| n.contains(&a), |n| n.prefix_len())
}

/// The row that decides an IPv6 address, if any.
pub fn v6_row(ip: Ipv6Addr) -> Option<&'static Row<Ipv6Net>> {
    most_specific(V6, ip, |n, a| n.contains(&a), |n| n.prefix_len())
}

/// Why `ip` is not globally reachable (`None`: it is). The text names the
/// range, what it is and its RFC, and for embedded forms the IPv4 address.
pub fn refused_kind(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(a) => check_v4(a),
        IpAddr::V6(a) => check_v6(a),
    }
}

fn check_v4(ip: Ipv4Addr) -> Option<String> {
    let row = v4_row(ip)?;
    (row.verdict != Verdict::Global).then(|| format!("in {} ({}, {})", row.net, row.name, row.rfc))
}

fn check_v6(ip: Ipv6Addr) -> Option<String> {
    let Some(row) = v6_row(ip) else {
        return (!GLOBAL_UNICAST.contains(&ip))
            .then(|| "outside the global unicast space 2000::/3 (RFC 4291)".to_owned());
    };
    match row.verdict {
        Verdict::Global => None,
        Verdict::Refuse => Some(format!("in {} ({}, {})", row.net, row.name, row.rfc)),
        Verdict::ViaIpv4(embed) => {
            let inner = embed.ipv4(ip);
            check_v4(inner).map(|why| {
                format!(
                    "in {} ({}, {}) and carries {inner}, which is {why}",
                    row.net, row.name, row.rfc
                )
            })
        }
    }
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
        let Some(why) = refused_kind(ip) else {
            return Ok(());
        };
        if route_names_ip || self.allow_ranges.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        Err(format!(
            "{ip} is {why}, not globally reachable; name it in a route or allow it with --allow-range"
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

    fn last_v4(n: &Ipv4Net) -> Ipv4Addr {
        n.broadcast()
    }

    fn last_v6(n: &Ipv6Net) -> Ipv6Addr {
        n.broadcast()
    }

    /// The row an address falls in, found independently of `most_specific`:
    /// the longest prefix among the rows that hold it.
    fn brute_v4(ip: Ipv4Addr) -> Option<&'static Row<Ipv4Net>> {
        let mut best: Option<&'static Row<Ipv4Net>> = None;
        for r in V4 {
            let m = u32::MAX
                .checked_shl(32 - u32::from(r.net.prefix_len()))
                .unwrap_or(0);
            if u32::from(ip) & m == u32::from(r.net.network())
                && best.is_none_or(|b| b.net.prefix_len() < r.net.prefix_len())
            {
                best = Some(r);
            }
        }
        best
    }

    fn brute_v6(ip: Ipv6Addr) -> Option<&'static Row<Ipv6Net>> {
        let mut best: Option<&'static Row<Ipv6Net>> = None;
        for r in V6 {
            let m = u128::MAX
                .checked_shl(128 - u32::from(r.net.prefix_len()))
                .unwrap_or(0);
            if u128::from(ip) & m == u128::from(r.net.network())
                && best.is_none_or(|b| b.net.prefix_len() < r.net.prefix_len())
            {
                best = Some(r);
            }
        }
        best
    }

    /// Every IPv4 row: its first and last address are refused exactly when the
    /// row that holds them most specifically says "not globally reachable",
    /// and the refusal names that row's range and RFC.
    #[test]
    fn every_ipv4_registry_row_decides_its_first_and_last_address() {
        for row in V4 {
            for ip in [row.net.network(), last_v4(&row.net)] {
                let owner = brute_v4(ip).unwrap();
                let got = p(&[]).check(SocketAddr::new(ip.into(), 443), false);
                match owner.verdict {
                    Verdict::Global => assert!(got.is_ok(), "{ip} ({}): {got:?}", owner.name),
                    _ => {
                        let e = got.expect_err(&format!("{ip} ({}) must be refused", owner.name));
                        assert!(
                            e.contains(&owner.net.to_string()) && e.contains(owner.rfc),
                            "{ip}: {e}"
                        );
                    }
                }
            }
        }
    }

    /// Every IPv6 row likewise; a row judged through IPv4 must agree with the
    /// IPv4 table on the address it carries (`embedded_ipv4_forms_...` below
    /// walks refused and global IPv4 addresses inside each such row).
    #[test]
    fn every_ipv6_registry_row_decides_its_first_and_last_address() {
        for row in V6 {
            for ip in [row.net.network(), last_v6(&row.net)] {
                let owner = brute_v6(ip).unwrap();
                let got = p(&[]).check(SocketAddr::new(ip.into(), 443), false);
                match owner.verdict {
                    Verdict::Global => assert!(got.is_ok(), "{ip} ({}): {got:?}", owner.name),
                    Verdict::Refuse => {
                        let e = got.expect_err(&format!("{ip} ({}) must be refused", owner.name));
                        assert!(
                            e.contains(&owner.net.to_string()) && e.contains(owner.rfc),
                            "{ip}: {e}"
                        );
                    }
                    Verdict::ViaIpv4(e) => {
                        assert_eq!(got.is_ok(), check_v4(e.ipv4(ip)).is_none(), "{ip}: {got:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn embedded_ipv4_forms_are_judged_by_their_ipv4() {
        let refused = [
            ("::ffff:127.0.0.2", "127.0.0.0/8"),
            ("::ffff:169.254.169.254", "169.254.0.0/16"),
            ("::ffff:198.18.0.1", "198.18.0.0/15"),
            ("64:ff9b::7f00:2", "127.0.0.0/8"),
            ("64:ff9b::a9fe:a9fe", "169.254.0.0/16"),
            ("2002:7f00:2::1", "127.0.0.0/8"),
            ("2002:c0a8:101::", "192.168.0.0/16"),
            ("2002:a00:1::1", "10.0.0.0/8"),
        ];
        for (a, inner) in refused {
            let ip: IpAddr = a.parse().unwrap();
            let e = p(&[]).check(SocketAddr::new(ip, 443), false).unwrap_err();
            assert!(e.contains(inner), "{a}: {e}");
        }
        for a in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            let ip: IpAddr = a.parse().unwrap();
            assert!(p(&[]).check(SocketAddr::new(ip, 443), false).is_ok(), "{a}");
        }
    }

    /// The holes of issue 12 item 7 and the classic forms, by hand.
    #[test]
    fn named_holes_and_classics_are_refused_and_public_addresses_are_not() {
        for a in [
            "127.0.0.1:443",
            "10.1.2.3:443",
            "172.16.0.1:443",
            "192.168.1.1:443",
            "169.254.169.254:80",
            "100.64.0.1:443",
            "224.0.0.1:443",
            "0.0.0.0:443",
            "198.18.0.1:443",
            "192.0.2.1:443",
            "240.0.0.1:443",
            "255.255.255.255:443",
            "[::1]:443",
            "[::]:443",
            "[fd00::1]:443",
            "[fe80::1]:443",
            "[::ffff:127.0.0.1]:443",
            "[::ffff:0:0]:443",
            "[::ffff:0:7f00:1]:443",
            "[::127.0.0.1]:443",
            "[::8.8.8.8]:443",
            "[64:ff9b:1::1]:443",
            "[64:ff9b:1::7f00:1]:443",
            "[fec0::1]:443",
            "[2002:7f00:1::]:443",
            "[2002::]:443",
            "[2001::1]:443",
            "[2001:db8::1]:443",
            "[3fff::1]:443",
            "[100::1]:443",
            "[5f00::1]:443",
            "[ff02::1]:443",
            "[4000::1]:443",
        ] {
            assert!(p(&[]).check(a.parse().unwrap(), false).is_err(), "{a}");
        }
        for a in [
            "1.1.1.1:443",
            "8.8.8.8:443",
            "100.128.0.1:443",
            "192.0.0.9:443",
            "[2606:4700::1111]:443",
            "[2a00:1450:4001::1]:443",
        ] {
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
        assert!(
            p(&["64:ff9b:1::/48"])
                .check("[64:ff9b:1::1]:443".parse().unwrap(), false)
                .is_ok()
        );
    }
}
