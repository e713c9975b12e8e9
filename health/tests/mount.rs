//! The health service mounted in axum and served by plain hyper on a real socket.

use axum::{Router, body::Body, routing::get};
use bytes::Bytes;
use covet_health::{HealthRegistry, HealthService, Status};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

fn registry() -> HealthRegistry {
    HealthRegistry::builder()
        .readiness("db", || async { Status::Up })
        .readiness("cache", || async { Err::<(), _>("connection refused") })
        .liveness("loop", || async { Status::Up })
        .build()
        .unwrap()
}

async fn send(app: &Router, method: Method, path: &str) -> (StatusCode, http::HeaderMap, Bytes) {
    let response = app
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn axum_route_service_keeps_the_path() {
    let health = registry().service();
    let app = Router::new()
        .route("/", get(|| async { "app" }))
        .route_service("/health", health.clone())
        .route_service("/health/{*rest}", health);

    assert_eq!(send(&app, Method::GET, "/").await.2, "app");
    let (status, headers, body) = send(&app, Method::GET, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["components"]["cache"]["status"], "DOWN");
    assert_eq!(
        send(&app, Method::GET, "/health/live").await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, Method::GET, "/health/db").await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, Method::GET, "/health/nope").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, headers, body) = send(&app, Method::HEAD, "/health/live").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let (status, headers, _) = send(&app, Method::POST, "/health/ready").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "GET, HEAD");
}

#[tokio::test]
async fn axum_nest_service_strips_the_prefix_so_use_an_empty_one() {
    let registry = registry();
    let app = Router::new().nest_service("/health", registry.service().prefix(""));
    assert_eq!(
        send(&app, Method::GET, "/health").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        send(&app, Method::GET, "/health/live").await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, Method::GET, "/health/db").await.0,
        StatusCode::OK
    );

    // With the default prefix, nesting would look for `/health/health/…`.
    let wrong = Router::new().nest_service("/health", registry.service());
    assert_eq!(
        send(&wrong, Method::GET, "/health/live").await.0,
        StatusCode::NOT_FOUND
    );
}

async fn serve_with_hyper(service: HealthService) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

async fn hyper_request(
    port: u16,
    method: Method,
    path: &str,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn plain_hyper_on_an_admin_port() {
    let registry = registry();
    let port = serve_with_hyper(registry.service()).await;

    let (status, headers, body) = hyper_request(port, Method::GET, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        headers[header::CONTENT_LENGTH],
        body.len().to_string().as_str()
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["components"]["cache"]["status"], "DOWN");

    // HEAD over the wire: same status and length, no body.
    let (status, headers, head_body) = hyper_request(port, Method::HEAD, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(head_body.is_empty());
    assert_eq!(
        headers[header::CONTENT_LENGTH],
        body.len().to_string().as_str()
    );

    assert_eq!(
        hyper_request(port, Method::GET, "/health/live").await.0,
        StatusCode::OK
    );
    assert_eq!(
        hyper_request(port, Method::GET, "/health/missing").await.0,
        StatusCode::NOT_FOUND
    );
}
