//! The drain signal of SIGTERM/SIGINT.
//!
//! Owns: one flag, set once when the proxy starts draining, that every client
//! connection watches: an idle HTTP/1 connection closes at once, one with a
//! request in flight closes after its response (streams included), an h2
//! connection sends GOAWAY and finishes its open streams.
//! Must never: cut a request in flight; only the `--grace` deadline of
//! `Running::shutdown` may do that, by ending the process.

use tokio::sync::watch;

/// Set once to start draining; cloned receivers watch it.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            tx: watch::Sender::new(false),
        }
    }
}

impl Drain {
    /// Starts draining (idempotent).
    pub fn start(&self) {
        self.tx.send_replace(true);
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }

    /// A future that completes once draining has started (at once if it
    /// already has). Never completes if the `Drain` is dropped undrained.
    pub fn signalled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            if rx.wait_for(|draining| *draining).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signalled_before_and_after_start() {
        let d = Drain::default();
        let early = d.signalled();
        assert!(!d.is_draining());
        d.start();
        early.await;
        // A connection accepted after the start sees it at once.
        d.signalled().await;
        assert!(d.is_draining());
    }
}
