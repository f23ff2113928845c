//! Token values: read from the host environment by `prepare`, handed only to
//! the egress-proxy container's environment by `docker::apply`.
//!
//! Owns the token values by slot name (each an `addon_rules::Secret`, whose
//! Debug and Display redact). Must never: let a value reach a log line, an
//! error message, a label, argv or a file.

use std::collections::BTreeMap;

pub use addon_rules::Secret;

use crate::plan::Plan;

/// A slot's host variable is unset or empty (the plan checked, but the
/// environment is read again at run time). Names the variable, never a value.
#[derive(Debug, thiserror::Error)]
#[error("host variable `{0}` is not set or empty; fix: export it before `bottle run`")]
pub struct MissingSecret(pub String);

/// Token values by slot name, read from the host environment at run time.
#[derive(Debug, Default, Clone)]
pub struct Secrets(pub BTreeMap<String, Secret>);

impl Secrets {
    /// Reads every slot's `token_ref` (the plan already checked they are set).
    pub fn from_env(
        plan: &Plan,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, MissingSecret> {
        let mut m = BTreeMap::new();
        for s in &plan.token_slots {
            match env(&s.token_ref) {
                Some(v) if !v.trim().is_empty() => {
                    m.insert(s.slot.clone(), Secret::new(v));
                }
                _ => {
                    return Err(MissingSecret(s.token_ref.clone()));
                }
            }
        }
        Ok(Secrets(m))
    }

    /// Replaces any secret value in `text` (used on logs we show).
    pub fn redact(&self, text: &str) -> String {
        let mut t = text.to_string();
        for s in self.0.values() {
            if !s.expose().is_empty() {
                t = t.replace(s.expose(), "<redacted>");
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-value".into());
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        let ss = Secrets(BTreeMap::from([("EGRESS_PROXY_TOKEN_0".to_string(), s)]));
        assert!(!format!("{ss:?}").contains("hunter2"));
        assert_eq!(ss.redact("a hunter2-value b"), "a <redacted> b");
    }
}
