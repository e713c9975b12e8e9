//! The small app `benches/load.sh` drives with wrk: `GET /users/{id}` answering a small JSON
//! body, served four ways so the middleware's cost shows as lost throughput.
//!
//! ```text
//! cargo run --release --example load_app -- MODE [ADDR]
//! ```
//!
//! - `bare`: the axum `Router` alone;
//! - `covet`: the covet stack in the reference server's order, in one `ServiceBuilder`: request
//!   id, trace, metrics, rate limit (memory, per client IP, a quota never
//!   reached), security headers;
//! - `covet-lean`: the same covet stack, answering with the peer's response headers: the five
//!   security headers `peer` sets (same values) instead of the API preset's five, and no
//!   `RateLimit` fields, so the difference from `covet` is the cost of the larger response;
//! - `peer`: what users would otherwise pick, in one `ServiceBuilder`: tower-http
//!   `SetRequestId` + `TraceLayer` + `PropagateRequestId`, axum-prometheus, tower_governor (per
//!   peer IP, a quota never reached), five tower-http `SetResponseHeader` layers.
//!
//! `ADDR` defaults to `127.0.0.1:3000`. One Tokio worker serves every connection; no `tracing`
//! subscriber is installed in any mode, so the trace layers create their spans but nothing
//! records them. The process serves until it is killed.

use std::{net::SocketAddr, time::Duration};

use axum::{Json, Router, extract::Path, routing::get};
use covet::layers::{
    metrics::MetricsLayer,
    rate_limit::{ClientIp, MemoryStore, Policy, Quota, RateLimitLayer},
    request_id::RequestIdLayer,
    security_headers::{Preset, SecurityHeadersLayer},
    trace::TraceLayer,
};
use http::{HeaderName, HeaderValue};
use tower::ServiceBuilder;
use tower_governor::{
    GovernorLayer, governor::GovernorConfigBuilder, key_extractor::PeerIpKeyExtractor,
};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer as TowerHttpTraceLayer,
};

async fn user(Path(id): Path<u64>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "id": id, "name": "Ada", "active": true }))
}

fn routes() -> Router {
    Router::new().route("/users/{id}", get(user))
}

fn covet(registry: &prometheus::Registry) -> Router {
    covet_with(registry, SecurityHeadersLayer::api(), true)
}

/// The API preset's headers the peer does not set.
const API_ONLY_HEADERS: [&str; 1] = ["cache-control"];

fn covet_lean(registry: &prometheus::Registry) -> Router {
    let mut headers = SecurityHeadersLayer::builder(Preset::Api);
    for name in API_ONLY_HEADERS {
        headers = headers.without(name);
    }
    for (name, value) in PEER_HEADERS {
        headers = headers.header(name, value);
    }
    let headers = headers.build().expect("the peer's five headers are valid");
    covet_with(registry, headers, false)
}

fn covet_with(
    registry: &prometheus::Registry,
    security_headers: SecurityHeadersLayer,
    rate_limit_headers: bool,
) -> Router {
    let quota = Quota::per_second(1_000_000_000).burst(1_000_000_000);
    routes().layer(
        ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .layer(TraceLayer::new())
            .layer(MetricsLayer::new(registry).expect("metrics layer"))
            .layer(
                RateLimitLayer::builder(Policy::new("load", quota))
                    .key(ClientIp::new([]))
                    .store(MemoryStore::new())
                    .headers(rate_limit_headers)
                    .build(registry)
                    .expect("rate limit layer"),
            )
            .layer(security_headers),
    )
}

const PEER_HEADERS: [(&str, &str); 5] = [
    ("strict-transport-security", "max-age=63072000"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "default-src 'none'"),
    ("referrer-policy", "no-referrer"),
];

fn set(i: usize) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        HeaderName::from_static(PEER_HEADERS[i].0),
        HeaderValue::from_static(PEER_HEADERS[i].1),
    )
}

fn peer() -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    // Installs the process-wide `metrics` recorder; the handle would serve `/metrics`.
    let (prometheus, _handle) = axum_prometheus::PrometheusMetricLayerBuilder::new()
        .with_default_metrics()
        .build_pair();
    let governor = GovernorConfigBuilder::default()
        .key_extractor(PeerIpKeyExtractor)
        .period(Duration::from_nanos(1))
        .burst_size(1_000_000_000)
        .finish()
        .expect("governor config");
    routes().layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(
                x_request_id.clone(),
                MakeRequestUuid,
            ))
            .layer(TowerHttpTraceLayer::new_for_http())
            .layer(PropagateRequestIdLayer::new(x_request_id))
            .layer(prometheus)
            .layer(GovernorLayer::new(governor))
            .layer(set(0))
            .layer(set(1))
            .layer(set(2))
            .layer(set(3))
            .layer(set(4)),
    )
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let addr: SocketAddr = args
        .next()
        .as_deref()
        .unwrap_or("127.0.0.1:3000")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("ADDR: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let registry = prometheus::Registry::new();
        let app = match mode.as_str() {
            "bare" => routes(),
            "covet" => covet(&registry),
            "covet-lean" => covet_lean(&registry),
            "peer" => peer(),
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("MODE must be bare, covet, covet-lean or peer, not `{other}`"),
                ));
            }
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("load_app {mode} listening on {}", listener.local_addr()?);
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    })
}
