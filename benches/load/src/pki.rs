//! Test PKI for the harness: the origin's CA and server certificate, and the CA every
//! proxy under test mints its leaves from (written in the PEM layouts each proxy reads).
//!
//! Owns key generation and file layout only. It must never be used for anything but the
//! benchmark: keys are throwaway, written to the run's own directory, and never printed.

use anyhow::{Context, Result};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The harness's CAs and origin leaf live for one run; two days covers a
/// run started just before midnight on a skewed clock, and no more.
pub const BENCH_VALIDITY: Duration = Duration::days(2);

/// A CA certificate with its key, both as PEM.
pub struct CaPem {
    pub cert: String,
    pub key: String,
}

/// Mints a fresh P-256 CA (`bottle_pki::mint_ca`, the product's CA profile,
/// without a path length limit), valid for `BENCH_VALIDITY`.
pub fn mint_ca(common_name: &str) -> Result<CaPem> {
    let ca = bottle_pki::mint_ca(&bottle_pki::CaSpec {
        common_name,
        organization: "bottle egress load harness",
        valid_for: BENCH_VALIDITY,
        path_len: None,
    })
    .context("minting CA")?;
    Ok(CaPem {
        key: ca.key_pkcs8_pem(),
        cert: ca.cert_pem,
    })
}

/// Loads a CA (certificate + key PEM) as an rcgen issuer for minting leaves.
pub fn load_issuer(cert_pem: &str, key_pem: &str) -> Result<Issuer<'static, KeyPair>> {
    bottle_pki::load_ca(cert_pem, key_pem)
        .context("loading CA")?
        .into_issuer()
        .context("parsing CA certificate")
}

/// The origin's server certificate: every loopback IP 127.0.0.1..=127.0.0.254 (the S3
/// hosts) and `localhost`, signed by `ca`.
pub fn mint_origin_leaf(ca: &CaPem) -> Result<(String, String)> {
    let issuer = load_issuer(&ca.cert, &ca.key)?;
    let key = KeyPair::generate().context("generating origin key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bench origin");
    params.distinguished_name = dn;
    params.subject_alt_names = (1..=254u8)
        .map(|i| SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))))
        .collect();
    params
        .subject_alt_names
        .push(SanType::DnsName("localhost".try_into().context("SAN")?));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - bottle_pki::BACKDATE;
    params.not_after = now + BENCH_VALIDITY;
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing origin certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Files of the proxies' CA, in the layouts the proxies read.
pub struct ProxyCaFiles {
    /// CA certificate alone (what clients trust; egress-proxy `--ca-cert`).
    pub cert: PathBuf,
    /// PKCS#8 key alone (egress-proxy `--ca-key`), mode 0600.
    pub key: PathBuf,
    /// mitmproxy's confdir holding `mitmproxy-ca.pem` (key + cert).
    pub mitm_confdir: PathBuf,
}

/// Writes the proxies' CA to `dir`.
pub fn write_proxy_ca(dir: &Path, ca: &CaPem) -> Result<ProxyCaFiles> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cert = dir.join("proxy-ca-cert.pem");
    let key = dir.join("proxy-ca-key.pem");
    let confdir = dir.join("mitmproxy-conf");
    std::fs::create_dir_all(&confdir)?;
    write_private(&key, &ca.key)?;
    std::fs::write(&cert, &ca.cert)?;
    write_private(
        &confdir.join("mitmproxy-ca.pem"),
        &format!("{}{}", ca.key, ca.cert),
    )?;
    std::fs::write(confdir.join("mitmproxy-ca-cert.pem"), &ca.cert)?;
    std::fs::set_permissions(&confdir, std::fs::Permissions::from_mode(0o700))?;
    Ok(ProxyCaFiles {
        cert,
        key,
        mitm_confdir: confdir,
    })
}

/// Writes a file only its owner can read (a new file renamed over any old one).
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    bottle_pki::write_new(
        path,
        contents.as_bytes(),
        0o600,
        bottle_pki::Existing::Replace,
    )
    .with_context(|| format!("writing {}", path.display()))
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

/// A root store holding the certificates of `path`.
pub fn root_store(path: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(path)? {
        roots
            .add(c)
            .with_context(|| format!("adding {} as trust anchor", path.display()))?;
    }
    Ok(roots)
}
