//! Added cost per request of each covet layer over a pass-through service, with the peer crate
//! doing the same job measured in the same group.
//!
//! Each iteration builds `GET /users/42`, calls the service, and drains the response body. The
//! futures are ready at once, so they are polled once without a runtime: what is measured is the
//! middleware, not a scheduler.
//!
//! `full_stack` compares the whole covet stack (in the reference server's order) with the whole
//! peer stack (tower-http request id + `TraceLayer` + 5 `SetResponseHeader`, axum-prometheus,
//! tower_governor), both in one `ServiceBuilder`, with no `tracing` subscriber installed. Its
//! requests carry axum's `ConnectInfo<SocketAddr>`, which both rate limiters key on.
//! `full_stack_info` runs the same stacks under an INFO `fmt` subscriber writing into
//! `io::sink`, the peer's `TraceLayer` at INFO (the subscriber's default colours on, as
//! `tracing_subscriber::fmt()` gives them); `full_stack_info_plain` the same without colours;
//! benches/telemetry.rs runs them under the production set-up.
//! `metrics_encode_10k` encodes a registry holding 10,000 series, as a `/metrics` scrape does.

mod common;

use std::{convert::Infallible, hint::black_box, time::Duration};

use bytes::Bytes;
use common::{
    PEER_HEADERS, axum_prometheus_layer, bench_baseline_and_covet, bench_stack, peer_stack,
    request, run_with, set,
};
use covet::layers::{
    metrics::{Format, MetricsLayer, MetricsService},
    request_id::RequestIdLayer,
    security_headers::{HeaderMode, Preset, SecurityHeadersLayer},
};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderName, Request, Response};
use http_body::Body;
use http_body_util::{Empty, Full};
use tower::{Layer, Service, ServiceBuilder, service_fn};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Level;

/// Calls the service once with [`request`] and drains the body.
fn run<S, B>(service: &mut S)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    run_with(service, request())
}

fn handler<B>(_req: Request<B>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
        b"{\"id\":42}",
    )))))
}

fn request_id(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_id");
    let mut bare = service_fn(handler);
    group.bench_function("baseline", |b| b.iter(|| run(&mut bare)));
    let mut covet = RequestIdLayer::new().layer(service_fn(handler));
    group.bench_function("covet", |b| b.iter(|| run(&mut covet)));
    let x_request_id = HeaderName::from_static("x-request-id");
    let mut peer = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(
            x_request_id.clone(),
            MakeRequestUuid,
        ))
        .layer(PropagateRequestIdLayer::new(x_request_id))
        .service(service_fn(handler));
    group.bench_function("tower_http", |b| b.iter(|| run(&mut peer)));
    group.finish();
}

fn security_headers(c: &mut Criterion) {
    let mut group = c.benchmark_group("security_headers");
    let mut bare = service_fn(handler);
    group.bench_function("baseline", |b| b.iter(|| run(&mut bare)));
    // The same twelve headers and values as the peer.
    let layer = PEER_HEADERS
        .iter()
        .fold(
            SecurityHeadersLayer::builder(Preset::Api),
            |b, (name, value)| b.header(*name, *value),
        )
        .mode(HeaderMode::Override)
        .build()
        .unwrap();
    let mut covet = layer.layer(service_fn(handler));
    group.bench_function("covet", |b| b.iter(|| run(&mut covet)));
    let mut peer = ServiceBuilder::new()
        .layer(set(0))
        .layer(set(1))
        .layer(set(2))
        .layer(set(3))
        .layer(set(4))
        .layer(set(5))
        .layer(set(6))
        .layer(set(7))
        .layer(set(8))
        .layer(set(9))
        .layer(set(10))
        .layer(set(11))
        .service(service_fn(handler));
    group.bench_function("tower_http_x12", |b| b.iter(|| run(&mut peer)));
    group.finish();
}

fn metrics(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics");
    let mut bare = service_fn(handler);
    group.bench_function("baseline", |b| b.iter(|| run(&mut bare)));
    let registry = prometheus::Registry::new();
    let layer = MetricsLayer::builder()
        .classify_route(|_: &http::request::Parts| Some("/users/{id}".into()))
        .build(&registry)
        .unwrap();
    let mut covet = layer.layer(service_fn(handler));
    group.bench_function("covet", |b| b.iter(|| run(&mut covet)));
    let mut peer = axum_prometheus_layer().layer(service_fn(handler));
    group.bench_function("axum_prometheus", |b| b.iter(|| run(&mut peer)));
    group.finish();
}

fn full_stack(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_stack");
    bench_baseline_and_covet(&mut group);
    bench_stack(&mut group, "peer", &mut peer_stack(Level::DEBUG));
    group.finish();
}

/// The full stacks under tracing-subscriber's `fmt` subscriber at INFO writing into
/// `io::sink`: covet's request-id span and request log line are recorded, and the peer's
/// `TraceLayer` records its span and its response line at INFO (one line a request, as covet).
fn full_stack_info(c: &mut Criterion) {
    full_stack_under_fmt(c, "full_stack_info", true);
}

fn full_stack_info_plain(c: &mut Criterion) {
    full_stack_under_fmt(c, "full_stack_info_plain", false);
}

/// Both stacks as group `name` under an INFO `fmt` subscriber into `io::sink`, with or without
/// ANSI colours.
fn full_stack_under_fmt(c: &mut Criterion, name: &str, colours: bool) {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(Level::INFO)
        .with_ansi(colours)
        .with_writer(std::io::sink)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut group = c.benchmark_group(name);
    bench_baseline_and_covet(&mut group);
    bench_stack(&mut group, "peer", &mut peer_stack(Level::INFO));
    group.finish();
}

/// A registry holding exactly 10,000 series: 4,000 counter samples
/// (`method` × `route` × `status`) and 500 histograms of 9 buckets (9 + `+Inf` + `_sum` +
/// `_count` = 12 samples each), all with values.
fn registry_10k() -> prometheus::Registry {
    let registry = prometheus::Registry::new();
    let counter = prometheus::IntCounterVec::new(
        prometheus::Opts::new("bench_requests_total", "Requests."),
        &["method", "route", "status"],
    )
    .unwrap();
    let histogram = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("bench_request_duration_seconds", "Latency.")
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
        &["method", "route"],
    )
    .unwrap();
    registry.register(Box::new(counter.clone())).unwrap();
    registry.register(Box::new(histogram.clone())).unwrap();
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let statuses = [
        "200", "201", "204", "400", "401", "404", "409", "429", "500", "503",
    ];
    for route in 0..100 {
        let route = format!("/api/v1/resource{route}/{{id}}");
        for method in methods {
            for status in statuses {
                counter
                    .with_label_values(&[method, &route, status])
                    .inc_by(1234);
            }
        }
    }
    for route in 0..125 {
        let route = format!("/api/v1/resource{route}/{{id}}");
        for method in methods {
            histogram
                .with_label_values(&[method, &route])
                .observe(0.042);
        }
    }
    registry
}

fn metrics_encode(c: &mut Criterion) {
    let registry = registry_10k();
    let families = registry.gather();
    let samples =
        String::from_utf8(covet::layers::metrics::encode(&families, Format::Text).unwrap())
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .count();
    assert_eq!(samples, 10_000, "the registry must hold 10,000 series");

    let mut group = c.benchmark_group("metrics_encode_10k");
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(20);
    group.bench_function("gather_only", |b| b.iter(|| black_box(registry.gather())));
    let service = MetricsService::builder().build(&registry).unwrap();
    group.bench_function("covet_text", |b| {
        b.iter(|| black_box(service.encode(Format::Text).unwrap()))
    });
    group.bench_function("covet_openmetrics", |b| {
        b.iter(|| black_box(service.encode(Format::OpenMetrics).unwrap()))
    });
    // A whole scrape as Prometheus sends it: gather, OpenMetrics, gzip.
    let mut scrape = service.clone();
    group.bench_function("covet_scrape_gzip", |b| {
        b.iter(|| {
            let req = Request::get("/metrics")
                .header("accept", "application/openmetrics-text;version=1.0.0")
                .header("accept-encoding", "gzip")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = scrape.call(req).now_or_never().unwrap().unwrap();
            assert_eq!(response.status(), 200);
            black_box(response)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    request_id,
    security_headers,
    metrics,
    full_stack,
    full_stack_info,
    full_stack_info_plain,
    metrics_encode
);
criterion_main!(benches);
