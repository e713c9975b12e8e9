//! [`ServerTracer`]: the OpenTelemetry tracer the server spans are started on, carried by the
//! `tracing` subscriber.

use opentelemetry::{
    Context, KeyValue,
    trace::{Link, SpanBuilder, SpanContext, SpanKind, TraceContextExt, Tracer as _},
};
use opentelemetry_sdk::trace::SdkTracer;
use tracing::Subscriber;
use tracing_subscriber::Layer;

/// A `tracing` layer that does nothing on its own but carry the OpenTelemetry tracer
/// [`TraceLayer`](super::TraceLayer) starts its server spans on.
///
/// The trace layer finds it in the current subscriber, asks the tracer's sampler first, and
/// fills in the span's attributes only when the span is recorded, so an unsampled request costs
/// a sampling decision and two ids instead of a whole span. [`otel_layer`](super::otel_layer)
/// and `covet_layers::telemetry::init` install it next to `tracing-opentelemetry`; with neither
/// (nor this layer) installed, the trace layer starts no OpenTelemetry span.
#[derive(Clone, Debug)]
pub struct ServerTracer {
    tracer: SdkTracer,
}

impl ServerTracer {
    /// Carries `tracer` (from `SdkTracerProvider::tracer`).
    pub fn new(tracer: SdkTracer) -> Self {
        Self { tracer }
    }

    /// Starts a server span named `name` under `parent`, linked to `link` if given; the
    /// attributes come from `attributes` only if the sampler decided to record it.
    pub(crate) fn start(
        &self,
        name: &'static str,
        parent: &Context,
        link: Option<SpanContext>,
        attributes: impl FnOnce() -> (Option<String>, Vec<KeyValue>),
    ) -> Context {
        let mut builder = SpanBuilder::from_name(name).with_kind(SpanKind::Server);
        if let Some(link) = link {
            builder.links = Some(vec![Link::with_context(link)]);
        }
        let mut span = self.tracer.build_with_context(builder, parent);
        if opentelemetry::trace::Span::is_recording(&span) {
            let (name, attributes) = attributes();
            if let Some(name) = name {
                opentelemetry::trace::Span::update_name(&mut span, name);
            }
            opentelemetry::trace::Span::set_attributes(&mut span, attributes);
        }
        parent.with_span(span)
    }

    /// Runs `f` with the server tracer of the current subscriber, if it has one.
    ///
    /// `f` runs outside the dispatcher's scope, so events it emits (an invalid `traceparent`,
    /// a missing propagator) reach a thread-local subscriber too.
    #[inline]
    pub(crate) fn with_current<R>(f: impl FnOnce(&ServerTracer) -> R) -> Option<R> {
        let dispatch = tracing::dispatcher::get_default(tracing::Dispatch::clone);
        dispatch.downcast_ref::<ServerTracer>().map(f)
    }
}

impl<S: Subscriber> Layer<S> for ServerTracer {}
