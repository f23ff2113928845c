//! Secrets (credential values) as a type, shared by egress-proxy (token values
//! it injects) and the launcher (token values it hands to egress-proxy).
//!
//! Owns: the `Secret` wrapper whose `Debug`/`Display` never print the value.
//! Must never: expose the value except through `expose`, which only the code
//! that must place the value (the proxy's upstream header, the launcher's
//! egress-proxy container environment) calls. The policy itself never holds one.

use std::fmt;

/// A credential value. Printing it (by accident, in a log line or an error)
/// shows `[redacted]`, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from the environment or a token file.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value itself: only for building the upstream header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2-very-secret".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
