#![allow(unused_imports, unused_mut, unused_variables, dead_code)] // which items are used depends on the features
//! A hello app using whichever covet features it was built with, next to prometheus with its
//! default features. Run with no arguments: it exercises each compiled-in feature once,
//! in process, and prints what it did.

use http::{Request, Response};
use tower::{ServiceBuilder, ServiceExt, service_fn};

async fn hello<B>(_req: Request<B>) -> Result<Response<String>, std::convert::Infallible> {
    Ok(Response::new("hello".to_owned()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // prometheus's default features include the protobuf model: this encoder exists only then.
    #[cfg(feature = "prometheus-defaults")]
    let _protobuf = prometheus::ProtobufEncoder::new();
    #[cfg(any(feature = "metrics", feature = "rate-limit", feature = "shutdown"))]
    let registry = covet::layers::prometheus::Registry::new();
    let mut used: Vec<&str> = Vec::new();

    #[cfg(feature = "request-id")]
    {
        let svc = ServiceBuilder::new()
            .layer(covet::layers::request_id::RequestIdLayer::new())
            .service(service_fn(hello::<_>));
        let res = svc.oneshot(Request::new(String::new())).await?;
        assert!(res.headers().contains_key("x-request-id"));
        used.push("request-id");
    }
    #[cfg(feature = "security-headers")]
    {
        let svc = ServiceBuilder::new()
            .layer(covet::layers::security_headers::SecurityHeadersLayer::api())
            .service(service_fn(hello::<_>));
        let res = svc.oneshot(Request::new(String::new())).await?;
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        used.push("security-headers");
    }
    #[cfg(feature = "metrics")]
    {
        use covet::layers::metrics::{Format, MetricsLayer, MetricsService};
        let svc = ServiceBuilder::new()
            .layer(MetricsLayer::new(&registry)?)
            .service(service_fn(hello::<_>));
        svc.oneshot(Request::new(String::new())).await?;
        let scrape = MetricsService::new(&registry)?;
        let text = String::from_utf8(scrape.encode(Format::OpenMetrics)?)?;
        assert!(text.ends_with("# EOF\n") && text.contains("http_requests_total"));
        used.push("metrics");
    }
    #[cfg(feature = "system-metrics")]
    {
        covet::layers::catalog::system::SystemMetrics::register(&registry)?;
        used.push("system-metrics");
    }
    #[cfg(feature = "rate-limit")]
    {
        use covet::layers::rate_limit::{GlobalKey, Policy, Quota, RateLimitLayer};
        let limit = RateLimitLayer::builder(Policy::new("hello", Quota::per_second(10)))
            .key(GlobalKey)
            .build(&registry)?;
        let svc = ServiceBuilder::new().layer(limit).service(service_fn(hello::<_>));
        let res = svc.oneshot(Request::new(String::new())).await?;
        assert!(res.headers().contains_key("ratelimit"));
        used.push("rate-limit");
    }
    #[cfg(feature = "rate-limit-redis")]
    {
        // Built, not connected: no Redis is needed to compile or run this.
        covet::layers::rate_limit::RedisStore::builder("redis://127.0.0.1:6379").build()?;
        used.push("rate-limit-redis");
    }
    #[cfg(feature = "rate-limit-redis-tls")]
    {
        // rediss:// is understood (and built without connecting).
        covet::layers::rate_limit::RedisStore::builder("rediss://127.0.0.1:6390").build()?;
        used.push("rate-limit-redis-tls");
    }
    #[cfg(feature = "trace")]
    {
        let svc = ServiceBuilder::new()
            .layer(covet::layers::trace::TraceLayer::new())
            .service(service_fn(hello::<_>));
        svc.oneshot(Request::new(String::new())).await?;
        used.push("trace");
    }
    #[cfg(feature = "telemetry")]
    {
        let telemetry = covet::telemetry::Telemetry::builder()
            .export(false)
            .writer(std::io::sink)
            .init()?;
        telemetry.shutdown().await?;
        used.push("telemetry");
    }
    #[cfg(feature = "shutdown")]
    {
        let shutdown = covet::layers::shutdown::Shutdown::builder().build()?;
        let _drain = covet::layers::shutdown::DrainLayer::new(&shutdown);
        used.push("shutdown");
    }
    #[cfg(feature = "serve")]
    {
        let _options = covet::layers::serve::ServeOptions::default();
        used.push("serve");
    }
    #[cfg(feature = "health")]
    {
        let health = covet::health::HealthRegistry::builder().build()?;
        let report = health.report(covet::health::Probe::Liveness).await;
        assert_eq!(report.status(), covet::health::Status::Up);
        used.push("health");
    }
    #[cfg(any(feature = "pools-postgres", feature = "pools-redis"))]
    {
        used.push("pools");
    }
    #[cfg(feature = "tls")]
    {
        assert_eq!(
            covet::tls::SslMode::parse("verify-full")?,
            covet::tls::SslMode::VerifyFull
        );
        used.push("tls");
    }
    #[cfg(feature = "tower-http-request-id")]
    {
        use tower_http::request_id::{MakeRequestUuid, SetRequestIdLayer};
        let svc = ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .service(service_fn(hello::<_>));
        svc.oneshot(Request::new(String::new())).await?;
        used.push("tower-http-request-id");
    }
    #[cfg(feature = "tower-http-set-header")]
    {
        use tower_http::set_header::SetResponseHeaderLayer;
        let svc = ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::overriding(
                http::header::X_CONTENT_TYPE_OPTIONS,
                http::HeaderValue::from_static("nosniff"),
            ))
            .service(service_fn(hello::<_>));
        svc.oneshot(Request::new(String::new())).await?;
        used.push("tower-http-set-header");
    }
    #[cfg(feature = "tower-http-trace")]
    {
        let svc = ServiceBuilder::new()
            .layer(tower_http::trace::TraceLayer::new_for_http())
            .service(service_fn(hello::<_>));
        svc.oneshot(Request::new(String::new())).await?;
        used.push("tower-http-trace");
    }

    println!("covet-external-app: {}", used.join(", "));
    Ok(())
}
