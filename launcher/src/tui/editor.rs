//! Approve with edit: the proposed change as a small YAML file for the
//! operator's `$EDITOR`, and what comes back as a `host::Edit`. Also the
//! `bottle supervise approve ID --edit | --paths .. --methods ..` command.
//!
//! Owns the file's format (paths and methods only; the host is shown in a
//! comment and cannot be changed) and running the editor. Whether the edit
//! only narrows is decided by the host library (`approve_edited`), never here.
//!
//! Must never: write an agent's string into the file unquoted (a newline in
//! a host name must not become YAML), or approve when the editor failed or
//! the file was emptied.

use std::path::Path;
use std::process::Command;

use bottle_supervise::host::{Edit, Pending};
use serde::{Deserialize, Serialize};

use crate::docker::{ApplyError, connect};

/// The editable part of a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
}

/// What the operator decided in the editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edited {
    /// Approve; `None` when nothing was changed.
    Approve(Option<Edit>),
    /// Do nothing (the file was emptied, or the editor failed), and why.
    Cancel(String),
}

/// The file the operator edits.
pub fn render(p: &Pending) -> String {
    // JSON-quoted (no newline), then the separators YAML 1.1 reads as line
    // breaks (U+2028, U+2029) and the other invisible controls escaped.
    let q = |s: &str| super::draw::clean(&serde_json::to_string(s).unwrap_or_default());
    let change = Change {
        paths: p.request.paths.clone(),
        methods: p.request.methods.clone(),
    };
    let body = serde_yaml_ng::to_string(&change).unwrap_or_default();
    let kind = match p.kind {
        Some(bottle_supervise::change::Kind::Extend) => {
            "extends the existing route (no paths / no methods: no change to them)"
        }
        _ => "a new route (no paths: every path; no methods: every method)",
    };
    let warn = if p.widens_credential {
        "# !! CREDENTIAL: this route carries a credential; approving sends it to more paths or methods.\n"
    } else {
        ""
    };
    format!(
        "# bottle supervise: approve {id} with edits.\n\
         # host {host} (bottle {bottle}): {kind}\n\
         {warn}\
         # why: {why}\n\
         # An edit may only narrow what the agent asked: drop or tighten paths\n\
         # (`/dl/**` -> `/dl/v2/**`), drop methods. Save and quit to approve;\n\
         # delete everything to cancel.\n\
         {body}",
        id = p.id,
        host = q(&p.request.host),
        bottle = q(&p.bottle),
        why = q(&p.request.justification),
    )
}

/// Reads the edited file back against what was asked.
pub fn parse(p: &Pending, text: &str) -> Result<Edited, String> {
    let meaningful = text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    if !meaningful {
        return Ok(Edited::Cancel(
            "the file was emptied: nothing approved".into(),
        ));
    }
    let c: Change = serde_yaml_ng::from_str(text)
        .map_err(|e| format!("the edited change is not `paths: [..]` and `methods: [..]`: {e}"))?;
    let edit = Edit {
        paths: (c.paths != p.request.paths).then_some(c.paths),
        methods: (c.methods != p.request.methods).then_some(c.methods),
    };
    Ok(Edited::Approve((edit != Edit::default()).then_some(edit)))
}

/// The operator's editor: `$VISUAL`, else `$EDITOR`, else `vi`.
fn editor() -> String {
    ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".into())
}

/// Runs the editor on `file` with the terminal as it is (the caller leaves
/// raw mode first). `$EDITOR` may carry arguments (`code -w`), so it runs
/// through `sh -c` with the file as `$1`, never spliced into the command.
fn run_editor(file: &Path) -> Result<(), String> {
    let ed = editor();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{ed} \"$1\""))
        .arg("sh")
        .arg(file)
        .status()
        .map_err(|e| format!("cannot start the editor {ed:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "the editor {ed:?} exited with {status}: nothing approved"
        ))
    }
}

/// Writes the proposal to a private temporary file, runs the editor and
/// reads the result.
pub fn edit(p: &Pending) -> Result<Edited, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    // A fresh private directory (0700, created here or refused): nobody else
    // can swap the file between the editor and the read.
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| format!("no randomness for a temporary name: {e}"))?;
    let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("bottle-supervise-{hex}"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join(format!("{}.yaml", p.id));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        std::io::Write::write_all(&mut f, render(p).as_bytes())
            .map_err(|e| format!("{}: {e}", file.display()))?;
        drop(f);
        if let Err(e) = run_editor(&file) {
            return Ok(Edited::Cancel(e));
        }
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        parse(p, &text)
    })();
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir(&dir);
    result
}

/// `bottle supervise approve ID [--edit | --paths P.. --methods M..]`.
pub async fn approve_command(
    id: &str,
    operator: &str,
    interactive: bool,
    paths: Option<Vec<String>>,
    methods: Option<Vec<String>>,
) -> Result<i32, ApplyError> {
    let edit = if interactive {
        let d = connect().await?;
        let (pending, _) = crate::supervise::pending(&d).await?;
        let p = pending
            .iter()
            .find(|p| p.id.to_string() == id)
            .ok_or_else(|| {
                ApplyError::Config(format!(
                    "no pending proposal {id:?} in the running supervised bottles (`bottle supervise list`)"
                ))
            })?;
        match edit(p).map_err(ApplyError::Config)? {
            Edited::Approve(e) => e,
            Edited::Cancel(why) => {
                eprintln!("bottle: {why}");
                return Ok(1);
            }
        }
    } else if paths.is_some() || methods.is_some() {
        Some(Edit { paths, methods })
    } else {
        None
    };
    crate::supervise::approve_edited(id, operator, edit.as_ref()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::tests::pending;

    #[test]
    fn the_file_round_trips_and_an_unchanged_file_is_a_plain_approval() {
        let p = pending(1, false);
        let text = render(&p);
        assert!(text.contains("paths:\n- /dl/**\n"), "{text}");
        assert_eq!(parse(&p, &text).unwrap(), Edited::Approve(None));
    }

    #[test]
    fn a_credential_widening_is_flagged_in_the_file() {
        assert!(render(&pending(1, true)).contains("# !! CREDENTIAL"));
        assert!(!render(&pending(1, false)).contains("CREDENTIAL"));
    }

    #[test]
    fn an_edit_carries_only_what_changed() {
        let p = pending(1, false);
        let text = render(&p).replace("- /dl/**", "- /dl/v2/**");
        assert_eq!(
            parse(&p, &text).unwrap(),
            Edited::Approve(Some(Edit {
                paths: Some(vec!["/dl/v2/**".into()]),
                methods: None
            }))
        );
    }

    #[test]
    fn an_emptied_file_cancels_and_junk_is_an_error() {
        let p = pending(1, false);
        assert!(matches!(parse(&p, "# only\n\n"), Ok(Edited::Cancel(_))));
        let e = parse(&p, "paths: [/a]\nhost: evil.test\n").unwrap_err();
        assert!(e.contains("host"), "{e}");
        assert!(parse(&p, "paths: {a: 1}\n").is_err());
    }

    #[test]
    fn agent_strings_stay_inside_their_comment() {
        let mut p = pending(1, false);
        p.request.justification = "x\npaths: [/**]\n".into();
        p.request.host = "h\nmethods: [DELETE]\u{2028}methods: [PUT]\u{85}paths: [/x]".into();
        let text = render(&p);
        // Unchanged file: the injected lines are not YAML, so nothing changes.
        assert_eq!(parse(&p, &text).unwrap(), Edited::Approve(None), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("paths: [/**]")));
    }
}
