//! The TUI's state machine: the pending proposals, the selection, the mode
//! (browsing, typing a rejection reason, confirming a credential widening)
//! and the status line. `handle_key` turns one key into an [`Action`] for the
//! terminal loop to carry out; nothing here does I/O, so every key path is a
//! plain unit test.
//!
//! Must never: produce a `Reject` without a non-blank reason, or an
//! `Approve` of a credential-widening proposal without the operator's second
//! key.

use bottle_supervise::host::Pending;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// The longest rejection reason the library accepts (characters).
pub const MAX_REASON: usize = 2000;

/// What the terminal loop should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    Refresh,
    Approve(String),
    /// Open `$EDITOR` on the proposal, then approve what comes back.
    Edit(String),
    Reject {
        id: String,
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Browse,
    /// Typing the reason for rejecting `id`.
    Reject {
        id: String,
        input: String,
    },
    /// `a` on a proposal that widens a credentialed route: `y` approves.
    ConfirmWiden {
        id: String,
    },
}

/// The status line: the outcome of the last action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub error: bool,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct App {
    pub items: Vec<Pending>,
    pub selected: usize,
    pub mode: Mode,
    pub status: Option<Status>,
    /// Supervised bottles running at the last refresh.
    pub bottles: usize,
    /// When the list was last read (`HH:MM:SS` UTC), for the title.
    pub refreshed: String,
}

impl App {
    pub fn new() -> App {
        App {
            items: Vec::new(),
            selected: 0,
            mode: Mode::Browse,
            status: None,
            bottles: 0,
            refreshed: String::new(),
        }
    }

    pub fn selected(&self) -> Option<&Pending> {
        self.items.get(self.selected)
    }

    fn selected_id(&self) -> Option<String> {
        self.selected().map(|p| p.id.to_string())
    }

    /// Replaces the list (a refresh). The selection stays on the same
    /// proposal when it is still pending; a reason or confirmation for one
    /// that was decided meanwhile (by another operator) is dropped, saying so.
    pub fn set_items(&mut self, items: Vec<Pending>, bottles: usize, refreshed: String) {
        let keep = self.selected_id();
        self.items = items;
        self.bottles = bottles;
        self.refreshed = refreshed;
        self.selected = keep
            .as_deref()
            .and_then(|id| self.items.iter().position(|p| p.id.to_string() == id))
            .unwrap_or_else(|| self.selected.min(self.items.len().saturating_sub(1)));
        let gone = match &self.mode {
            Mode::Browse => None,
            Mode::Reject { id, .. } | Mode::ConfirmWiden { id } => {
                (!self.items.iter().any(|p| p.id.to_string() == *id)).then(|| id.clone())
            }
        };
        if let Some(id) = gone {
            self.mode = Mode::Browse;
            self.set_status(
                true,
                format!("{id} is no longer pending (decided elsewhere)"),
            );
        }
    }

    pub fn set_status(&mut self, error: bool, text: impl Into<String>) {
        self.status = Some(Status {
            error,
            text: text.into(),
        });
    }

    /// One key. Ctrl-C quits in every mode.
    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match std::mem::replace(&mut self.mode, Mode::Browse) {
            Mode::Browse => self.browse(key, ctrl),
            Mode::Reject { id, input } => self.reject_key(key, ctrl, id, input),
            Mode::ConfirmWiden { id } => {
                if key.code == KeyCode::Char('y') {
                    Action::Approve(id)
                } else {
                    self.set_status(false, format!("{id}: not approved"));
                    Action::None
                }
            }
        }
    }

    fn browse(&mut self, key: KeyEvent, ctrl: bool) -> Action {
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
            KeyCode::Char('r') | KeyCode::F(5) => Action::Refresh,
            KeyCode::Char('l') if ctrl => Action::Refresh,
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                Action::None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                if self.selected + 1 < self.items.len() {
                    self.selected += 1;
                }
                Action::None
            }
            KeyCode::Home => {
                self.selected = 0;
                Action::None
            }
            KeyCode::End => {
                self.selected = self.items.len().saturating_sub(1);
                Action::None
            }
            KeyCode::Char('a') => match self.selected() {
                None => Action::None,
                Some(p) if p.widens_credential => {
                    self.mode = Mode::ConfirmWiden {
                        id: p.id.to_string(),
                    };
                    Action::None
                }
                Some(p) => Action::Approve(p.id.to_string()),
            },
            KeyCode::Char('e') => self.selected_id().map_or(Action::None, Action::Edit),
            KeyCode::Char('x') => {
                if let Some(id) = self.selected_id() {
                    self.mode = Mode::Reject {
                        id,
                        input: String::new(),
                    };
                }
                Action::None
            }
            _ => Action::None,
        }
    }

    fn reject_key(&mut self, key: KeyEvent, ctrl: bool, id: String, mut input: String) -> Action {
        match key.code {
            KeyCode::Esc => {
                self.set_status(false, format!("{id}: not rejected"));
                Action::None
            }
            KeyCode::Enter => {
                let why = input.trim().to_string();
                if why.is_empty() {
                    self.set_status(true, "a rejection needs a reason: type it, then Enter");
                    self.mode = Mode::Reject { id, input };
                    Action::None
                } else {
                    Action::Reject { id, why }
                }
            }
            KeyCode::Backspace => {
                input.pop();
                self.mode = Mode::Reject { id, input };
                Action::None
            }
            KeyCode::Char('u') if ctrl => {
                self.mode = Mode::Reject {
                    id,
                    input: String::new(),
                };
                Action::None
            }
            KeyCode::Char(c) if !ctrl && !c.is_control() => {
                if input.chars().count() < MAX_REASON {
                    input.push(c);
                }
                self.mode = Mode::Reject { id, input };
                Action::None
            }
            _ => {
                self.mode = Mode::Reject { id, input };
                Action::None
            }
        }
    }
}

impl Default for App {
    fn default() -> App {
        App::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bottle_supervise::state::{EgressRequest, ProposalId};
    use serde_json::json;

    pub(crate) fn pending(n: u8, widens: bool) -> Pending {
        Pending {
            id: ProposalId::parse(&format!("p{n:016x}")).unwrap(),
            state: format!("/state/b0{n}/supervise").into(),
            bottle: "dev".into(),
            created: "2026-12-06T01:25:04Z".into(),
            client: "claude-code 2.1.0".into(),
            request: EgressRequest {
                host: "files.example.com".into(),
                paths: vec!["/dl/**".into()],
                methods: vec!["GET".into()],
                justification: "download the fixtures".into(),
            },
            kind: Some(if widens {
                bottle_supervise::change::Kind::Extend
            } else {
                bottle_supervise::change::Kind::NewRoute
            }),
            route_before: widens.then(|| {
                json!({"host": "files.example.com", "path_allowlist": ["/a"],
                       "token_env": "EGRESS_PROXY_TOKEN_0"})
            }),
            route_after: Some(json!({"host": "files.example.com",
                                     "path_allowlist": ["/a", "/dl/**"]})),
            widens_credential: widens,
            shadows_wildcard: None,
            problem: None,
        }
    }

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn ch(c: char) -> KeyEvent {
        key(KeyCode::Char(c))
    }

    fn app(n: u8) -> App {
        let mut a = App::new();
        a.set_items((1..=n).map(|i| pending(i, false)).collect(), 1, "t".into());
        a
    }

    #[test]
    fn keys_move_the_selection_within_the_list() {
        let mut a = app(3);
        assert_eq!(a.handle_key(key(KeyCode::Up)), Action::None);
        assert_eq!(a.selected, 0);
        a.handle_key(key(KeyCode::Down));
        a.handle_key(ch('j'));
        assert_eq!(a.selected, 2);
        a.handle_key(key(KeyCode::Down));
        assert_eq!(a.selected, 2, "past the end");
        a.handle_key(ch('k'));
        assert_eq!(a.selected, 1);
        assert_eq!(
            a.handle_key(ch('a')),
            Action::Approve("p0000000000000002".into())
        );
        assert_eq!(
            a.handle_key(ch('e')),
            Action::Edit("p0000000000000002".into())
        );
        a.handle_key(key(KeyCode::End));
        assert_eq!(a.selected, 2);
        a.handle_key(key(KeyCode::Home));
        assert_eq!(a.selected, 0);
    }

    #[test]
    fn quit_refresh_and_ctrl_c() {
        let mut a = app(1);
        assert_eq!(a.handle_key(ch('r')), Action::Refresh);
        assert_eq!(a.handle_key(ch('q')), Action::Quit);
        assert_eq!(a.handle_key(key(KeyCode::Esc)), Action::Quit);
        a.handle_key(ch('x'));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(a.handle_key(ctrl_c), Action::Quit, "Ctrl-C while typing");
    }

    #[test]
    fn nothing_to_act_on_in_an_empty_list() {
        let mut a = app(0);
        for c in ['a', 'e', 'x', 'j', 'k'] {
            assert_eq!(a.handle_key(ch(c)), Action::None);
        }
        assert_eq!(a.mode, Mode::Browse);
    }

    #[test]
    fn a_reject_without_a_reason_is_not_sent() {
        let mut a = app(1);
        assert_eq!(a.handle_key(ch('x')), Action::None);
        assert!(matches!(a.mode, Mode::Reject { .. }));
        // Enter on nothing, then on blanks: refused, still asking.
        assert_eq!(a.handle_key(key(KeyCode::Enter)), Action::None);
        for c in "   ".chars() {
            a.handle_key(ch(c));
        }
        assert_eq!(a.handle_key(key(KeyCode::Enter)), Action::None);
        assert!(matches!(a.mode, Mode::Reject { .. }));
        assert!(a.status.as_ref().unwrap().error);
        assert!(a.status.as_ref().unwrap().text.contains("needs a reason"));
        // Typed keys are text here, not commands ('q' does not quit).
        for c in "no xq".chars() {
            assert_eq!(a.handle_key(ch(c)), Action::None);
        }
        a.handle_key(key(KeyCode::Backspace));
        a.handle_key(key(KeyCode::Backspace));
        for c in "thanks ".chars() {
            a.handle_key(ch(c));
        }
        assert_eq!(
            a.handle_key(key(KeyCode::Enter)),
            Action::Reject {
                id: "p0000000000000001".into(),
                why: "no thanks".into()
            }
        );
        assert_eq!(a.mode, Mode::Browse);
    }

    #[test]
    fn escape_cancels_a_rejection() {
        let mut a = app(1);
        a.handle_key(ch('x'));
        a.handle_key(ch('n'));
        assert_eq!(a.handle_key(key(KeyCode::Esc)), Action::None);
        assert_eq!(a.mode, Mode::Browse);
        // Ctrl-U clears the typed reason.
        a.handle_key(ch('x'));
        a.handle_key(ch('n'));
        a.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert_eq!(a.handle_key(key(KeyCode::Enter)), Action::None);
    }

    #[test]
    fn a_credential_widening_needs_a_second_key() {
        let mut a = App::new();
        a.set_items(vec![pending(1, true)], 1, "t".into());
        assert_eq!(a.handle_key(ch('a')), Action::None);
        assert!(matches!(a.mode, Mode::ConfirmWiden { .. }));
        assert_eq!(
            a.handle_key(ch('n')),
            Action::None,
            "anything but y cancels"
        );
        assert_eq!(a.mode, Mode::Browse);
        a.handle_key(ch('a'));
        assert_eq!(
            a.handle_key(ch('y')),
            Action::Approve("p0000000000000001".into())
        );
    }

    #[test]
    fn a_refresh_keeps_the_selected_proposal_and_drops_a_decided_one() {
        let mut a = app(3);
        a.handle_key(ch('j'));
        a.handle_key(ch('j'));
        // p..1 was decided elsewhere: the selection follows p..3.
        a.set_items(vec![pending(2, false), pending(3, false)], 1, "t".into());
        assert_eq!(a.selected().unwrap().id.to_string(), "p0000000000000003");
        a.handle_key(ch('x'));
        a.set_items(vec![pending(2, false)], 1, "t".into());
        assert_eq!(a.mode, Mode::Browse);
        assert!(a.status.unwrap().text.contains("no longer pending"));
        assert_eq!(a.selected, 0);
    }
}
