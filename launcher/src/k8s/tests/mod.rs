//! What a user would check in a render: same bytes each time, the
//! NetworkPolicies evaluated as Kubernetes defines them give exactly the
//! Docker bottle's reachability, no secret value, every Pod hardened.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::manifest;
use crate::plan::AGENT_DNS;
use crate::plan::tests::golden;

mod trees;

fn m(outer: &str) -> String {
    format!(
        r#"
bottles:
  dev:
    allow: [pypi.org]
    outer_proxy: {outer}
    egress_proxy:
      routes:
        - host: api.github.com
          auth: {{scheme: Bearer, token_ref: GH_PAT}}
        - host: api.anthropic.com
          auth: {{header: x-api-key, token_ref: ANTHROPIC}}
    git:
      - name: widget
        upstream: ssh://git@github.com/acme/widget.git
        identity_file: /keys/id
        known_host_key: "github.com ssh-ed25519 AAAA"
agents:
  coder:
    bottle: dev
    image: debian:bookworm
"#
    )
}

const SECRET: &str = "ghp_SECRETVALUE0123456789";

fn plan_for(outer: &str) -> Plan {
    plan_of(&m(outer))
}

/// The same bottle with `supervise: true`.
fn supervised(outer: &str) -> Plan {
    let src = m(outer).replace(
        "    allow: [pypi.org]\n",
        "    allow: [pypi.org]\n    supervise: true\n",
    );
    let p = plan_of(&src);
    assert!(p.supervise);
    p
}

/// Every plan the render tests cover: squid and pipelock, with and without supervise.
fn all_plans() -> Vec<(String, Plan)> {
    let mut out = Vec::new();
    for outer in ["squid", "pipelock"] {
        out.push((outer.to_string(), plan_for(outer)));
        out.push((format!("{outer}+supervise"), supervised(outer)));
    }
    out
}

fn plan_of(src: &str) -> Plan {
    let man = manifest::parse(src, Path::new("m.yaml"), Path::new("/"), None).unwrap();
    crate::plan::plan(
        &man,
        "coder",
        "dev-0a1b2c3d",
        &|_| Some(SECRET.to_string()),
        &|_| true,
        None,
    )
    .unwrap()
}

fn objects<T: serde::de::DeserializeOwned>(r: &Rendered, kind: &str) -> Vec<T> {
    r.objects
        .iter()
        .filter(|o| o.kind == kind)
        .map(|o| serde_yaml_ng::from_str(&o.yaml).unwrap())
        .collect()
}

#[test]
fn same_plan_same_bytes() {
    for outer in ["squid", "pipelock"] {
        let a = render(&plan_for(outer), &Options::default()).unwrap();
        let b = render(&plan_for(outer), &Options::default()).unwrap();
        assert_eq!(a.yaml(), b.yaml());
        assert_eq!(a.files(), b.files());
        // Every document parses back as YAML with apiVersion and kind.
        for o in &a.objects {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&o.yaml).unwrap();
            assert!(
                v.get("apiVersion").is_some() && v.get("kind").is_some(),
                "{}",
                o.yaml
            );
        }
    }
}

/// A pod in the reachability model: labels (None = outside the bottle's
/// policies, e.g. another namespace) and an address.
struct Pod {
    name: &'static str,
    labels: Option<BTreeMap<String, String>>,
    ip: Ipv4Addr,
}

fn matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    assert!(
        sel.match_expressions.is_none(),
        "model handles matchLabels only"
    );
    sel.match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
}

fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    let (base, len) = cidr.split_once('/').unwrap();
    let (base, len): (u32, u32) = (
        base.parse::<Ipv4Addr>().unwrap().into(),
        len.parse().unwrap(),
    );
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == base
}

fn peer_ok(peer: &NetworkPolicyPeer, other: &Pod) -> bool {
    if let Some(b) = &peer.ip_block {
        return in_cidr(other.ip, &b.cidr)
            && !b.except.iter().flatten().any(|e| in_cidr(other.ip, e));
    }
    // Same namespace (no namespaceSelector) or kube-system DNS (never a bottle pod here).
    if peer.namespace_selector.is_some() {
        return false;
    }
    match (&peer.pod_selector, &other.labels) {
        (Some(s), Some(l)) => matches(s, l),
        _ => false,
    }
}

fn port_ok(ports: &Option<Vec<NetworkPolicyPort>>, port: u16) -> bool {
    match ports {
        None => true,
        Some(ps) => ps.iter().any(|p| {
            p.protocol.as_deref() == Some("TCP")
                && matches!(p.port, Some(IntOrString::Int(x)) if x == i32::from(port))
        }),
    }
}

/// Whether `from` may open TCP `port` on `to`, as Kubernetes defines it:
/// allowed by the source's egress side and by the destination's ingress side,
/// each side open unless some policy selecting the pod isolates it.
fn allowed(pols: &[NetworkPolicy], from: &Pod, to: &Pod, port: u16) -> bool {
    let egress = from.labels.as_ref().is_none_or(|l| {
        let sel: Vec<_> = pols
            .iter()
            .filter(|p| matches(p.spec.as_ref().unwrap().pod_selector.as_ref().unwrap(), l))
            .map(|p| p.spec.as_ref().unwrap())
            .filter(|s| s.policy_types.iter().flatten().any(|t| t == "Egress"))
            .collect();
        sel.is_empty()
            || sel.iter().any(|s| {
                s.egress.iter().flatten().any(|r| {
                    port_ok(&r.ports, port) && r.to.iter().flatten().any(|p| peer_ok(p, to))
                })
            })
    });
    let ingress = to.labels.as_ref().is_none_or(|l| {
        let sel: Vec<_> = pols
            .iter()
            .filter(|p| matches(p.spec.as_ref().unwrap().pod_selector.as_ref().unwrap(), l))
            .map(|p| p.spec.as_ref().unwrap())
            .filter(|s| s.policy_types.iter().flatten().any(|t| t == "Ingress"))
            .collect();
        sel.is_empty()
            || sel.iter().any(|s| {
                s.ingress.iter().flatten().any(|r| {
                    port_ok(&r.ports, port) && r.from.iter().flatten().any(|p| peer_ok(p, from))
                })
            })
    });
    egress && ingress
}

fn matrix(pols: &[NetworkPolicy], p: &Plan) -> Vec<(String, String, u16)> {
    let id = dns_label(&p.id);
    let mut pods: Vec<Pod> = p
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| Pod {
            name: c.role.as_str(),
            labels: Some(BTreeMap::from([
                ("bottle.id".to_string(), id.clone()),
                ("bottle.role".to_string(), c.role.as_str().to_string()),
            ])),
            ip: Ipv4Addr::new(10, 244, 0, 10 + i as u8),
        })
        .collect();
    for (name, ip) in [
        ("outsider-pod", Ipv4Addr::new(10, 244, 9, 9)),
        ("internet", Ipv4Addr::new(1, 1, 1, 1)),
        ("metadata", Ipv4Addr::new(169, 254, 169, 254)),
        ("lan", Ipv4Addr::new(192, 168, 1, 1)),
        ("service-range", Ipv4Addr::new(10, 96, 0, 1)),
    ] {
        pods.push(Pod {
            name,
            labels: None,
            ip,
        });
    }
    let mut out = Vec::new();
    for a in &pods {
        for b in &pods {
            if a.name == b.name || (a.labels.is_none() && b.labels.is_none()) {
                continue;
            }
            for port in PORTS {
                if allowed(pols, a, b, port) {
                    out.push((a.name.to_string(), b.name.to_string(), port));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

const GATE: u16 = crate::plan::GATE_PORT;
const PROXY: u16 = crate::plan::PROXY_PORT;
const SUP: u16 = crate::plan::SUPERVISE_PORT;
/// The ports the matrix tries between every pair.
const PORTS: [u16; 8] = [22, 53, 443, 3128, 8888, GATE, PROXY, SUP];

#[test]
fn network_policies_allow_exactly_the_docker_reachability() {
    for (outer, p) in all_plans() {
        let outer_port = p.outer_proxy.port;
        let r = render(&p, &Options::default()).unwrap();
        let pols: Vec<NetworkPolicy> = objects(&r, "NetworkPolicy");
        let got = matrix(&pols, &p);
        let mut want = vec![
            ("agent".to_string(), "egress-proxy".to_string(), PROXY),
            ("agent".into(), "git-gate".into(), GATE),
            ("egress-proxy".into(), "outer-proxy".into(), outer_port),
        ];
        // The supervise sidecar: reached by the agent only; it reaches nothing.
        if p.supervise {
            want.push(("agent".into(), "supervise".into(), SUP));
        }
        // The internet-facing sidecars reach public addresses on any port,
        // never private, link-local (metadata) or cluster ranges.
        for role in ["git-gate", "outer-proxy"] {
            for port in PORTS {
                want.push((role.into(), "internet".into(), port));
            }
        }
        want.sort();
        want.dedup();
        assert_eq!(got, want, "{outer}");
        // Nothing reaches the agent; the agent reaches nothing outside.
        assert!(!got.iter().any(|(_, to, _)| to == "agent"));
        assert!(!got.iter().any(|(from, _, _)| from == "supervise"));
        assert_eq!(edges(&p).len(), 3 + usize::from(p.supervise));
        assert_eq!(internet_roles(&p), ["git-gate", "outer-proxy"]);

        // The test can fail: drop any one policy and the matrix changes.
        for i in 0..pols.len() {
            let mut fewer = pols.clone();
            let gone = fewer.remove(i);
            assert_ne!(
                matrix(&fewer, &p),
                want,
                "removing {:?} changed nothing",
                gone.metadata.name
            );
        }
    }
}

#[test]
fn no_secret_value_and_tokens_only_in_egress_proxy() {
    for (what, p) in all_plans() {
        let y = render(&p, &Options::default()).unwrap().yaml();
        assert!(!y.contains(SECRET), "{what}");
        assert!(
            !y.contains("kind: Secret\n"),
            "{what}: no Secret by default"
        );
    }
    let p = plan_for("squid");
    let r = render(&p, &Options::default()).unwrap();
    let deps: Vec<Deployment> = objects(&r, "Deployment");
    for d in &deps {
        let spec = d.spec.template.spec.as_ref().unwrap();
        let c = &spec.containers[0];
        let refs: Vec<(String, String)> = c
            .env
            .iter()
            .flatten()
            .filter_map(|e| {
                let s = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
                Some((s.name.clone(), s.key.clone()))
            })
            .collect();
        if c.name == "egress-proxy" {
            let slots: Vec<_> = p
                .token_slots
                .iter()
                .map(|t| (r.token_secret.clone(), t.slot.clone()))
                .collect();
            assert_eq!(refs, slots);
            assert_eq!(slots.len(), 2);
        } else {
            assert!(refs.is_empty(), "{}", c.name);
        }
    }
    let cmd = r.token_secret_command(&p);
    assert_eq!(
        cmd,
        "kubectl -n bottle-dev-0a1b2c3d create secret generic bottle-dev-0a1b2c3d-tokens \
         --from-literal=EGRESS_PROXY_TOKEN_0=\"$GH_PAT\" --from-literal=EGRESS_PROXY_TOKEN_1=\"$ANTHROPIC\""
    );
}

#[test]
fn every_pod_is_hardened() {
    for (_, p) in all_plans() {
        let r = render(&p, &Options::default()).unwrap();
        let deps: Vec<Deployment> = objects(&r, "Deployment");
        assert_eq!(deps.len(), p.containers.len());
        for d in &deps {
            let ds = &d.spec;
            assert_eq!(ds.replicas, Some(1));
            let s = ds.template.spec.as_ref().unwrap();
            assert_eq!(s.automount_service_account_token, Some(false));
            assert_eq!(s.enable_service_links, Some(false));
            let psc = s.security_context.as_ref().unwrap();
            assert_eq!(psc.run_as_non_root, Some(true));
            assert_ne!(psc.run_as_user, Some(0));
            assert_eq!(
                psc.seccomp_profile.as_ref().unwrap().type_,
                "RuntimeDefault"
            );
            for c in s
                .containers
                .iter()
                .chain(s.init_containers.iter().flatten())
            {
                let sc = c.security_context.as_ref().unwrap();
                assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
                assert_eq!(sc.privileged, Some(false));
                assert_eq!(sc.run_as_non_root, Some(true));
                let caps = sc.capabilities.as_ref().unwrap();
                assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
                assert_eq!(caps.add, None, "{}: non-root, no capability", c.name);
                assert!(sc.run_as_user.is_some_and(|u| u != 0), "{}", c.name);
                assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
                let res = c.resources.as_ref().unwrap();
                for m in [&res.requests, &res.limits] {
                    let m = m.as_ref().unwrap();
                    assert!(m.contains_key("cpu") && m.contains_key("memory"));
                }
                if c.name != "agent" && c.name != "init" {
                    assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
                }
                if c.name == "supervise" {
                    assert_eq!(sc.read_only_root_filesystem, Some(true));
                    assert_eq!(sc.run_as_user, Some(65534));
                }
                if c.name == "egress-proxy" {
                    assert_eq!(sc.read_only_root_filesystem, Some(true));
                    let h = c
                        .readiness_probe
                        .as_ref()
                        .unwrap()
                        .http_get
                        .as_ref()
                        .unwrap();
                    assert_eq!(h.path.as_deref(), Some("/healthz"));
                }
            }
        }
    }
}

#[test]
fn agent_and_egress_proxy_get_fixed_addresses_and_no_dns() {
    let p = plan_for("squid");
    let r = render(&p, &Options::default()).unwrap();
    let svcs: Vec<Service> = objects(&r, "Service");
    let ip_of: BTreeMap<String, String> = svcs
        .iter()
        .map(|s| {
            (
                s.metadata.labels.as_ref().unwrap()["bottle.role"].clone(),
                s.spec.as_ref().unwrap().cluster_ip.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(ip_of.len(), 3, "{ip_of:?}");
    let mut distinct: Vec<_> = ip_of.values().collect();
    distinct.dedup();
    assert_eq!(distinct.len(), 3);
    for ip in ip_of.values() {
        let ip: Ipv4Addr = ip.parse().unwrap();
        assert!(in_cidr(ip, DEFAULT_SERVICE_CIDR));
        assert!(
            !in_cidr(ip, "10.96.0.0/28"),
            "kept off the range's first /28"
        );
    }
    let deps: Vec<Deployment> = objects(&r, "Deployment");
    for d in &deps {
        let s = d.spec.template.spec.as_ref().unwrap();
        let role = s.containers[0].name.as_str();
        let aliases: BTreeMap<String, String> = s
            .host_aliases
            .iter()
            .flatten()
            .map(|a| (a.hostnames.as_ref().unwrap()[0].clone(), a.ip.clone()))
            .collect();
        match role {
            "agent" | "egress-proxy" => {
                assert_eq!(s.dns_policy.as_deref(), Some("None"), "{role}");
                assert_eq!(
                    s.dns_config.as_ref().unwrap().nameservers,
                    Some(vec![AGENT_DNS.to_string()])
                );
                let want: Vec<&str> = if role == "agent" {
                    vec!["egress-proxy", "git-gate"]
                } else {
                    vec!["outer-proxy"]
                };
                assert_eq!(aliases.keys().collect::<Vec<_>>(), want);
                for (h, ip) in &aliases {
                    assert_eq!(ip, &ip_of[h]);
                }
            }
            _ => assert_eq!(s.dns_policy.as_deref(), Some("ClusterFirst")),
        }
    }
    // The range can be chosen, and a bad one is refused.
    let o = Options {
        service_cidr: "172.20.0.0/16".into(),
        ..Default::default()
    };
    let y = render(&p, &o).unwrap().yaml();
    assert!(y.contains("clusterIP: 172.20."));
    assert!(
        y.contains("- 172.20.0.0/16"),
        "the service range is excepted"
    );
    let o = Options {
        service_cidr: "nope".into(),
        ..Default::default()
    };
    assert!(render(&p, &o).is_err());
}

#[test]
fn namespace_flag_renders_no_namespace_object() {
    let p = plan_for("squid");
    let o = Options {
        namespace: Some("team-a".into()),
        ..Default::default()
    };
    let r = render(&p, &o).unwrap();
    assert!(!r.objects.iter().any(|o| o.kind == "Namespace"));
    assert!(r.yaml().contains("namespace: team-a"));
    assert!(!r.yaml().contains("namespace: bottle-"));
}

#[test]
fn k8s_render_goldens() {
    golden(
        "k8s-squid-git.yaml",
        &render(&plan_for("squid"), &Options::default())
            .unwrap()
            .yaml(),
    );
    let src = m("pipelock").replace(
        "    allow: [pypi.org]\n",
        "    allow: [pypi.org]\n    supervise: true\n",
    );
    let man = manifest::parse(&src, Path::new("m.yaml"), Path::new("/"), None).unwrap();
    let p = crate::plan::plan(
        &man,
        "coder",
        "dev-0a1b2c3d",
        &|_| Some(SECRET.into()),
        &|_| true,
        None,
    )
    .unwrap();
    assert!(p.supervise);
    golden(
        "k8s-pipelock-git-supervise.yaml",
        &render(&p, &Options::default()).unwrap().yaml(),
    );
    golden(
        "k8s-pipelock.yaml",
        &render(&plan_for("pipelock"), &Options::default())
            .unwrap()
            .yaml(),
    );
}

#[test]
fn image_registry_prefixes_every_image() {
    let p = plan_for("squid");
    let o = Options {
        image_registry: Some("registry.local:5000/team/".into()),
        ..Default::default()
    };
    let r = render(&p, &o).unwrap();
    let deps: Vec<Deployment> = objects(&r, "Deployment");
    assert_eq!(deps.len(), p.containers.len());
    for (d, c) in deps.iter().zip(&p.containers) {
        let s = d.spec.template.spec.as_ref().unwrap();
        assert_eq!(
            s.containers[0].image.as_deref(),
            Some(format!("registry.local:5000/team/{}", c.image).as_str())
        );
    }
}

/// The supervise state as objects (docs/kubernetes.md, "supervise"): the
/// live routes, the view and the decisions are ConfigMaps mounted read-only
/// as whole directories (kubelet updates those, not `subPath` mounts), the
/// proposals an emptyDir only the sidecar has; the sidecar's view names no
/// credential; the agent gets the MCP file and the name `supervise`.
/// The decisions ConfigMap grows with every decision: past the API server's
/// 1 MiB the render fails before any object is made (an apply of the others
/// would put an approval in the routes with its decision missing), naming
/// the map, its size and what to do; at the limit it renders.
#[test]
fn supervise_decisions_past_one_mib_are_refused_before_anything_is_rendered() {
    let p = supervised("squid");
    let decision = |i: usize| (format!("{i:08x}.json"), "d".repeat(1000));
    let fill = |n: usize| Options {
        decisions: (0..n).map(decision).collect(),
        ..Options::default()
    };
    // 1 000 + 13 bytes each: 1 035 fit in 1 MiB, 1 036 do not.
    let fits = render(&p, &fill(1035));
    assert!(fits.is_ok(), "{:?}", fits.err().map(|e| e.to_string()));
    let err = render(&p, &fill(1036)).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
    let msg = err.to_string();
    for want in [
        "ConfigMap bottle-dev-0a1b2c3d-supervise-decisions",
        "1049468 bytes",
        "1036 of them",
        "1 MiB",
        "nothing was rendered or applied",
        "new --id",
    ] {
        assert!(msg.contains(want), "{want:?} not in: {msg}");
    }
}

#[test]
fn supervise_state_is_config_maps_mounted_as_directories() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let p = supervised("squid");
    let r = render(&p, &Options::default()).unwrap();
    let maps: BTreeMap<String, ConfigMap> = objects::<ConfigMap>(&r, "ConfigMap")
        .into_iter()
        .map(|c| (c.metadata.name.clone().unwrap(), c))
        .collect();
    let data = |n: &str| maps[n].data.clone().unwrap_or_default();
    assert_eq!(
        data("bottle-dev-0a1b2c3d-live-routes")["routes.json"],
        p.rendered["routes.json"]
    );
    let view = &data("bottle-dev-0a1b2c3d-supervise-view")["view.json"];
    let v: serde_json::Value = serde_json::from_str(view).unwrap();
    assert_eq!(v["bottle"], "dev");
    assert_eq!(v["routes"][0]["credential"], true);
    for leak in [SECRET, "EGRESS_PROXY_TOKEN", "GH_PAT", "token", "auth"] {
        assert!(!view.contains(leak), "{leak} in the sidecar's view: {view}");
    }
    assert!(data("bottle-dev-0a1b2c3d-supervise-decisions").is_empty());

    let deps: BTreeMap<String, Deployment> = objects::<Deployment>(&r, "Deployment")
        .into_iter()
        .map(|d| (d.metadata.labels.clone().unwrap()["bottle.role"].clone(), d))
        .collect();
    // (volume source, mount path, read-only) of a role's state mounts.
    let state = |role: &str| -> Vec<(String, String, bool)> {
        let s = deps[role].spec.template.spec.clone().unwrap();
        let c = &s.containers[0];
        c.volume_mounts
            .iter()
            .flatten()
            .filter(|m| m.name.starts_with("state-"))
            .map(|m| {
                assert_eq!(m.sub_path, None, "{role}: {} by subPath", m.mount_path);
                let v = s
                    .volumes
                    .iter()
                    .flatten()
                    .find(|v| v.name == m.name)
                    .unwrap();
                let src = match (&v.config_map, &v.empty_dir) {
                    (Some(cm), None) => cm.name.clone(),
                    (None, Some(_)) => "emptyDir".into(),
                    other => panic!("{other:?}"),
                };
                (src, m.mount_path.clone(), m.read_only == Some(true))
            })
            .collect()
    };
    assert_eq!(
        state("egress-proxy"),
        [(
            "bottle-dev-0a1b2c3d-live-routes".to_string(),
            crate::plan::LIVE_ROUTES_DIR.to_string(),
            true
        )]
    );
    let args = deps["egress-proxy"]
        .spec
        .template
        .spec
        .clone()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&"--watch-routes".to_string()), "{args:?}");
    assert!(args.contains(&format!("{}/routes.json", crate::plan::LIVE_ROUTES_DIR)));
    let mut sup = state("supervise");
    sup.sort();
    assert_eq!(
        sup,
        [
            (
                "bottle-dev-0a1b2c3d-supervise-decisions".into(),
                "/state/decisions".into(),
                true
            ),
            (
                "bottle-dev-0a1b2c3d-supervise-view".into(),
                "/state/view".into(),
                true
            ),
            (
                "emptyDir".to_string(),
                "/state/proposals".to_string(),
                false
            ),
        ]
    );
    for role in ["agent", "outer-proxy", "git-gate"] {
        assert!(state(role).is_empty(), "{role}");
    }
    // The agent reaches the sidecar by name, without DNS, and has its MCP file.
    let agent = deps["agent"].spec.template.spec.clone().unwrap();
    assert!(
        agent
            .host_aliases
            .iter()
            .flatten()
            .any(|a| a.hostnames == Some(vec!["supervise".to_string()]))
    );
    assert!(r.yaml().contains("key: mcp.json"));
    // The sidecar resolves nothing and is given no name to reach.
    let s = deps["supervise"].spec.template.spec.clone().unwrap();
    assert_eq!(s.dns_policy.as_deref(), Some("None"));
    assert_eq!(s.host_aliases, None);
}
