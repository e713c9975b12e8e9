//! OpenTelemetry HTTP spans: [`TraceLayer`] for servers, [`PropagateLayer`] for clients, and
//! [`TraceContextPropagator`], W3C trace context by the specification's rules. The one-call
//! process set-up (logs with ids, OTLP export, this propagator) is `covet_layers::telemetry`
//! (feature `telemetry`).
//!
//! # Server spans
//!
//! [`TraceLayer`] starts one OpenTelemetry span per request, of kind SERVER, named
//! `{METHOD} {route}` per the OpenTelemetry HTTP semantic conventions (`{METHOD}` without a route, `HTTP` for a
//! non-standard method). The route is axum's `MatchedPath` (feature `axum`; apply the layer
//! with `Router::layer` so routing has happened). Attributes: `http.request.method`, `url.path`,
//! `url.scheme`, `http.route`, `http.response.status_code`, `network.protocol.version`,
//! `server.address`, `client.address` (the TCP peer, or the client named by the
//! [`trusted_proxies`](TraceLayer::trusted_proxies)), `user_agent.original`,
//! `error.type`, and `request_id` (the `x-request-id` request header, which the request-id
//! layer sets when it runs first). Status is unset for
//! 1xx–4xx and Error for 5xx (`error.type` = the status code) and for inner errors
//! (`error.type` = the error's type name).
//!
//! Incoming `traceparent`, `tracestate` and `baggage` go through the global propagator; a
//! warning is logged once if none is installed. Trace context is read by the rules of W3C Trace
//! Context whatever the propagator (see [`TraceContextPropagator`]): a `traceparent` that fails
//! [`is_valid_traceparent`] (version `ff`, all-zero ids, upper-case or non-hex digits, wrong
//! length, or the header sent twice) is ignored, so the request starts a new trace and the
//! `tracestate` is dropped; `tracestate` header lines are combined into one list, and a list
//! that breaks the grammar is dropped whole. With [`TraceLayer::untrusted_edge`] every request
//! starts a new trace and a valid incoming context becomes a span link (its `tracestate` and
//! `baggage` are dropped), except requests from
//! [`trusted_context_sources`](TraceLayer::trusted_context_sources); public ports should use it,
//! since otherwise any client picks its parent and, through the sampled flag, whether its
//! requests are sampled. A request without trace context always starts a new trace, even
//! inside another span.
//!
//! The trace id is returned in the `x-trace-id` response header (see
//! [`TraceLayer::trace_id_header`]), and one `INFO` request log line (target
//! `covet::trace::request`) is written per request, except for `/health*` and `/metrics`
//! (see [`TraceLayer::request_log`]).
//!
//! The span is started directly on the OpenTelemetry SDK tracer that `telemetry::init` (or
//! [`otel_layer`] in a subscriber assembled by hand) installs as a [`ServerTracer`]:
//! the sampler decides first, and the name and attributes are made only for a span that is
//! recorded, so an unsampled request costs a sampling decision and its ids. Samplers therefore
//! see the method as the span name and no attributes. While the request's future is polled the
//! span's context is the current OpenTelemetry context: `tracing` spans opened by handlers
//! (exported through `tracing-opentelemetry`), the pools' database spans and
//! [`PropagateLayer`]'s client spans become its children, and JSON log lines carry its
//! `trace_id` and `span_id`. Log events are not copied into the span as span events. Without a
//! [`ServerTracer`] in the subscriber (see [`otel_layer`]) the layer starts no span and sets no
//! `x-trace-id`.
//!
//! Place it after `RequestIdLayer` (whose `request` span gives every log line the request id;
//! [`otel_layer`] keeps that span out of the trace) and before the metrics layer.
//! It works the same under axum, hyper and tonic servers.
//!
//! # Example
//!
//! ```
//! use covet_layers::trace::TraceLayer;
//! use http::{Request, Response, StatusCode};
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // What `telemetry::init` installs, with an in-memory exporter.
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(covet_layers::trace::otel_layer(provider.tracer("example")));
//! let _guard = tracing::subscriber::set_default(subscriber);
//!
//! let service = ServiceBuilder::new()
//!     .layer(TraceLayer::new())
//!     .service(service_fn(|_req: Request<()>| async {
//!         let mut res = Response::new(String::new());
//!         *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
//!         Ok::<_, std::convert::Infallible>(res)
//!     }));
//! let response = service.oneshot(Request::get("/orders").body(())?).await?;
//!
//! let trace_id = response.headers()["x-trace-id"].to_str()?.to_owned();
//! let spans = exporter.get_finished_spans()?;
//! assert_eq!(spans[0].name, "GET");
//! assert_eq!(spans[0].span_context.trace_id().to_string(), trace_id);
//! assert_eq!(spans[0].status, opentelemetry::trace::Status::error(""));
//! # Ok(())
//! # }
//! ```

mod attributes;
mod config;
mod context;
mod future;
mod layer;
mod propagate;
mod propagator;
mod scope;
mod service;
mod subscriber;
mod traceparent;
mod tracer;
mod tracestate;

pub use crate::{
    headers::{X_REQUEST_ID, X_TRACE_ID},
    peer::ForwardedHeader,
};
pub use config::DEFAULT_LOG_EXCLUDED;
pub use future::ResponseFuture;
pub use layer::TraceLayer;
pub use propagate::{Propagate, PropagateFuture, PropagateLayer};
pub use propagator::TraceContextPropagator;
pub use scope::current_request_id;
pub use service::Trace;
pub use subscriber::otel_layer;
pub use traceparent::{TRACEPARENT, TRACESTATE, is_valid_traceparent};
pub use tracer::ServerTracer;

// The layer's tests read its log lines in covet's JSON format.
#[cfg(all(test, feature = "telemetry"))]
mod tests;
