//! Private keys: PEM in, an rcgen `KeyPair` out; SEC1 out for pipelock.
//!
//! Owns: reading the three PEM key forms (PKCS#8 `PRIVATE KEY`, PKCS#1
//! `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY`) into a signing key. ring, the
//! product's one crypto provider, reads PKCS#8 only, so PKCS#1 and SEC1 are
//! re-wrapped as PKCS#8 with the RustCrypto `pkcs8`/`sec1` encoders (the key
//! bytes are moved, never re-derived).
//! Must never: put key bytes in an error or a `Debug` output.

use pkcs8::PrivateKeyInfo;
use pkcs8::der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef};
use pkcs8::der::{Decode, Encode};
use pkcs8::spki::AlgorithmIdentifier;
use rcgen::KeyPair;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::{PemObject, SectionKind};

/// `rsaEncryption` (RFC 8017, A.1).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-ecPublicKey` (RFC 5480, 2.1.1).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256r1` / P-256 (RFC 5480, 2.1.1.1).
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `secp384r1` / P-384.
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Why a key could not be used. Never holds key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block.
    #[error("no private key PEM block (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")]
    Missing,
    /// A PEM block that does not decode.
    #[error("bad PEM: {0}")]
    Pem(String),
    /// `ENCRYPTED PRIVATE KEY`: there is no passphrase to give.
    #[error(
        "the key is encrypted; decrypt it first (`openssl pkey -in KEY -out PLAIN.pem`) and keep the result mode 0600"
    )]
    Encrypted,
    /// A key ring cannot sign with (a curve, size or algorithm it lacks).
    #[error(
        "{0}; use RSA (2048 to 8192 bits), ECDSA P-256 or P-384, or Ed25519, in PKCS#8, PKCS#1 (RSA) or SEC1 (EC)"
    )]
    Unsupported(String),
}

/// The first private key in `pem_text`, whichever of the three forms it is.
/// Other blocks (certificates) are skipped, so a combined file works.
pub fn parse_private_key(pem_text: &str) -> Result<KeyPair, KeyError> {
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem_text.as_bytes()) {
        let (kind, der) = item.map_err(|e| KeyError::Pem(e.to_string()))?;
        let key = match kind {
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.into()),
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.into()),
            _ => continue,
        };
        return key_pair(&key);
    }
    // rustls-pki-types skips `ENCRYPTED PRIVATE KEY`; say what it is rather
    // than "missing".
    if pem_text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(KeyError::Encrypted);
    }
    Err(KeyError::Missing)
}

/// A signing key from DER in any of the three forms.
pub fn key_pair(key: &PrivateKeyDer<'_>) -> Result<KeyPair, KeyError> {
    let pkcs8 = match key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Pkcs1(k) => pkcs1_to_pkcs8(k.secret_pkcs1_der())?,
        PrivateKeyDer::Sec1(k) => sec1_to_pkcs8(k.secret_sec1_der())?,
        _ => return Err(KeyError::Unsupported("an unknown private key form".into())),
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|_| {
        KeyError::Unsupported(format!(
            "the {} key is not one ring can sign with",
            algorithm_name(&pkcs8)
        ))
    })
}

/// PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (RFC 5958) with
/// `rsaEncryption` and NULL parameters (RFC 8017, A.1).
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Vec<u8>, KeyError> {
    let info: PrivateKeyInfo<AnyRef<'_>, &OctetStringRef, BitStringRef<'_>> = PrivateKeyInfo {
        algorithm: AlgorithmIdentifier {
            oid: RSA_ENCRYPTION,
            parameters: Some(AnyRef::NULL),
        },
        private_key: octets(pkcs1)?,
        public_key: None,
    };
    info.to_der().map_err(|e| KeyError::Pem(e.to_string()))
}

/// SEC1 `ECPrivateKey` inside a PKCS#8 `PrivateKeyInfo` with `id-ecPublicKey`
/// and the curve SEC1 names in its parameters (RFC 5915, 3).
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, KeyError> {
    let ec = sec1::EcPrivateKey::from_der(sec1)
        .map_err(|e| KeyError::Pem(format!("EC PRIVATE KEY: {e}")))?;
    let curve = ec.parameters.and_then(|p| p.named_curve()).ok_or_else(|| {
        KeyError::Unsupported("the EC PRIVATE KEY does not name its curve".into())
    })?;
    if curve != P256 && curve != P384 {
        return Err(KeyError::Unsupported(format!(
            "the EC PRIVATE KEY is on curve {curve}, not P-256 or P-384"
        )));
    }
    let info: PrivateKeyInfo<ObjectIdentifier, &OctetStringRef, BitStringRef<'_>> =
        PrivateKeyInfo {
            algorithm: AlgorithmIdentifier {
                oid: EC_PUBLIC_KEY,
                parameters: Some(curve),
            },
            private_key: octets(sec1)?,
            public_key: None,
        };
    info.to_der().map_err(|e| KeyError::Pem(e.to_string()))
}

fn octets(der: &[u8]) -> Result<&OctetStringRef, KeyError> {
    OctetStringRef::new(der).map_err(|e| KeyError::Pem(e.to_string()))
}

/// The algorithm a PKCS#8 key claims, for the error message.
fn algorithm_name(pkcs8: &[u8]) -> String {
    let Ok(info) = PrivateKeyInfo::<AnyRef<'_>, &OctetStringRef, BitStringRef<'_>>::from_der(pkcs8)
    else {
        return "PKCS#8".into();
    };
    let oid = info.algorithm.oid;
    if oid == RSA_ENCRYPTION {
        "RSA".into()
    } else if oid == EC_PUBLIC_KEY {
        match info
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        {
            Some(c) if c == P256 => "ECDSA P-256".into(),
            Some(c) if c == P384 => "ECDSA P-384".into(),
            Some(c) => format!("EC (curve {c})"),
            None => "EC".into(),
        }
    } else {
        format!("algorithm {oid}")
    }
}

/// The key as SEC1 `EC PRIVATE KEY` PEM with its named curve (what Go's
/// `x509.ParseECPrivateKey`, and so pipelock, reads). EC keys only.
pub fn sec1_pem(key: &KeyPair) -> Result<String, KeyError> {
    let der = key.serialized_der();
    let info = PrivateKeyInfo::<AnyRef<'_>, &OctetStringRef, BitStringRef<'_>>::from_der(der)
        .map_err(|e| KeyError::Pem(e.to_string()))?;
    let curve = (info.algorithm.oid == EC_PUBLIC_KEY)
        .then(|| {
            info.algorithm
                .parameters
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        })
        .flatten()
        .ok_or_else(|| KeyError::Unsupported("SEC1 holds EC keys only".into()))?;
    let mut ec = sec1::EcPrivateKey::from_der(info.private_key.as_bytes())
        .map_err(|e| KeyError::Pem(e.to_string()))?;
    ec.parameters = Some(sec1::EcParameters::NamedCurve(curve));
    let sec1 = ec.to_der().map_err(|e| KeyError::Pem(e.to_string()))?;
    Ok(crate::pem_encode("EC PRIVATE KEY", &sec1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sec1_round_trips_to_the_same_key() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            let pem = sec1_pem(&key).unwrap();
            assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"), "{pem}");
            let again = parse_private_key(&pem).unwrap();
            assert_eq!(again.public_key_raw(), key.public_key_raw());
        }
    }

    #[test]
    fn no_key_and_encrypted_key_are_named() {
        assert_eq!(
            parse_private_key("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap_err(),
            KeyError::Missing
        );
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(parse_private_key(enc).unwrap_err(), KeyError::Encrypted);
    }

    #[test]
    fn garbage_in_a_key_block_is_an_error_not_a_panic() {
        for body in ["AAAA", "MAA=", "////", ""] {
            for label in ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"] {
                let pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
                assert!(parse_private_key(&pem).is_err(), "{label} {body}");
            }
        }
    }
}
