//! Git push detection (SPEC §3.3).
