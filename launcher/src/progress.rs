//! Progress for people: indicatif spinners on a terminal, plain lines
//! otherwise, nothing with `--quiet`. Colour only on a TTY.
//!
//! Must never: print a secret (callers pass fixed step names), or write to stdout
//! (stdout belongs to the agent's output and `bottle plan --json`).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
    tty: bool,
}

pub struct Step {
    bar: Option<ProgressBar>,
    msg: String,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn step(&self, msg: &str) -> Step {
        if self.quiet {
            return Step {
                bar: None,
                msg: msg.into(),
                quiet: true,
            };
        }
        if self.tty {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(msg.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            Step {
                bar: Some(bar),
                msg: msg.into(),
                quiet: false,
            }
        } else {
            eprintln!("bottle: {msg} ...");
            Step {
                bar: None,
                msg: msg.into(),
                quiet: false,
            }
        }
    }

    pub fn note(&self, msg: &str) {
        if !self.quiet {
            if self.tty {
                eprintln!("\x1b[2mbottle:\x1b[0m {msg}");
            } else {
                eprintln!("bottle: {msg}");
            }
        }
    }

    pub fn warn(&self, msg: &str) {
        // Warnings show even with --quiet.
        if self.tty {
            eprintln!("\x1b[33mbottle: warning:\x1b[0m {msg}");
        } else {
            eprintln!("bottle: warning: {msg}");
        }
    }
}

impl Step {
    pub fn done(self) {
        if let Some(b) = &self.bar {
            b.finish_with_message(format!("\x1b[32m✓\x1b[0m {}", self.msg));
        } else if !self.quiet {
            eprintln!("bottle: {} ... ok", self.msg);
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(b) = &self.bar
            && !b.is_finished()
        {
            b.abandon_with_message(format!("✗ {}", self.msg));
        }
    }
}
