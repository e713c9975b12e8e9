//! Added cost per request of covet's server `TraceLayer` over a pass-through service, with the
//! OpenTelemetry SDK installed (through `tracing-opentelemetry`, as `covet::telemetry::init`
//! does) and sampling on, and with sampling off; tower-http's `TraceLayer` is measured in the
//! same run under the same subscribers.
//!
//! Spans go to a batch processor whose exporter discards them, so what is measured is the
//! request path (span creation, attributes, context extraction, the end of the span), not I/O.
//! Each iteration builds `GET /users/42` with a `traceparent`, calls the service and drains the
//! response body; the futures are ready at once and polled without a runtime.

use std::{convert::Infallible, hint::black_box};

use bytes::Bytes;
use covet::layers::trace::TraceLayer;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter},
};
use tower::{Layer, Service, service_fn};
use tracing::Level;
use tracing_subscriber::{filter::LevelFilter, layer::SubscriberExt};

fn request() -> Request<Empty<Bytes>> {
    Request::get("/users/42")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        )
        .body(Empty::new())
        .unwrap()
}

fn run<S, B>(service: &mut S)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = service
        .call(request())
        .now_or_never()
        .expect("ready")
        .unwrap();
    let body = response
        .into_body()
        .collect()
        .now_or_never()
        .expect("ready");
    black_box(body.ok());
}

fn handler<B>(_req: Request<B>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
        b"{\"id\":42}",
    )))))
}

/// Drops every span: the cost of export is not on the request path.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// An `INFO` subscriber with the OpenTelemetry layer over an SDK with `sampler`.
fn otel_subscriber(
    sampler: Sampler,
) -> (impl tracing::Subscriber + Send + Sync, SdkTracerProvider) {
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_batch_exporter(Discard)
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(LevelFilter::INFO)
        .with(covet::layers::trace::otel_layer(provider.tracer("bench")));
    (subscriber, provider)
}

fn trace(c: &mut Criterion) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut group = c.benchmark_group("trace");

    let mut bare = service_fn(handler);
    group.bench_function("baseline", |b| b.iter(|| run(&mut bare)));

    let mut covet = TraceLayer::new().layer(service_fn(handler));
    group.bench_function("covet_no_subscriber", |b| b.iter(|| run(&mut covet)));

    for (label, sampler) in [
        ("sampled", Sampler::AlwaysOn),
        ("unsampled", Sampler::AlwaysOff),
    ] {
        let (subscriber, provider) = otel_subscriber(sampler);
        let _guard = tracing::subscriber::set_default(subscriber);

        let mut covet = TraceLayer::new().layer(service_fn(handler));
        group.bench_function(format!("covet_{label}"), |b| b.iter(|| run(&mut covet)));

        let mut covet_quiet = TraceLayer::new()
            .request_log(false)
            .layer(service_fn(handler));
        group.bench_function(format!("covet_{label}_no_request_log"), |b| {
            b.iter(|| run(&mut covet_quiet))
        });

        // tower-http at INFO, so its spans reach the SDK like covet's.
        let mut peer_info = tower_http::trace::TraceLayer::new_for_http()
            .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(Level::INFO))
            .on_response(tower_http::trace::DefaultOnResponse::new().level(Level::INFO))
            .layer(service_fn(handler));
        group.bench_function(format!("tower_http_info_{label}"), |b| {
            b.iter(|| run(&mut peer_info))
        });

        // tower-http's defaults: DEBUG spans and events, filtered out by the INFO subscriber.
        let mut peer_default =
            tower_http::trace::TraceLayer::new_for_http().layer(service_fn(handler));
        group.bench_function(format!("tower_http_default_{label}"), |b| {
            b.iter(|| run(&mut peer_default))
        });

        drop(_guard);
        let _ = provider.shutdown();
    }
    group.finish();
}

criterion_group!(benches, trace);
criterion_main!(benches);
