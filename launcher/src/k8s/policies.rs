//! The NetworkPolicies: default deny in and out for every Pod of the
//! bottle, then per role exactly the edges of `addressing::edges` and, for
//! the internet-facing sidecars, cluster DNS plus `0.0.0.0/0` minus the
//! private and cluster ranges.
//!
//! Owns: the reachability matrix as Kubernetes objects
//! (`k8s::tests::network_policies_allow_exactly_the_docker_reachability`
//! evaluates it).
//!
//! Must never: allow an edge the Docker bottle does not have, or give the
//! agent or egress-proxy a DNS rule.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Cx, Error, Object, to_yaml};

fn port(p: u16, proto: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(p.into())),
        protocol: Some(proto.into()),
        ..Default::default()
    }
}

pub(super) fn policies(
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
