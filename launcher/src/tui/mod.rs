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
        _ = tokio::signal::ctrl_c() => { stop.store(true, Ordering::Relaxed); ui.await }
        _ = term_sig.recv() => { stop.store(true, Ordering::Relaxed); ui.await }
        _ = hup.recv() => { stop.store(true, Ordering::Relaxed); ui.await }
    };
    match joined {
        Ok(r) => r,
        Err(e) => Err(ApplyError::Runtime(format!("the terminal UI failed: {e}"))),
    }
}
