//! Kubernetes-style health probes for any Tower HTTP stack.
//!
//! This crate is being built: the health registry, the built-in checks and the `/health*` Tower
//! service land with the health-probe work. Until then it exports nothing.
