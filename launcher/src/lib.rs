//! `bottle`: launches an agent container whose only way out is egress-proxy
//! and an outer proxy, on isolated Docker networks (SPEC §1, §6).
//!
//! The flow is plan, then apply: `manifest` (parse, validate) -> `plan` (pure
//! `Plan` value, what `bottle plan` prints) -> `apply` (the only code talking
//! to Docker, recording what it created) -> `teardown` (undoes exactly that).

pub mod apply;
pub mod cli;
pub mod images;
pub mod manifest;
pub mod pki;
pub mod plan;
pub mod progress;
pub mod render;
pub mod teardown;
pub mod workspace;
