//! Production-readiness middleware for any Tower HTTP stack.
//!
//! `covet` is the facade over the covet workspace. Each member crate is re-exported, and its
//! parts are behind Cargo features; `layers`, `health`, `pools` and `tls` (all on by default)
//! turn on everything of one crate:
//!
//! | feature  | module            | crate          | what it holds |
//! |----------|-------------------|----------------|---------------|
//! | `layers` | [`layers`]        | `covet-layers` | the Tower layers (request ids, security headers, …) |
//! | `health` | `health`          | `covet-health` | Kubernetes-style health probes |
//! | `pools`  | `pools`           | `covet-pools`  | instrumented bb8 pools for PostgreSQL and Redis |
//! | `tls`    | `tls`             | `covet-tls`    | rustls for the pools and the URL health checks (`sslmode`, `rediss://`, CA files) |
//!
//! To pay only for what you use, turn the defaults off and pick features one by one:
//! `request-id`, `security-headers`, `metrics`, `metrics-gzip`, `system-metrics`,
//! `rate-limit`, `rate-limit-redis`, `rate-limit-redis-tls`, `trace`, `telemetry`, `otlp-grpc`, `otlp-http`,
//! `shutdown`, `serve`, `axum`, `pools-postgres`, `pools-redis` (README.md has a table of what
//! each one pulls in and what it costs to build).
//!
//! # Example
//!
//! Compose covet layers in **one** `ServiceBuilder` (each separate `Router::layer` call in axum
//! adds a boxed, cloned service per request):
//!
//! ```
//! # #[cfg(all(feature = "request-id", feature = "security-headers"))] {
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

#[doc(inline)]
pub use covet_layers as layers;

/// One-call telemetry set-up: logs with `request_id`, `trace_id` and `span_id`, OTLP span
/// export and the W3C propagator (`covet::telemetry::Telemetry::builder()…init()`).
#[cfg(feature = "telemetry")]
#[doc(inline)]
pub use covet_layers::telemetry;

#[cfg(feature = "health")]
#[doc(inline)]
pub use covet_health as health;

#[cfg(feature = "pools")]
#[doc(inline)]
pub use covet_pools as pools;

#[cfg(feature = "tls")]
#[doc(inline)]
pub use covet_tls as tls;
