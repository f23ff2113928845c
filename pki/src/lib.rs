//! bottle-pki: the workspace's one home for certificate authorities.
//!
//! Owns: minting a CA with the validity its caller states (`ca`), reading
//! private keys in PKCS#8, PKCS#1 and SEC1 (`key`), PEM text, and writing key
//! files exclusively (`files`). egress-proxy, the launcher and the load harness
//! all call it, so the CA profile cannot drift between them.
//! Must never: log, print or put in an error any private key bytes.

pub mod ca;
pub mod files;
pub mod key;

pub use ca::{BACKDATE, Ca, CaError, CaSpec, load_ca, mint_ca, random_serial};
pub use files::{Existing, WriteError, private_dir, write_new};
pub use key::{KeyError, parse_private_key, sec1_pem};

/// DER as PEM text with `label`, 64-column lines, LF line ends.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
