//! Reporting policy loads: start-up, SIGHUP reloads, token-file permissions.
//!
//! Owns: the log lines and metrics of a (re)load (how many routes are in
//! force, every error of a refused file), and the permission warning for
//! `token_file`s readable by group or others. The swap itself is
//! `Running::reload` (an `ArcSwap` store, so requests in flight keep the
//! policy they started with).
//! Must never: log a token value, or leave the proxy without a policy (a bad
//! file keeps the old one).

use std::path::Path;

use crate::Running;

/// Logs and counts the policy loaded at start.
pub fn started(running: &Running) {
    let routes = running.shared.loaded.load().policy.routes().len();
    crate::metrics::get().set_routes(routes);
    tracing::info!(routes, "routes loaded");
}

/// Handles SIGHUP: reloads the routes file and token files, logs the outcome.
/// Returns whether the new policy is in force.
pub fn on_sighup(running: &Running) -> bool {
    let metrics = crate::metrics::get();
    match running.reload() {
        Ok(()) => {
            let routes = running.shared.loaded.load().policy.routes().len();
            metrics.reload(true);
            metrics.set_routes(routes);
            tracing::info!(routes, "routes reloaded");
            true
        }
        Err(e) => {
            metrics.reload(false);
            // One line per problem so none hides behind another in a log
            // viewer; the error text names files and fields, never values.
            let problems: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
            for problem in &problems {
                tracing::warn!(error = %problem, "reload refused");
            }
            tracing::warn!(
                errors = problems.len(),
                "reload failed; keeping the old policy"
            );
            false
        }
    }
}

/// How often `--watch-routes` looks at the files.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// What identifies a file's content cheaply: modification time, size, inode
/// (a replaced file or a re-pointed symlink, as Kubernetes secrets do, is a
/// new inode). `None`: the file cannot be read now.
type Stamp = Option<(std::time::SystemTime, u64, u64)>;

/// `--watch-routes`: polls the routes file and the token files of the policy
/// in force; a change triggers the same reload as SIGHUP. Polling (no
/// inotify) keeps it dependency-free and works on bind mounts and symlinks.
#[derive(Debug)]
pub struct Watch {
    routes: std::path::PathBuf,
    last: Vec<Stamp>,
}

impl Watch {
    pub fn new(routes: std::path::PathBuf, running: &Running) -> Watch {
        let mut w = Watch {
            routes,
            last: Vec::new(),
        };
        w.refresh(running);
        w
    }

    fn stamps(&self, running: &Running) -> Vec<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let loaded = running.shared.loaded.load();
        let mut paths = vec![self.routes.clone()];
        for route in loaded.policy.routes() {
            if let Some(cred) = route.credential()
                && let addon_rules::TokenSource::File(p) = &cred.source
            {
                paths.push(p.clone());
            }
        }
        paths
            .iter()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.modified().ok()?, m.len(), m.ino()))
            })
            .collect()
    }

    /// Remembers the files as they are now (after a reload, by either path).
    pub fn refresh(&mut self, running: &Running) {
        self.last = self.stamps(running);
    }

    /// Whether a watched file changed since the last look.
    pub fn changed(&mut self, running: &Running) -> bool {
        let now = self.stamps(running);
        if now == self.last {
            return false;
        }
        self.last = now;
        true
    }
}

/// Reads a token file, warning first when group or others can read it: the
/// token should be readable only by the proxy's user (mode 0600 or 0400).
pub fn read_token_file(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            token_file = %path.display(),
            mode = %format!("{mode:04o}"),
            "token_file is readable by group or others; chmod 600 it"
        );
    }
    std::io::read_to_string(file)
}

/// The SHA-256 fingerprint of the first certificate of a PEM text, as
/// `AB:CD:...` (the form `openssl x509 -fingerprint -sha256` prints).
pub fn ca_fingerprint(pem: &str) -> Option<String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    Some(hex.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_of_a_minted_ca() {
        let (ca, _) = crate::tls::Ca::mint("fp test").unwrap();
        let fp = ca_fingerprint(ca.cert_pem()).unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.chars().all(|c| c.is_ascii_hexdigit() || c == ':'));
        assert!(ca_fingerprint("not a pem").is_none());
    }
}
