//! Added cost per request of each covet layer over a pass-through service, with the peer crate
//! doing the same job measured in the same group.
//!
//! Each iteration builds `GET /users/42`, calls the service, and drains the response body. The
//! futures are ready at once, so they are polled once without a runtime: what is measured is the
//! middleware, not a scheduler.

use std::{convert::Infallible, hint::black_box};

use bytes::Bytes;
use covet::layers::{
    metrics::MetricsLayer,
    request_id::RequestIdLayer,
    security_headers::{HeaderMode, SecurityHeadersLayer},
};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use tower::{Layer, Service, ServiceBuilder, service_fn};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
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

/// Calls the service once and drains the body; every future here is ready on first poll.
fn run<S, B>(service: &mut S)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
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

fn request_id(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_id");
    let mut bare = service_fn(handler);
    group.bench_function("baseline", |b| b.iter(|| run(&mut bare)));
    let mut covet = RequestIdLayer::new().span(false).layer(service_fn(handler));
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
    let layer = SecurityHeadersLayer::builder_api()
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
    group.finish();
}

fn full_stack(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_stack");
    let mut bare = service_fn(handler);
    group.bench_function("baseline", |b| b.iter(|| run(&mut bare)));
    let registry = prometheus::Registry::new();
    let mut covet = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(
            MetricsLayer::builder()
                .classify_route(|_: &http::request::Parts| Some("/users/{id}".into()))
                .build(&registry)
                .unwrap(),
        )
        .layer(SecurityHeadersLayer::api())
        .service(service_fn(handler));
    group.bench_function("covet", |b| b.iter(|| run(&mut covet)));
    group.finish();
}

criterion_group!(benches, request_id, security_headers, metrics, full_stack);
criterion_main!(benches);
