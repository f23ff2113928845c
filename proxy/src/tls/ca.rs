//! The CA that signs leaf certificates.
//!
//! Owns: reading the CA (one PEM with certificate and key, the mitmproxy
//! layout, or separate files; PKCS#8 or SEC1 EC keys) and minting a new one.
//! Must never: print the private key or put it in an error.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{PemObject, SectionKind};
use time::{Duration, OffsetDateTime};

/// Errors loading or minting a CA. They name the file, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read CA file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: no CERTIFICATE PEM block found; the CA file must hold the CA certificate (and its key unless --ca-key is given)"
    )]
    NoCert { path: PathBuf },
    #[error(
        "{path}: no private key PEM block found (PRIVATE KEY or EC PRIVATE KEY); give the key in the same file or with --ca-key"
    )]
    NoKey { path: PathBuf },
    #[error(
        "{path}: the private key could not be used ({detail}); use an ECDSA P-256/P-384, RSA or Ed25519 key in PKCS#8, or an EC key in SEC1"
    )]
    BadKey { path: PathBuf, detail: String },
    #[error("{path}: the CA certificate could not be parsed: {detail}")]
    BadCert { path: PathBuf, detail: String },
    #[error("cannot mint a CA: {0}")]
    Mint(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The CA: its certificate (sent in every chain) and the issuer used to sign.
pub struct Ca {
    pub(crate) cert_der: CertificateDer<'static>,
    pub(crate) cert_pem: String,
    pub(crate) issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca { .. }")
    }
}

impl Ca {
    /// The CA certificate in PEM (what clients must trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Loads a CA from one PEM file holding the certificate and key.
    pub fn load_combined(path: &Path) -> Result<Ca, CaError> {
        let text = read(path)?;
        Self::from_pem(&text, path, &text, path)
    }

    /// Loads a CA from a certificate file and a key file.
    pub fn load_separate(cert: &Path, key: &Path) -> Result<Ca, CaError> {
        let cert_text = read(cert)?;
        let key_text = read(key)?;
        Self::from_pem(&cert_text, cert, &key_text, key)
    }

    /// Builds a CA from PEM text (the first certificate and the first key).
    pub fn from_pem(
        cert_text: &str,
        cert_path: &Path,
        key_text: &str,
        key_path: &Path,
    ) -> Result<Ca, CaError> {
        let mut cert_der = None;
        for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(cert_text.as_bytes()) {
            match item {
                Ok((SectionKind::Certificate, der)) => {
                    cert_der = Some(CertificateDer::from(der));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(CaError::BadCert {
                        path: cert_path.into(),
                        detail: format!("bad PEM: {e}"),
                    });
                }
            }
        }
        let cert_der = cert_der.ok_or_else(|| CaError::NoCert {
            path: cert_path.into(),
        })?;
        let key = load_key(key_text, key_path)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| CaError::BadCert {
            path: cert_path.into(),
            detail: e.to_string(),
        })?;
        let cert_pem = pem_encode("CERTIFICATE", &cert_der);
        Ok(Ca {
            cert_der,
            cert_pem,
            issuer,
        })
    }

    /// Mints a new CA (ECDSA P-256). Returns the CA and its key in PKCS#8 PEM.
    pub fn mint(common_name: &str) -> Result<(Ca, String), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::Mint(e.to_string()))?;
        let mut params = CertificateParams::default();
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
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(super::leaf::random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::Mint(e.to_string()))?;
        let key_pem = key.serialize_pem();
        let cert_der = cert.der().clone();
        let cert_pem = cert.pem();
        let issuer = Issuer::new(params, key);
        Ok((
            Ca {
                cert_der,
                cert_pem,
                issuer,
            },
            key_pem,
        ))
    }

    /// `egress-proxy ca new --out DIR`: writes `ca.pem` (certificate and key,
    /// mode 0600) and `ca-cert.pem` (certificate only).
    pub fn write_new(dir: &Path) -> Result<(PathBuf, PathBuf), CaError> {
        let (ca, key_pem) = Ca::mint("bottle egress-proxy CA")?;
        std::fs::create_dir_all(dir).map_err(|source| CaError::Write {
            path: dir.into(),
            source,
        })?;
        let both = dir.join("ca.pem");
        let cert = dir.join("ca-cert.pem");
        write_private(&both, format!("{}{}", ca.cert_pem, key_pem).as_bytes())?;
        std::fs::write(&cert, ca.cert_pem.as_bytes()).map_err(|source| CaError::Write {
            path: cert.clone(),
            source,
        })?;
        Ok((both, cert))
    }
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Read {
        path: path.into(),
        source,
    })
}

/// Writes a file readable by its owner only (created with mode 0600, so the
/// key is never briefly world-readable).
fn write_private(path: &Path, data: &[u8]) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let werr = |source| CaError::Write {
        path: path.into(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(werr)?;
    f.write_all(data).map_err(werr)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(werr)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    pem_block(label, der)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = match chunk.len() {
            3 => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]),
            2 => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8),
            _ => u32::from(chunk[0]) << 16,
        };
        b64.push(T[(n >> 18) as usize & 63] as char);
        b64.push(T[(n >> 12) as usize & 63] as char);
        b64.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        b64.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Reads the first private key of `text`: PKCS#8 `PRIVATE KEY` as is, SEC1
/// `EC PRIVATE KEY` wrapped into PKCS#8 (ring reads only PKCS#8).
fn load_key(text: &str, path: &Path) -> Result<KeyPair, CaError> {
    let bad = |detail: String| CaError::BadKey {
        path: path.into(),
        detail,
    };
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes()) {
        let (kind, der) = item.map_err(|e| bad(format!("bad PEM: {e}")))?;
        let pkcs8 = match kind {
            SectionKind::PrivateKey => der,
            SectionKind::EcPrivateKey => sec1_to_pkcs8(&der)
                .ok_or_else(|| bad("EC PRIVATE KEY on a curve other than P-256 or P-384".into()))?,
            SectionKind::RsaPrivateKey => {
                return Err(bad(
                    "RSA PRIVATE KEY (PKCS#1) is not supported; convert it with `openssl pkcs8 -topk8 -nocrypt`".into(),
                ));
            }
            _ => continue,
        };
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8);
        return KeyPair::try_from(&der).map_err(|e| bad(e.to_string()));
    }
    Err(CaError::NoKey { path: path.into() })
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Wraps a SEC1 ECPrivateKey into a PKCS#8 PrivateKeyInfo. The curve is
/// found from the OID inside the SEC1 structure.
fn sec1_to_pkcs8(sec1: &[u8]) -> Option<Vec<u8>> {
    let curve = if contains(sec1, OID_P256) {
        OID_P256
    } else if contains(sec1, OID_P384) {
        OID_P384
    } else {
        return None;
    };
    let mut alg = Vec::new();
    alg.extend_from_slice(OID_EC_PUBLIC_KEY);
    alg.extend_from_slice(curve);
    let alg = der_tlv(0x30, &alg);
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(&alg);
    body.extend_from_slice(&der_tlv(0x04, sec1));
    Some(der_tlv(0x30, &body))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ca_round_trips_through_pem() {
        let (ca, key_pem) = Ca::mint("test").unwrap();
        let text = format!("{}{}", ca.cert_pem(), key_pem);
        let p = Path::new("x.pem");
        let again = Ca::from_pem(&text, p, &text, p).unwrap();
        assert_eq!(again.cert_der(), ca.cert_der());
    }

    #[test]
    fn missing_key_is_named() {
        let (ca, _) = Ca::mint("test").unwrap();
        let p = Path::new("only-cert.pem");
        let err = Ca::from_pem(ca.cert_pem(), p, ca.cert_pem(), p).unwrap_err();
        assert!(err.to_string().contains("only-cert.pem"), "{err}");
        assert!(err.to_string().contains("no private key"), "{err}");
    }
}
