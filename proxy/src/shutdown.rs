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

/// Requests in flight on one client connection and when the last one ended:
/// the idle keep-alive timeout closes a connection only when nothing is in
/// flight (a streaming response counts until its body ends).
#[derive(Debug)]
pub struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    last: std::sync::Mutex<std::time::Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            last: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

/// One request in flight, until dropped (with its response body).
#[derive(Debug)]
pub struct Busy(std::sync::Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut last) = self.0.last.lock() {
            *last = std::time::Instant::now();
        }
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Activity {
    /// Marks a request in flight until the returned guard is dropped.
    pub fn begin(self: &std::sync::Arc<Self>) -> Busy {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Completes once the connection has had nothing in flight for `limit`.
    pub async fn idle_for(&self, limit: std::time::Duration) {
        // Checked at a fraction of the limit: precise enough, and cheap.
        let step = (limit / 4).max(std::time::Duration::from_millis(50));
        loop {
            tokio::time::sleep(step).await;
            let idle_since = self.last.lock().map(|l| l.elapsed()).unwrap_or_default();
            if self.in_flight.load(std::sync::atomic::Ordering::Acquire) == 0 && idle_since >= limit
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_only_when_nothing_is_in_flight() {
        let a = std::sync::Arc::new(Activity::default());
        let busy = a.begin();
        let limit = std::time::Duration::from_millis(100);
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(400), a.idle_for(limit)).await;
        assert!(waited.is_err(), "a request in flight is not idle");
        drop(busy);
        tokio::time::timeout(std::time::Duration::from_secs(5), a.idle_for(limit))
            .await
            .expect("idle once the request ended");
    }

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
