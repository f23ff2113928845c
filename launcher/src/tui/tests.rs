//! The screen as drawn into ratatui's `TestBackend`.

use proptest::prelude::*;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;

use super::app::tests::pending;
use super::app::{Action, App};
use super::draw::{HELP, WIDENS_MARK, clean, draw};

fn render(app: &App, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(app, f)).unwrap();
    t.backend().buffer().clone()
}

fn text(b: &Buffer) -> String {
    let mut s = String::new();
    for y in 0..b.area.height {
        for x in 0..b.area.width {
            s.push_str(b[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

fn app_with(items: Vec<bottle_supervise::host::Pending>) -> App {
    let mut a = App::new();
    a.set_items(items, 1, "01:02:03Z".into());
    a
}

#[test]
fn the_screen_shows_who_what_why_and_the_route_diff() {
    let a = app_with(vec![pending(1, false)]);
    let s = text(&render(&a, 110, 24));
    for want in [
        "p0000000000000001",
        "bottle dev (id b01)",
        "claude-code 2.1.0",
        "2026-12-06T01:25:04Z",
        "files.example.com  paths /dl/**  methods GET  (new route)",
        "download the fixtures",
        "+ path_allowlist: [\"/a\",\"/dl/**\"]",
        HELP,
    ] {
        assert!(s.contains(want), "{want:?} missing from\n{s}");
    }
    assert!(!s.contains(WIDENS_MARK), "{s}");
}

#[test]
fn a_credential_widening_is_marked_in_text_and_colour() {
    let a = app_with(vec![pending(1, true)]);
    let b = render(&a, 110, 24);
    let s = text(&b);
    assert!(
        s.contains(&format!("{WIDENS_MARK}: this route carries a credential")),
        "{s}"
    );
    // In the list too, next to the proposal.
    let list_line = s
        .lines()
        .find(|l| l.contains("p0000000000000001  dev"))
        .unwrap();
    assert!(list_line.contains(WIDENS_MARK), "{list_line}");
    // Red where the marker is drawn.
    let (y, line) = s
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(&format!("{WIDENS_MARK}: this")))
        .unwrap();
    let x = line.chars().take_while(|c| *c != '!').count() as u16;
    assert_eq!(b[(x, y as u16)].bg, Color::Red);
    // The diff shows what goes and what comes, the credential slot included.
    assert!(s.contains("- path_allowlist: [\"/a\"]"), "{s}");
    assert!(s.contains("+ path_allowlist: [\"/a\",\"/dl/**\"]"), "{s}");
    assert!(s.contains("- token_env: \"EGRESS_PROXY_TOKEN_0\""), "{s}");
}

#[test]
fn the_reason_prompt_and_its_refusal_are_shown() {
    let mut a = app_with(vec![pending(1, false)]);
    a.handle_key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE));
    assert_eq!(
        a.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        Action::None
    );
    let s = text(&render(&a, 110, 24));
    assert!(s.contains("reject p0000000000000001, reason:"), "{s}");
    assert!(s.contains("a rejection needs a reason"), "{s}");
}

#[test]
fn an_empty_list_says_so() {
    let s = text(&render(&App::new(), 80, 12));
    assert!(s.contains("no pending proposals"), "{s}");
    assert!(s.contains("0 pending"), "{s}");
}

/// What an agent could send to paint the operator's terminal.
const HOSTILE: &str =
    "\u{1b}[2J\u{1b}]0;owned\u{7}\u{1b}[31mred\r\n\u{9b}31m\u{202e}gpj.exe\u{200b}";

fn no_control_in(b: &Buffer) -> Result<(), String> {
    for y in 0..b.area.height {
        for x in 0..b.area.width {
            let sym = b[(x, y)].symbol();
            if let Some(c) = sym.chars().find(|c| c.is_control() || *c == '\u{202e}') {
                return Err(format!("cell ({x},{y}) holds {c:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn agent_strings_cannot_paint_the_terminal() {
    let mut p = pending(1, true);
    p.request.justification = format!("why {HOSTILE}");
    p.request.host = format!("h{HOSTILE}");
    p.request.paths = vec![HOSTILE.into()];
    p.client = HOSTILE.into();
    p.bottle = HOSTILE.into();
    p.problem = Some(HOSTILE.into());
    p.shadows_wildcard = Some(HOSTILE.into());
    p.route_after = Some(serde_json::json!({ HOSTILE: HOSTILE }));
    let mut a = app_with(vec![p]);
    a.set_status(true, HOSTILE);
    let b = render(&a, 200, 40);
    no_control_in(&b).unwrap();
    let s = text(&b);
    assert!(s.contains("\\u{1b}[2J"), "escaped, visible:\n{s}");
    assert!(s.contains("\\u{202e}gpj.exe"), "{s}");
    // The same string through the real crossterm backend: the bytes sent
    // to the terminal hold no ESC the agent wrote (only the backend's own).
    assert_eq!(clean("\u{1b}"), "\\u{1b}");
    assert_eq!(clean("é 漢字 ok"), "é 漢字 ok");
}

#[test]
fn the_bytes_sent_to_a_terminal_hold_no_agent_escape() {
    use ratatui::backend::CrosstermBackend;
    let mut p = pending(1, false);
    p.request.justification = "\u{1b}]0;owned\u{7}".into();
    let a = app_with(vec![p]);
    let mut out = Vec::new();
    {
        let mut t = Terminal::with_options(
            CrosstermBackend::new(&mut out),
            ratatui::TerminalOptions {
                viewport: ratatui::Viewport::Fixed(ratatui::layout::Rect::new(0, 0, 100, 20)),
            },
        )
        .unwrap();
        t.draw(|f| draw(&a, f)).unwrap();
    }
    let sent = String::from_utf8_lossy(&out);
    assert!(
        !sent.contains("\u{1b}]0;owned"),
        "OSC from the agent reached the terminal"
    );
    assert!(!sent.contains('\u{7}'), "BEL reached the terminal");
    assert!(sent.contains("\\u{1b}]0;owned\\u{7}"), "{sent:?}");
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            any::<char>(),
            prop::sample::select(vec![
                '\u{1b}', '\u{7}', '\r', '\n', '\t', '\u{9b}', '\u{202e}', '漢', '😀', '\u{301}'
            ]),
        ],
        0..300,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_agent_strings_at_any_size_draw_without_panic_or_control(
        host in hostile_string(),
        why in hostile_string(),
        path in hostile_string(),
        client in hostile_string(),
        reason in hostile_string(),
        w in 1u16..160,
        h in 1u16..50,
        widens in any::<bool>(),
    ) {
        let mut p = pending(1, widens);
        p.request.host = host;
        p.request.justification = why;
        p.request.paths = vec![path.clone(), path];
        p.client = client;
        let mut a = app_with(vec![p, pending(2, false)]);
        a.handle_key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE));
        for c in reason.chars() {
            a.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        let b = render(&a, w, h);
        prop_assert!(no_control_in(&b).is_ok(), "{:?}", no_control_in(&b));
    }
}

#[test]
fn a_long_justification_does_not_hide_the_route() {
    let mut p = pending(1, true);
    p.request.justification = "please ".repeat(1000);
    let s = text(&render(&app_with(vec![p]), 80, 24));
    assert!(s.contains("+ path_allowlist"), "{s}");
    assert!(s.contains(WIDENS_MARK), "{s}");
    assert!(s.contains(HELP), "{s}");
}
