//! The proxy under test, in two modes: [`child`] runs the real binary through
//! its CLI (black-box and operation tests); [`in_process`] calls
//! `egress_proxy::start` (tests that swap the resolver or read `Running`).

pub mod child;
pub mod in_process;

pub use child::{CaMode, DEFAULT_ROUTES, Fixture, Proxy, ProxyOpts, TOKEN_VAR, binary, sample};
pub use in_process::{ProxySetup, SECRET, TestProxy, routes_with_credential};
