//! Prometheus metrics: RED metrics per route template and the `/metrics` endpoint. The rest of
//! covet's catalogue (application, WebSocket, host, process and runtime metrics) is in
//! [`catalog`](crate::catalog); `METRICS.md` lists every family.
//!
//! Every metric is registered into a caller-supplied [`prometheus::Registry`]: there is no global
//! registry, and two apps with two registries can live in one process.
//!
//! # The HTTP metrics
//!
//! [`MetricsLayer`] records, per `method`, `route` and `status`:
//! `http_requests_total`, `http_server_request_duration_seconds` (OpenTelemetry buckets,
//! 5 ms … 10 s, timed to the response head), `http_server_request_body_size_bytes` and
//! `http_server_response_body_size_bytes` (bytes actually read and sent when no exact size is
//! known); plus `http_server_active_requests{method}`,
//! `http_server_exceptions_total{method,route,kind}` (inner errors and panics; a panic is
//! counted, then resumed), `http_requests_by_user_agent_total{class}` and
//! `http_server_label_sets_dropped_total`.
//!
//! Cardinality is bounded by construction:
//! - `route` is the route **template**: axum's `MatchedPath` (feature `axum`; apply the layer
//!   with `Router::layer` so the router has matched before the layer sees the request), else a
//!   [`ClassifyRoute`]; a request that matched no route gets `NOT_FOUND` (404), `REDIRECTION`
//!   (3xx) or `UNKNOWN`. Raw paths never become labels.
//! - `method` is one of the nine standard methods or `_OTHER`.
//! - Past [`max_label_sets`](MetricsLayerBuilder::max_label_sets) distinct label sets, new ones
//!   are recorded under route `OVERFLOW` and counted as dropped.
//!
//! `/metrics`, `/health` and the paths below it (`/health/ready`, not `/healthz`) are not
//! measured unless configured otherwise.
//!
//! The handles of each label set are cached, so a request costs one short hash of the route and
//! no formatting of label strings.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use covet_layers::metrics::{MetricsLayer, MetricsService};
//! use http::Request;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = prometheus::Registry::new();
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(ServiceBuilder::new().layer(MetricsLayer::new(&registry)?));
//!
//! let request = Request::get("/users/42").body(axum::body::Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! drop(response);
//!
//! // Serve the registry, e.g. on an admin port: `Router::new().route_service("/metrics", …)`.
//! let metrics = MetricsService::new(&registry)?;
//! let scrape = metrics.oneshot(Request::get("/metrics").body(())?).await?;
//! let text = http_body_util::BodyExt::collect(scrape.into_body()).await?.to_bytes();
//! let text = std::str::from_utf8(&text)?;
//! assert!(text.contains(r#"http_requests_total{method="GET",route="/users/{id}",status="200"} 1"#));
//! # Ok(())
//! # }
//! ```

mod body;
mod endpoint;
mod error;
mod format;
mod future;
mod instruments;
mod labels;
mod layer;
mod openmetrics;
mod service;

pub use body::{RequestBody, ResponseBody};
pub use endpoint::{DEFAULT_MAX_IN_FLIGHT, MetricsService, MetricsServiceBuilder, ScrapeFuture};
pub use error::MetricsError;
pub use format::{Format, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, encode};
pub use future::ResponseFuture;
pub use labels::{
    ClassifyRoute, NoClassifier, ROUTE_NOT_FOUND, ROUTE_OVERFLOW, ROUTE_REDIRECTION, ROUTE_UNKNOWN,
    UserAgentClass,
};
pub use layer::{
    DEFAULT_MAX_LABEL_SETS, DURATION_BUCKETS, MetricsLayer, MetricsLayerBuilder, SIZE_BUCKETS,
};
pub use service::Metrics;

#[cfg(test)]
mod tests;
