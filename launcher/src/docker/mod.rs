//! Everything that talks to the Docker engine (bollard), and the host state
//! that goes with a running bottle: `apply` executes a `Plan` (`files` makes
//! the archives it copies into containers and reads files back), `run` attaches
//! the agent, `teardown` undoes what the `record` holds, `images` checks and
//! builds images, `push` sends them to a registry, `firewall` keeps the host
//! out of the internal networks,
//! `health` waits for the sidecars, `runtime` picks the agent's OCI runtime,
//! `volumes` keeps the agent's home and workspace between runs.
//!
//! Owns: the launcher's bollard calls, but for one: `crate::supervise`
//! reloads the outer proxy of a running bottle after an approval (a file
//! written in, `squid -k parse` by exec, SIGHUP by kill) with a client from
//! `connect`. No module runs the `docker` CLI (the interactive session is
//! the attach API too: `run`).
//!
//! Must never: put a secret anywhere but the egress-proxy container's
//! environment (no argv, label, file, log line or error message), give a
//! container the Docker socket, `privileged` or a host namespace, or copy a
//! CA key into the agent.

pub mod apply;
mod engine;
pub mod files;
pub mod firewall;
mod health;
pub mod images;
pub mod push;
pub mod record;
pub mod run;
pub mod runtime;
pub mod teardown;
pub mod volumes;

pub use apply::{Applied, Inputs, Options, apply};
pub(crate) use engine::docker_err;
pub use engine::{ApplyError, connect, engine_major};
pub use record::{Record, Recorder};
pub use run::run_agent;
