//! The health service over its registry, as HTTP clients see it.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::{CheckRegistration, Health, Status};

async fn call(
    service: &HealthService,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = service
        .clone()
        .oneshot(request.body(()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

async fn get_json(
    service: &HealthService,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let (status, headers, body) = call(service, Method::GET, path, headers).await;
    assert_eq!(headers[CACHE_CONTROL], "no-store");
    (status, serde_json::from_slice(&body).unwrap())
}

fn registry() -> HealthRegistry {
    HealthRegistry::builder()
        .readiness("db", || async {
            Health::up().with_detail("version", "17.2")
        })
        .register(
            CheckRegistration::new("search", || async {
                Health::from_error("connection refused")
            })
            .readiness()
            .non_critical(),
        )
        .liveness("loop", || async { Status::Up })
        .build()
        .unwrap()
}

#[tokio::test]
async fn actuator_shape_with_details_hidden_by_default() {
    let service = registry().service();
    let (status, body) = get_json(&service, "/health", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "UP", "components": {
            "db": {"status": "UP"},
            "loop": {"status": "UP"},
            "readinessState": {"status": "UP"},
            "search": {"status": "DOWN"},
        }})
    );
    let (_, headers, _) = call(&service, Method::GET, "/health", &[]).await;
    assert_eq!(headers[CONTENT_TYPE], "application/json");
}

#[tokio::test]
async fn details_always_never_or_with_the_bearer_token() {
    let always = registry().service().show_details(ShowDetails::Always);
    let (_, body) = get_json(&always, "/health/ready", &[]).await;
    assert_eq!(
        body["components"]["db"]["details"],
        json!({"version": "17.2"})
    );
    assert_eq!(
        body["components"]["search"]["details"]["error"],
        "connection refused"
    );

    let token = registry()
        .service()
        .show_details(ShowDetails::WithBearerToken("s3cret-token".into()));
    let (_, body) = get_json(&token, "/health/ready", &[]).await;
    assert!(body["components"]["db"].get("details").is_none());
    let (_, body) = get_json(
        &token,
        "/health/ready",
        &[("authorization", "Bearer wrong")],
    )
    .await;
    assert!(body["components"]["db"].get("details").is_none());
    let (_, body) = get_json(
        &token,
        "/health/ready",
        &[("authorization", "Bearer s3cret-token")],
    )
    .await;
    assert_eq!(body["components"]["db"]["details"]["version"], "17.2");
    let (_, body) = get_json(
        &token,
        "/health/db",
        &[("authorization", "bearer s3cret-token")],
    )
    .await;
    assert_eq!(
        body,
        json!({"status": "UP", "details": {"version": "17.2"}})
    );
    assert!(!format!("{token:?}").contains("s3cret"));

    let empty = registry()
        .service()
        .show_details(ShowDetails::WithBearerToken(String::new()));
    let (_, body) = get_json(&empty, "/health/db", &[("authorization", "Bearer ")]).await;
    assert!(body.get("details").is_none());
}

#[tokio::test]
async fn health_json_when_accept_asks_for_it() {
    let service = registry().service().show_details(ShowDetails::Always);
    let accept = [("accept", "application/health+json")];
    let (status, headers, body) = call(&service, Method::GET, "/health/ready", &accept).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[CONTENT_TYPE], "application/health+json");
    let body: Value = serde_json::from_slice(&body).unwrap();
    // The non-critical failure makes it `warn`, not `fail`.
    assert_eq!(body["status"], "warn");
    let db = &body["checks"]["db:responseTime"][0];
    assert_eq!(db["componentId"], "db");
    assert_eq!(db["status"], "pass");
    assert_eq!(db["observedUnit"], "ms");
    assert!(db["observedValue"].is_number());
    assert!(db["time"].as_str().unwrap().ends_with('Z'));
    let search = &body["checks"]["search:responseTime"][0];
    assert_eq!(search["status"], "fail");
    assert_eq!(search["output"], "connection refused");
    assert_eq!(body["checks"]["readinessState:status"][0]["status"], "pass");

    // Failing aggregate: `fail` and 503.
    registry_out_of_service_fails_in_health_json().await;

    // Plain JSON wins when preferred, or when nothing asks for health+json.
    for accept in [
        "application/json",
        "*/*",
        "application/health+json;q=0.5, application/json",
    ] {
        let (_, headers, _) = call(&service, Method::GET, "/health", &[("accept", accept)]).await;
        assert_eq!(headers[CONTENT_TYPE], "application/json", "{accept}");
    }
    let (_, headers, _) = call(
        &service,
        Method::GET,
        "/health",
        &[("accept", "application/json;q=0.9, application/health+json")],
    )
    .await;
    assert_eq!(headers[CONTENT_TYPE], "application/health+json");
}

async fn registry_out_of_service_fails_in_health_json() {
    let registry = registry();
    registry.readiness().set_out_of_service();
    let service = registry.service();
    let (status, _, body) = call(
        &service,
        Method::GET,
        "/health/ready",
        &[("accept", "application/health+json")],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["status"], "fail");
    // Hidden details: no timings, no output.
    assert!(
        body["checks"]["db:responseTime"][0]
            .get("observedValue")
            .is_none()
    );
    assert!(
        body["checks"]["search:responseTime"][0]
            .get("output")
            .is_none()
    );
}

#[tokio::test]
async fn startup_gating_and_readiness_flip_over_http() {
    let registry = registry();
    let service = registry.service();
    let (status, body) = get_json(&service, "/health/startup", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["components"]["startupState"]["status"], "DOWN");
    registry.startup_complete();
    let (status, _) = get_json(&service, "/health/startup", &[]).await;
    assert_eq!(status, StatusCode::OK);

    registry.readiness().set_out_of_service();
    let (status, body) = get_json(&service, "/health/ready", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "OUT_OF_SERVICE");
    let (status, body) = get_json(&service, "/health", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "OUT_OF_SERVICE");
    let (status, body) = get_json(&service, "/health/live", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "UP", "components": {"loop": {"status": "UP"}}})
    );
    registry.readiness().set_ready();
    let (status, _) = get_json(&service, "/health/ready", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn liveness_without_checks_is_up() {
    let service = HealthRegistry::builder().build().unwrap().service();
    let (status, body) = get_json(&service, "/health/live", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "UP"}));
}

#[tokio::test]
async fn one_check_by_name_and_unknown_names_are_404() {
    let service = registry().service();
    let (status, body) = get_json(&service, "/health/db", &[]).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "UP"})));
    // A non-critical check still answers its own status.
    let (status, body) = get_json(&service, "/health/search", &[]).await;
    assert_eq!(
        (status, body),
        (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "DOWN"}))
    );
    for path in [
        "/health/nope",
        "/health/db/extra",
        "/healthz",
        "/other",
        "/health/readinessState",
    ] {
        let (status, headers, body) = call(&service, Method::GET, path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert!(body.is_empty());
    }
    // Trailing slashes and query strings are tolerated.
    let (status, _) = get_json(&service, "/health/db/?verbose=1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get_json(&service, "/health/", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn head_has_the_status_and_headers_of_get_without_a_body() {
    let registry = registry();
    let service = registry.service();
    for path in ["/health", "/health/live", "/health/startup", "/health/db"] {
        let (get_status, get_headers, get_body) = call(&service, Method::GET, path, &[]).await;
        let (status, headers, body) = call(&service, Method::HEAD, path, &[]).await;
        assert_eq!(status, get_status, "{path}");
        assert!(body.is_empty(), "{path}");
        assert_eq!(headers[CONTENT_TYPE], get_headers[CONTENT_TYPE]);
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert_eq!(headers[CONTENT_LENGTH], get_body.len().to_string().as_str());
    }
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let service = registry().service();
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let (status, headers, _) = call(&service, method.clone(), "/health/ready", &[]).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(headers[ALLOW], "GET, HEAD");
    }
}

#[tokio::test]
async fn prefixes_are_normalised() {
    let registry = registry();
    let root = registry.service().prefix("");
    assert_eq!(get_json(&root, "/", &[]).await.0, StatusCode::OK);
    assert_eq!(get_json(&root, "/live", &[]).await.0, StatusCode::OK);
    assert_eq!(get_json(&root, "/db", &[]).await.0, StatusCode::OK);
    let admin = registry.service().prefix("admin/health/");
    assert_eq!(
        get_json(&admin, "/admin/health/ready", &[]).await.0,
        StatusCode::OK
    );
    let (status, _, _) = call(&admin, Method::GET, "/health/ready", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_1000_concurrent_probes_runs_each_check_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let registry = HealthRegistry::builder()
        .readiness("db", move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Status::Up
            }
        })
        .cache_ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let service = registry.service();
    let requests: Vec<_> = (0..1_000)
        .map(|i| {
            let service = service.clone();
            let path = ["/health/ready", "/health", "/health/db"][i % 3];
            tokio::spawn(async move {
                service
                    .oneshot(Request::get(path).body(()).unwrap())
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    // All 1,000 arrived while the first run was in flight or cached: they shared it.
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_flood_runs_each_check_once_per_ttl() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let registry = HealthRegistry::builder()
        .readiness("db", move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Status::Up }
        })
        .cache_ttl(Duration::from_millis(200))
        .build()
        .unwrap();
    let service = registry.service();
    let started = std::time::Instant::now();
    // 1,000 requests spread over about a second, 50 at a time.
    for _ in 0..20 {
        let batch: Vec<_> = (0..50)
            .map(|_| {
                let service = service.clone();
                tokio::spawn(async move {
                    service
                        .oneshot(Request::get("/health/ready").body(()).unwrap())
                        .await
                })
            })
            .collect();
        for request in batch {
            assert_eq!(request.await.unwrap().unwrap().status(), StatusCode::OK);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let runs = runs.load(Ordering::SeqCst);
    let most = (elapsed.as_millis() / 200) as usize + 1;
    assert!(
        (2..=most).contains(&runs),
        "{runs} runs in {elapsed:?} (at most {most})"
    );
}

#[test]
fn accept_parsing() {
    let wants = |accept: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(accept).unwrap());
        wants_health_json(&headers)
    };
    assert!(wants("application/health+json"));
    assert!(wants("Application/Health+JSON"));
    assert!(!wants("application/health+json;q=0"));
    assert!(!wants("application/json"));
    assert!(!wants("text/html, */*;q=0.8"));
    assert!(wants("application/json, application/health+json"));
    assert!(!wants_health_json(&HeaderMap::new()));
}
