//! Per-test certificate authorities minted with rcgen: the proxy's CA (what clients
//! trust), the origin's CA (what the proxy trusts via --upstream-ca) and squid's.
//!
//! Keys live only in the test's temp dir; nothing here is ever logged.

use std::path::{Path, PathBuf};

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
