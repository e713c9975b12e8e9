//! The rate-limit layer under three stacks over real sockets: axum (peer IP from `ConnectInfo`,
//! policy by route template), plain hyper (peer IP from a `SocketAddr` extension), and tonic
//! (peer IP from tonic's `TcpConnectInfo` through a closure, and an API key from metadata).

use std::{convert::Infallible, net::SocketAddr};

use axum::{Router, routing::get};
use bytes::Bytes;
use covet::layers::rate_limit::{HeaderKey, Key, Policy, Quota, RateLimitLayer};
use http::{HeaderName, Request, Response, StatusCode, request::Parts};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use prometheus::Registry;
use tokio::net::{TcpListener, TcpStream};
use tower::{Service, ServiceBuilder, service_fn};

/// One HTTP/1 GET over a new connection; returns status, headers and body.
async fn get_once(addr: SocketAddr, path: &str) -> (StatusCode, http::HeaderMap, Bytes) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn axum_with_connect_info_and_a_route_template_policy() {
    let limit = RateLimitLayer::builder(Policy::new("default", Quota::per_minute(100)))
        .route("/users/{id}", Policy::new("users", Quota::per_minute(2)))
        .build(&Registry::new())
        .unwrap();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/", get(|| async { "home" }))
        .layer(ServiceBuilder::new().layer(limit));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    // Different ids share the route template's bucket.
    let (status, headers, _) = get_once(addr, "/users/1").await;
    assert_eq!(status, 200);
    assert_eq!(headers["ratelimit-policy"], r#""users";q=2;w=60"#);
    assert_eq!(headers["ratelimit"], r#""users";r=1;t=30"#);
    assert_eq!(get_once(addr, "/users/2").await.0, 200);
    let (status, headers, body) = get_once(addr, "/users/3").await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "30");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], 429);
    // Another policy, another bucket.
    let (status, headers, _) = get_once(addr, "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["ratelimit"], r#""default";r=99;t=1"#);
}

#[tokio::test]
async fn plain_hyper_with_the_peer_address_in_the_extensions() {
    let limit = RateLimitLayer::builder(Policy::new("default", Quota::per_minute(1)))
        .build(&Registry::new())
        .unwrap();
    let service =
        ServiceBuilder::new()
            .layer(limit)
            .service(service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hi"))))
            }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let service = service.clone();
            // Give each request its connection's peer address.
            let with_peer = service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(peer);
                let mut service = service.clone();
                async move { service.call(req).await }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(with_peer))
                    .await;
            });
        }
    });
    // New connections each time: the key is the IP, not the connection.
    let (status, headers, body) = get_once(addr, "/").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hi"[..]));
    assert_eq!(headers["ratelimit"], r#""default";r=0;t=60"#);
    let (status, headers, _) = get_once(addr, "/").await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "60");
    assert_eq!(headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn tonic_keyed_by_peer_ip_and_by_api_key() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    async fn serve(
        layer: RateLimitLayer<
            impl covet::layers::rate_limit::KeyExtractor + Clone + Send + Sync + 'static,
        >,
    ) -> HealthClient<tonic::transport::Channel> {
        let (_reporter, health) = tonic_health::server::health_reporter();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(ServiceBuilder::new().layer(layer).into_inner())
                .add_service(health)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        HealthClient::new(channel)
    }
    fn check(api_key: Option<&str>) -> tonic::Request<HealthCheckRequest> {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        if let Some(key) = api_key {
            request
                .metadata_mut()
                .insert("x-api-key", key.parse().unwrap());
        }
        request
    }

    // Peer IP through tonic's own connection info, read by a closure.
    let by_peer = RateLimitLayer::builder(Policy::new("grpc", Quota::per_minute(1)))
        .key(|parts: &Parts| {
            parts
                .extensions
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
                .map(|addr| Key::ip(addr.ip()))
        })
        .build(&Registry::new())
        .unwrap();
    let mut client = serve(by_peer).await;
    let response = client.check(check(None)).await.unwrap();
    assert_eq!(
        response.metadata().get("ratelimit").unwrap(),
        r#""grpc";r=0;t=60"#
    );
    // gRPC requests are limited with a gRPC answer: RESOURCE_EXHAUSTED, with Retry-After.
    let status = client.check(check(None)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), "rate limit exceeded");
    assert_eq!(status.metadata().get("retry-after").unwrap(), "60");

    // API key from metadata: each key has its own bucket.
    let by_key = RateLimitLayer::builder(Policy::new("grpc", Quota::per_minute(1)))
        .key(HeaderKey::new(HeaderName::from_static("x-api-key")))
        .build(&Registry::new())
        .unwrap();
    let mut client = serve(by_key).await;
    assert!(client.check(check(Some("alice"))).await.is_ok());
    assert!(client.check(check(Some("bob"))).await.is_ok());
    let status = client.check(check(Some("alice"))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
}
