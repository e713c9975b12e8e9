//! One-call telemetry set-up: logs (JSON or readable) with `request_id`, `trace_id` and
//! `span_id` on every line logged inside a request, the OTLP span exporter, and the W3C
//! propagator.
//!
//! [`Telemetry::builder`] … [`init`](TelemetryBuilder::init) installs, process-wide:
//! - a `tracing` subscriber filtered like `RUST_LOG` (the [`filter`](TelemetryBuilder::filter)
//!   override, else `RUST_LOG`, else `info`);
//! - JSON lines ([`LogFormat::Json`], for production) or tracing-subscriber's readable format
//!   ([`LogFormat::Pretty`], for development). A JSON line looks like
//!   `{"timestamp":"…","level":"INFO","target":"covet::trace::request","message":"request
//!   completed","method":"GET",…,"status":200,…,"span":"request","request_id":"…",
//!   "trace_id":"…","span_id":"…"}`: the three ids are top-level fields: the request id the
//!   event carries, else the one of the innermost span that records one (the request-id
//!   layer's), the trace and span ids from the current OpenTelemetry context, so they match the
//!   exported span. An event field named like one of the line's own keys (`timestamp`,
//!   `level`, `target`, `span`, `trace_id`, `span_id`) is written as `fields.NAME`;
//! - an OpenTelemetry tracer provider exporting over OTLP (gRPC or HTTP/protobuf) from a batch
//!   processor (feature `otlp-grpc` and/or `otlp-http`), configured from the standard environment
//!   variables with builder overrides:
//!
//!   | variable | meaning | override |
//!   |---|---|---|
//!   | `OTEL_TRACES_EXPORTER` | `otlp` (default) or `none` | [`export`](TelemetryBuilder::export) |
//!   | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf` (default) or `grpc` | [`protocol`](TelemetryBuilder::protocol) |
//!   | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` | collector address (`http://localhost:4318` / `:4317`) | [`endpoint`](TelemetryBuilder::endpoint) |
//!   | `OTEL_SERVICE_NAME` | `service.name` | [`service_name`](TelemetryBuilder::service_name) |
//!   | `OTEL_RESOURCE_ATTRIBUTES` | `k=v,k2=v2` resource attributes | [`resource_attribute`](TelemetryBuilder::resource_attribute) |
//!   | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | sampler (default `parentbased_always_on`) | [`sampler`](TelemetryBuilder::sampler) |
//!
//!   (`OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`, `…_COMPRESSION` and `OTEL_BSP_*` are read by
//!   the OpenTelemetry crates themselves.) Spans get real ids even with the exporter off, so
//!   logs still carry them;
//! - covet's strict W3C trace-context propagator
//!   ([`TraceContextPropagator`](crate::trace::TraceContextPropagator)) and OpenTelemetry's W3C
//!   `baggage` propagator, as the global propagator.
//!
//! Log lines go to stdout (or [`output`](TelemetryBuilder::output)) through a bounded queue
//! written out by a thread of its own, at most 10 ms after they are logged and in one write
//! call for all the lines gathered meanwhile, so logging never waits for the reader: when the
//! reader stalls and the queue fills, lines are dropped and counted
//! ([`Telemetry::dropped_log_lines`], `log_lines_dropped_total` with
//! [`Telemetry::register_metrics`]) while requests go on.
//!
//! It returns a [`Telemetry`] handle: its [`shutdown`](Telemetry::shutdown) flushes pending
//! spans within a timeout, then the queued log lines (call it last). A second `init` in the same
//! process returns [`TelemetryError::AlreadyInstalled`].
//!
//! Call `init` inside a Tokio runtime: both exporters run their network I/O on it. Without an
//! exporter feature, spans are not exported (they still get ids) and asking for export is a
//! [`TelemetryError::ExporterNotCompiled`].
//!
//! # Example
//!
//! ```no_run
//! use covet_layers::{telemetry::{LogFormat, Telemetry}, trace::TraceLayer};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let telemetry = Telemetry::builder()
//!     .service_name("checkout")
//!     .format(LogFormat::Json)
//!     .init()?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(TraceLayer::new())
//!     .service(service_fn(|_req: Request<()>| async {
//!         tracing::info!("handled"); // carries request_id, trace_id and span_id
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//! let response = service.oneshot(Request::new(())).await?;
//! assert_eq!(response.headers()["x-trace-id"].len(), 32);
//!
//! telemetry.shutdown().await?; // flush pending spans
//! # Ok(())
//! # }
//! ```

mod builder;
mod config;
mod error;
mod exporter;
mod handle;
#[cfg(feature = "otlp-http")]
mod http_client;
pub(crate) mod json;
mod output;
mod sampler;

pub use builder::TelemetryBuilder;
pub use config::{LogFormat, Protocol};
pub use error::TelemetryError;
pub use handle::Telemetry;
pub use opentelemetry_sdk::trace::Sampler;
pub use output::DEFAULT_LOG_BUFFER_LINES;

/// A set, non-blank environment variable.
fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}
