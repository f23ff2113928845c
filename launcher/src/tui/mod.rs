//! `bottle supervise` with no subcommand: the operator's terminal UI over the
//! pending proposals of every running supervised bottle (docs/supervise.md,
//! "The terminal UI").
//!
//! - [`app`]: the state machine (proposals, selection, mode, typed reason;
//!   `handle_key` -> `Action`), pure;
//! - [`draw`]: `draw(&App, &mut Frame)`, escaping every agent-written string;
//! - [`editor`]: approve with edit in `$EDITOR` (also `approve --edit`);
//! - [`term`]: the terminal loop, its refresh and its restoring.
//!
//! Decisions go through `crate::supervise` (the same code as `bottle
//! supervise approve|reject`, squid update included). Must never decide
//! anything the operator did not key, or leave the terminal in raw mode.

pub mod app;
pub mod draw;
pub mod editor;
mod term;

#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::docker::ApplyError;

/// `bottle supervise`: the TUI on a terminal; the list (as `list` prints it)
/// and a note otherwise.
pub async fn run(operator: String) -> Result<i32, ApplyError> {
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        let code = crate::supervise::list(false).await?;
        eprintln!(
            "bottle supervise: the terminal UI needs a terminal (stdin and stdout); \
             without one, use `bottle supervise list|approve|reject`"
        );
        return Ok(code);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Handle::current();
    let ui = tokio::task::spawn_blocking({
        let stop = stop.clone();
        move || term::run(rt, operator, stop)
    });
    tokio::pin!(ui);
    let mut term_sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ApplyError::Runtime(format!("cannot watch SIGTERM: {e}")))?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| ApplyError::Runtime(format!("cannot watch SIGHUP: {e}")))?;
    let joined = tokio::select! {
        r = &mut ui => r,
        _ = tokio::signal::ctrl_c() => return stopped(&stop, ui).await,
        _ = term_sig.recv() => return stopped(&stop, ui).await,
        _ = hup.recv() => return stopped(&stop, ui).await,
    };
    match joined {
        Ok(r) => r,
        Err(e) => Err(ApplyError::Runtime(format!("the terminal UI failed: {e}"))),
    }
}

/// After a signal: the loop sees `stop` within one poll and restores the
/// terminal. When its terminal has hung up (the window closed, `script`
/// killed) crossterm's reader can spin on end-of-file and never return, so
/// the loop is given [`GIVE_UP`]; then the terminal is restored here and
/// `bottle` exits 130 all the same (`main` exits the process; the spinning
/// thread goes with it).
async fn stopped(
    stop: &AtomicBool,
    ui: impl std::future::Future<Output = Result<Result<i32, ApplyError>, tokio::task::JoinError>>,
) -> Result<i32, ApplyError> {
    stop.store(true, Ordering::Relaxed);
    match tokio::time::timeout(GIVE_UP, ui).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ApplyError::Runtime(format!("the terminal UI failed: {e}"))),
        Err(_) => {
            term::restore();
            Ok(130)
        }
    }
}

/// How long the terminal loop gets to stop after a signal.
const GIVE_UP: std::time::Duration = std::time::Duration::from_secs(1);
