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
//! `metrics_encode_10k` encodes a registry holding 10,000 series, as a `/metrics` scrape does.

use std::{convert::Infallible, hint::black_box, net::SocketAddr, sync::OnceLock, time::Duration};

use axum::extract::ConnectInfo;
use axum_prometheus::{
    PrometheusMetricLayer, PrometheusMetricLayerBuilder,
    metrics_exporter_prometheus::PrometheusHandle,
};
use bytes::Bytes;
use covet::layers::{
    metrics::{Format, MetricsLayer, MetricsService},
    rate_limit::{ClientIp, MemoryStore, Policy, Quota, RateLimitLayer},
    request_id::RequestIdLayer,
    security_headers::{HeaderMode, Preset, SecurityHeadersLayer},
    trace::TraceLayer,
};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use tower::{Layer, Service, ServiceBuilder, service_fn};
use tower_governor::{
    GovernorLayer, governor::GovernorConfigBuilder, key_extractor::PeerIpKeyExtractor,
};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer as TowerHttpTraceLayer,
};

fn request() -> Request<Empty<Bytes>> {
    Request::get("/users/42")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        )
        .body(Empty::new())
        .unwrap()
}

/// [`request`] from a peer address, as axum's `into_make_service_with_connect_info` gives it.
fn request_with_peer() -> Request<Empty<Bytes>> {
    let mut req = request();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    req
}

/// Calls the service once and drains the body; every future here is ready on first poll.
fn run<S, B>(service: &mut S)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    run_with(service, request())
}

/// Calls the service once with `req` and drains the body.
fn run_with<S, B>(service: &mut S, req: Request<Empty<Bytes>>)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let response = service.call(req).now_or_never().expect("ready").unwrap();
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

/// The handler with axum's body type, which tower_governor's rejection response needs.
fn axum_handler<B>(
    _req: Request<B>,
) -> std::future::Ready<Result<Response<axum::body::Body>, Infallible>> {
    std::future::ready(Ok(Response::new(axum::body::Body::from(
        Bytes::from_static(b"{\"id\":42}"),
    ))))
}

/// axum-prometheus installs a process-wide `metrics` recorder (a second install panics) and
/// spawns its upkeep task on the current Tokio runtime: both happen once, on a one-worker
/// runtime kept for the whole process. Each call returns a new layer recording into it.
fn axum_prometheus_layer() -> PrometheusMetricLayer<'static> {
    static HANDLE: OnceLock<(tokio::runtime::Runtime, PrometheusHandle)> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let (_layer, handle) = {
            let _entered = rt.enter();
            PrometheusMetricLayerBuilder::new()
                .with_default_metrics()
                .build_pair()
        };
        (rt, handle)
    });
    PrometheusMetricLayer::new()
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

const PEER_HEADERS: [(&str, &str); 12] = [
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    ),
    ("x-xss-protection", "0"),
    ("x-dns-prefetch-control", "off"),
    ("x-permitted-cross-domain-policies", "none"),
];

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

fn set(i: usize) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        HeaderName::from_static(PEER_HEADERS[i].0),
        HeaderValue::from_static(PEER_HEADERS[i].1),
    )
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
    let mut bare = service_fn(axum_handler);
    group.bench_function("baseline", |b| {
        b.iter(|| run_with(&mut bare, request_with_peer()))
    });

    // The reference server's order (example-server/src/lib.rs), without the drain layer.
    let registry = prometheus::Registry::new();
    let mut covet = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(TraceLayer::new())
        .layer(
            MetricsLayer::builder()
                .classify_route(|_: &http::request::Parts| Some("/users/{id}".into()))
                .build(&registry)
                .unwrap(),
        )
        .layer(
            RateLimitLayer::builder(Policy::new(
                "bench",
                Quota::per_second(1_000_000_000).burst(1_000_000_000),
            ))
            .key(ClientIp::new([]))
            .store(MemoryStore::new())
            .build(&registry)
            .unwrap(),
        )
        .layer(SecurityHeadersLayer::api())
        .service(service_fn(axum_handler));
    group.bench_function("covet", |b| {
        b.iter(|| run_with(&mut covet, request_with_peer()))
    });

    let x_request_id = HeaderName::from_static("x-request-id");
    let governor = GovernorConfigBuilder::default()
        .key_extractor(PeerIpKeyExtractor)
        .period(Duration::from_nanos(1))
        .burst_size(1_000_000_000)
        .finish()
        .unwrap();
    let mut peer = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(
            x_request_id.clone(),
            MakeRequestUuid,
        ))
        .layer(TowerHttpTraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(x_request_id))
        .layer(axum_prometheus_layer())
        .layer(GovernorLayer::new(governor))
        .layer(set(0))
        .layer(set(1))
        .layer(set(2))
        .layer(set(3))
        .layer(set(4))
        .service(service_fn(axum_handler));
    group.bench_function("peer", |b| {
        b.iter(|| run_with(&mut peer, request_with_peer()))
    });
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
    metrics_encode
);
criterion_main!(benches);
