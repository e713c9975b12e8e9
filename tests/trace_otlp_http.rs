//! `covet::telemetry::init` exporting over OTLP/HTTP (protobuf) to a real in-process receiver:
//! server spans from an axum app, invalid `traceparent`s, a 5xx, JSON logs carrying the ids, and
//! a client call through `PropagateLayer` to a second local server.
//!
//! The telemetry set-up is process-global, so this binary holds a single test.

mod support;

use std::{convert::Infallible, future::IntoFuture, net::SocketAddr};

use axum::{Router, http::HeaderMap, routing::get};
use bytes::Bytes;
use covet::{
    layers::{
        request_id::RequestIdLayer,
        trace::{PropagateLayer, TraceLayer, is_valid_traceparent},
    },
    telemetry::{Protocol, Sampler, Telemetry, TelemetryError},
};
use http::{Request, StatusCode};
use http_body_util::Empty;
use support::{Capture, otlp, send};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";
const SERVER: i32 = 2; // OTLP SpanKind
const CLIENT: i32 = 3;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());
    addr
}

fn get_req(addr: SocketAddr, path: &str) -> http::request::Builder {
    Request::get(format!("http://{addr}{path}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_logs_and_client_calls_over_otlp_http() {
    let (endpoint, spans) = otlp::http_receiver().await;
    let capture = Capture::default();
    let telemetry = Telemetry::builder()
        .protocol(Protocol::HttpProtobuf)
        .endpoint(endpoint)
        .service_name("covet-trace-http")
        .sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .filter("info")
        .writer(capture.clone())
        .init()
        .expect("telemetry installs");
    // A second install is a typed error, not a panic.
    assert!(matches!(
        Telemetry::builder().export(false).init(),
        Err(TelemetryError::AlreadyInstalled)
    ));

    // The downstream service echoes what it received.
    let downstream = serve(Router::new().route(
        "/stock",
        get(|headers: HeaderMap| async move {
            let h = |name: &str| {
                headers
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            format!("{}|{}", h("traceparent"), h("x-request-id"))
        }),
    ))
    .await;
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(service_fn(move |req: Request<Empty<Bytes>>| async move {
            Ok::<_, Infallible>(send(downstream, req).await)
        }));

    let app = Router::new()
        .route(
            "/users/{id}",
            get(|| async {
                tracing::info!("loading user");
                "user"
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        )
        .route(
            "/call",
            get(move || {
                let client = client.clone();
                async move {
                    let req = Request::get(format!("http://{downstream}/stock"))
                        .body(Empty::new())
                        .unwrap();
                    let res = client.oneshot(req).await.unwrap();
                    String::from_utf8(res.into_body().to_vec()).unwrap()
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(RequestIdLayer::new())
                .layer(TraceLayer::new()),
        );
    let addr = serve(app).await;

    // 1. A valid traceparent is continued.
    let res = send(
        addr,
        get_req(addr, "/users/42")
            .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
            .header("x-request-id", "req-http-1")
            .header("user-agent", "covet-test/1")
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-trace-id"], TRACE_ID);

    // 2. Invalid traceparents start fresh traces.
    let invalid = [
        format!("ff-{TRACE_ID}-{PARENT_ID}-01"),
        format!("00-{}-{PARENT_ID}-01", "0".repeat(32)),
        format!("00-{TRACE_ID}-{}-01", "0".repeat(16)),
        format!("00-{}-{PARENT_ID}-01", TRACE_ID.to_uppercase()),
        format!("00-{}-{PARENT_ID}-01", &TRACE_ID[..30]),
        format!("00-{TRACE_ID}-{PARENT_ID}-zz"),
        "00-abc-def-01".to_owned(),
    ];
    let mut fresh = Vec::new();
    for value in &invalid {
        let res = send(
            addr,
            get_req(addr, "/users/7")
                .header("traceparent", value)
                .header("tracestate", "rojo=00f067aa0ba902b7")
                .body(Empty::new())
                .unwrap(),
        )
        .await;
        let id = res.headers()["x-trace-id"].to_str().unwrap().to_owned();
        assert_ne!(id, TRACE_ID, "{value} was continued");
        assert_eq!(id.len(), 32);
        fresh.push((value.clone(), id));
    }

    // 3. A 5xx.
    let res = send(addr, get_req(addr, "/fail").body(Empty::new()).unwrap()).await;
    assert_eq!(res.status(), 500);
    let fail_trace = res.headers()["x-trace-id"].to_str().unwrap().to_owned();

    // 4. A client call made inside a handler.
    let res = send(
        addr,
        get_req(addr, "/call")
            .header("x-request-id", "req-call-1")
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    let call_trace = res.headers()["x-trace-id"].to_str().unwrap().to_owned();
    let body = String::from_utf8(res.body().to_vec()).unwrap();
    let (downstream_traceparent, downstream_request_id) = body.split_once('|').unwrap();
    assert!(
        is_valid_traceparent(downstream_traceparent.as_bytes()),
        "{downstream_traceparent:?}"
    );
    assert_eq!(&downstream_traceparent[3..35], call_trace);
    assert_eq!(downstream_request_id, "req-call-1");

    telemetry.force_flush().await.expect("flush");

    // The continued server span.
    let user = spans
        .wait_for("GET /users/{id} in the incoming trace", |s| {
            s.span.name == "GET /users/{id}" && s.trace_id() == TRACE_ID
        })
        .await;
    assert_eq!(user.service_name, "covet-trace-http");
    assert_eq!(user.span.kind, SERVER);
    assert_eq!(user.parent_span_id(), PARENT_ID);
    assert_eq!(user.status_code(), 0);
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.route", "/users/{id}"),
        ("url.path", "/users/42"),
        ("url.scheme", "http"),
        ("http.response.status_code", "200"),
        ("network.protocol.version", "1.1"),
        ("server.address", "127.0.0.1"),
        ("user_agent.original", "covet-test/1"),
        ("request_id", "req-http-1"),
    ] {
        assert_eq!(user.attr(key).as_deref(), Some(value), "{key}");
    }

    // Fresh traces for the invalid headers: roots, in the trace the response named.
    for (value, id) in &fresh {
        let span = spans
            .wait_for(value, |s| s.span.kind == SERVER && &s.trace_id() == id)
            .await;
        assert_eq!(span.parent_span_id(), "", "{value} became a parent");
        assert!(span.span.trace_state.is_empty(), "{value} kept tracestate");
    }

    // Error status for the 5xx.
    let fail = spans
        .wait_for("GET /fail", |s| {
            s.trace_id() == fail_trace && s.span.kind == SERVER
        })
        .await;
    assert_eq!(fail.span.name, "GET /fail");
    assert_eq!(fail.status_code(), 2);
    assert_eq!(fail.attr("error.type").as_deref(), Some("500"));

    // The client span sits under the server span, and the downstream saw the client span.
    let call = spans
        .wait_for("GET /call", |s| {
            s.trace_id() == call_trace && s.span.kind == SERVER
        })
        .await;
    let client = spans
        .wait_for("the client span", |s| {
            s.trace_id() == call_trace && s.span.kind == CLIENT
        })
        .await;
    assert_eq!(client.parent_span_id(), call.span_id());
    assert_eq!(&downstream_traceparent[36..52], client.span_id());
    assert_eq!(
        client.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(call.attr("request_id").as_deref(), Some("req-call-1"));

    // JSON log lines carry the three ids, matching the exported span.
    let lines = capture.json_lines();
    let handler_line = lines
        .iter()
        .find(|l| l["message"] == "loading user" && l["trace_id"] == TRACE_ID)
        .expect("the handler's log line");
    assert_eq!(handler_line["request_id"], "req-http-1");
    assert_eq!(handler_line["span_id"], user.span_id().as_str());
    let request_line = lines
        .iter()
        .find(|l| l["message"] == "request completed" && l["request_id"] == "req-http-1")
        .expect("the request log line");
    assert_eq!(request_line["level"], "INFO");
    assert_eq!(request_line["route"], "/users/{id}");
    assert_eq!(request_line["status"], 200);
    assert_eq!(request_line["trace_id"], TRACE_ID);
    assert_eq!(request_line["span_id"], user.span_id().as_str());
    // Every line logged inside a request has all three ids.
    for line in lines
        .iter()
        .filter(|l| l["target"] == "covet::trace::request")
    {
        for key in ["request_id", "trace_id", "span_id"] {
            assert!(line[key].is_string(), "{key} missing from {line}");
        }
    }

    telemetry.shutdown().await.expect("shutdown flushes");
    telemetry
        .shutdown()
        .await
        .expect("a second shutdown is a no-op");
}
