//! Why there is no plan: every reason, all at once, each with the file, the
//! key path and a fix.
//!
//! Must never: name a secret value (only host variable names).

/// Why there is no plan.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{file}: agents: no agent `{agent}`; fix: use one of: {known}")]
    UnknownAgent {
        file: String,
        agent: String,
        known: String,
    },
    #[error(
        "{file}: {path}: host variable `{var}` is {state}; fix: export {var}=<secret> before `bottle run` (or remove the route)"
    )]
    TokenRef {
        file: String,
        path: String,
        var: String,
        state: &'static str,
    },
    #[error("{file}: {path}: file {file_path} does not exist; fix: point it at an existing file")]
    MissingFile {
        file: String,
        path: String,
        file_path: String,
    },
}

/// Everything that can stop a plan, all at once.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct PlanErrors(pub Vec<PlanError>);
