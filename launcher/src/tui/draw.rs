//! Draws an [`App`] into a ratatui frame: a title, the list of pending
//! proposals, the selected one in full (who, when, what, why, and the route
//! as a diff) and the key help or the reason being typed.
//!
//! Must never draw a string an agent wrote without [`clean`]: the host,
//! paths, methods, justification, client name and even the bottle name came
//! through the sidecar, and a raw control character (ESC, BEL, CR, ...) in a
//! cell reaches the operator's terminal as-is. Bidirectional overrides and
//! zero-width characters are escaped too, so what the operator reads is what
//! the agent sent. A credential widening is marked in colour *and* text.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use serde_json::Value;

use super::app::{App, Mode};
use bottle_supervise::host::Pending;

/// The text marker of a credential widening (survives a no-colour terminal).
pub const WIDENS_MARK: &str = "!! CREDENTIAL";

/// The key help of the browsing mode.
pub const HELP: &str = "a approve · e edit+approve · x reject · r refresh · ↑↓/jk select · q quit";

/// `s` made safe to draw: control characters, bidirectional controls and
/// zero-width characters become visible escapes (`\u{1b}`); everything else,
/// wide characters included, is kept.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width, LRM, RLM
            | '\u{2028}'..='\u{202e}' // separators, embeddings, overrides
            | '\u{2060}'..='\u{2069}' // word joiner, isolates
            | '\u{061c}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// A requested list; empty means "every" for a new route and "no change"
/// for an extension (docs/supervise.md).
fn list_text(v: &[String], extend: bool, every: &str) -> String {
    if v.is_empty() {
        if extend { "(unchanged)" } else { every }.into()
    } else {
        clean(&v.join(" "))
    }
}

pub fn draw(app: &App, f: &mut Frame) {
    let area = f.area();
    let list_h = (app.items.len() as u16 + 2).clamp(3, (area.height / 3).max(3));
    let [title, list, detail, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(list_h),
        Constraint::Min(0),
        Constraint::Length(2),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                "bottle supervise",
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                "  {} pending · {} supervised bottle(s) · refreshed {}",
                app.items.len(),
                app.bottles,
                app.refreshed
            )),
        ])),
        title,
    );
    draw_list(app, f, list);
    draw_detail(app, f, detail);
    draw_bottom(app, f, bottom);
}

fn bottle_id(p: &Pending) -> String {
    p.state
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| clean(&n.to_string_lossy()))
        .unwrap_or_default()
}

fn draw_list(app: &App, f: &mut Frame, area: Rect) {
    let items: Vec<ListItem> = app
        .items
        .iter()
        .map(|p| {
            let mut spans = vec![Span::raw(format!(
                "{}  {}  {}  ",
                p.id,
                clean(&p.bottle),
                clean(&p.request.host)
            ))];
            if p.widens_credential {
                spans.push(Span::styled(WIDENS_MARK, danger()));
            }
            if p.problem.is_some() {
                spans.push(Span::styled(" CANNOT APPLY", warn()));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let block = Block::new().borders(Borders::ALL).title(" pending ");
    if items.is_empty() {
        f.render_widget(Paragraph::new("no pending proposals").block(block), area);
        return;
    }
    let list = List::new(items)
        .block(block)
        .highlight_symbol("> ")
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(app.selected));
    f.render_stateful_widget(list, area, &mut state);
}

fn danger() -> Style {
    Style::new()
        .fg(Color::White)
        .bg(Color::Red)
        .add_modifier(Modifier::BOLD)
}

fn warn() -> Style {
    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
}

fn label(s: &str) -> Span<'static> {
    Span::styled(format!("{s:<8}"), Style::new().add_modifier(Modifier::BOLD))
}

fn draw_detail(app: &App, f: &mut Frame, area: Rect) {
    let block = Block::new().borders(Borders::ALL).title(" proposal ");
    let Some(p) = app.selected() else {
        f.render_widget(block, area);
        return;
    };
    let r = &p.request;
    let extend = p.kind == Some(bottle_supervise::change::Kind::Extend);
    let kind = match p.kind {
        Some(bottle_supervise::change::Kind::NewRoute) => "new route",
        Some(bottle_supervise::change::Kind::Extend) => "extends a route",
        None => "cannot apply now",
    };
    let mut lines = vec![
        Line::from(vec![
            label("id"),
            Span::raw(format!(
                "{}  bottle {} (id {})",
                p.id,
                clean(&p.bottle),
                bottle_id(p)
            )),
        ]),
        Line::from(vec![
            label("who"),
            Span::raw(format!("{}  at {}", clean(&p.client), clean(&p.created))),
        ]),
        Line::from(vec![
            label("what"),
            Span::raw(format!(
                "{}  paths {}  methods {}  ({kind})",
                clean(&r.host),
                list_text(&r.paths, extend, "(every path)"),
                list_text(&r.methods, extend, "(any)")
            )),
        ]),
    ];
    if p.widens_credential {
        lines.push(Line::from(Span::styled(
            format!(
                "{WIDENS_MARK}: this route carries a credential; approving sends it to more paths or methods"
            ),
            danger(),
        )));
    }
    if let Some(w) = &p.shadows_wildcard {
        lines.push(Line::from(Span::styled(
            format!(
                "note: a wildcard route covers this host today: {}",
                clean(w)
            ),
            warn(),
        )));
    }
    if let Some(e) = &p.problem {
        lines.push(Line::from(Span::styled(
            format!("cannot approve now: {}", clean(e)),
            warn(),
        )));
    }
    // The route before the justification: a long justification must not
    // push what the approval does off the screen.
    lines.push(Line::from(label("route")));
    lines.extend(route_diff(p.route_before.as_ref(), p.route_after.as_ref()));
    lines.push(Line::from(vec![
        label("why"),
        Span::raw(clean(&r.justification)),
    ]));
    f.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// The route entry before and after as a diff: one line per field, `-` for
/// what goes, `+` for what comes, ` ` for what stays.
pub fn route_diff(before: Option<&Value>, after: Option<&Value>) -> Vec<Line<'static>> {
    let fields = |v: Option<&Value>| -> Vec<(String, String)> {
        v.and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (clean(k), clean(&v.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (b, a) = (fields(before), fields(after));
    let mut keys: Vec<&String> = b.iter().chain(a.iter()).map(|(k, _)| k).collect();
    keys.dedup();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for k in keys {
        if !seen.insert(k.clone()) {
            continue;
        }
        let old = b.iter().find(|(x, _)| x == k).map(|x| &x.1);
        let new = a.iter().find(|(x, _)| x == k).map(|x| &x.1);
        match (old, new) {
            (Some(o), Some(n)) if o == n => out.push(Line::raw(format!("    {k}: {o}"))),
            (o, n) => {
                if let Some(o) = o {
                    out.push(Line::styled(
                        format!("  - {k}: {o}"),
                        Style::new().fg(Color::Red),
                    ));
                }
                if let Some(n) = n {
                    out.push(Line::styled(
                        format!("  + {k}: {n}"),
                        Style::new().fg(Color::Green),
                    ));
                }
            }
        }
    }
    if out.is_empty() {
        out.push(Line::raw("  (no route: the change cannot be planned now)"));
    }
    out
}

fn draw_bottom(app: &App, f: &mut Frame, area: Rect) {
    let status = app.status.as_ref().map(|s| {
        Line::from(Span::styled(
            clean(&s.text),
            if s.error {
                warn()
            } else {
                Style::new().fg(Color::Green)
            },
        ))
    });
    let prompt = match &app.mode {
        Mode::Browse => Line::raw(HELP),
        Mode::Reject { id, input } => Line::from(vec![
            Span::styled(format!("reject {id}, reason: "), warn()),
            Span::raw(clean(input)),
            Span::styled("▏", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            Span::raw("   (Enter send · Esc cancel)"),
        ]),
        Mode::ConfirmWiden { id } => Line::from(Span::styled(
            format!("{id} widens a credentialed route: y approves, any other key cancels"),
            danger(),
        )),
    };
    let lines: Vec<Line> = status.into_iter().chain([prompt]).collect();
    f.render_widget(Paragraph::new(lines), area);
}
