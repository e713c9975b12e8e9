//! `covet::telemetry::init` exporting over OTLP/gRPC to a real in-process tonic receiver, with
//! `TraceLayer` serving a plain hyper server and a tonic gRPC server.
//!
//! The telemetry set-up is process-global, so this binary holds a single test.

mod support;

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use covet::{
    layers::trace::TraceLayer,
    telemetry::{Protocol, Sampler, Telemetry},
};
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use support::{Capture, otlp, send};
use tower::{ServiceBuilder, service_fn};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const SERVER: i32 = 2;

/// A plain hyper server (no axum): `/fail` answers 500, anything else 200.
async fn hyper_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ServiceBuilder::new()
        .layer(TraceLayer::new())
        .service(service_fn(
            |req: Request<hyper::body::Incoming>| async move {
                let status = if req.uri().path() == "/fail" {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                let mut res = Response::new(Full::new(Bytes::from_static(b"hi")));
                *res.status_mut() = status;
                Ok::<_, Infallible>(res)
            },
        ));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_spans_over_otlp_grpc_from_hyper_and_tonic() {
    let (endpoint, spans) = otlp::grpc_receiver().await;
    let telemetry = Telemetry::builder()
        .protocol(Protocol::Grpc)
        .endpoint(endpoint)
        .service_name("covet-trace-grpc")
        .sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .filter("info")
        .writer(Capture::default())
        .init()
        .expect("telemetry installs");

    let addr = hyper_server().await;
    let url = |path: &str| format!("http://{addr}{path}");

    // A valid traceparent is continued.
    let res = send(
        addr,
        Request::get(url("/orders"))
            .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    assert_eq!(res.headers()["x-trace-id"], TRACE_ID);

    // Invalid ones start fresh traces.
    let mut fresh = Vec::new();
    for value in [
        format!("ff-{TRACE_ID}-{PARENT_ID}-01"),
        format!("00-{}-{PARENT_ID}-01", "0".repeat(32)),
        format!("00-{}-{PARENT_ID}-01", TRACE_ID.to_uppercase()),
        format!("00-{TRACE_ID}-{PARENT_ID}"),
    ] {
        let res = send(
            addr,
            Request::get(url("/orders"))
                .header("traceparent", &value)
                .body(Empty::new())
                .unwrap(),
        )
        .await;
        let id = res.headers()["x-trace-id"].to_str().unwrap().to_owned();
        assert_ne!(id, TRACE_ID, "{value} was continued");
        fresh.push((value, id));
    }

    // A 5xx.
    let res = send(addr, Request::get(url("/fail")).body(Empty::new()).unwrap()).await;
    assert_eq!(res.status(), 500);
    let fail_trace = res.headers()["x-trace-id"].to_str().unwrap().to_owned();

    // A tonic server under the same layer.
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(TraceLayer::new())
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let grpc_trace = "11111111111111112222222222222222";
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{grpc_trace}-{PARENT_ID}-01").parse().unwrap(),
    );
    let response = client.check(request).await.expect("health check");
    assert_eq!(response.metadata().get("x-trace-id").unwrap(), grpc_trace);

    telemetry.force_flush().await.expect("flush");

    let orders = spans
        .wait_for("the continued GET span", |s| s.trace_id() == TRACE_ID)
        .await;
    assert_eq!(orders.service_name, "covet-trace-grpc");
    assert_eq!(orders.span.kind, SERVER);
    assert_eq!(orders.span.name, "GET");
    assert_eq!(orders.parent_span_id(), PARENT_ID);
    assert_eq!(orders.attr("url.path").as_deref(), Some("/orders"));
    assert_eq!(
        orders.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(orders.status_code(), 0);

    for (value, id) in &fresh {
        let span = spans.wait_for(value, |s| &s.trace_id() == id).await;
        assert_eq!(span.parent_span_id(), "", "{value} became a parent");
    }

    let fail = spans
        .wait_for("the 5xx span", |s| s.trace_id() == fail_trace)
        .await;
    assert_eq!(fail.status_code(), 2);
    assert_eq!(fail.attr("error.type").as_deref(), Some("500"));

    let grpc = spans
        .wait_for("the tonic span", |s| s.trace_id() == grpc_trace)
        .await;
    assert_eq!(grpc.span.kind, SERVER);
    assert_eq!(grpc.parent_span_id(), PARENT_ID);
    assert_eq!(grpc.span.name, "POST");
    assert_eq!(
        grpc.attr("url.path").as_deref(),
        Some("/grpc.health.v1.Health/Check")
    );
    assert_eq!(grpc.attr("network.protocol.version").as_deref(), Some("2"));

    telemetry.shutdown().await.expect("shutdown flushes");
}
