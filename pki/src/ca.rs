//! CA minting: the one place the workspace makes a certificate authority.
//!
//! Owns: the CA certificate profile (CA:TRUE with a path length, keyCertSign,
//! cRLSign, digitalSignature, subject key identifier, random serial, valid from
//! one hour ago for the caller's validity), over a fresh ECDSA P-256 key, and
//! loading an existing CA from PEM (certificate plus a key in any of the three
//! forms, checked to belong together).
//! Must never: choose a validity for the caller (each caller states its own),
//! or print the key.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{PemObject, SectionKind};
use time::{Duration, OffsetDateTime};

use crate::key::{KeyError, parse_private_key};

/// Certificates are valid from this long ago: clocks of containers and hosts
/// drift.
pub const BACKDATE: Duration = Duration::hours(1);

/// What to mint.
#[derive(Debug, Clone)]
pub struct CaSpec<'a> {
    pub common_name: &'a str,
    pub organization: &'a str,
    /// From one hour ago (`BACKDATE`) until now plus this.
    pub valid_for: Duration,
    /// `pathlen` of the basic constraints; `Some(0)`: the CA signs leaves only.
    pub path_len: Option<u8>,
}

/// Errors minting or loading a CA. Never hold key bytes.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot mint a CA: {0}")]
    Mint(String),
    #[error("no CERTIFICATE PEM block found")]
    NoCert,
    #[error("the CA certificate could not be parsed: {0}")]
    BadCert(String),
    #[error("the certificate is not a CA (basicConstraints CA:TRUE is missing)")]
    NotCa,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "the private key does not belong to the CA certificate (their public keys differ); give the key this certificate was issued for"
    )]
    KeyMismatch,
}

/// A CA: its certificate and the key that signs with it.
pub struct Ca {
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Ca {
    /// The key as PKCS#8 `PRIVATE KEY` PEM.
    pub fn key_pkcs8_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The key as SEC1 `EC PRIVATE KEY` PEM (pipelock reads only that).
    pub fn key_sec1_pem(&self) -> Result<String, KeyError> {
        crate::key::sec1_pem(&self.key)
    }

    /// Certificate then PKCS#8 key: the one-file layout egress-proxy's `--ca`
    /// reads.
    pub fn bundle_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pkcs8_pem())
    }

    /// The signer of leaves.
    pub fn into_issuer(self) -> Result<Issuer<'static, KeyPair>, CaError> {
        Issuer::from_ca_cert_der(&self.cert_der, self.key)
            .map_err(|e| CaError::BadCert(e.to_string()))
    }
}

/// Mints a CA over a new ECDSA P-256 key.
pub fn mint_ca(spec: &CaSpec<'_>) -> Result<Ca, CaError> {
    let mint = |e: rcgen::Error| CaError::Mint(e.to_string());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(mint)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.common_name);
    dn.push(DnType::OrganizationName, spec.organization);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(match spec.path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + spec.valid_for;
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key).map_err(mint)?;
    Ok(Ca {
        cert_der: cert.der().clone(),
        cert_pem: cert.pem(),
        key,
    })
}

/// Loads a CA from PEM: the first certificate of `cert_text` and the first
/// private key of `key_text` (the same text for the one-file layout, in either
/// order, as mitmproxy writes it: key first).
pub fn load_ca(cert_text: &str, key_text: &str) -> Result<Ca, CaError> {
    let mut cert_der = None;
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(cert_text.as_bytes()) {
        match item {
            Ok((SectionKind::Certificate, der)) => {
                cert_der = Some(CertificateDer::from(der));
                break;
            }
            Ok(_) => {}
            Err(e) => return Err(CaError::BadCert(format!("bad PEM: {e}"))),
        }
    }
    let cert_der = cert_der.ok_or(CaError::NoCert)?;
    let key = parse_private_key(key_text)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
        .map_err(|e| CaError::BadCert(e.to_string()))?;
    if !cert.is_ca() {
        return Err(CaError::NotCa);
    }
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(CaError::KeyMismatch);
    }
    let cert_pem = crate::pem_encode("CERTIFICATE", &cert_der);
    Ok(Ca {
        cert_der,
        cert_pem,
        key,
    })
}

/// A random, positive 16-byte serial (RFC 5280 4.1.2.2: at most 20 bytes).
pub fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // ring's system RNG: the same source rustls uses for its own secrets.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        // Only if the OS RNG fails; the time still makes serials distinct.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = t.to_be_bytes();
    }
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(days: i64) -> CaSpec<'static> {
        CaSpec {
            common_name: "test CA",
            organization: "bottle egress",
            valid_for: Duration::days(days),
            path_len: Some(0),
        }
    }

    #[test]
    fn minted_ca_round_trips_and_keeps_its_validity() {
        let ca = mint_ca(&spec(30)).unwrap();
        let again = load_ca(&ca.cert_pem, &ca.key_sec1_pem().unwrap()).unwrap();
        assert_eq!(again.cert_der, ca.cert_der);
        let (_, c) = x509_parser::parse_x509_certificate(&ca.cert_der).unwrap();
        let v = c.validity();
        let len = v.not_after.timestamp() - v.not_before.timestamp();
        assert_eq!(len, (Duration::days(30) + BACKDATE).whole_seconds());
        assert!(c.is_ca());
    }

    #[test]
    fn a_key_from_another_ca_is_refused() {
        let a = mint_ca(&spec(1)).unwrap();
        let b = mint_ca(&spec(1)).unwrap();
        let err = load_ca(&a.cert_pem, &b.key_pkcs8_pem()).unwrap_err();
        assert!(matches!(err, CaError::KeyMismatch), "{err}");
    }

    #[test]
    fn debug_redacts_the_key() {
        let ca = mint_ca(&spec(1)).unwrap();
        let d = format!("{ca:?}");
        assert!(!d.contains("PRIVATE KEY"), "{d}");
    }
}
