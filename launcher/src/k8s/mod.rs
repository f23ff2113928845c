//! The second consumer of `Plan` (after `docker`): renders a bottle as
//! Kubernetes objects (`bottle render --format k8s`, docs/kubernetes.md).
//!
//! Owns: the object names, the fixed Service addresses the agent reaches
//! without DNS, the NetworkPolicies (derived from the plan's networks: the
//! same reachability as the Docker bottle) and the Pod hardening.
//!
//! Must never: write a secret value (token values live in a Secret the user
//! creates; the YAML only names it), read a host file in `render` (the
//! agent's prompt file and skills arrive in `Options::host`, read by
//! `host::read`), or talk to a cluster. Output is a pure function of
//! (plan, options): same inputs, same bytes.
//!
//! The modules, in the order `render` uses them: `addressing` (edges,
//! fixed Service addresses, excepted ranges), `config` (the ConfigMaps),
//! `workloads` (Deployments and Pod hardening; files as `volumes`; the
//! outer proxy without root in `outer`), `policies` (NetworkPolicies),
//! `secrets` (Secret names; the only writers of key material, for
//! `--mint-cas` and `--include-secrets`), `supervise` (the supervise
//! state as ConfigMaps and an emptyDir). Around it: `host` (the one reader
//! of host files), `command` (`bottle render` and the plan of
//! `bottle images push`) and `operate` (`bottle supervise --k8s`, the only
//! caller of kubectl).

mod addressing;
pub mod command;
mod config;
pub mod host;
pub mod operate;
mod outer;
mod policies;
mod secrets;
mod supervise;
#[cfg(test)]
mod tests;
mod volumes;
mod workloads;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Serialize;

use crate::plan::Plan;

pub use addressing::{DEFAULT_SERVICE_CIDR, PRIVATE_RANGES, edges, internet_roles};
pub use secrets::{ca_secrets, token_secret};
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
    /// The agent's prompt file and skill trees, read by `host::read`.
    pub host: host::Host,
    /// The supervise decisions (`<id>.json` → JSON) for the decisions
    /// ConfigMap; empty at a first render (`operate` fills it).
    pub decisions: BTreeMap<String, String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: None,
            service_cidr: DEFAULT_SERVICE_CIDR.into(),
            token_secret: None,
            image_registry: None,
            host: host::Host::default(),
            decisions: BTreeMap::new(),
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
    #[error("{0}: the host content was not read for the render (k8s::host::read)")]
    HostNotRead(String),
    #[error(
        "ConfigMap {name}: {bytes} bytes of {what}, above the API server's 1 MiB limit for one ConfigMap; nothing was rendered or applied; fix: {fix}"
    )]
    TooLarge {
        name: String,
        what: String,
        bytes: usize,
        fix: &'static str,
    },
    #[error(
        "the plan mounts {0} at {1}, which has no Kubernetes counterpart (k8s::supervise maps supervise/routes, view, decisions and proposals); this is a bug in bottle"
    )]
    Mount(String, String),
    #[error("the plan's routes.json does not load: {0}; this is a bug in bottle")]
    Routes(String),
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

/// The name of bottle `id`'s object `what`: `bottle-<id>-<what>`, a DNS label.
pub(crate) fn object_name(id: &str, what: &str) -> String {
    dns_label(&format!("bottle-{}-{what}", dns_label(id)))
}

/// The image a Pod pulls: `R/<image>` with `--image-registry R`, else the
/// plan's image unchanged. `bottle images push --registry R` pushes to
/// exactly these names.
pub fn image_ref(registry: Option<&str>, image: &str) -> String {
    match registry {
        Some(r) => format!("{}/{image}", r.trim_end_matches('/')),
        None => image.to_string(),
    }
}

/// What every module reads: the plan, the namespace, the bottle id (a DNS
/// label), the token Secret's name and the excepted ranges.
struct Cx<'a> {
    p: &'a Plan,
    host: &'a host::Host,
    ns: String,
    id: String,
    token_secret: String,
    except: Vec<String>,
}

impl Cx<'_> {
    fn name(&self, what: &str) -> String {
        object_name(&self.id, what)
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
}

fn to_yaml<T: Serialize>(kind: &'static str, name: &str, v: &T) -> Result<Object, Error> {
    Ok(Object {
        kind,
        name: name.to_string(),
        yaml: serde_yaml_ng::to_string(v).map_err(|e| Error::Yaml(format!("{kind} {name}"), e))?,
    })
}

/// Renders the plan. Pure: no host file, no cluster, no secret value.
/// Objects in apply order: Namespace, ConfigMap, Deployments, Services,
/// NetworkPolicies.
pub fn render(p: &Plan, o: &Options) -> Result<Rendered, Error> {
    let id = dns_label(&p.id);
    let ns = o
        .namespace
        .clone()
        .unwrap_or_else(|| dns_label(&format!("bottle-{id}")));
    let cx = Cx {
        p,
        host: &o.host,
        token_secret: o
            .token_secret
            .clone()
            .unwrap_or_else(|| dns_label(&format!("bottle-{id}-tokens"))),
        ns,
        id,
        except: addressing::excepted(&o.service_cidr)?,
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
    objects.push(config::config_map(&cx)?);
    objects.extend(supervise::state_maps(&cx, &o.decisions)?);
    objects.extend(config::skill_maps(&cx)?);
    let (services, ips) = addressing::services(&cx, &o.service_cidr)?;
    let edges = edges(p);
    let internet = internet_roles(p);
    let wiring = workloads::Wiring {
        edges: &edges,
        internet: &internet,
        ips: &ips,
    };
    for c in &p.containers {
        objects.push(workloads::deployment(
            &cx,
            o,
            c,
            &wiring,
            &mut secrets,
            &mut notes,
        )?);
    }
    objects.extend(services);
    objects.extend(policies::policies(&cx, &edges, &internet)?);
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
