//! The request-id and security-headers layers composed in one `ServiceBuilder` and run under
//! three stacks with three different body types: an axum `Router` (axum's `Body`), a plain hyper
//! server over a real socket (`hyper::body::Incoming`), and a tonic gRPC server over HTTP/2
//! (`tonic::body::Body`).

use std::{convert::Infallible, net::SocketAddr};

use axum::{Router, extract::Path, routing::get};
use bytes::Bytes;
use covet::layers::{
    request_id::{RequestId, RequestIdLayer},
    security_headers::SecurityHeadersLayer,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::net::{TcpListener, TcpStream};
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn assert_uuid_v7(id: &str) {
    assert_eq!(id.len(), 36, "{id:?} is not a hyphenated UUID");
    assert_eq!(&id[14..15], "7", "{id} is not a UUIDv7");
    assert!(
        id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()),
        "{id}"
    );
}

#[tokio::test]
async fn axum_router_gets_ids_and_headers_on_matched_and_unmatched_routes() {
    async fn user(Path(id): Path<u32>, request_id: axum::Extension<RequestId>) -> String {
        format!("user {id} via {}", request_id.0)
    }
    let app = Router::new().route("/users/{id}", get(user)).layer(
        ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .layer(SecurityHeadersLayer::api()),
    );

    let res = app
        .clone()
        .oneshot(
            Request::get("/users/42")
                .header("x-request-id", "axum-1")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-request-id"], "axum-1");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"user 42 via axum-1");

    // axum's own 404 (an unmatched route) still gets both layers' headers.
    let res = app
        .oneshot(
            Request::get("/nope")
                .header("x-request-id", "bad id")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_uuid_v7(res.headers()["x-request-id"].to_str().unwrap());
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn plain_hyper_server_over_a_real_socket() {
    let service = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(SecurityHeadersLayer::web())
        .service(service_fn(|req: Request<Incoming>| async move {
            let id = req.extensions().get::<RequestId>().unwrap().to_string();
            let response = Response::builder()
                .header("server", "hyper")
                .body(Full::new(Bytes::from(id)))
                .unwrap();
            Ok::<_, Infallible>(response)
        }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    for (incoming, kept) in [("hyper-7", true), ("a b", false), ("\"x\"", false)] {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/")
            .header("host", addr.to_string())
            .header("x-request-id", incoming)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(res.headers()["x-frame-options"], "SAMEORIGIN");
        assert!(res.headers().get("server").is_none(), "server header kept");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, echoed.as_bytes(), "the handler saw the same id");
        if kept {
            assert_eq!(echoed, incoming);
        } else {
            assert_uuid_v7(&echoed);
        }
    }
}

#[tokio::test]
async fn tonic_grpc_server_over_http2() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };

    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let layers = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(SecurityHeadersLayer::api())
        .into_inner();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layers)
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    for (incoming, kept) in [("grpc-call-1", true), ("<bad>", false)] {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request
            .metadata_mut()
            .insert("x-request-id", incoming.parse().unwrap());
        let response = client.check(request).await.unwrap();
        let echoed = response
            .metadata()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        if kept {
            assert_eq!(echoed, incoming);
        } else {
            assert_uuid_v7(&echoed);
        }
        assert_eq!(
            response.metadata().get("x-content-type-options").unwrap(),
            "nosniff"
        );
        assert_eq!(
            response.into_inner().status,
            ServingStatus::Serving as i32,
            "the gRPC call itself still works"
        );
    }
}
