//! Signals during `bottle run` (SIGINT, SIGTERM, SIGHUP): the first one
//! stops the work (apply, or the attached agent) and teardown starts; every
//! later one, during teardown, is acknowledged with a message and teardown
//! goes on to the end. Teardown is already its fastest complete form (the
//! containers are force-removed, not stopped), so there is nothing quicker
//! to switch to; only `kill -9` can cut it short, and then
//! `bottle cleanup --yes` finishes it.
//!
//! Owns: the one set of signal listeners of `bottle run`, created once after
//! the preflight and kept until teardown ends, so no signal falls between
//! two listeners.
//!
//! Must never: listen during the preflight question (Ctrl-C there must end
//! `bottle` at once, nothing having been made), or let a signal drop the
//! teardown future.

use std::future::Future;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::progress::Progress;

/// The listeners; once created, these signals no longer end the process.
pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// None when the handlers cannot be installed (the work alone decides then).
    pub fn new() -> Option<Self> {
        Some(Signals {
            int: signal(SignalKind::interrupt()).ok()?,
            term: signal(SignalKind::terminate()).ok()?,
            hup: signal(SignalKind::hangup()).ok()?,
        })
    }

    /// The next signal, named as a user would say it.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "interrupted",
            _ = self.term.recv() => "terminated",
            _ = self.hup.recv() => "hung up",
        }
    }
}

/// Runs `work` until it ends (Ok) or a signal comes (Err with its name;
/// `work` is dropped then, which restores the terminal and leaves what apply
/// made to teardown).
pub async fn until<T>(
    signals: Option<&mut Signals>,
    work: impl Future<Output = T>,
) -> Result<T, &'static str> {
    let Some(s) = signals else {
        return Ok(work.await);
    };
    tokio::select! {
        r = work => Ok(r),
        name = s.recv() => Err(name),
    }
}

/// Runs `work` (teardown) to its end whatever signals come: each is
/// acknowledged with a warning, none stops it.
pub async fn shielded<T>(
    signals: Option<&mut Signals>,
    work: impl Future<Output = T>,
    progress: &Progress,
) -> T {
    let Some(s) = signals else {
        return work.await;
    };
    tokio::pin!(work);
    loop {
        tokio::select! {
            r = &mut work => return r,
            name = s.recv() => progress.warn(&format!(
                "{name} again: teardown goes on until nothing of the bottle is left (seconds); \
                 `kill -9` would stop it half-way and leave the rest to `bottle cleanup --yes`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn raise(sig: &str) {
        let me = std::process::id().to_string();
        let st = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &me])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// The first signal stops the work; signals during the shielded work
    /// (teardown) are acknowledged and the work still completes.
    /// One test, since the signals go to the whole test process.
    #[tokio::test]
    async fn first_signal_stops_the_work_later_ones_do_not_stop_teardown() {
        let mut s = Signals::new().expect("signal handlers");
        let work = tokio::time::sleep(Duration::from_secs(30));
        let stop = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            raise("INT");
            pending_forever().await
        };
        let r = tokio::select! {
            r = until(Some(&mut s), work) => r,
            () = stop => unreachable!(),
        };
        assert_eq!(r, Err("interrupted"));
        let teardown = async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            "torn down"
        };
        let again = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            raise("INT");
            tokio::time::sleep(Duration::from_millis(100)).await;
            raise("TERM");
            pending_forever().await
        };
        let progress = Progress::new(true);
        let r = tokio::select! {
            r = shielded(Some(&mut s), teardown, &progress) => r,
            () = again => unreachable!(),
        };
        assert_eq!(r, "torn down");
    }

    async fn pending_forever() {
        std::future::pending::<()>().await
    }
}
