//! `bottle`: launches an agent container whose only way out is egress-proxy
//! and an outer proxy, on isolated Docker networks (SPEC §1, §6).
//!
//! The phases, in `cli::session::run`'s order (docs/architecture.md):
//! load (`manifest`, `workspace`) -> plan (`plan`: a pure `Plan` value, what
//! `bottle plan` prints) -> prepare (`prepare`: secrets, CAs, state directory,
//! workspace archive) -> apply (`docker::apply`, recording what it creates)
//! -> run (`docker::run`) -> teardown (`docker::teardown`, undoing exactly
//! the record). Only `docker` talks to Docker. `k8s` is the second consumer
//! of the same `Plan`: it renders Kubernetes objects (`bottle render`).

pub mod approvals;
pub mod build;
pub mod cli;
pub mod docker;
pub mod export;
pub mod interrupt;
pub mod k8s;
pub mod manifest;
pub mod model;
pub mod pki;
pub mod plan;
pub mod prepare;
pub mod progress;
pub mod render;
pub mod resume;
pub mod secrets;
pub mod supervise;
pub mod tui;
pub mod workspace;
