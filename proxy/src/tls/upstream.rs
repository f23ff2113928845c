//! TLS towards origins (through the upstream proxy or direct).
//!
//! Owns: the client configurations: webpki roots plus `--upstream-ca`
//! (the pipelock CA in a bottle), ALPN as the origin offers.
//! Must never: disable certificate verification.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Errors reading `--upstream-ca`.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamCaError {
    #[error("cannot read upstream CA file {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("upstream CA file {path} holds no usable CERTIFICATE block: {detail}")]
    Bad { path: String, detail: String },
}

/// The two client configurations: `any` offers h2 and http/1.1; `h1` offers
/// only http/1.1 (WebSocket upgrades need HTTP/1.1).
#[derive(Clone)]
pub struct ClientTls {
    pub any: Arc<ClientConfig>,
    pub h1: Arc<ClientConfig>,
}

impl ClientTls {
    /// webpki roots plus every certificate in `extra` (a PEM file).
    pub fn new(extra: Option<&Path>) -> Result<ClientTls, UpstreamCaError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra {
            let shown = path.display().to_string();
            let data = std::fs::read(path).map_err(|e| UpstreamCaError::Read {
                path: shown.clone(),
                detail: e.to_string(),
            })?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&data) {
                let cert = cert.map_err(|e| UpstreamCaError::Bad {
                    path: shown.clone(),
                    detail: e.to_string(),
                })?;
                roots.add(cert).map_err(|e| UpstreamCaError::Bad {
                    path: shown.clone(),
                    detail: e.to_string(),
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(UpstreamCaError::Bad {
                    path: shown,
                    detail: "no certificate found".into(),
                });
            }
        }
        let roots = Arc::new(roots);
        let provider = super::provider();
        let build = |alpn: Vec<Vec<u8>>| -> Result<Arc<ClientConfig>, UpstreamCaError> {
            let mut c = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| UpstreamCaError::Bad {
                    path: "(tls)".into(),
                    detail: e.to_string(),
                })?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = alpn;
            Ok(Arc::new(c))
        };
        Ok(ClientTls {
            any: build(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?,
            h1: build(vec![b"http/1.1".to_vec()])?,
        })
    }
}
