//! The bottle's two certificate authorities, minted with rcgen at run time:
//! egress-proxy's (the agent trusts it) and the outer proxy's (egress-proxy
//! trusts it).
//!
//! Owns: key generation and the PEM layouts each consumer needs (cert+key for
//! egress-proxy's `--ca`, cert alone for the agent, the key as SEC1
//! `EC PRIVATE KEY` for pipelock, which cannot read PKCS#8).
//!
//! Must never: write a key anywhere but the bottle's state directory (mode
//! 0600), or hand a key to the agent container. `bottle plan` never calls it.

use p256::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use std::fmt;
use time::{Duration, OffsetDateTime};

/// Errors while minting a CA.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot mint the {what} CA: {source}")]
    Mint {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot convert the {what} CA key to SEC1: {detail}")]
    Sec1 { what: &'static str, detail: String },
}

/// One CA: certificate and key in the layouts the sidecars read.
pub struct Ca {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM PKCS#8 private key (`PRIVATE KEY`).
    pub key_pkcs8_pem: String,
    /// PEM SEC1 private key (`EC PRIVATE KEY`), for pipelock.
    pub key_sec1_pem: String,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Ca {
    /// Certificate followed by key: the mitmproxy layout egress-proxy's `--ca` reads.
    pub fn bundle_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pkcs8_pem)
    }
}

/// The two CAs of a bottle.
#[derive(Debug)]
pub struct BottleCas {
    /// egress-proxy's CA: it mints leaves for the agent, which trusts it.
    pub inner: Ca,
    /// The outer proxy's CA: it bumps egress-proxy's TLS, and egress-proxy trusts it.
    pub outer: Ca,
}

/// Mints both CAs for a bottle id.
pub fn mint_bottle_cas(bottle_id: &str) -> Result<BottleCas, PkiError> {
    Ok(BottleCas {
        inner: mint_ca(
            &format!("bottle {bottle_id} egress-proxy CA"),
            "egress-proxy",
        )?,
        outer: mint_ca(&format!("bottle {bottle_id} outer-proxy CA"), "outer-proxy")?,
    })
}

/// An ECDSA P-256 CA with a SubjectKeyIdentifier and `pathlen:0`: it signs
/// leaves only. No name constraints: egress-proxy mints for any host it
/// intercepts. Valid from an hour ago (clock skew between containers) for 30 days.
pub fn mint_ca(common_name: &str, what: &'static str) -> Result<Ca, PkiError> {
    let mint = |source| PkiError::Mint { what, source };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(mint)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(mint)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "bottle egress");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(30);
    let cert = params.self_signed(&key).map_err(mint)?;
    let sec1 = p256::SecretKey::from_pkcs8_der(&key.serialize_der())
        .map_err(|e| PkiError::Sec1 {
            what,
            detail: e.to_string(),
        })?
        .to_sec1_pem(p256::pkcs8::LineEnding::LF)
        .map_err(|e| PkiError::Sec1 {
            what,
            detail: e.to_string(),
        })?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pkcs8_pem: key.serialize_pem(),
        key_sec1_pem: sec1.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn openssl(args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut c = Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl is installed (scripts/setup.sh)");
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn ca_has_the_extensions_clients_and_pipelock_need() {
        let ca = mint_ca("t", "test").unwrap();
        let text = openssl(&["x509", "-noout", "-text"], &ca.cert_pem);
        assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
        assert!(text.contains("Subject Key Identifier"), "{text}");
        assert!(text.contains("Certificate Sign"), "{text}");
        assert!(
            text.contains("prime256v1") || text.contains("P-256"),
            "{text}"
        );
        assert!(!text.contains("Name Constraints"), "{text}");
        // The SEC1 key is what Go's x509.ParseECPrivateKey reads: `EC PRIVATE KEY`
        // with the named curve, and it matches the certificate's public key.
        assert!(
            ca.key_sec1_pem
                .starts_with("-----BEGIN EC PRIVATE KEY-----")
        );
        let k = openssl(&["ec", "-noout", "-text"], &ca.key_sec1_pem);
        assert!(k.contains("ASN1 OID: prime256v1"), "{k}");
        let pub_from_key = openssl(&["ec", "-pubout"], &ca.key_sec1_pem);
        let pub_from_cert = openssl(&["x509", "-noout", "-pubkey"], &ca.cert_pem);
        assert_eq!(pub_from_key, pub_from_cert);
        assert!(
            ca.bundle_pem().contains("BEGIN CERTIFICATE")
                && ca.bundle_pem().contains("BEGIN PRIVATE KEY")
        );
    }

    #[test]
    fn debug_redacts_keys() {
        let cas = mint_bottle_cas("x").unwrap();
        let d = format!("{cas:?}");
        assert!(!d.contains("PRIVATE KEY"), "{d}");
        assert_ne!(cas.inner.cert_pem, cas.outer.cert_pem);
    }
}
