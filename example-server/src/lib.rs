//! The covet reference server as a library: the application [`Router`] with every covet layer
//! composed in one `ServiceBuilder`, so tests and benchmarks run exactly what the binary runs.

use axum::{Json, Router, routing::get};
use covet_layers::{
    request_id::{RequestId, RequestIdLayer},
    security_headers::SecurityHeadersLayer,
};
use serde::Serialize;
use tower::ServiceBuilder;

/// The address the API listens on when nothing else is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The body of `GET /api/hello`.
#[derive(Debug, Serialize)]
pub struct Hello {
    /// A greeting.
    pub message: &'static str,
    /// The request id of the request that got this answer.
    pub request_id: String,
}

async fn hello(request_id: Option<axum::Extension<RequestId>>) -> Json<Hello> {
    tracing::info!("saying hello");
    Json(Hello {
        message: "hello from covet",
        request_id: request_id.map(|id| id.0.to_string()).unwrap_or_default(),
    })
}

/// The API router with the covet layers applied, outermost first, in one `ServiceBuilder`.
pub fn app() -> Router {
    Router::new().route("/api/hello", get(hello)).layer(
        ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .layer(SecurityHeadersLayer::api()),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn hello_answers_json_with_the_request_id_and_security_headers() {
        let request = axum::http::Request::builder()
            .uri("/api/hello")
            .header("x-request-id", "hello-1")
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-request-id"], "hello-1");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["message"], "hello from covet");
        assert_eq!(json["request_id"], "hello-1");
    }
}
