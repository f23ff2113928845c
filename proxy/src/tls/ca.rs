//! The CA that signs leaf certificates.
//!
//! Owns: reading the CA from files (one PEM with certificate and key, the
//! mitmproxy layout, or separate files; the key in PKCS#8, PKCS#1 or SEC1,
//! parsed by `bottle-pki`), minting a new one, and `ca new`'s files.
//! Must never: print the private key or put it in an error; open an existing
//! key file for writing.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use bottle_pki::{CaSpec, Existing};
use rcgen::{Issuer, KeyPair};
use rustls_pki_types::CertificateDer;

/// How long a CA minted by the proxy (ephemeral, or `ca new`) is valid. A CA
/// the user installs in trust stores should outlive the machines it is on.
pub const CA_VALIDITY: time::Duration = time::Duration::days(3650);

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
        "{path}: no private key PEM block found (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY); give the key in the same file or with --ca-key"
    )]
    NoKey { path: PathBuf },
    #[error("{path}: the private key could not be used: {source}")]
    BadKey {
        path: PathBuf,
        source: bottle_pki::KeyError,
    },
    #[error("{path}: {detail}")]
    BadCert { path: PathBuf, detail: String },
    #[error("cannot mint a CA: {0}")]
    Mint(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Create(#[from] bottle_pki::WriteError),
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
        use bottle_pki::CaError as E;
        let ca = bottle_pki::load_ca(cert_text, key_text).map_err(|e| match e {
            E::NoCert => CaError::NoCert {
                path: cert_path.into(),
            },
            E::Key(bottle_pki::KeyError::Missing) => CaError::NoKey {
                path: key_path.into(),
            },
            E::Key(source) => CaError::BadKey {
                path: key_path.into(),
                source,
            },
            E::KeyMismatch => CaError::BadCert {
                path: key_path.into(),
                detail: e.to_string(),
            },
            other => CaError::BadCert {
                path: cert_path.into(),
                detail: other.to_string(),
            },
        })?;
        Self::from_pki(ca).map_err(|detail| CaError::BadCert {
            path: cert_path.into(),
            detail,
        })
    }

    fn from_pki(ca: bottle_pki::Ca) -> Result<Ca, String> {
        let cert_der = ca.cert_der.clone();
        let cert_pem = ca.cert_pem.clone();
        let issuer = ca.into_issuer().map_err(|e| e.to_string())?;
        Ok(Ca {
            cert_der,
            cert_pem,
            issuer,
        })
    }

    /// Mints a new CA (ECDSA P-256, `CA_VALIDITY`). Returns the CA and its key
    /// in PKCS#8 PEM.
    pub fn mint(common_name: &str) -> Result<(Ca, String), CaError> {
        let ca = bottle_pki::mint_ca(&CaSpec {
            common_name,
            organization: "bottle egress",
            valid_for: CA_VALIDITY,
            path_len: Some(0),
        })
        .map_err(|e| CaError::Mint(e.to_string()))?;
        let key_pem = ca.key_pkcs8_pem();
        let ca = Self::from_pki(ca).map_err(CaError::Mint)?;
        Ok((ca, key_pem))
    }

    /// `egress-proxy ca new --out DIR`: writes `ca.pem` (certificate and key,
    /// mode 0600) and `ca-cert.pem` (certificate only, 0644). Both are created
    /// exclusively; an existing file (or symlink) at either name is refused
    /// unless `existing` is `Replace`, which renames new files over them.
    pub fn write_new(dir: &Path, existing: Existing) -> Result<(PathBuf, PathBuf), CaError> {
        let (ca, key_pem) = Ca::mint("bottle egress-proxy CA")?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| CaError::Write {
                path: dir.into(),
                source,
            })?;
        let both = dir.join("ca.pem");
        let cert = dir.join("ca-cert.pem");
        if existing == Existing::Refuse {
            // Refuse before writing anything, so a refusal leaves no new key.
            for p in [&both, &cert] {
                if std::fs::symlink_metadata(p).is_ok() {
                    return Err(bottle_pki::WriteError::Exists { path: p.clone() }.into());
                }
            }
        }
        let bundle = format!("{}{}", ca.cert_pem, key_pem);
        bottle_pki::write_new(&both, bundle.as_bytes(), 0o600, existing)?;
        if let Err(e) = bottle_pki::write_new(&cert, ca.cert_pem.as_bytes(), 0o644, existing) {
            // The key we just created is ours; a lone key is of no use.
            let _ = std::fs::remove_file(&both);
            return Err(e.into());
        }
        Ok((both, cert))
    }
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Read {
        path: path.into(),
        source,
    })
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

    #[test]
    fn a_key_of_another_ca_names_the_key_file() {
        let (a, _) = Ca::mint("a").unwrap();
        let (_, b_key) = Ca::mint("b").unwrap();
        let err = Ca::from_pem(a.cert_pem(), Path::new("a.pem"), &b_key, Path::new("b.key"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("b.key: "), "{err}");
        assert!(err.contains("does not belong"), "{err}");
        assert!(!err.contains("PRIVATE"), "{err}");
    }
}
