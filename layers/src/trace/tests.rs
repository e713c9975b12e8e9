use std::{
    convert::Infallible,
    io,
    sync::{Arc, Mutex},
};

use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use opentelemetry::{
    global,
    trace::{SpanKind, Status, TracerProvider as _},
};
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{InMemorySpanExporter, SdkTracerProvider, SpanData},
};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tracing_subscriber::layer::SubscriberExt;

use super::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn valid_traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

/// A capture of everything logged, as JSON lines.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Installs (for this thread) the OpenTelemetry tracing layer over an in-memory exporter, and
/// the W3C propagator.
fn otel() -> (
    InMemorySpanExporter,
    Capture,
    tracing::subscriber::DefaultGuard,
) {
    otel_with(
        opentelemetry_sdk::trace::Sampler::AlwaysOn,
        tracing_subscriber::filter::LevelFilter::INFO,
    )
}

/// [`otel`] with `sampler`, logging at `level`.
fn otel_with(
    sampler: opentelemetry_sdk::trace::Sampler,
    level: tracing_subscriber::filter::LevelFilter,
) -> (
    InMemorySpanExporter,
    Capture,
    tracing::subscriber::DefaultGuard,
) {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(exporter.clone())
        .build();
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(level)
        .with(otel_layer(provider.tracer("test")))
        .with(crate::telemetry::json::JsonLayer::new(capture.clone()));
    (
        exporter,
        capture,
        tracing::subscriber::set_default(subscriber),
    )
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

fn server_spans(exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect()
}

async fn ok(_req: Request<()>) -> Result<Response<String>, Infallible> {
    tracing::info!("inside the handler");
    Ok(Response::new("ok".to_owned()))
}

fn status(
    code: u16,
) -> impl Fn(Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>> + Clone {
    move |_req| {
        let mut res = Response::new(String::new());
        *res.status_mut() = StatusCode::from_u16(code).unwrap();
        std::future::ready(Ok(res))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_valid_traceparent_is_continued_with_a_server_span() {
    let (exporter, _capture, _guard) = otel();
    let svc = TraceLayer::new()
        .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
        .layer(service_fn(ok));
    let mut req = Request::post("http://api.example.com/orders?x=1")
        .header("traceparent", valid_traceparent())
        .header("tracestate", "vendor=abc")
        .header("user-agent", "curl/8.5")
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.1")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(std::net::SocketAddr::from(([10, 0, 0, 2], 40000)));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["x-trace-id"], TRACE_ID);

    let spans = server_spans(&exporter);
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.name, "POST");
    assert_eq!(span.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(span.parent_span_id.to_string(), PARENT_ID);
    assert_eq!(span.span_context.trace_state().header(), "vendor=abc");
    assert_eq!(span.status, Status::Unset);
    assert_eq!(attr(span, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(attr(span, "url.path").as_deref(), Some("/orders"));
    assert_eq!(attr(span, "url.scheme").as_deref(), Some("http"));
    assert_eq!(
        attr(span, "server.address").as_deref(),
        Some("api.example.com")
    );
    assert_eq!(attr(span, "client.address").as_deref(), Some("203.0.113.9"));
    assert_eq!(
        attr(span, "user_agent.original").as_deref(),
        Some("curl/8.5")
    );
    assert_eq!(
        attr(span, "network.protocol.version").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        attr(span, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(span, "error.type"), None);
}

#[tokio::test(flavor = "current_thread")]
async fn invalid_traceparents_start_new_traces_and_drop_tracestate() {
    let (exporter, _capture, _guard) = otel();
    let invalid = [
        format!("ff-{TRACE_ID}-{PARENT_ID}-01"),
        format!("00-{}-{PARENT_ID}-01", "0".repeat(32)),
        format!("00-{TRACE_ID}-{}-01", "0".repeat(16)),
        format!("00-{}-{PARENT_ID}-01", TRACE_ID.to_uppercase()),
        format!("00-{TRACE_ID}-{PARENT_ID}-0x"),
        format!("00-{}-{PARENT_ID}-01", &TRACE_ID[..31]),
        format!("00-{TRACE_ID}0-{PARENT_ID}-01"),
        format!("00-{TRACE_ID}-{PARENT_ID}-01-extra"),
        "00-abc-def-01".to_owned(),
        "garbage".to_owned(),
    ];
    for value in &invalid {
        let svc = TraceLayer::new().layer(service_fn(ok));
        let req = Request::get("/")
            .header("traceparent", value)
            .header("tracestate", "vendor=abc")
            .body(())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        let header = res.headers()["x-trace-id"].to_str().unwrap().to_owned();
        let span = server_spans(&exporter).pop().unwrap();
        exporter.reset();
        assert_eq!(span.span_context.trace_id().to_string(), header, "{value}");
        assert_ne!(header, TRACE_ID, "{value} was continued");
        assert_eq!(
            span.parent_span_id,
            opentelemetry::trace::SpanId::INVALID,
            "{value} became a parent"
        );
        assert_eq!(span.span_context.trace_state().header(), "", "{value}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_repeated_traceparent_starts_a_new_trace() {
    let (exporter, _capture, _guard) = otel();
    let svc = TraceLayer::new().layer(service_fn(ok));
    let mut req = Request::new(());
    let value = HeaderValue::from_str(&valid_traceparent()).unwrap();
    req.headers_mut().append("traceparent", value.clone());
    req.headers_mut().append("traceparent", value);
    svc.oneshot(req).await.unwrap();
    let span = server_spans(&exporter).pop().unwrap();
    assert_ne!(span.span_context.trace_id().to_string(), TRACE_ID);
}

#[tokio::test(flavor = "current_thread")]
async fn client_address_is_the_resolved_client_never_a_spoofed_entry() {
    let (exporter, _capture, _guard) = otel();
    let request = |peer: [u8; 4]| {
        let mut req = Request::get("/")
            .header("x-forwarded-for", "6.6.6.6")
            .header("forwarded", "for=7.7.7.7")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(std::net::SocketAddr::from((peer, 1234)));
        req
    };
    let svc = TraceLayer::new()
        .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
        .layer(service_fn(ok));
    // From a client directly: the headers are its own, the peer is the client.
    svc.clone()
        .oneshot(request([203, 0, 113, 50]))
        .await
        .unwrap();
    // From a trusted proxy that writes X-Forwarded-For: its entry, not the Forwarded header.
    svc.oneshot(request([10, 1, 1, 1])).await.unwrap();
    let spans = server_spans(&exporter);
    assert_eq!(
        attr(&spans[0], "client.address").as_deref(),
        Some("203.0.113.50")
    );
    assert_eq!(
        attr(&spans[1], "client.address").as_deref(),
        Some("6.6.6.6")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_untrusted_edge_continues_only_trusted_context_sources() {
    let (exporter, _capture, _guard) = otel();
    let svc = TraceLayer::new()
        .untrusted_edge(true)
        .trusted_context_sources(["10.9.0.0/16".parse().unwrap()])
        .layer(service_fn(ok));
    for peer in [[203, 0, 113, 7], [10, 9, 1, 1]] {
        let mut req = Request::get("/")
            .header("traceparent", valid_traceparent())
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(std::net::SocketAddr::from((peer, 1234)));
        svc.clone().oneshot(req).await.unwrap();
    }
    let spans = server_spans(&exporter);
    assert_ne!(spans[0].span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(
        spans[0].links.len(),
        1,
        "the public client's context is a link"
    );
    assert_eq!(spans[1].span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(spans[1].parent_span_id.to_string(), PARENT_ID);
}

#[tokio::test(flavor = "current_thread")]
async fn an_untrusted_edge_starts_a_new_trace_and_links_the_incoming_one() {
    let (exporter, _capture, _guard) = otel();
    let svc = TraceLayer::new().untrusted_edge(true).layer(service_fn(ok));
    let req = Request::get("/")
        .header("traceparent", valid_traceparent())
        .body(())
        .unwrap();
    svc.oneshot(req).await.unwrap();
    let span = server_spans(&exporter).pop().unwrap();
    assert_ne!(span.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    let links: Vec<_> = span.links.iter().collect();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(links[0].span_context.span_id().to_string(), PARENT_ID);
}

#[tokio::test(flavor = "current_thread")]
async fn status_is_error_for_5xx_and_inner_errors_only() {
    let (exporter, _capture, _guard) = otel();
    for (code, expected_error) in [
        (200, false),
        (404, false),
        (429, false),
        (500, true),
        (503, true),
    ] {
        let svc = TraceLayer::new().layer(service_fn(status(code)));
        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.status().as_u16(), code);
        let span = server_spans(&exporter).pop().unwrap();
        exporter.reset();
        if expected_error {
            assert!(matches!(span.status, Status::Error { .. }), "{code}");
            assert_eq!(attr(&span, "error.type"), Some(code.to_string()));
        } else {
            assert_eq!(span.status, Status::Unset, "{code}");
            assert_eq!(attr(&span, "error.type"), None, "{code}");
        }
        assert_eq!(
            attr(&span, "http.response.status_code"),
            Some(code.to_string())
        );
    }

    let svc = TraceLayer::new().layer(service_fn(|_req: Request<()>| async {
        Err::<Response<String>, io::Error>(io::Error::other("backend gone"))
    }));
    assert!(svc.oneshot(Request::new(())).await.is_err());
    let span = server_spans(&exporter).pop().unwrap();
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(
        attr(&span, "error.type").as_deref(),
        Some("std::io::error::Error")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_span_is_named_after_the_axum_route_template() {
    let (exporter, _capture, _guard) = otel();
    let app = axum::Router::new()
        .route("/users/{id}", axum::routing::get(|| async { "user" }))
        .layer(TraceLayer::new());
    let res = app
        .oneshot(
            Request::get("/users/42")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let span = server_spans(&exporter).pop().unwrap();
    assert_eq!(span.name, "GET /users/{id}");
    assert_eq!(attr(&span, "http.route").as_deref(), Some("/users/{id}"));
    assert_eq!(attr(&span, "url.path").as_deref(), Some("/users/42"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_non_standard_method_is_named_http_and_recorded_as_other() {
    let (exporter, _capture, _guard) = otel();
    let svc = TraceLayer::new().layer(service_fn(ok));
    let req = Request::builder()
        .method(http::Method::from_bytes(b"PURGE").unwrap())
        .body(())
        .unwrap();
    svc.oneshot(req).await.unwrap();
    let span = server_spans(&exporter).pop().unwrap();
    assert_eq!(span.name, "HTTP");
    assert_eq!(
        attr(&span, "http.request.method").as_deref(),
        Some("_OTHER")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_trace_id_header_can_be_renamed_or_turned_off() {
    let (_exporter, _capture, _guard) = otel();
    let name = HeaderName::from_static("trace-id");
    let svc = TraceLayer::new()
        .trace_id_header(Some(name.clone()))
        .layer(service_fn(ok));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.headers()[&name].len(), 32);
    assert!(res.headers().get(X_TRACE_ID).is_none());

    let svc = TraceLayer::new()
        .trace_id_header(None)
        .layer(service_fn(ok));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert!(res.headers().get(X_TRACE_ID).is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_subscriber_the_layer_adds_nothing() {
    let svc = TraceLayer::new().layer(service_fn(ok));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get(X_TRACE_ID).is_none());
    assert_eq!(res.body(), "ok");
}

#[cfg(feature = "request-id")]
#[tokio::test(flavor = "current_thread")]
async fn log_lines_carry_request_trace_and_span_ids_matching_the_span() {
    use crate::request_id::RequestIdLayer;

    let (exporter, capture, _guard) = otel();
    let svc = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(TraceLayer::new())
        .service(service_fn(ok));
    let req = Request::get("/orders")
        .header("x-request-id", "req-77")
        .header("traceparent", valid_traceparent())
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-77");

    let span = server_spans(&exporter).pop().unwrap();
    assert_eq!(attr(&span, "request_id").as_deref(), Some("req-77"));
    let span_id = span.span_context.span_id().to_string();

    let lines = capture.lines();
    let handler = lines
        .iter()
        .find(|l| l["message"] == "inside the handler")
        .expect("the handler's line");
    assert_eq!(handler["request_id"], "req-77");
    assert_eq!(handler["trace_id"], TRACE_ID);
    assert_eq!(handler["span_id"], span_id.as_str());

    let request_line = lines
        .iter()
        .find(|l| l["message"] == "request completed")
        .expect("the request log line");
    assert_eq!(request_line["level"], "INFO");
    assert_eq!(request_line["target"], "covet::trace::request");
    assert_eq!(request_line["method"], "GET");
    assert_eq!(request_line["status"], 200);
    assert_eq!(request_line["bytes"], 2);
    assert_eq!(request_line["request_id"], "req-77");
    assert_eq!(request_line["trace_id"], TRACE_ID);
    assert!(request_line["latency_ms"].as_f64().unwrap() >= 0.0);
}

/// The request log line of one request through `request_id` then [`TraceLayer`], under an INFO
/// `fmt` subscriber without colours.
#[cfg(feature = "request-id")]
async fn formatted_request_line(request_id: crate::request_id::RequestIdLayer) -> String {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let svc = ServiceBuilder::new()
        .layer(request_id)
        .layer(TraceLayer::new())
        .service(service_fn(ok));
    let req = Request::get("/orders")
        .header("x-request-id", "req-5")
        .body(())
        .unwrap();
    svc.oneshot(req).await.unwrap();
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .find(|line| line.contains("request completed"))
        .unwrap_or_else(|| panic!("no request line in {text}"))
        .to_owned()
}

#[cfg(feature = "request-id")]
#[tokio::test(flavor = "current_thread")]
async fn a_formatted_request_line_shows_the_request_id_once() {
    use crate::request_id::RequestIdLayer;

    // Inside the request-id span, the span's fields show the id and the line does not repeat it.
    let line = formatted_request_line(RequestIdLayer::new()).await;
    assert!(line.contains("request{request_id=req-5}"), "{line}");
    assert_eq!(line.matches("req-5").count(), 1, "{line}");
    // The latency is given to the microsecond, not with a binary fraction's 17 digits.
    let latency = line
        .split("latency_ms=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no latency in {line}"));
    let decimals = latency.split('.').nth(1).map_or(0, str::len);
    assert!(decimals <= 3, "{line}");
    // Without the span the line carries the id itself.
    let line = formatted_request_line(RequestIdLayer::new().span(false)).await;
    assert_eq!(line.matches("request_id=req-5").count(), 1, "{line}");
}

#[tokio::test(flavor = "current_thread")]
async fn probes_are_left_out_of_the_request_log_but_still_traced() {
    let (exporter, capture, _guard) = otel();
    let svc = TraceLayer::new().layer(service_fn(ok));
    for path in ["/health/ready", "/metrics", "/users"] {
        svc.clone()
            .oneshot(Request::get(path).body(()).unwrap())
            .await
            .unwrap();
    }
    let logged: Vec<_> = capture
        .lines()
        .into_iter()
        .filter(|l| l["message"] == "request completed")
        .map(|l| l["trace_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(logged.len(), 1);
    let spans = server_spans(&exporter);
    assert_eq!(spans.len(), 3);
    assert_eq!(attr(&spans[2], "url.path").as_deref(), Some("/users"));
    assert_eq!(spans[2].span_context.trace_id().to_string(), logged[0]);

    let svc = TraceLayer::new()
        .log_excluded_paths(["/users"])
        .layer(service_fn(ok));
    svc.oneshot(Request::get("/health").body(()).unwrap())
        .await
        .unwrap();
    let count = capture
        .lines()
        .iter()
        .filter(|l| l["message"] == "request completed")
        .count();
    assert_eq!(count, 2, "/health is logged once its exclusion is replaced");
}

#[cfg(feature = "request-id")]
#[tokio::test(flavor = "current_thread")]
async fn a_client_call_inside_a_handler_carries_the_server_trace_and_request_id() {
    use crate::request_id::RequestIdLayer;

    let (exporter, _capture, _guard) = otel();
    // The downstream service echoes the headers it got.
    let downstream = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(service_fn(|req: Request<()>| async move {
            let mut res = Response::new(());
            *res.headers_mut() = req.headers().clone();
            Ok::<_, Infallible>(res)
        }));
    let svc = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(TraceLayer::new())
        .service(service_fn(move |_req: Request<()>| {
            let downstream = downstream.clone();
            async move {
                let res = downstream
                    .oneshot(
                        Request::get("http://inventory:8080/stock")
                            .body(())
                            .unwrap(),
                    )
                    .await?;
                let seen = format!(
                    "{}|{}",
                    res.headers()["traceparent"].to_str().unwrap(),
                    res.headers()["x-request-id"].to_str().unwrap()
                );
                Ok::<_, Infallible>(Response::new(seen))
            }
        }));
    let req = Request::get("/checkout")
        .header("x-request-id", "req-9")
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let trace_id = res.headers()["x-trace-id"].to_str().unwrap().to_owned();
    let (traceparent, request_id) = res.body().split_once('|').unwrap();
    assert_eq!(request_id, "req-9");
    assert!(
        is_valid_traceparent(traceparent.as_bytes()),
        "{traceparent}"
    );
    assert_eq!(&traceparent[3..35], trace_id);

    let spans = exporter.get_finished_spans().unwrap();
    let client = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .unwrap();
    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .unwrap();
    // The downstream's parent is the client span, itself a child of the server span.
    assert_eq!(
        &traceparent[36..52],
        client.span_context.span_id().to_string()
    );
    assert_eq!(client.parent_span_id, server.span_context.span_id());
    assert_eq!(client.name, "GET");
    assert_eq!(attr(client, "server.address").as_deref(), Some("inventory"));
    assert_eq!(attr(client, "server.port").as_deref(), Some("8080"));
    assert_eq!(
        attr(client, "url.full").as_deref(),
        Some("http://inventory:8080/stock")
    );
    assert_eq!(
        attr(client, "http.response.status_code").as_deref(),
        Some("200")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_4xx_is_an_error_on_the_client_span() {
    let (exporter, _capture, _guard) = otel();
    let client = PropagateLayer::new().layer(service_fn(status(404)));
    client
        .oneshot(Request::get("http://127.0.0.1:1/x").body(()).unwrap())
        .await
        .unwrap();
    let span = exporter.get_finished_spans().unwrap().pop().unwrap();
    assert_eq!(span.span_kind, SpanKind::Client);
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(attr(&span, "error.type").as_deref(), Some("404"));
}

/// A handler's own `tracing` span is exported as a child of the server span; the layer's
/// log-context span is not exported at all.
#[tokio::test(flavor = "current_thread")]
async fn handler_spans_are_children_of_the_server_span() {
    let (exporter, capture, _guard) = otel();
    let svc = TraceLayer::new().layer(service_fn(|_req: Request<()>| async {
        let query = tracing::info_span!("load order");
        let _entered = query.enter();
        tracing::info!("querying");
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    svc.oneshot(Request::get("/orders/1").body(()).unwrap())
        .await
        .unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let names: Vec<_> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let server = &server_spans(&exporter)[0];
    let child = spans.iter().find(|s| s.name == "load order").unwrap();
    assert_eq!(child.parent_span_id, server.span_context.span_id());
    assert_eq!(
        child.span_context.trace_id(),
        server.span_context.trace_id()
    );
    let line = capture
        .lines()
        .into_iter()
        .find(|l| l["message"] == "querying")
        .unwrap();
    assert_eq!(line["span_id"], child.span_context.span_id().to_string());
}

/// With the sampler off nothing is exported, but the request still has a trace id: in the
/// response header and on its log lines.
#[tokio::test(flavor = "current_thread")]
async fn an_unsampled_request_still_has_a_trace_id() {
    let (exporter, capture, _guard) = otel_with(
        opentelemetry_sdk::trace::Sampler::AlwaysOff,
        tracing_subscriber::filter::LevelFilter::INFO,
    );
    let svc = TraceLayer::new().layer(service_fn(ok));
    let res = svc
        .oneshot(Request::get("/a").body(()).unwrap())
        .await
        .unwrap();
    let trace_id = res.headers()[X_TRACE_ID].to_str().unwrap().to_owned();
    assert_eq!(trace_id.len(), 32);
    assert!(exporter.get_finished_spans().unwrap().is_empty());
    let lines = capture.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in lines {
        assert_eq!(line["trace_id"], trace_id.as_str());
    }
}

/// A rejected `traceparent` is logged (at DEBUG), also under a thread-local subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_rejected_traceparent_is_logged() {
    let (_exporter, capture, _guard) = otel_with(
        opentelemetry_sdk::trace::Sampler::AlwaysOn,
        tracing_subscriber::filter::LevelFilter::DEBUG,
    );
    let svc = TraceLayer::new().layer(service_fn(ok));
    let req = Request::get("/a")
        .header(
            "traceparent",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(())
        .unwrap();
    svc.oneshot(req).await.unwrap();
    let lines = capture.lines();
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("invalid traceparent"))),
        "{lines:?}"
    );
}
