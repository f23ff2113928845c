//! The trace of one decision, for `egress-proxy explain`: one line per SPEC §3
//! step taken. Owns the rule that a decision nobody is explaining pays
//! nothing for it: a line is a closure, called only when recording.
//! Must never hold anything but text about the request and the routes file
//! (no secret: credentials are named by their source).

/// Where a decision writes its steps: nowhere (for [`crate::Policy::decide`])
/// or into a list of lines (for [`crate::Policy::explain`]).
pub(crate) struct Trace<'a> {
    lines: Option<&'a mut Vec<String>>,
}

impl<'a> Trace<'a> {
    /// Records nothing; no line is ever formatted.
    pub(crate) fn off() -> Trace<'static> {
        Trace { lines: None }
    }

    /// Records every line into `lines`.
    pub(crate) fn into(lines: &'a mut Vec<String>) -> Trace<'a> {
        Trace { lines: Some(lines) }
    }

    /// Records one line; `line` runs only when someone is explaining.
    #[inline]
    pub(crate) fn step(&mut self, line: impl FnOnce() -> String) {
        if let Some(lines) = self.lines.as_mut() {
            lines.push(line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Trace;

    #[test]
    fn off_never_formats_and_into_records_in_order() {
        let mut off = Trace::off();
        off.step(|| unreachable!("a trace that is off must not format"));
        let mut lines = Vec::new();
        let mut on = Trace::into(&mut lines);
        on.step(|| "1".into());
        on.step(|| "2".into());
        assert_eq!(lines, ["1", "2"]);
    }
}
