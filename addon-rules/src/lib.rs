//! The pure policy engine of egress-proxy (placeholder: being written).
