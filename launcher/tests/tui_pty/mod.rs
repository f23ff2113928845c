//! `bottle supervise` under a pseudo-terminal for the end-to-end tests:
//! `script` (util-linux) gives it a pty of COLS x ROWS, the test writes keys
//! to it and reads the screen back through [`Screen`], enough of a terminal
//! emulator for what ratatui's crossterm backend sends (cursor moves, clears,
//! text; colours and modes skipped).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::e2e_support::{bottle_bin, wait_for};

pub const COLS: usize = 140;
pub const ROWS: usize = 40;

/// Enough of a terminal to read what the TUI draws: cursor positioning
/// (`CSI r;c H`), clears (`CSI 2J`), and text; other sequences are skipped.
pub struct Screen {
    cells: Vec<Vec<char>>,
    row: usize,
    col: usize,
}

impl Screen {
    pub fn new() -> Screen {
        Screen {
            cells: vec![vec![' '; COLS]; ROWS],
            row: 0,
            col: 0,
        }
    }

    pub fn feed(&mut self, s: &str) {
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '\u{1b}' => match it.next() {
                    Some('[') => {
                        let mut params = String::new();
                        let mut fin = ' ';
                        for c in it.by_ref() {
                            if ('\u{40}'..='\u{7e}').contains(&c) {
                                fin = c;
                                break;
                            }
                            params.push(c);
                        }
                        self.csi(&params, fin);
                    }
                    // OSC and friends: up to BEL or ST.
                    Some(']') => {
                        while let Some(c) = it.next() {
                            if c == '\u{7}' || (c == '\u{1b}' && it.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    _ => {}
                },
                '\r' => self.col = 0,
                '\n' => self.row = (self.row + 1).min(ROWS - 1),
                c if c.is_control() => {}
                c => {
                    if self.row < ROWS && self.col < COLS {
                        self.cells[self.row][self.col] = c;
                    }
                    self.col += 1;
                }
            }
        }
    }

    fn csi(&mut self, params: &str, fin: char) {
        let n: Vec<usize> = params
            .trim_start_matches('?')
            .split(';')
            .map(|p| p.parse().unwrap_or(1))
            .collect();
        match fin {
            'H' | 'f' => {
                self.row = n
                    .first()
                    .copied()
                    .unwrap_or(1)
                    .saturating_sub(1)
                    .min(ROWS - 1);
                self.col = n.get(1).copied().unwrap_or(1).saturating_sub(1);
            }
            'J' if params == "2" => self.cells = vec![vec![' '; COLS]; ROWS],
            _ => {}
        }
    }

    pub fn text(&self) -> String {
        self.cells
            .iter()
            .map(|r| r.iter().collect::<String>().trim_end().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `bottle supervise` under a pseudo-terminal of COLS x ROWS.
pub struct Tui {
    pub child: Child,
    keys: ChildStdin,
    /// Every byte the TUI wrote to the terminal.
    pub out: Arc<Mutex<Vec<u8>>>,
}

impl Tui {
    pub fn start(state: &Path, editor: Option<&Path>) -> Tui {
        let cmd = format!(
            "stty cols {COLS} rows {ROWS}; exec {} supervise",
            bottle_bin().display()
        );
        let mut child = Command::new("script")
            .args(["-qefc", &cmd, "/dev/null"])
            .env("BOTTLE_STATE_DIR", state)
            .env("USER", "e2e-tui-operator")
            .env("TERM", "xterm-256color")
            .env("VISUAL", "")
            .env(
                "EDITOR",
                editor.map_or("false".into(), |e| e.display().to_string()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script (util-linux) runs");
        let keys = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Tui { child, keys, out }
    }

    pub fn screen(&self) -> String {
        let mut s = Screen::new();
        s.feed(&String::from_utf8_lossy(&self.out.lock().unwrap()));
        s.text()
    }

    pub fn press(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
        self.keys.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Waits until the screen shows every one of `want`.
    pub fn wait_screen(&self, secs: u64, want: &[&str]) -> String {
        wait_for(secs, || {
            let s = self.screen();
            want.iter().all(|w| s.contains(w)).then_some(s)
        })
        .unwrap_or_else(|| panic!("the screen never showed {want:?}:\n{}", self.screen()))
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
