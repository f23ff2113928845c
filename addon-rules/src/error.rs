//! Routes-file errors. Owns their wording: every error names the file, the
//! route (`routes[3]`, 0-based), the field and a fix. Must never print a
//! secret value (only variable names and file paths are known here anyway).

/// One problem in a routes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (as the caller named it in [`crate::Policy::from_text`]).
    pub source: String,
    /// The 0-based route index, when the error is inside `routes[i]`.
    pub route: Option<usize>,
    /// The field path inside the route or file, e.g. `host`, `path_allowlist[2]`, `unmatched`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl ConfigError {
    pub(crate) fn new(
        source: &str,
        route: Option<usize>,
        field: Option<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError {
            source: source.to_string(),
            route,
            field,
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// Where the error is, e.g. `routes[3].host`, `unmatched`, or empty for the whole file.
    pub fn location(&self) -> String {
        match (self.route, &self.field) {
            (Some(i), Some(f)) => format!("routes[{i}].{f}"),
            (Some(i), None) => format!("routes[{i}]"),
            (None, Some(f)) => f.clone(),
            (None, None) => String::new(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    /// `FILE: routes[3].host: MESSAGE: FIX`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loc = self.location();
        if loc.is_empty() {
            write!(f, "{}: {}: {}", self.source, self.message, self.fix)
        } else {
            write!(
                f,
                "{}: {}: {}: {}",
                self.source, loc, self.message, self.fix
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a routes file, in file order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub errors: Vec<ConfigError>,
}

impl std::fmt::Display for LoadError {
    /// One error per line, no trailing newline.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
