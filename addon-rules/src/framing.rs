//! Framing and method rules of SPEC §3.5 that need only the request head.
