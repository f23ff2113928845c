//! The second consumer of `Plan` (after `docker`): renders a bottle as
//! Kubernetes objects (`bottle render --format k8s`, docs/kubernetes.md).
//!
//! Owns: the object names, the fixed Service addresses the agent reaches
//! without DNS, the NetworkPolicies (derived from the plan's networks: the
//! same reachability as the Docker bottle) and the Pod hardening.
//!
//! Must never: write a secret value (token values live in a Secret the user
//! creates; the YAML only names it), read a host file, or talk to a cluster.
//! Output is a pure function of (plan, options): same inputs, same bytes.

pub mod command;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, HTTPGetAction,
    HostAlias, KeyToPath, Namespace, PodDNSConfig, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::plan::{
    AGENT_DNS, AGENT_UID, ContainerPlan, GATE_UID, Health, PROXY_UID, Plan, RoleName, Source,
};

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

/// What `render` needs beyond the plan.
#[derive(Debug, Clone)]
pub struct Options {
    /// Render into this namespace instead of creating `bottle-<id>`.
    pub namespace: Option<String>,
    /// The cluster's Service range (`a.b.c.d/n`); fixed `clusterIP`s are picked in it.
    pub service_cidr: String,
    /// The Secret holding `EGRESS_PROXY_TOKEN_<n>`; default `bottle-<id>-tokens`.
    pub token_secret: Option<String>,
    /// Prefix every image with this registry (`registry.example:5000/team`).
    pub image_registry: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: None,
            service_cidr: DEFAULT_SERVICE_CIDR.into(),
            token_secret: None,
            image_registry: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--service-cidr {0}: expected an IPv4 range like 10.96.0.0/12 with a prefix of /8 to /24"
    )]
    Cidr(String),
    #[error("cannot serialize {0}: {1}")]
    Yaml(String, serde_yaml_ng::Error),
    #[error(
        "bottle {0}: `supervise: true` is not rendered for Kubernetes yet (its live routes and proposal state are host directories shared by egress-proxy and the sidecar, which separate Pods cannot share); fix: render with `supervise: false`"
    )]
    Supervise(String),
}

/// One rendered object.
#[derive(Debug, Clone)]
pub struct Object {
    /// `Namespace`, `ConfigMap`, ... (the `--out` file is `<kind lowercase>.yaml`).
    pub kind: &'static str,
    pub name: String,
    pub yaml: String,
}

/// The rendered bottle: its objects in apply order, plus what the user must do.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub namespace: String,
    pub token_secret: String,
    pub objects: Vec<Object>,
    /// Secrets the user creates (name → keys), tokens first.
    pub secrets: BTreeMap<String, Vec<String>>,
    /// Files the plan carries that this first version does not (host trees, ...).
    pub notes: Vec<String>,
}

impl Rendered {
    /// All objects as one multi-document YAML stream.
    pub fn yaml(&self) -> String {
        self.objects
            .iter()
            .map(|o| format!("---\n{}", o.yaml))
            .collect()
    }

    /// Objects grouped by file (`namespace.yaml`, `configmap.yaml`, ...).
    pub fn files(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for o in &self.objects {
            out.entry(format!("{}.yaml", o.kind.to_lowercase()))
                .or_default()
                .push_str(&format!("---\n{}", o.yaml));
        }
        out
    }

    /// The `kubectl create secret` line for the token slots (no values: the
    /// user's shell expands the variables the manifest names).
    pub fn token_secret_command(&self, p: &Plan) -> String {
        let mut s = format!(
            "kubectl -n {} create secret generic {}",
            self.namespace, self.token_secret
        );
        for t in &p.token_slots {
            s.push_str(&format!(" --from-literal={}=\"${}\"", t.slot, t.token_ref));
        }
        s
    }
}

/// A DNS-1123 label: lowercase alphanumerics and '-', at most 63.
pub fn dns_label(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(63);
    out.trim_matches('-').to_string()
}

fn parse_cidr(s: &str) -> Result<(u32, u8), Error> {
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
fn served_port(c: &ContainerPlan) -> Option<u16> {
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

struct Cx<'a> {
    p: &'a Plan,
    ns: String,
    id: String,
    token_secret: String,
    except: Vec<String>,
}

impl Cx<'_> {
    fn name(&self, what: &str) -> String {
        dns_label(&format!("bottle-{}-{}", self.id, what))
    }

    fn meta(&self, name: String, role: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.ns.clone()),
            labels: Some(self.labels(role)),
            ..Default::default()
        }
    }

    fn labels(&self, role: Option<&str>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([("bottle.id".to_string(), self.id.clone())]);
        if let Some(r) = role {
            l.insert("bottle.role".into(), r.into());
        }
        l
    }

    fn selector(&self, role: Option<&str>) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.labels(role)),
            ..Default::default()
        }
    }

    fn secret_for(&self, s: &Source) -> Option<(String, &'static str)> {
        let (what, key) = match s {
            Source::InnerCaCert => ("inner-ca-cert", "ca.crt"),
            Source::AgentTrustBundle => ("inner-ca-cert", "bundle.pem"),
            Source::InnerCaBundle => ("inner-ca", "bundle.pem"),
            Source::OuterCaCert => ("outer-ca-cert", "ca.crt"),
            Source::OuterCaBundle => ("outer-ca", "bundle.pem"),
            Source::OuterCaKeySec1 => ("outer-ca", "key-sec1.pem"),
            _ => return None,
        };
        Some((self.name(what), key))
    }
}

fn q(s: &str) -> Quantity {
    Quantity(s.to_string())
}

fn to_yaml<T: Serialize>(kind: &'static str, name: &str, v: &T) -> Result<Object, Error> {
    Ok(Object {
        kind,
        name: name.to_string(),
        yaml: serde_yaml_ng::to_string(v).map_err(|e| Error::Yaml(format!("{kind} {name}"), e))?,
    })
}

/// The uid a role runs as when the plan leaves it to the image.
fn uid_of(c: &ContainerPlan) -> i64 {
    c.security
        .user
        .as_deref()
        .and_then(|u| u.split(':').next())
        .and_then(|u| u.parse().ok())
        .filter(|u: &i64| *u != 0)
        .unwrap_or(match c.role {
            RoleName::Agent => AGENT_UID as i64,
            RoleName::GitGate => GATE_UID as i64,
            RoleName::EgressProxy => PROXY_UID as i64,
            // squid/pipelock images start as root in Docker; here they run
            // as nobody (docs/kubernetes.md: verified only structurally).
            _ => 65534,
        })
}

/// Whether the program runs with a read-only root filesystem (writes go to
/// an emptyDir at /tmp). squid writes its cache and logs, the agent its home,
/// git-gate its mirrors.
fn read_only_root(role: RoleName) -> bool {
    role == RoleName::EgressProxy
}

fn probe(h: &Health) -> Option<Probe> {
    let (http_get, tcp_socket) = match h {
        Health::Http { port, path, .. } => (
            Some(HTTPGetAction {
                path: Some(path.clone()),
                port: IntOrString::Int((*port).into()),
                ..Default::default()
            }),
            None,
        ),
        Health::Tcp { port, .. } => (
            None,
            Some(TCPSocketAction {
                port: IntOrString::Int((*port).into()),
                ..Default::default()
            }),
        ),
        Health::None => return None,
    };
    Some(Probe {
        http_get,
        tcp_socket,
        period_seconds: Some(10),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    })
}

/// Renders the plan. Pure: no host file, no cluster, no secret value.
pub fn render(p: &Plan, o: &Options) -> Result<Rendered, Error> {
    if p.supervise {
        return Err(Error::Supervise(p.bottle.clone()));
    }
    let id = dns_label(&p.id);
    let ns = o
        .namespace
        .clone()
        .unwrap_or_else(|| dns_label(&format!("bottle-{id}")));
    let (cidr_base, cidr_len) = parse_cidr(&o.service_cidr)?;
    let mut except: Vec<String> = PRIVATE_RANGES.iter().map(|s| s.to_string()).collect();
    let svc = format!("{}/{cidr_len}", Ipv4Addr::from(cidr_base));
    if !except.contains(&svc) && !svc.starts_with("10.") {
        except.push(svc);
    }
    let cx = Cx {
        p,
        token_secret: o
            .token_secret
            .clone()
            .unwrap_or_else(|| dns_label(&format!("bottle-{id}-tokens"))),
        ns,
        id,
        except,
    };
    let mut objects = Vec::new();
    let mut notes = Vec::new();
    let mut secrets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if !p.token_slots.is_empty() {
        secrets.insert(
            cx.token_secret.clone(),
            p.token_slots.iter().map(|t| t.slot.clone()).collect(),
        );
    }

    if o.namespace.is_none() {
        let n = Namespace {
            metadata: ObjectMeta {
                name: Some(cx.ns.clone()),
                labels: Some(cx.labels(None)),
                ..Default::default()
            },
            ..Default::default()
        };
        objects.push(to_yaml("Namespace", &cx.ns, &n)?);
    }

    // ConfigMap: every rendered file, keyed by a ConfigMap-safe name.
    let cm_name = cx.name("config");
    let key = |f: &str| f.replace('/', "_");
    let cm = ConfigMap {
        metadata: cx.meta(cm_name.clone(), None),
        data: Some(
            p.rendered
                .iter()
                .map(|(k, v)| (key(k), v.clone()))
                .collect(),
        ),
        ..Default::default()
    };
    objects.push(to_yaml("ConfigMap", &cm_name, &cm)?);

    // Services with fixed addresses, for every serving sidecar.
    let block = service_block(&cx.id, &o.service_cidr)?;
    let mut ips: BTreeMap<&str, String> = BTreeMap::new();
    let mut services = Vec::new();
    for (i, c) in p.containers.iter().enumerate() {
        let Some(port) = served_port(c) else { continue };
        let ip = Ipv4Addr::from(block + 1 + i as u32).to_string();
        let role = c.role.as_str();
        ips.insert(role, ip.clone());
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

    // Deployments.
    let edges = edges(p);
    let internet = internet_roles(p);
    for c in &p.containers {
        let role = c.role.as_str();
        let name = cx.name(role);
        let mut volumes = vec![Volume {
            name: "tmp".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        }];
        let mut mounts = vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        }];
        for (i, f) in c.files.iter().enumerate() {
            let vname = format!("file-{i}");
            let base = f.path.rsplit('/').next().unwrap_or("file").to_string();
            let mode = Some(f.mode as i32);
            let mut v = Volume {
                name: vname.clone(),
                ..Default::default()
            };
            let mut sub = Some(base.clone());
            match &f.source {
                Source::Rendered(r) => {
                    v.config_map = Some(ConfigMapVolumeSource {
                        name: cm_name.clone(),
                        items: Some(vec![KeyToPath {
                            key: key(r),
                            path: base.clone(),
                            mode,
                            ..Default::default()
                        }]),
                        ..Default::default()
                    })
                }
                Source::Directory => {
                    v.empty_dir = Some(Default::default());
                    sub = None;
                }
                Source::HostFiles(_) => {
                    // Host files (git keys, extra trust) are secrets here: the
                    // user creates them from the same files.
                    let secret = cx.name(&format!("{role}-files"));
                    let k = base.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "-");
                    secrets.entry(secret.clone()).or_default().push(k.clone());
                    v.secret = Some(SecretVolumeSource {
                        secret_name: Some(secret),
                        items: Some(vec![KeyToPath {
                            key: k,
                            path: base.clone(),
                            mode,
                            ..Default::default()
                        }]),
                        ..Default::default()
                    })
                }
                s => match cx.secret_for(s) {
                    Some((secret, k)) => {
                        secrets.entry(secret.clone()).or_default().push(k.into());
                        v.secret = Some(SecretVolumeSource {
                            secret_name: Some(secret),
                            items: Some(vec![KeyToPath {
                                key: k.into(),
                                path: base.clone(),
                                mode,
                                ..Default::default()
                            }]),
                            ..Default::default()
                        })
                    }
                    None => {
                        notes.push(format!(
                            "{role}: {} (from the host) is not carried: an empty directory is mounted",
                            f.path
                        ));
                        v.empty_dir = Some(Default::default());
                        sub = None;
                    }
                },
            }
            volumes.push(v);
            mounts.push(VolumeMount {
                name: vname,
                mount_path: f.path.clone(),
                sub_path: sub,
                read_only: Some(!matches!(f.source, Source::Directory | Source::HostTree(_))),
                ..Default::default()
            });
        }
        let mut env: Vec<EnvVar> = c
            .env
            .iter()
            .map(|(k, v)| EnvVar {
                name: k.clone(),
                value: Some(v.clone()),
                ..Default::default()
            })
            .collect();
        for k in c.secret_env.keys() {
            env.push(EnvVar {
                name: k.clone(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: cx.token_secret.clone(),
                        key: k.clone(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let agent = c.role == RoleName::Agent;
        let (req, lim) = if agent {
            (("250m", "512Mi"), ("2", "4Gi"))
        } else {
            (("50m", "64Mi"), ("500m", "256Mi"))
        };
        let uid = uid_of(c);
        let container = Container {
            name: role.into(),
            image: Some(match &o.image_registry {
                Some(r) => format!("{}/{}", r.trim_end_matches('/'), c.image),
                None => c.image.clone(),
            }),
            image_pull_policy: Some("IfNotPresent".into()),
            args: (!c.command.is_empty()).then(|| c.command.clone()),
            env: Some(env),
            volume_mounts: Some(mounts),
            readiness_probe: probe(&c.health),
            liveness_probe: probe(&c.health),
            stdin: agent.then_some(true),
            tty: agent.then_some(true),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".into(), q(req.0)),
                    ("memory".into(), q(req.1)),
                ])),
                limits: Some(BTreeMap::from([
                    ("cpu".into(), q(lim.0)),
                    ("memory".into(), q(lim.1)),
                ])),
                ..Default::default()
            }),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                privileged: Some(false),
                read_only_root_filesystem: Some(read_only_root(c.role)),
                run_as_non_root: Some(true),
                run_as_user: Some(uid),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: (!c.security.cap_add.is_empty()).then(|| c.security.cap_add.clone()),
                }),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // No DNS for the agent and egress-proxy: the names they use are
        // hostAliases to fixed Service addresses; the resolver is loopback,
        // where nothing answers (as in the Docker bottle).
        let no_dns = !internet.iter().any(|r| r == role);
        let aliases: Vec<HostAlias> = edges
            .iter()
            .filter(|(cl, _, _)| cl == role)
            .filter_map(|(_, s, _)| {
                ips.get(s.as_str()).map(|ip| HostAlias {
                    ip: ip.clone(),
                    hostnames: Some(vec![s.clone()]),
                })
            })
            .collect();
        let spec = PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            host_aliases: (!aliases.is_empty()).then_some(aliases),
            dns_policy: Some(if no_dns { "None" } else { "ClusterFirst" }.into()),
            dns_config: no_dns.then(|| PodDNSConfig {
                nameservers: Some(vec![AGENT_DNS.into()]),
                ..Default::default()
            }),
            runtime_class_name: (agent && p.runtime == "runsc").then(|| "gvisor".into()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(uid),
                run_as_group: Some(uid),
                fs_group: Some(uid),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = Deployment {
            metadata: cx.meta(name.clone(), Some(role)),
            spec: DeploymentSpec {
                replicas: Some(1),
                selector: cx.selector(Some(role)),
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    ..Default::default()
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(cx.labels(Some(role))),
                        ..Default::default()
                    }),
                    spec: Some(spec),
                },
                ..Default::default()
            },
            ..Default::default()
        };
        objects.push(to_yaml("Deployment", &name, &d)?);
    }
    objects.extend(services);
    objects.extend(policies(&cx, &edges, &internet)?);
    for v in secrets.values_mut() {
        v.sort();
        v.dedup();
    }
    Ok(Rendered {
        namespace: cx.ns,
        token_secret: cx.token_secret,
        objects,
        secrets,
        notes,
    })
}

fn port(p: u16, proto: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(p.into())),
        protocol: Some(proto.into()),
        ..Default::default()
    }
}

fn policies(
    cx: &Cx<'_>,
    edges: &[(String, String, u16)],
    internet: &[String],
) -> Result<Vec<Object>, Error> {
    let mut out = Vec::new();
    let deny_name = cx.name("default-deny");
    let deny = NetworkPolicy {
        metadata: cx.meta(deny_name.clone(), None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(cx.selector(None)),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ..Default::default()
        }),
    };
    out.push(to_yaml("NetworkPolicy", &deny_name, &deny)?);
    let peer = |role: &str| NetworkPolicyPeer {
        pod_selector: Some(cx.selector(Some(role))),
        ..Default::default()
    };
    for c in &cx.p.containers {
        let role = c.role.as_str();
        let egress: Vec<NetworkPolicyEgressRule> = edges
            .iter()
            .filter(|(cl, _, _)| cl == role)
            .map(|(_, s, p)| NetworkPolicyEgressRule {
                to: Some(vec![peer(s)]),
                ports: Some(vec![port(*p, "TCP")]),
            })
            .chain(
                internet
                    .iter()
                    .any(|r| r == role)
                    .then(|| {
                        [
                            NetworkPolicyEgressRule {
                                to: Some(vec![NetworkPolicyPeer {
                                    namespace_selector: Some(LabelSelector {
                                        match_labels: Some(BTreeMap::from([(
                                            "kubernetes.io/metadata.name".into(),
                                            "kube-system".into(),
                                        )])),
                                        ..Default::default()
                                    }),
                                    pod_selector: Some(LabelSelector {
                                        match_labels: Some(BTreeMap::from([(
                                            "k8s-app".into(),
                                            "kube-dns".into(),
                                        )])),
                                        ..Default::default()
                                    }),
                                    ..Default::default()
                                }]),
                                ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
                            },
                            NetworkPolicyEgressRule {
                                to: Some(vec![NetworkPolicyPeer {
                                    ip_block: Some(IPBlock {
                                        cidr: "0.0.0.0/0".into(),
                                        except: Some(cx.except.clone()),
                                    }),
                                    ..Default::default()
                                }]),
                                ports: None,
                            },
                        ]
                    })
                    .into_iter()
                    .flatten(),
            )
            .collect();
        let ingress: Vec<NetworkPolicyIngressRule> = edges
            .iter()
            .filter(|(_, s, _)| s == role)
            .map(|(cl, _, p)| NetworkPolicyIngressRule {
                from: Some(vec![peer(cl)]),
                ports: Some(vec![port(*p, "TCP")]),
            })
            .collect();
        if egress.is_empty() && ingress.is_empty() {
            continue;
        }
        let mut types = Vec::new();
        if !ingress.is_empty() {
            types.push("Ingress".to_string());
        }
        if !egress.is_empty() {
            types.push("Egress".to_string());
        }
        let name = cx.name(role);
        let np = NetworkPolicy {
            metadata: cx.meta(name.clone(), Some(role)),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(cx.selector(Some(role))),
                policy_types: Some(types),
                egress: (!egress.is_empty()).then_some(egress),
                ingress: (!ingress.is_empty()).then_some(ingress),
            }),
        };
        out.push(to_yaml("NetworkPolicy", &name, &np)?);
    }
    Ok(out)
}

/// The CA Secrets the render references (`--mint-cas`): typed `Secret`
/// objects holding freshly minted keys, for the user to apply separately.
/// `system_bundle` is the trust bundle the agent's `bundle.pem` starts with.
/// The only function here that writes key material; its output never goes
/// to stdout.
pub fn ca_secrets(
    p: &Plan,
    o: &Options,
    cas: &crate::pki::BottleCas,
    system_bundle: &str,
) -> Result<String, Error> {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    let id = dns_label(&p.id);
    let ns = o
        .namespace
        .clone()
        .unwrap_or_else(|| dns_label(&format!("bottle-{id}")));
    let trust = format!("{system_bundle}{}", cas.inner.cert_pem);
    let sets: [(&str, Vec<(&str, String)>); 4] = [
        ("inner-ca", vec![("bundle.pem", cas.inner.bundle_pem())]),
        (
            "inner-ca-cert",
            vec![
                ("ca.crt", cas.inner.cert_pem.clone()),
                ("bundle.pem", trust),
            ],
        ),
        (
            "outer-ca",
            vec![
                ("bundle.pem", cas.outer.bundle_pem()),
                ("key-sec1.pem", cas.outer.key_sec1_pem.clone()),
            ],
        ),
        (
            "outer-ca-cert",
            vec![("ca.crt", cas.outer.cert_pem.clone())],
        ),
    ];
    let mut out = String::new();
    for (what, keys) in sets {
        let name = dns_label(&format!("bottle-{id}-{what}"));
        let s = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(BTreeMap::from([("bottle.id".to_string(), id.clone())])),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                keys.into_iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
                    .collect(),
            ),
            ..Default::default()
        };
        out.push_str(&format!("---\n{}", to_yaml("Secret", &name, &s)?.yaml));
    }
    Ok(out)
}

/// `--include-secrets` (throwaway clusters only): the token Secret with the
/// values, slot name → value.
pub fn token_secret(
    p: &Plan,
    o: &Options,
    values: &BTreeMap<String, String>,
) -> Result<String, Error> {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    let id = dns_label(&p.id);
    let ns = o
        .namespace
        .clone()
        .unwrap_or_else(|| dns_label(&format!("bottle-{id}")));
    let name = o
        .token_secret
        .clone()
        .unwrap_or_else(|| dns_label(&format!("bottle-{id}-tokens")));
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns),
            labels: Some(BTreeMap::from([("bottle.id".to_string(), id)])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            values
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        ..Default::default()
    };
    Ok(format!("---\n{}", to_yaml("Secret", &name, &s)?.yaml))
}
