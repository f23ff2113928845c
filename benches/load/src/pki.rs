//! Test PKI for the harness: the origin's CA and server certificate, and the CA every
//! proxy under test mints its leaves from (written in the PEM layouts each proxy reads).
//!
//! Owns key generation and file layout only. It must never be used for anything but the
//! benchmark: keys are throwaway, written to the run's own directory, and never printed.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// A CA certificate with its key, both as PEM.
pub struct CaPem {
    pub cert: String,
    pub key: String,
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "bottle egress load harness");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(2);
    params
}

/// Mints a fresh P-256 CA.
pub fn mint_ca(common_name: &str) -> Result<CaPem> {
    let key = KeyPair::generate().context("generating CA key")?;
    let cert = ca_params(common_name)
        .self_signed(&key)
        .context("self-signing CA")?;
    Ok(CaPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Loads a CA (certificate + PKCS#8 key PEM) as an rcgen issuer for minting leaves.
pub fn load_issuer(cert_pem: &str, key_pem: &str) -> Result<Issuer<'static, KeyPair>> {
    let key = KeyPair::from_pem(key_pem).context("parsing CA key PEM")?;
    Issuer::from_ca_cert_pem(cert_pem, key).context("parsing CA certificate PEM")
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
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(2);
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

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())
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
