//! The terminal loop: raw mode and the alternate screen, a redraw per event,
//! a refresh of the proposals every second, and the decisions through the
//! same code as `bottle supervise approve|reject`.
//!
//! Owns restoring the terminal on every way out: a normal quit, an error
//! (the [`Screen`] guard's `Drop`), a panic (a hook that restores before the
//! message is printed) and a signal (the caller sets `stop`; the loop sees
//! it within one poll). Ctrl-C in raw mode arrives as a key and quits.
//!
//! Must never busy-loop: it blocks in `event::poll` for at most
//! [`TICK`] at a time.

use std::io::{Stdout, Write, stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::{cursor, execute, terminal};
use tokio::runtime::Handle;

use super::app::{Action, App};
use super::editor::{self, Edited};
use crate::docker::{ApplyError, connect};

/// How long one wait for a key lasts.
const TICK: Duration = Duration::from_millis(250);
/// How often the proposals are read again.
const REFRESH: Duration = Duration::from_secs(1);

type Term = Terminal<CrosstermBackend<Stdout>>;

/// Raw mode and the alternate screen while it lives.
struct Screen {
    term: Term,
}

pub(super) fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    let _ = stdout().flush();
}

fn enter() -> std::io::Result<()> {
    terminal::enable_raw_mode()?;
    execute!(stdout(), terminal::EnterAlternateScreen, cursor::Hide)
}

impl Screen {
    fn new() -> std::io::Result<Screen> {
        install_panic_hook();
        if let Err(e) = enter() {
            restore();
            return Err(e);
        }
        let term = Terminal::new(CrosstermBackend::new(stdout()))?;
        Ok(Screen { term })
    }

    /// Hands the terminal to another program (the editor) for `f`.
    fn suspended<T>(&mut self, f: impl FnOnce() -> T) -> std::io::Result<T> {
        restore();
        let out = f();
        enter()?;
        // A new terminal redraws every cell. (`Terminal::clear` would ask the
        // terminal for its cursor position, which not every pty answers.)
        execute!(stdout(), terminal::Clear(terminal::ClearType::All))?;
        self.term = Terminal::new(CrosstermBackend::new(stdout()))?;
        Ok(out)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
    });
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io {
        what: what.to_string(),
        source,
    }
}

/// Runs the TUI until the operator quits or `stop` is set. Blocking: call
/// it from a blocking thread; `rt` runs the Docker calls.
pub fn run(rt: Handle, operator: String, stop: Arc<AtomicBool>) -> Result<i32, ApplyError> {
    let d = rt.block_on(connect())?;
    let mut app = App::new();
    let mut screen = Screen::new().map_err(io_err("set up the terminal"))?;
    let mut next_refresh = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(130);
        }
        if Instant::now() >= next_refresh {
            refresh(&rt, &d, &mut app);
            next_refresh = Instant::now() + REFRESH;
        }
        screen
            .term
            .draw(|f| super::draw::draw(&app, f))
            .map_err(io_err("draw"))?;
        let wait = TICK.min(next_refresh.saturating_duration_since(Instant::now()));
        if !event::poll(wait).map_err(io_err("read the terminal"))? {
            continue;
        }
        let key = match event::read().map_err(io_err("read the terminal"))? {
            Event::Key(k) => k,
            _ => continue,
        };
        let acted = match app.handle_key(key) {
            Action::None => false,
            Action::Quit => return Ok(0),
            Action::Refresh => true,
            Action::Approve(id) => {
                approve(&rt, &d, &mut app, &operator, &id, None);
                true
            }
            Action::Edit(id) => {
                let Some(p) = app.items.iter().find(|p| p.id.to_string() == id).cloned() else {
                    continue;
                };
                let edited = screen
                    .suspended(|| editor::edit(&p))
                    .map_err(io_err("restore the terminal after the editor"))?;
                match edited {
                    Ok(Edited::Approve(e)) => approve(&rt, &d, &mut app, &operator, &id, e),
                    Ok(Edited::Cancel(why)) => app.set_status(false, format!("{id}: {why}")),
                    Err(e) => app.set_status(true, format!("{id}: {e}")),
                }
                true
            }
            Action::Reject { id, why } => {
                match rt.block_on(crate::supervise::reject_in(&d, &id, &why, &operator)) {
                    Ok(()) => app.set_status(false, format!("rejected {id}: {why}")),
                    Err(e) => app.set_status(true, format!("{id}: {e}")),
                }
                true
            }
        };
        if acted {
            next_refresh = Instant::now();
        }
    }
}

fn refresh(rt: &Handle, d: &bollard::Docker, app: &mut App) {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!("{:02}:{:02}:{:02}Z", now.hour(), now.minute(), now.second());
    match rt.block_on(crate::supervise::pending(d)) {
        Ok((items, bottles)) => app.set_items(items, bottles, stamp),
        Err(e) => app.set_status(true, format!("cannot read the proposals: {e}")),
    }
}

fn approve(
    rt: &Handle,
    d: &bollard::Docker,
    app: &mut App,
    operator: &str,
    id: &str,
    edit: Option<bottle_supervise::host::Edit>,
) {
    let edited = if edit.is_some() { " (edited)" } else { "" };
    match rt.block_on(crate::supervise::approve_and_apply(
        d,
        id,
        operator,
        edit.as_ref(),
    )) {
        Ok(done) => {
            let proxy = match done.outer_proxy {
                Ok(Some((kind, n))) => format!("; {kind} reconfigured ({n} hosts)"),
                Ok(None) => String::new(),
                Err(e) => {
                    app.set_status(
                        true,
                        format!("approved {id}{edited}, but the outer proxy was not updated: {e}"),
                    );
                    return;
                }
            };
            app.set_status(
                false,
                format!(
                    "approved {id}{edited}: {}{proxy}",
                    done.approved.route_after
                ),
            );
        }
        Err(e) => app.set_status(true, format!("{id}: {e}")),
    }
}
