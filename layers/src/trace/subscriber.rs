//! [`otel_layer`]: the OpenTelemetry layers of a `tracing` subscriber, for the trace layer.

use opentelemetry_sdk::trace::SdkTracer;
use tracing_subscriber::Layer as _;

use super::ServerTracer;

/// The target of the request-id layer's span.
const REQUEST_ID_SPAN_TARGET: &str = "covet::request_id";

/// The OpenTelemetry layers as `covet_layers::telemetry::init` installs them, for a subscriber
/// assembled by hand (tests, benchmarks): the [`ServerTracer`] that [`TraceLayer`](super::TraceLayer) starts
/// its server spans on, and `tracing-opentelemetry` for every other `tracing` span (handlers'
/// `#[instrument]` spans, the pools' database spans, the client spans of
/// [`PropagateLayer`](super::PropagateLayer)), which become children of the server span.
///
/// The request-id layer's `tracing` span (target `covet::request_id`), which gives log lines
/// their request id, is kept out of the trace: it would be a root span of its own. Busy/idle
/// timing (two clock reads per poll), thread and source-location attributes are off: they are
/// not part of the HTTP semantic conventions and cost time on every request.
pub fn otel_layer<S>(tracer: SdkTracer) -> impl tracing_subscriber::Layer<S> + Send + Sync
where
    S: tracing::Subscriber
        + for<'span> tracing_subscriber::registry::LookupSpan<'span>
        + Send
        + Sync,
{
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer.clone())
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.target() != REQUEST_ID_SPAN_TARGET
        }));
    ServerTracer::new(tracer).and_then(spans)
}
