//! The small app `benches/load.sh` drives with wrk: `GET /users/{id}` answering a small JSON
//! body, served four ways so the middleware's cost shows as lost throughput.
//!
//! ```text
//! cargo run --release --example load_app -- MODE [ADDR] [SUBSCRIBER] [LOG_FILE]
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
//! `SUBSCRIBER` is what records the stacks' spans and log lines:
//!
//! - `none` (the default): no `tracing` subscriber, so the trace layers create their spans but
//!   nothing records them;
//! - `info`: tracing-subscriber's `fmt` subscriber at `INFO`, writing into `io::sink`, for every
//!   mode; the peer's `TraceLayer` records its span and its response line at `INFO` (one line a
//!   request, as covet's request log);
//! - `telemetry`: what a production service runs. The covet modes call `covet::telemetry`'s
//!   `init` (JSON lines through its log queue into `LOG_FILE`, the SDK sampling every request,
//!   export off); `peer` and `bare` install the usual hand-made equivalent: tracing-subscriber's
//!   JSON formatter through tracing-appender's non-blocking writer into `LOG_FILE`, and
//!   `tracing-opentelemetry` over the same SDK set-up (always on, export off), with the peer's
//!   `TraceLayer` at `INFO`.
//!
//! `ADDR` defaults to `127.0.0.1:3000`, `LOG_FILE` to `/dev/null`. One Tokio worker serves every
//! connection. The process serves until it is killed; with `telemetry` it prints the number of
//! dropped log lines to stderr every 5 s (none may be dropped for a run to count).

use std::{fs::File, net::SocketAddr, time::Duration};

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
    trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer as TowerHttpTraceLayer},
};
use tracing::Level;
use tracing_subscriber::{filter::LevelFilter, layer::SubscriberExt};

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

fn peer(recorded: bool) -> Router {
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
            .layer(
                // tower-http's defaults are DEBUG, which an INFO subscriber filters out; with a
                // subscriber, the span and the response line are made INFO to be recorded.
                TowerHttpTraceLayer::new_for_http()
                    .make_span_with(DefaultMakeSpan::new().level(if recorded {
                        Level::INFO
                    } else {
                        Level::DEBUG
                    }))
                    .on_response(DefaultOnResponse::new().level(if recorded {
                        Level::INFO
                    } else {
                        Level::DEBUG
                    })),
            )
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

/// What records the spans and log lines.
#[derive(Clone, Copy, PartialEq)]
enum Recording {
    None,
    Info,
    Telemetry,
}

/// Installs the subscriber for `mode`; what it returns must live as long as the server.
fn install(recording: Recording, mode: &str, log_file: &str) -> std::io::Result<Box<dyn Send>> {
    match recording {
        Recording::None => Ok(Box::new(())),
        Recording::Info => {
            tracing_subscriber::fmt()
                .with_max_level(Level::INFO)
                .with_writer(std::io::sink)
                .init();
            Ok(Box::new(()))
        }
        Recording::Telemetry if mode.starts_with("covet") => {
            let telemetry = covet::telemetry::Telemetry::builder()
                .filter("info")
                .output(File::create(log_file)?)
                .sampler(covet::telemetry::Sampler::AlwaysOn)
                .export(false)
                .service_name("load_app")
                .init()
                .map_err(std::io::Error::other)?;
            let telemetry = std::sync::Arc::new(telemetry);
            let watched = telemetry.clone();
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    eprintln!("dropped log lines: {}", watched.dropped_log_lines());
                }
            });
            Ok(Box::new(telemetry))
        }
        Recording::Telemetry => {
            use opentelemetry::trace::TracerProvider as _;
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
                .build();
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(true)
                .finish(File::create(log_file)?);
            let dropped = writer.error_counter();
            let subscriber = tracing_subscriber::registry()
                .with(LevelFilter::INFO)
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("load_app")))
                .with(tracing_subscriber::fmt::layer().json().with_writer(writer));
            tracing::subscriber::set_global_default(subscriber).map_err(std::io::Error::other)?;
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    eprintln!("dropped log lines: {}", dropped.dropped_lines());
                }
            });
            Ok(Box::new((provider, guard)))
        }
    }
}

fn main() -> std::io::Result<()> {
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let addr: SocketAddr = args
        .next()
        .as_deref()
        .unwrap_or("127.0.0.1:3000")
        .parse()
        .map_err(|e| invalid(format!("ADDR: {e}")))?;
    let recording = match args.next().as_deref().unwrap_or("none") {
        "none" => Recording::None,
        "info" => Recording::Info,
        "telemetry" => Recording::Telemetry,
        other => {
            return Err(invalid(format!(
                "SUBSCRIBER must be none, info or telemetry, not `{other}`"
            )));
        }
    };
    let log_file = args.next().unwrap_or_else(|| "/dev/null".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let _recording = install(recording, &mode, &log_file)?;
        let registry = prometheus::Registry::new();
        let app = match mode.as_str() {
            "bare" => routes(),
            "covet" => covet(&registry),
            "covet-lean" => covet_lean(&registry),
            "peer" => peer(recording != Recording::None),
            other => {
                return Err(invalid(format!(
                    "MODE must be bare, covet, covet-lean or peer, not `{other}`"
                )));
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
