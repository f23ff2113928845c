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

use std::fmt;

/// How long a bottle's CAs are valid. A bottle is torn down and its CAs
/// re-minted long before; 30 days bounds a key left behind in a state dir.
pub const BOTTLE_CA_VALIDITY: time::Duration = time::Duration::days(30);

/// Errors while minting a CA.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot mint the {what} CA: {source}")]
    Mint {
        what: &'static str,
        #[source]
        source: bottle_pki::CaError,
    },
    #[error("cannot convert the {what} CA key to SEC1: {source}")]
    Sec1 {
        what: &'static str,
        #[source]
        source: bottle_pki::KeyError,
    },
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

/// An ECDSA P-256 CA (`bottle_pki::mint_ca`: subject key identifier, random
/// serial) with `pathlen:0`: it signs leaves only. No name constraints:
/// egress-proxy mints for any host it intercepts. Valid from an hour ago
/// (clock skew between containers) for `BOTTLE_CA_VALIDITY`.
pub fn mint_ca(common_name: &str, what: &'static str) -> Result<Ca, PkiError> {
    let ca = bottle_pki::mint_ca(&bottle_pki::CaSpec {
        common_name,
        organization: "bottle egress",
        valid_for: BOTTLE_CA_VALIDITY,
        path_len: Some(0),
    })
    .map_err(|source| PkiError::Mint { what, source })?;
    Ok(Ca {
        key_sec1_pem: ca
            .key_sec1_pem()
            .map_err(|source| PkiError::Sec1 { what, source })?,
        key_pkcs8_pem: ca.key_pkcs8_pem(),
        cert_pem: ca.cert_pem,
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
