//! Tower layers for production HTTP services.
//!
//! Every layer lives in its own module behind its own Cargo feature, is usable alone, in any
//! order, on any `Service<http::Request<B>>` with any body type (axum, hyper, tonic), and builds
//! everything it can (header values, policies) once, when the layer is constructed.
//!
//! | feature            | module                | layer |
//! |--------------------|-----------------------|-------|
//! | `request-id`       | [`request_id`]        | [`RequestIdLayer`](request_id::RequestIdLayer) |
//! | `security-headers` | [`security_headers`]  | [`SecurityHeadersLayer`](security_headers::SecurityHeadersLayer) |
//! | `metrics`          | [`metrics`]           | [`MetricsLayer`](metrics::MetricsLayer), [`MetricsService`](metrics::MetricsService) |
//! | `rate-limit`       | [`rate_limit`]        | [`RateLimitLayer`](rate_limit::RateLimitLayer) |
//! | `trace`            | [`trace`]             | [`TraceLayer`](trace::TraceLayer), [`PropagateLayer`](trace::PropagateLayer) |
//! | `shutdown`         | [`shutdown`]          | [`Shutdown`](shutdown::Shutdown), [`DrainLayer`](shutdown::DrainLayer) |
//!
//! And beside the layers:
//!
//! | feature            | module                | what |
//! |--------------------|-----------------------|------|
//! | `metrics`          | [`catalog`]           | application and WebSocket metrics; host, process and runtime metrics with `system-metrics` |
//! | `telemetry`        | [`telemetry`]         | one-call logs + OTLP + propagator set-up; exporters with `otlp-grpc` / `otlp-http` |
//! | `serve`            | [`serve`]             | the HTTP/1 + HTTP/2 server loop that follows the shutdown coordinator |
//! | (always)           | [`headers`]           | the header names and checks the layers share |
//! | `rate-limit` or `trace` | [`peer`]       | who sent a request: the peer, and the client behind trusted proxies |
//!
//! Smaller features: `metrics-gzip` (gzip'd `/metrics`), `rate-limit-redis` (the Redis store),
//! `rate-limit-redis-tls` (`rediss://` and a CA file for it),
//! `axum` (route templates from axum's `MatchedPath`).
//!
//! The layers never import each other: they cooperate only through request headers,
//! extensions and the `tracing` span. The request-id layer writes its id to the `x-request-id`
//! request header and puts a [`RequestId`](request_id::RequestId) in the extensions; the trace
//! layer reads the header.
//!
//! Compose them in **one** [`tower::ServiceBuilder`](https://docs.rs/tower/latest/tower/struct.ServiceBuilder.html)
//! rather than with many separate `Router::layer` calls: in axum each separate call adds a boxed
//! service that is cloned on every request.

#![cfg_attr(docsrs, feature(doc_cfg))]

/// `get_ref`, `get_mut` and `into_inner` for a service struct whose inner service is the field
/// `inner: S`, with the same docs on every covet service.
#[allow(unused_macros)] // every service that uses it sits behind a feature
macro_rules! inner_service_accessors {
    () => {
        /// Gets a reference to the inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// Gets a mutable reference to the inner service.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes `self`, returning the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
#[allow(unused_imports)]
pub(crate) use inner_service_accessors;

pub mod headers;

/// The `prometheus` crate covet-layers registers its metrics with, so an app can name the same
/// `Registry` type without depending on a second copy.
#[cfg(any(feature = "metrics", feature = "rate-limit", feature = "shutdown"))]
pub use prometheus;
#[cfg(any(feature = "metrics", feature = "trace"))]
mod path;
#[cfg(any(feature = "rate-limit", feature = "trace"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "rate-limit", feature = "trace"))))]
pub mod peer;
#[cfg(test)]
#[cfg(any(feature = "metrics", feature = "rate-limit", feature = "shutdown"))]
mod test_support;

#[cfg(feature = "request-id")]
#[cfg_attr(docsrs, doc(cfg(feature = "request-id")))]
pub mod request_id;

#[cfg(feature = "security-headers")]
#[cfg_attr(docsrs, doc(cfg(feature = "security-headers")))]
pub mod security_headers;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod catalog;

#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub mod rate_limit;

#[cfg(feature = "shutdown")]
#[cfg_attr(docsrs, doc(cfg(feature = "shutdown")))]
pub mod shutdown;

#[cfg(feature = "serve")]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub mod serve;

#[cfg(feature = "trace")]
#[cfg_attr(docsrs, doc(cfg(feature = "trace")))]
pub mod trace;

#[cfg(feature = "telemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "telemetry")))]
pub mod telemetry;
