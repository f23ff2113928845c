//! Leaf certificates, minted per CONNECT host, and their bounded cache.
//!
//! Owns: minting (SAN = the CONNECT host, serverAuth EKU, valid from one hour
//! ago for 30 days, random serial, signed by the CA), the cache of one rustls
//! `ServerConfig` per host, and single-flight minting.
//! Must never: mint for a name other than the CONNECT host, or serve a leaf
//! close to its expiry.
//!
//! Design: two leaf keys are generated at start and shared by every leaf (as
//! mitmproxy shares one): minting is then one signature by the CA. A host's
//! leaf for the Ed25519 key is minted on first use and served to every client
//! that offers Ed25519 signatures (OpenSSL, Go, rustls, Node and Python do):
//! each full handshake signs once, and Ed25519 signs in half the time of ECDSA
//! P-256 (docs/benchmarks.md, round 15). A client that does not offer it gets
//! the host's ECDSA P-256 leaf, minted the first time one asks. Each cached
//! entry is a whole `ServerConfig` for that host, shared by every connection to
//! it, so a connection costs one cache lookup and no per-connection building.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureScheme};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::Ca;

/// Leaves are valid for 30 days from one hour ago; re-minted after 20 days so
/// no client ever sees one near its end.
const LEAF_VALIDITY: time::Duration = time::Duration::days(30);
const LEAF_BACKDATE: time::Duration = time::Duration::hours(1);
const REMINT_AFTER: Duration = Duration::from_secs(20 * 24 * 3600);

/// Errors minting a leaf (never expected with a valid CA; reported, not panicked).
#[derive(Debug, thiserror::Error)]
#[error("cannot mint a leaf certificate for {host}: {detail}")]
pub struct LeafError {
    host: String,
    detail: String,
}

pub use bottle_pki::random_serial;

struct Entry {
    config: Arc<ServerConfig>,
    minted: Instant,
}

/// The key a leaf certifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKey {
    /// For clients that offer Ed25519 signatures: most of them.
    Ed25519,
    /// For the others.
    EcdsaP256,
}

/// One of the two shared leaf keys: its key pair (the public half goes into
/// every leaf) and its signer (for the handshakes).
struct KeyAndSigner {
    pair: KeyPair,
    signer: Arc<dyn rustls::sign::SigningKey>,
}

/// Mints leaves: the CA and the two leaf keys.
struct Minter {
    ca: Arc<Ca>,
    ed25519: KeyAndSigner,
    ecdsa: KeyAndSigner,
    mints: std::sync::atomic::AtomicU64,
}

/// The leaf minter and its bounded cache.
pub struct LeafCache {
    minter: Arc<Minter>,
    cache: quick_cache::sync::Cache<String, Arc<Entry>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeafCache { .. }")
    }
}

impl LeafCache {
    /// A cache holding at most `capacity` hosts.
    pub fn new(ca: Arc<Ca>, capacity: usize) -> Result<Self, LeafError> {
        let err = |detail: String| LeafError {
            host: "(leaf key)".into(),
            detail,
        };
        let provider = super::provider();
        let generate = |alg| {
            let pair = KeyPair::generate_for(alg).map_err(|e| err(e.to_string()))?;
            let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.serialize_der()));
            let signer = provider
                .key_provider
                .load_private_key(der)
                .map_err(|e| err(e.to_string()))?;
            Ok::<_, LeafError>(KeyAndSigner { pair, signer })
        };
        let minter = Minter {
            ca,
            ed25519: generate(&rcgen::PKCS_ED25519)?,
            ecdsa: generate(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            mints: std::sync::atomic::AtomicU64::new(0),
        };
        Ok(LeafCache {
            minter: Arc::new(minter),
            cache: quick_cache::sync::Cache::new(capacity.max(1)),
            provider,
        })
    }

    /// The server configuration for `host` (the CONNECT host), minting its
    /// leaf on first use. Concurrent first calls for one host mint once.
    pub async fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, LeafError> {
        let key = host.to_ascii_lowercase();
        // Two rounds at most: the second follows the removal of an old entry.
        for _ in 0..2 {
            match self.cache.get_value_or_guard_async(&key).await {
                Ok(entry) => {
                    if entry.minted.elapsed() < REMINT_AFTER {
                        crate::metrics::get().leaf_cache_hit();
                        return Ok(entry.config.clone());
                    }
                    self.cache.remove(&key);
                }
                Err(guard) => {
                    let entry = Arc::new(Entry {
                        config: self.build(&key)?,
                        minted: Instant::now(),
                    });
                    let config = entry.config.clone();
                    let _ = guard.insert(entry);
                    return Ok(config);
                }
            }
        }
        self.build(&key)
    }

    /// Mints the DER chain (leaf, CA) for `host` with the leaf key `key`.
    pub fn mint(
        &self,
        host: &str,
        key: LeafKey,
    ) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, LeafError> {
        self.minter.chain(host, key)
    }

    /// How many leaves were minted, of either key (for tests and metrics).
    pub fn mint_count(&self) -> u64 {
        self.minter.mints.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn build(&self, host: &str) -> Result<Arc<ServerConfig>, LeafError> {
        let leaves = HostLeaves {
            ed25519: self.minter.certified(host, LeafKey::Ed25519)?,
            ecdsa: OnceLock::new(),
            host: host.into(),
            minter: self.minter.clone(),
        };
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| LeafError {
                host: host.into(),
                detail: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(leaves));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Our order (see `super::provider`): most clients (OpenSSL's curl,
        // Python, Node) list AES-256 first.
        config.ignore_client_order = true;
        // One session ticket per full handshake, as Go's servers send (rustls
        // sends two): each costs a key derivation, a cache entry and a record
        // on every new connection, and a client resuming (Node's https agent,
        // curl within one process) uses one per reconnection, getting the
        // next on the resumed connection (docs/benchmarks.md, round 13).
        config.send_tls13_tickets = 1;
        Ok(Arc::new(config))
    }
}

impl Minter {
    /// A leaf for `host` with `key`, and that key's signer.
    fn certified(&self, host: &str, key: LeafKey) -> Result<Arc<CertifiedKey>, LeafError> {
        let chain = self.chain(host, key)?;
        self.mints
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::get().leaf_minted();
        Ok(Arc::new(CertifiedKey::new(
            chain,
            self.key(key).signer.clone(),
        )))
    }

    fn key(&self, key: LeafKey) -> &KeyAndSigner {
        match key {
            LeafKey::Ed25519 => &self.ed25519,
            LeafKey::EcdsaP256 => &self.ecdsa,
        }
    }

    /// The DER chain (leaf, CA) for `host` with `key`.
    fn chain(
        &self,
        host: &str,
        key: LeafKey,
    ) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, LeafError> {
        let err = |detail: String| LeafError {
            host: host.into(),
            detail,
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => {
                // Also a CN: OpenSSL's hostname check (`-verify_hostname`)
                // falls back to the CN when no DNS SAN is present.
                dn.push(DnType::CommonName, host);
                SanType::IpAddress(ip)
            }
            Err(_) => {
                // A CN is limited to 64 characters; the SAN is what clients check.
                if host.len() <= 64 {
                    dn.push(DnType::CommonName, host);
                }
                SanType::DnsName(
                    host.try_into()
                        .map_err(|e: rcgen::Error| err(e.to_string()))?,
                )
            }
        };
        dn.push(DnType::OrganizationName, "bottle egress-proxy");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![san];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // No AKI: a CA made elsewhere may identify its key another way
        // (SHA-1 vs rcgen's method), and a mismatching AKI makes OpenSSL
        // clients fail to find the issuer. Issuer-name chaining is enough.
        params.use_authority_key_identifier_extension = false;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = params.not_before + LEAF_VALIDITY;
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&self.key(key).pair, &self.ca.issuer)
            .map_err(|e| err(e.to_string()))?;
        Ok(vec![cert.der().clone(), self.ca.cert_der.clone()])
    }
}

/// A host's leaves, whatever SNI the client sent: the leaf is for the
/// CONNECT host; a different SNI is refused later (421) by the policy. The
/// Ed25519 one to a client that offers Ed25519 signatures, else the ECDSA
/// one, minted by the first client that needs it.
struct HostLeaves {
    ed25519: Arc<CertifiedKey>,
    ecdsa: OnceLock<Arc<CertifiedKey>>,
    host: String,
    minter: Arc<Minter>,
}

impl std::fmt::Debug for HostLeaves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostLeaves")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for HostLeaves {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if hello
            .signature_schemes()
            .contains(&SignatureScheme::ED25519)
        {
            return Some(self.ed25519.clone());
        }
        if let Some(leaf) = self.ecdsa.get() {
            return Some(leaf.clone());
        }
        // Two clients at once may both mint; the first stored is kept.
        match self.minter.certified(&self.host, LeafKey::EcdsaP256) {
            Ok(leaf) => Some(self.ecdsa.get_or_init(|| leaf).clone()),
            Err(e) => {
                // rustls then ends the handshake with an alert.
                tracing::warn!(error = %e, "cannot mint the ECDSA leaf");
                None
            }
        }
    }
}
