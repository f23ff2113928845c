//! Leaf certificates, minted per CONNECT host, and their bounded cache.
//!
//! Owns: minting (SAN = the CONNECT host, serverAuth EKU, valid from one hour
//! ago for 30 days, random serial, signed by the CA), the cache of one rustls
//! `ServerConfig` per host, and single-flight minting.
//! Must never: mint for a name other than the CONNECT host, or serve a leaf
//! close to its expiry.
//!
//! Design: one ECDSA P-256 leaf key is generated at start and shared by every
//! leaf (as mitmproxy does): minting is then one ECDSA signature. Each cached
//! entry is a whole `ServerConfig` for that host, shared by every connection to
//! it, so a connection costs one cache lookup and no per-connection building.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
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

/// The leaf minter and its bounded cache.
pub struct LeafCache {
    ca: Arc<Ca>,
    key: KeyPair,
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    cache: quick_cache::sync::Cache<String, Arc<Entry>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    mints: std::sync::atomic::AtomicU64,
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
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| err(e.to_string()))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = super::provider();
        let signing_key = provider
            .key_provider
            .load_private_key(der)
            .map_err(|e| err(e.to_string()))?;
        Ok(LeafCache {
            ca,
            key,
            signing_key,
            cache: quick_cache::sync::Cache::new(capacity.max(1)),
            provider,
            mints: std::sync::atomic::AtomicU64::new(0),
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

    /// Mints the DER chain (leaf, CA) for `host`.
    pub fn mint(
        &self,
        host: &str,
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
            .signed_by(&self.key, &self.ca.issuer)
            .map_err(|e| err(e.to_string()))?;
        Ok(vec![cert.der().clone(), self.ca.cert_der.clone()])
    }

    /// How many leaves were minted (for tests and metrics).
    pub fn mint_count(&self) -> u64 {
        self.mints.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn build(&self, host: &str) -> Result<Arc<ServerConfig>, LeafError> {
        let chain = self.mint(host)?;
        self.mints
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::get().leaf_minted();
        let certified = Arc::new(CertifiedKey::new(chain, self.signing_key.clone()));
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| LeafError {
                host: host.into(),
                detail: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneCert(certified)));
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

/// Serves the one leaf of a host, whatever SNI the client sent: the leaf is
/// for the CONNECT host; a different SNI is refused later (421) by the policy.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}
