//! Addressing without DNS: who talks to whom (derived from the plan's Docker
//! networks), the Services with fixed `clusterIP`s for the serving sidecars,
//! and the ranges the internet-facing sidecars may not reach.
//!
//! Owns: the /28 of the Service range a bottle's addresses come from, and
//! the (client, server, port) edges every other module reads.
//!
//! Must never: pick an address from the Service range's first /28 (the API
//! server's Service and cluster DNS live there).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Cx, Error, Object, to_yaml};
use crate::plan::{ContainerPlan, Health, Plan, RoleName};

/// kubeadm's and kind's default Service range.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

/// Ranges the internet-facing sidecars may not reach (RFC 1918, CGNAT,
/// link-local incl. cloud metadata, loopback); the service range is added.
pub const PRIVATE_RANGES: &[&str] = &[
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
];

pub(super) fn parse_cidr(s: &str) -> Result<(u32, u8), Error> {
    let bad = || Error::Cidr(s.to_string());
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if !(8..=24).contains(&len) {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - len);
    Ok((u32::from(ip) & mask, len))
}

/// The `except` list of the internet rule: the private ranges plus the
/// Service range when it lies outside them.
pub(super) fn excepted(service_cidr: &str) -> Result<Vec<String>, Error> {
    let (cidr_base, cidr_len) = parse_cidr(service_cidr)?;
    let mut except: Vec<String> = PRIVATE_RANGES.iter().map(|s| s.to_string()).collect();
    let svc = format!("{}/{cidr_len}", Ipv4Addr::from(cidr_base));
    if !except.contains(&svc) && !svc.starts_with("10.") {
        except.push(svc);
    }
    Ok(except)
}

/// Fixed Service addresses: a /28 of the range chosen from the bottle id's
/// hash (never the range's first /28, where the API server's Service and
/// cluster DNS live), then one address per Service.
fn service_block(id: &str, cidr: &str) -> Result<u32, Error> {
    use sha2::Digest;
    let (base, len) = parse_cidr(cidr)?;
    let blocks = 1u32 << (28 - len);
    let h = sha2::Sha256::digest(id.as_bytes());
    let n = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % (blocks - 1) + 1;
    Ok(base + n * 16)
}

/// A container's served port (its health check's port), if it serves one.
pub(super) fn served_port(c: &ContainerPlan) -> Option<u16> {
    match &c.health {
        Health::Http { port, .. } | Health::Tcp { port, .. } => Some(*port),
        Health::None => None,
    }
}

/// Who may connect to whom, derived from the plan as the Docker bottle
/// allows it: the agent reaches every serving sidecar on the agent network;
/// egress-proxy reaches the serving sidecars on the relay network. Returns
/// (client role, server role, port), sorted.
pub fn edges(p: &Plan) -> Vec<(String, String, u16)> {
    let on = |c: &ContainerPlan, net: &str| {
        c.networks
            .iter()
            .any(|a| a.network == crate::plan::resource_name(&p.id, net))
    };
    let mut out = Vec::new();
    for (client, net) in [(RoleName::Agent, "agent"), (RoleName::EgressProxy, "relay")] {
        for s in &p.containers {
            if s.role == client || s.role == RoleName::Agent || !on(s, net) {
                continue;
            }
            if let Some(port) = served_port(s) {
                out.push((
                    client.as_str().to_string(),
                    s.role.as_str().to_string(),
                    port,
                ));
            }
        }
    }
    out.sort();
    out
}

/// Roles on a network that is not internal: they reach the internet (not
/// private ranges) and cluster DNS.
pub fn internet_roles(p: &Plan) -> Vec<String> {
    let open: Vec<&str> = p
        .networks
        .iter()
        .filter(|n| !n.internal)
        .map(|n| n.name.as_str())
        .collect();
    let mut out: Vec<String> = p
        .containers
        .iter()
        .filter(|c| {
            c.networks
                .iter()
                .any(|a| open.contains(&a.network.as_str()))
        })
        .map(|c| c.role.as_str().to_string())
        .collect();
    out.sort();
    out
}

/// Services with fixed addresses, one per serving sidecar. Returns the
/// objects and role → address (what `hostAliases` point at).
pub(super) fn services(
    cx: &Cx<'_>,
    service_cidr: &str,
) -> Result<(Vec<Object>, BTreeMap<String, String>), Error> {
    let block = service_block(&cx.id, service_cidr)?;
    let mut ips = BTreeMap::new();
    let mut services = Vec::new();
    for (i, c) in cx.p.containers.iter().enumerate() {
        let Some(port) = served_port(c) else { continue };
        let ip = Ipv4Addr::from(block + 1 + i as u32).to_string();
        let role = c.role.as_str();
        ips.insert(role.to_string(), ip.clone());
        let name = cx.name(role);
        let s = Service {
            metadata: cx.meta(name.clone(), Some(role)),
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip),
                selector: Some(cx.labels(Some(role))),
                ports: Some(vec![ServicePort {
                    name: Some("main".into()),
                    port: port.into(),
                    target_port: Some(IntOrString::Int(port.into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        services.push(to_yaml("Service", &name, &s)?);
    }
    Ok((services, ips))
}
