//! The Secrets side: which Secret and key a plan's file source comes from,
//! and the two functions that write key material: `--mint-cas` (the CA
//! Secrets) and `--include-secrets` (the token Secret with its values).
//!
//! Owns: the Secret names (`bottle-<id>-tokens`, `-inner-ca`,
//! `-inner-ca-cert`, `-outer-ca`, `-outer-ca-cert`, `-<role>-files`).
//!
//! Must never: be called for the default render (its output never goes to
//! stdout unless `--include-secrets` asks), or log what it returns.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Cx, Error, Options, dns_label, to_yaml};
use crate::plan::{Plan, Source};

impl Cx<'_> {
    /// The CA Secret and key a file source is mounted from.
    pub(super) fn secret_for(&self, s: &Source) -> Option<(String, &'static str)> {
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
