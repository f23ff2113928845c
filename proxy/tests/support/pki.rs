//! Per-test certificate authorities minted with rcgen: the proxy's CA (what clients
//! trust), the origin's CA (what the proxy trusts via --upstream-ca) and squid's.
//!
//! Keys live only in the test's temp dir; nothing here is ever logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

pub struct TestCa {
    pub cert_pem: String,
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// Files of one CA written to disk.
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate and key in one PEM (the mitmproxy layout, `--ca`).
    pub combined: PathBuf,
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("generate CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        let key_pem = key.serialize_pem();
        TestCa {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server leaf for `names` (DNS names or IP literals): (cert PEM, key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }

    pub fn write(&self, dir: &Path, stem: &str) -> CaFiles {
        let cert = dir.join(format!("{stem}-cert.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        let combined = dir.join(format!("{stem}.pem"));
        std::fs::write(&cert, &self.cert_pem).expect("write CA cert");
        write_private(&key, &self.key_pem);
        write_private(&combined, &format!("{}{}", self.cert_pem, self.key_pem));
        CaFiles {
            cert,
            key,
            combined,
        }
    }

    /// A rustls root store holding only this CA.
    pub fn root_store(&self) -> rustls::RootCertStore {
        root_store_from_pem(self.cert_pem.as_bytes())
    }
}

/// The crypto provider every test client and server uses (the product's: ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls root store holding every certificate of `pem`.
pub fn root_store_from_pem(pem: &[u8]) -> rustls::RootCertStore {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.expect("CA PEM")).expect("add root");
    }
    roots
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create key file");
    f.write_all(text.as_bytes()).expect("write key file");
}

/// Leaf properties SPEC §4 fixes: SAN = the host, serverAuth EKU, not a CA,
/// valid from about an hour ago for at most 30 days, issued by the proxy CA.
pub fn check_leaf(cert: &x509_parser::certificate::X509Certificate<'_>, host: &str, ca_pem: &str) {
    use x509_parser::extensions::GeneralName;
    let san = cert
        .subject_alternative_name()
        .expect("SAN parse")
        .expect("leaf must carry a SAN");
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|g| match g {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        vec![host.to_string()],
        "SAN must be exactly the CONNECT host"
    );
    let eku = cert
        .extended_key_usage()
        .expect("EKU parse")
        .expect("leaf must carry an EKU");
    assert!(eku.value.server_auth, "EKU must include serverAuth");
    assert!(!cert.is_ca(), "a leaf must not be a CA");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    assert!(
        nb <= now - 50 * 60 && nb >= now - 2 * 3600,
        "notBefore about one hour ago"
    );
    assert!(
        na - nb <= 30 * 86400 + 3600 + 60,
        "validity at most 30 days (+1 h backdate)"
    );
    assert!(
        na > now + 86400,
        "a fresh leaf is valid for more than a day"
    );
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).expect("CA PEM");
    let ca = ca.parse_x509().expect("CA DER");
    assert_eq!(cert.issuer(), ca.subject(), "issued by the proxy CA");
    cert.verify_signature(Some(ca.public_key()))
        .expect("leaf signature must verify with the proxy CA key");
}
