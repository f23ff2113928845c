//! supervise: the agent asks for egress, a person on the host decides, the
//! bottle's routes change live (SPEC §8, docs/supervise.md).
//!
//! Two halves share one crate so that they share one model of a change:
//!
//! - the sidecar ([`server`], the `bottle-supervise` binary) serves MCP over
//!   streamable HTTP to the agent: it shows the live routes without
//!   credentials, validates a requested change with `addon-rules` and queues
//!   it as a proposal file, and reports decisions. It holds no secret and can
//!   decide nothing;
//! - the host library ([`host`]) lists proposals, and approves (validated
//!   again, routes file rewritten atomically, audited, kept for the bottle's
//!   name in the [`store`]) or rejects them.
//!
//! They talk only through files in a state directory ([`state`]) whose
//! `decisions/` the sidecar gets read-only.

pub mod change;
pub mod host;
pub mod narrow;
pub mod server;
pub mod state;
pub mod store;
pub mod view;
