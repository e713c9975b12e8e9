//! What the full-stack benches share: the request, the handler, the covet stack in the
//! reference server's order and the peer stack, all in one `ServiceBuilder` each.

use std::{convert::Infallible, hint::black_box, net::SocketAddr, sync::OnceLock, time::Duration};

use axum::extract::ConnectInfo;
use axum_prometheus::{
    PrometheusMetricLayer, PrometheusMetricLayerBuilder,
    metrics_exporter_prometheus::PrometheusHandle,
};
use bytes::Bytes;
use covet::layers::{
    metrics::MetricsLayer,
    rate_limit::{ClientIp, MemoryStore, Policy, Quota, RateLimitLayer},
    request_id::RequestIdLayer,
    security_headers::SecurityHeadersLayer,
    trace::TraceLayer,
};
use criterion::{BenchmarkGroup, measurement::WallTime};
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Empty};
use tower::{Service, ServiceBuilder, service_fn};
use tower_governor::{
    GovernorLayer, governor::GovernorConfigBuilder, key_extractor::PeerIpKeyExtractor,
};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer as TowerHttpTraceLayer},
};
use tracing::Level;

/// `GET /users/42` with a browser's user agent.
pub(crate) fn request() -> Request<Empty<Bytes>> {
    Request::get("/users/42")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        )
        .body(Empty::new())
        .unwrap()
}

/// [`request`] from a peer address, as axum's `into_make_service_with_connect_info` gives it.
pub(crate) fn request_with_peer() -> Request<Empty<Bytes>> {
    let mut req = request();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    req
}

/// Measures `service` as `name` in `group`, each iteration one [`request_with_peer`].
pub(crate) fn bench_stack<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    service: &mut S,
) where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| b.iter(|| run_with(service, request_with_peer())));
}

/// Measures the bare handler (`baseline`) and the covet stack (`covet`) in `group`.
pub(crate) fn bench_baseline_and_covet(group: &mut BenchmarkGroup<'_, WallTime>) {
    bench_stack(group, "baseline", &mut service_fn(axum_handler));
    let registry = prometheus::Registry::new();
    bench_stack(group, "covet", &mut covet_stack(&registry));
}

/// Calls the service once with `req` and drains the body; every future here is ready on first
/// poll.
pub(crate) fn run_with<S, B>(service: &mut S, req: Request<Empty<Bytes>>)
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

/// The handler with axum's body type, which tower_governor's rejection response needs.
pub(crate) fn axum_handler<B>(
    _req: Request<B>,
) -> std::future::Ready<Result<Response<axum::body::Body>, Infallible>> {
    std::future::ready(Ok(Response::new(axum::body::Body::from(
        Bytes::from_static(b"{\"id\":42}"),
    ))))
}

/// axum-prometheus installs a process-wide `metrics` recorder (a second install panics) and
/// spawns its upkeep task on the current Tokio runtime: both happen once, on a one-worker
/// runtime kept for the whole process. Each call returns a new layer recording into it.
pub(crate) fn axum_prometheus_layer() -> PrometheusMetricLayer<'static> {
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

/// The covet stack in the reference server's order (example-server/src/lib.rs), without the
/// drain layer: request id, trace, metrics, rate limit (memory, per client IP, never reached),
/// the API security headers.
pub(crate) fn covet_stack(
    registry: &prometheus::Registry,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<impl Body<Error = impl std::fmt::Debug>>,
    Error = impl std::fmt::Debug,
> {
    ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(TraceLayer::new())
        .layer(
            MetricsLayer::builder()
                .classify_route(|_: &http::request::Parts| Some("/users/{id}".into()))
                .build(registry)
                .unwrap(),
        )
        .layer(
            RateLimitLayer::builder(Policy::new(
                "bench",
                Quota::per_second(1_000_000_000).burst(1_000_000_000),
            ))
            .key(ClientIp::new([]))
            .store(MemoryStore::new())
            .build(registry)
            .unwrap(),
        )
        .layer(SecurityHeadersLayer::api())
        .service(service_fn(axum_handler))
}

/// Twelve security headers as tower-http `SetResponseHeader` layers set them; the peer stack
/// sets the first five.
pub(crate) const PEER_HEADERS: [(&str, &str); 12] = [
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

/// `SetResponseHeader` (overriding) for [`PEER_HEADERS`]`[i]`.
pub(crate) fn set(i: usize) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        HeaderName::from_static(PEER_HEADERS[i].0),
        HeaderValue::from_static(PEER_HEADERS[i].1),
    )
}

/// What users would otherwise assemble: tower-http request id + `TraceLayer` + propagation,
/// axum-prometheus, tower_governor (per peer IP, never reached), five tower-http
/// `SetResponseHeader` layers. `level` is the level of the `TraceLayer`'s span and response
/// line: tower-http's default is DEBUG; INFO makes them recorded by an INFO subscriber, one line
/// a request like covet's request log.
pub(crate) fn peer_stack(
    level: Level,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<impl Body<Error = impl std::fmt::Debug>>,
    Error = impl std::fmt::Debug,
> {
    let x_request_id = HeaderName::from_static("x-request-id");
    let governor = GovernorConfigBuilder::default()
        .key_extractor(PeerIpKeyExtractor)
        .period(Duration::from_nanos(1))
        .burst_size(1_000_000_000)
        .finish()
        .unwrap();
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(
            x_request_id.clone(),
            MakeRequestUuid,
        ))
        .layer(
            TowerHttpTraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(level))
                .on_response(DefaultOnResponse::new().level(level)),
        )
        .layer(PropagateRequestIdLayer::new(x_request_id))
        .layer(axum_prometheus_layer())
        .layer(GovernorLayer::new(governor))
        .layer(set(0))
        .layer(set(1))
        .layer(set(2))
        .layer(set(3))
        .layer(set(4))
        .service(service_fn(axum_handler))
}
