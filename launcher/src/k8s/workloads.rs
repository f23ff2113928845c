//! Workloads: one Deployment (1 replica, `Recreate`) per role, one Pod
//! each (a Pod is one network namespace: policy could not separate
//! containers in one Pod), with the hardening every Pod gets and the DNS
//! the role may have.
//!
//! Owns: the uid each role runs as, resources, probes, the security
//! contexts, `hostAliases` and `dnsPolicy`.
//!
//! Must never: render a Pod that may run as root, escalate privileges,
//! mount the service account token, or give the agent or egress-proxy a
//! resolver that forwards outside names.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, HTTPGetAction, HostAlias, PodDNSConfig,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecurityContext, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Cx, Error, Object, Options, outer, to_yaml, volumes};
use crate::plan::{AGENT_DNS, AGENT_UID, ContainerPlan, GATE_UID, Health, PROXY_UID, RoleName};

/// What a Deployment needs beyond its container's plan.
pub(super) struct Wiring<'a> {
    pub edges: &'a [(String, String, u16)],
    pub internet: &'a [String],
    /// Role → fixed Service address.
    pub ips: &'a BTreeMap<String, String>,
}

fn q(s: &str) -> Quantity {
    Quantity(s.to_string())
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
            // as nobody from the start (`outer`).
            _ => 65534,
        })
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

/// The Deployment of one role. Secrets it references are added to
/// `secrets`; what it cannot carry goes to `notes`.
pub(super) fn deployment(
    cx: &Cx<'_>,
    o: &Options,
    c: &ContainerPlan,
    w: &Wiring<'_>,
    secrets: &mut BTreeMap<String, Vec<String>>,
    notes: &mut Vec<String>,
) -> Result<Object, Error> {
    let p = cx.p;
    let (edges, internet, ips) = (w.edges, w.internet, w.ips);
    let role = c.role.as_str();
    let name = cx.name(role);
    let (mut volumes, mut mounts) = volumes::volumes(cx, c, secrets, notes)?;
    // Writable paths as emptyDirs; the root filesystem read-only where the
    // program allows it (egress-proxy, squid). The agent writes its home,
    // git-gate its mirrors, pipelock is unverified: theirs stays writable.
    let nr = outer::non_root(p, c);
    for (v, m) in &nr.dirs {
        volumes.push(v.clone());
        mounts.push(m.clone());
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
        image: Some(super::image_ref(o.image_registry.as_deref(), &c.image)),
        image_pull_policy: Some("IfNotPresent".into()),
        command: nr.command.clone(),
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
            read_only_root_filesystem: Some(nr.read_only_root),
            run_as_non_root: Some(true),
            run_as_user: Some(uid),
            // Every container runs as a non-root uid without ambient
            // capabilities, so an added capability would never be effective
            // (the plan's are for Docker's root start of squid, and pipelock's
            // NET_BIND_SERVICE; both listen on ports >= 1024): none is added.
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
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
    let init = outer::init_container(&container, &nr);
    let spec = PodSpec {
        init_containers: init.map(|i| vec![i]),
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
    to_yaml("Deployment", &name, &d)
}
