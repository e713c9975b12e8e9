//! Production-readiness middleware for any Tower HTTP stack.
//!
//! `covet` is the facade over the covet workspace. Each member crate is re-exported behind a
//! Cargo feature of the same name, all on by default:
//!
//! | feature  | module            | crate          | what it holds |
//! |----------|-------------------|----------------|---------------|
//! | `layers` | [`layers`]        | `covet-layers` | the Tower layers (request ids, security headers, …) |
//! | `health` | [`health`]        | `covet-health` | Kubernetes-style health probes |
//! | `pools`  | [`pools`]         | `covet-pools`  | instrumented bb8 pools for PostgreSQL and Redis |
//!
//! # Example
//!
//! Compose covet layers in **one** `ServiceBuilder` (each separate `Router::layer` call in axum
//! adds a boxed, cloned service per request):
//!
//! ```
//! # #[cfg(feature = "layers")] {
//! use covet::layers::{request_id::RequestIdLayer, security_headers::SecurityHeadersLayer};
//! use tower::ServiceBuilder;
//!
//! let layers = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .layer(SecurityHeadersLayer::api());
//! # let _ = layers;
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "layers")]
#[doc(inline)]
pub use covet_layers as layers;

/// One-call telemetry set-up: logs with `request_id`, `trace_id` and `span_id`, OTLP span
/// export and the W3C propagator (`covet::telemetry::init(config)`).
#[cfg(feature = "layers")]
#[doc(inline)]
pub use covet_layers::trace::telemetry;

#[cfg(feature = "health")]
#[doc(inline)]
pub use covet_health as health;

#[cfg(feature = "pools")]
#[doc(inline)]
pub use covet_pools as pools;
