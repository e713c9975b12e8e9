//! Behaviour of the HTTP metrics layer and the `/metrics` endpoint, as a scrape shows it.

use std::{convert::Infallible, io::Read as _, sync::Arc};

use axum::{Router, body::Body, routing::get};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use prometheus::Registry;
use tower::{Layer as _, ServiceBuilder, ServiceExt, service_fn};

use super::*;

/// The value of the sample `name{labels}` in the registry, if present.
fn sample(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    crate::test_support::sample_of(registry, name, labels)
}

/// The number of series (label sets) of a family.
fn series_count(registry: &Registry, name: &str) -> usize {
    registry
        .gather()
        .iter()
        .find(|f| f.name() == name)
        .map_or(0, |f| f.get_metric().len())
}

fn app(registry: &Registry) -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(|| async { "user" }).post(|| async { "created" }),
        )
        .route("/health/live", get(|| async { "UP" }))
        .route("/metrics", get(|| async { "not really" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") }),
        )
        .layer(ServiceBuilder::new().layer(MetricsLayer::new(registry).unwrap()))
}

async fn call(app: &Router, method: Method, uri: &str) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

fn route(method: &str, route: &str, status: &str) -> [(&'static str, String); 3] {
    [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_owned()),
    ]
}

fn borrowed<'a>(labels: &'a [(&'static str, String); 3]) -> [(&'static str, &'a str); 3] {
    [
        (labels[0].0, labels[0].1.as_str()),
        (labels[1].0, labels[1].1.as_str()),
        (labels[2].0, labels[2].1.as_str()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counts_after_concurrent_requests() {
    let registry = Registry::new();
    let app = app(&registry);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { call(&app, Method::GET, &format!("/users/{i}")).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let labels = route("GET", "/users/{id}", "200");
    let labels = borrowed(&labels);
    assert_eq!(
        sample(&registry, "http_requests_total", &labels),
        Some(200.0)
    );
    assert_eq!(
        sample(
            &registry,
            "http_server_request_duration_seconds_count",
            &labels
        ),
        Some(200.0)
    );
    assert_eq!(
        sample(
            &registry,
            "http_server_response_body_size_bytes_count",
            &labels
        ),
        Some(200.0)
    );
    assert_eq!(
        sample(
            &registry,
            "http_server_response_body_size_bytes_sum",
            &labels
        ),
        Some(200.0 * 4.0),
        "every response body is the 4 bytes `user`"
    );
    assert_eq!(
        sample(
            &registry,
            "http_server_active_requests",
            &[("method", "GET")]
        ),
        Some(0.0)
    );
    assert_eq!(series_count(&registry, "http_requests_total"), 1);
}

#[tokio::test]
async fn matched_unmatched_excluded_and_other_methods_get_bounded_labels() {
    let registry = Registry::new();
    let app = app(&registry);
    assert_eq!(call(&app, Method::POST, "/users/7").await, StatusCode::OK);
    assert_eq!(
        call(&app, Method::GET, "/fail").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        call(&app, Method::GET, "/wp-admin.php").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, Method::GET, "/.env").await,
        StatusCode::NOT_FOUND
    );
    let propfind = Method::from_bytes(b"PROPFIND").unwrap();
    assert_eq!(
        call(&app, propfind, "/users/7").await,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // Excluded by default: probes and scrapes.
    call(&app, Method::GET, "/health/live").await;
    call(&app, Method::GET, "/metrics").await;

    let expect = [
        (route("POST", "/users/{id}", "200"), 1.0),
        (route("GET", "/fail", "500"), 1.0),
        (route("GET", "NOT_FOUND", "404"), 2.0),
        (route("_OTHER", "/users/{id}", "405"), 1.0),
    ];
    for (labels, count) in &expect {
        assert_eq!(
            sample(&registry, "http_requests_total", &borrowed(labels)),
            Some(*count),
            "{labels:?}"
        );
    }
    assert_eq!(
        series_count(&registry, "http_requests_total"),
        expect.len(),
        "no series for /health/live, /metrics or raw paths"
    );
    let text = String::from_utf8(encode(&registry.gather(), Format::Text).unwrap()).unwrap();
    assert!(
        !text.contains("wp-admin") && !text.contains(".env"),
        "{text}"
    );
    assert!(
        !text.contains("/health") && !text.contains("route=\"/metrics\""),
        "{text}"
    );
}

#[tokio::test]
async fn ten_thousand_random_unknown_paths_add_almost_no_series() {
    let registry = Registry::new();
    let app = app(&registry);
    call(&app, Method::GET, "/users/1").await;
    let before: usize = registry.gather().iter().map(|f| f.get_metric().len()).sum();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..10_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let path = format!("/scan/{seed:x}/{}", seed % 977);
        call(&app, Method::GET, &path).await;
    }
    let after: usize = registry.gather().iter().map(|f| f.get_metric().len()).sum();
    assert!(after - before < 10, "series grew from {before} to {after}");
    let labels = route("GET", "NOT_FOUND", "404");
    assert_eq!(
        sample(&registry, "http_requests_total", &borrowed(&labels)),
        Some(10_000.0)
    );
}

#[tokio::test]
async fn the_label_set_cap_holds_even_with_a_raw_path_classifier() {
    let registry = Registry::new();
    // A careless classifier that returns raw paths: the cap still bounds the registry.
    let layer = MetricsLayer::builder()
        .max_label_sets(50)
        .classify_route(|parts: &http::request::Parts| {
            Some(std::borrow::Cow::Owned(parts.uri.path().to_owned()))
        })
        .build(&registry)
        .unwrap();
    let svc = layer.layer(service_fn(
        |_req: Request<RequestBody<Full<Bytes>>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        },
    ));
    for i in 0..1_000 {
        let request = Request::get(format!("/raw/{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        svc.clone().oneshot(request).await.unwrap();
    }
    assert_eq!(series_count(&registry, "http_requests_total"), 51);
    assert_eq!(
        sample(&registry, "http_server_label_sets_dropped_total", &[]),
        Some(950.0)
    );
    let overflow = route("GET", "OVERFLOW", "200");
    assert_eq!(
        sample(&registry, "http_requests_total", &borrowed(&overflow)),
        Some(950.0)
    );
}

#[tokio::test]
async fn two_registries_in_one_process_and_a_duplicate_is_a_typed_error() {
    let (first, second) = (Registry::new(), Registry::new());
    let (app1, app2) = (app(&first), app(&second));
    call(&app1, Method::GET, "/users/1").await;
    call(&app2, Method::GET, "/users/1").await;
    call(&app2, Method::GET, "/users/2").await;
    let labels = route("GET", "/users/{id}", "200");
    assert_eq!(
        sample(&first, "http_requests_total", &borrowed(&labels)),
        Some(1.0)
    );
    assert_eq!(
        sample(&second, "http_requests_total", &borrowed(&labels)),
        Some(2.0)
    );

    let err = MetricsLayer::new(&first).unwrap_err();
    assert!(matches!(err, MetricsError::Register { .. }), "{err:?}");
    assert!(err.to_string().contains("http_requests_total"), "{err}");
    let err = MetricsLayer::builder()
        .max_label_sets(0)
        .build(&Registry::new())
        .unwrap_err();
    assert!(err.to_string().contains("max_label_sets"), "{err}");
}

/// A streamed body with no size hint.
type Chunked = StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, Infallible>>>,
>;

#[tokio::test]
async fn streamed_bodies_are_measured_by_the_bytes_that_pass() {
    let registry = Registry::new();
    let layer = MetricsLayer::builder()
        .classify_route(|_: &http::request::Parts| Some("/upload".into()))
        .build(&registry)
        .unwrap();
    let svc = layer.layer(service_fn(
        |req: Request<RequestBody<Chunked>>| async move {
            // Read the chunked request, then stream a response with no size hint.
            let read = req.into_body().collect().await.unwrap().to_bytes().len();
            let chunks: Vec<Result<http_body::Frame<Bytes>, Infallible>> = (0..read)
                .map(|_| Ok(http_body::Frame::data(Bytes::from_static(b"0123456789"))))
                .collect();
            Ok::<_, Infallible>(Response::new(StreamBody::new(futures_util::stream::iter(
                chunks,
            ))))
        },
    ));
    let chunks: Vec<Result<http_body::Frame<Bytes>, Infallible>> = (0..3)
        .map(|_| Ok(http_body::Frame::data(Bytes::from_static(b"abcd"))))
        .collect();
    let request = Request::post("/upload")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 120);
    let labels = route("POST", "/upload", "200");
    assert_eq!(
        sample(
            &registry,
            "http_server_request_body_size_bytes_sum",
            &borrowed(&labels)
        ),
        Some(12.0)
    );
    assert_eq!(
        sample(
            &registry,
            "http_server_response_body_size_bytes_sum",
            &borrowed(&labels)
        ),
        Some(120.0)
    );
}

#[tokio::test]
async fn inner_errors_and_panics_are_counted_and_the_panic_goes_on() {
    let registry = Registry::new();
    let layer = MetricsLayer::builder()
        .classify_route(|_: &http::request::Parts| Some("/boom".into()))
        .build(&registry)
        .unwrap();
    let failing = layer.layer(service_fn(
        |_req: Request<RequestBody<Full<Bytes>>>| async {
            Err::<Response<Full<Bytes>>, _>(std::io::Error::other("backend gone"))
        },
    ));
    let request = Request::get("/boom").body(Full::new(Bytes::new())).unwrap();
    assert!(failing.oneshot(request).await.is_err());

    let panicking = layer.layer(service_fn(
        |req: Request<RequestBody<Full<Bytes>>>| async move {
            if req.uri().path() == "/boom" {
                panic!("handler bug");
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        },
    ));
    let request = Request::get("/boom").body(Full::new(Bytes::new())).unwrap();
    let joined = tokio::spawn(panicking.oneshot(request)).await;
    assert!(joined.unwrap_err().is_panic(), "the panic is not swallowed");

    for kind in ["error", "panic"] {
        assert_eq!(
            sample(
                &registry,
                "http_server_exceptions_total",
                &[("method", "GET"), ("route", "/boom"), ("kind", kind)]
            ),
            Some(1.0),
            "{kind}"
        );
    }
    assert_eq!(
        sample(
            &registry,
            "http_server_active_requests",
            &[("method", "GET")]
        ),
        Some(0.0),
        "the in-flight gauge does not leak on errors or panics"
    );
}

#[tokio::test]
async fn user_agent_classes_are_counted() {
    let registry = Registry::new();
    let app = app(&registry);
    for ua in [
        "curl/8.5.0",
        "Mozilla/5.0 (X11) Firefox/130.0",
        "Googlebot/2.1",
        "curl/7.1",
    ] {
        let request = Request::get("/users/1")
            .header("user-agent", ua)
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap();
    }
    let count = |class| {
        sample(
            &registry,
            "http_requests_by_user_agent_total",
            &[("class", class)],
        )
    };
    assert_eq!(count("cli"), Some(2.0));
    assert_eq!(count("browser"), Some(1.0));
    assert_eq!(count("bot"), Some(1.0));
}

async fn scrape(svc: &MetricsService, request: Request<()>) -> (Response<()>, Vec<u8>) {
    let response = svc.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (Response::from_parts(parts, ()), body)
}

#[tokio::test]
async fn the_endpoint_negotiates_format_and_compression() {
    let registry = Registry::new();
    let app = app(&registry);
    call(&app, Method::GET, "/users/1").await;
    let svc = MetricsService::new(&registry).unwrap();

    let (res, body) = scrape(&svc, Request::get("/metrics").body(()).unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], TEXT_CONTENT_TYPE);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("# TYPE http_requests_total counter"),
        "{text}"
    );
    assert!(text.contains(r#"http_server_request_duration_seconds_bucket{method="GET",route="/users/{id}",status="200",le="0.005"}"#), "{text}");

    let request = Request::get("/metrics")
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .body(())
        .unwrap();
    let (res, body) = scrape(&svc, request).await;
    assert_eq!(res.headers()["content-type"], OPENMETRICS_CONTENT_TYPE);
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE http_requests counter"), "{text}");
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/users/{id}",status="200"} 1.0"#),
        "{text}"
    );
    assert!(text.contains(r#"le="+Inf"} 1.0"#), "{text}");

    let request = Request::get("/metrics")
        .header("accept-encoding", "gzip")
        .body(())
        .unwrap();
    let (res, body) = scrape(&svc, request).await;
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    // Its own metrics: three scrapes answered before this one was encoded.
    assert!(text.contains("metrics_scrapes_total 2"), "{text}");

    let (res, body) = scrape(&svc, Request::head("/metrics").body(()).unwrap()).await;
    assert_eq!(res.status(), 200);
    assert!(body.is_empty());
    let (res, _) = scrape(&svc, Request::post("/metrics").body(()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
}

/// A collector that takes `delay` to collect, as a slow custom collector (or a huge registry)
/// does, and counts how many collections ran at once.
#[derive(Clone)]
struct SlowCollector {
    delay: std::time::Duration,
    running: Arc<std::sync::atomic::AtomicUsize>,
    most_at_once: Arc<std::sync::atomic::AtomicUsize>,
    desc: Vec<prometheus::core::Desc>,
}

impl prometheus::core::Collector for SlowCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most_at_once.fetch_max(now, SeqCst);
        std::thread::sleep(self.delay);
        self.running.fetch_sub(1, SeqCst);
        Vec::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_answers_503_past_its_in_flight_cap() {
    let registry = Registry::new();
    let slow = SlowCollector {
        delay: std::time::Duration::from_millis(300),
        running: Arc::default(),
        most_at_once: Arc::default(),
        desc: vec![
            prometheus::core::Desc::new("slow".into(), "slow".into(), vec![], Default::default())
                .unwrap(),
        ],
    };
    registry.register(Box::new(slow.clone())).unwrap();
    let svc = MetricsService::builder()
        .max_in_flight(2)
        .build(&registry)
        .unwrap();

    // Twelve scrapes at once, each on its own task: two are encoded, ten are turned away at
    // once, and the runtime's two workers stay free while the encodes sleep in the collector.
    let scrapes: Vec<_> = (0..12)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(
                async move { scrape(&svc, Request::get("/metrics").body(()).unwrap()).await },
            )
        })
        .collect();
    let mut answers = Vec::new();
    for scrape in scrapes {
        answers.push(scrape.await.unwrap());
    }
    let (ok, busy): (Vec<_>, Vec<_>) = answers
        .iter()
        .partition(|(res, _)| res.status() == StatusCode::OK);
    assert_eq!(ok.len(), 2, "two scrapes fit under the cap");
    assert_eq!(busy.len(), 10);
    for (res, body) in &busy {
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(body, b"too many concurrent scrapes\n");
    }
    // The two encodes ran side by side on the blocking pool.
    assert_eq!(
        slow.most_at_once.load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    // A scrape whose client has gone keeps its place until its encode ends.
    let gone = svc
        .clone()
        .oneshot(Request::get("/metrics").body(()).unwrap());
    let gone = tokio::time::timeout(std::time::Duration::from_millis(50), gone).await;
    assert!(gone.is_err(), "the encode takes 300 ms");
    let (first, second) = tokio::join!(
        scrape(&svc, Request::get("/metrics").body(()).unwrap()),
        scrape(&svc, Request::get("/metrics").body(()).unwrap()),
    );
    let mut statuses = [first.0.status(), second.0.status()];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE],
        "the abandoned encode still holds one of the two places"
    );
    let (res, _) = scrape(&svc, Request::get("/metrics").body(()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK, "every encode has ended");

    assert_eq!(
        sample(
            &registry,
            "metrics_scrape_errors_total",
            &[("reason", "overloaded")]
        ),
        Some(11.0)
    );
    assert_eq!(sample(&registry, "metrics_scrapes_total", &[]), Some(5.0));
    assert!(
        MetricsService::builder()
            .max_in_flight(0)
            .build(&Registry::new())
            .is_err()
    );
}
