//! The `/health*` Tower service.
//!
//! [`HealthService`] answers `GET` and `HEAD` on:
//!
//! | path | what | status |
//! |---|---|---|
//! | `/health` | every check and the readiness state | 200, or 503 when the aggregate is `DOWN`/`OUT_OF_SERVICE` |
//! | `/health/live` | liveness checks only (never dependencies) | same rule |
//! | `/health/ready` | readiness checks and the readiness state | same rule |
//! | `/health/startup` | startup checks; `DOWN` until start-up completes | same rule |
//! | `/health/{check}` | one check | its own status; 404 when there is no such check |
//!
//! Other methods get 405 with `Allow: GET, HEAD`; `HEAD` gets the same status and headers as
//! `GET` without the body. Every answer carries `Cache-Control: no-store`.
//!
//! The body is Spring Boot Actuator's JSON (`application/json`):
//! `{"status":"UP","components":{"db":{"status":"UP","details":{…}}}}`, components sorted by
//! name. When the `Accept` header prefers `application/health+json`, the body is the
//! [draft-inadarei health check format](https://datatracker.ietf.org/doc/html/draft-inadarei-api-health-check):
//! `{"status":"pass","checks":{"db:responseTime":[{"componentId":"db","status":"pass",…}]}}`,
//! with `warn` when a non-critical component fails or a status is `UNKNOWN`.
//!
//! Details (and, in `health+json`, timings and error output) are hidden by default; see
//! [`ShowDetails`]. Component names and statuses are always shown.
//!
//! # Mounting in axum
//!
//! `Router::route_service` keeps the path, so mount the service on both `/health` and
//! `/health/{*rest}`:
//!
//! ```
//! use axum::{Router, routing::get};
//! use covet_health::HealthRegistry;
//!
//! # fn main() -> Result<(), covet_health::BuildError> {
//! let health = HealthRegistry::builder().build()?.service();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route_service("/health", health.clone())
//!     .route_service("/health/{*rest}", health);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! `Router::nest_service("/health", svc)` strips the prefix before the service sees the path;
//! use it with [`HealthService::prefix`]`("")`.
//!
//! On a separate admin port, serve it with hyper directly (wrap it in
//! `hyper_util::service::TowerToHyperService`); see the crate's `tests/mount.rs`.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, StatusCode,
    header::{ACCEPT, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE},
};
use http_body_util::Full;
use serde::Serialize;
use tower_service::Service;

use crate::{ComponentHealth, HealthRegistry, HealthReport, Probe, Status, check::BoxFuture};

const APPLICATION_JSON: &str = "application/json";
const HEALTH_JSON: &str = "application/health+json";

/// Who sees check details (and, in `health+json`, timings and error output).
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShowDetails {
    /// Nobody. The default.
    #[default]
    Never,
    /// Everybody. Only for a private admin port.
    Always,
    /// Requests carrying `Authorization: Bearer <token>` with this token (compared in constant
    /// time). Others see statuses only; a wrong token is not an error. An empty token never
    /// matches.
    WithBearerToken(String),
}

impl fmt::Debug for ShowDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Never => f.write_str("Never"),
            Self::Always => f.write_str("Always"),
            Self::WithBearerToken(_) => f.write_str("WithBearerToken(<redacted>)"),
        }
    }
}

/// The Tower service answering the `/health*` probes for a [`HealthRegistry`].
///
/// Cheap to clone (an `Arc`). Implements `Service<http::Request<B>>` for any body `B` (the body
/// is never read), with `Response = http::Response<Full<Bytes>>` and `Error = Infallible`.
/// Must be called inside a Tokio runtime.
///
/// ```
/// use covet_health::{HealthRegistry, ShowDetails, Status};
/// use http::Request;
/// use http_body_util::BodyExt;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = HealthRegistry::builder()
///     .readiness("db", || async { Status::Up })
///     .build()?;
/// let service = ServiceBuilder::new()
///     .service(registry.service().show_details(ShowDetails::Always));
///
/// let response = service
///     .oneshot(Request::get("/health/ready").body(())?)
///     .await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["cache-control"], "no-store");
/// let body = response.into_body().collect().await?.to_bytes();
/// assert_eq!(
///     body,
///     r#"{"status":"UP","components":{"db":{"status":"UP"},"readinessState":{"status":"UP"}}}"#
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HealthService {
    inner: Arc<Config>,
}

#[derive(Clone, Debug)]
struct Config {
    registry: HealthRegistry,
    prefix: String,
    details: ShowDetails,
}

impl HealthService {
    /// Serves `registry` under `/health`, details hidden.
    pub fn new(registry: HealthRegistry) -> Self {
        Self {
            inner: Arc::new(Config {
                registry,
                prefix: "/health".to_owned(),
                details: ShowDetails::Never,
            }),
        }
    }

    /// Who sees details.
    ///
    /// Defaults to [`ShowDetails::Never`].
    pub fn show_details(mut self, details: ShowDetails) -> Self {
        Arc::make_mut(&mut self.inner).details = details;
        self
    }

    /// The path prefix the probes live under: `prefix`, `prefix/live`, …. A missing leading
    /// `/` is added and trailing `/`s are removed; `""` serves `/`, `/live`, … (for axum's
    /// `nest_service`).
    ///
    /// Defaults to `/health`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        let trimmed = prefix.trim_end_matches('/');
        Arc::make_mut(&mut self.inner).prefix = if trimmed.is_empty() || trimmed.starts_with('/') {
            trimmed.to_owned()
        } else {
            format!("/{trimmed}")
        };
        self
    }

    /// The registry served.
    pub fn registry(&self) -> &HealthRegistry {
        &self.inner.registry
    }
}

#[derive(Clone, Copy)]
enum Route {
    All,
    Probe(Probe),
    Check(usize),
}

impl Config {
    fn route(&self, path: &str) -> Option<Route> {
        let rest = path.strip_prefix(self.prefix.as_str())?;
        let rest = match rest {
            "" => return Some(Route::All),
            rest => rest.strip_prefix('/')?.trim_end_matches('/'),
        };
        Some(match rest {
            "" => Route::All,
            "live" => Route::Probe(Probe::Liveness),
            "ready" => Route::Probe(Probe::Readiness),
            "startup" => Route::Probe(Probe::Startup),
            name => Route::Check(self.registry.index_of(name)?),
        })
    }

    fn shows_details(&self, headers: &HeaderMap) -> bool {
        match &self.details {
            ShowDetails::Never => false,
            ShowDetails::Always => true,
            ShowDetails::WithBearerToken(token) => {
                !token.is_empty()
                    && headers
                        .get(AUTHORIZATION)
                        .and_then(|value| bearer_token(value.as_bytes()))
                        .is_some_and(|given| constant_time_eq(given, token.as_bytes()))
            }
        }
    }
}

fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `Accept` prefers `application/health+json` (ties go to it).
///
/// Public only for the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
pub fn wants_health_json(headers: &HeaderMap) -> bool {
    let mut health: Option<f32> = None;
    let mut json: f32 = 0.0;
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or_default().trim();
            let q = params
                .find_map(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))
                })
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if media.eq_ignore_ascii_case(HEALTH_JSON) {
                health = Some(health.map_or(q, |h| h.max(q)));
            } else if media.eq_ignore_ascii_case(APPLICATION_JSON)
                || media.eq_ignore_ascii_case("application/*")
                || media == "*/*"
            {
                json = json.max(q);
            }
        }
    }
    health.is_some_and(|h| h > 0.0 && h >= json)
}

impl<B> Service<Request<B>> for HealthService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(route) = self.inner.route(request.uri().path()) else {
            return ResponseFuture::ready(empty(StatusCode::NOT_FOUND));
        };
        let head = match *request.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut response = empty(StatusCode::METHOD_NOT_ALLOWED);
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                return ResponseFuture::ready(response);
            }
        };
        let health_json = wants_health_json(request.headers());
        let details = self.inner.shows_details(request.headers());
        let config = Arc::clone(&self.inner);
        ResponseFuture {
            kind: Kind::Pending(Box::pin(async move {
                let registry = &config.registry;
                let (status, body) = match route {
                    Route::All => render_report(&registry.report_all().await, health_json, details),
                    Route::Probe(probe) => {
                        render_report(&registry.report(probe).await, health_json, details)
                    }
                    Route::Check(index) => {
                        let name = registry.check_names().nth(index).unwrap_or_default();
                        let component = registry.component_at(index).await;
                        render_component(name, &component, health_json, details)
                    }
                };
                let content_type = if health_json {
                    HEALTH_JSON
                } else {
                    APPLICATION_JSON
                };
                respond(status, content_type, body, head)
            })),
        }
    }
}

/// The future returned by [`HealthService`].
pub struct ResponseFuture {
    kind: Kind,
}

enum Kind {
    Ready(Option<Response<Full<Bytes>>>),
    Pending(BoxFuture<'static, Response<Full<Bytes>>>),
}

impl ResponseFuture {
    fn ready(response: Response<Full<Bytes>>) -> Self {
        Self {
            kind: Kind::Ready(Some(response)),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().kind {
            Kind::Ready(response) => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            Kind::Pending(fut) => fut.as_mut().poll(cx).map(Ok),
        }
    }
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    head: bool,
) -> Response<Full<Bytes>> {
    let length = HeaderValue::from(body.len());
    let mut response = Response::new(if head {
        Full::default()
    } else {
        Full::new(Bytes::from(body))
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(CONTENT_LENGTH, length);
    response
}

// --- Actuator JSON -------------------------------------------------------------------------

#[derive(Serialize)]
struct ActuatorBody<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    components: BTreeMap<&'a str, ActuatorBody<'a>>,
}

impl<'a> ActuatorBody<'a> {
    fn component(component: &'a ComponentHealth, details: bool) -> Self {
        Self {
            status: component.status().as_str(),
            details: (details && !component.details().is_empty()).then(|| component.details()),
            components: BTreeMap::new(),
        }
    }
}

// --- draft-inadarei health+json -------------------------------------------------------------

#[derive(Serialize)]
struct HealthJsonBody<'a> {
    status: &'static str,
    checks: BTreeMap<String, [HealthJsonCheck<'a>; 1]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthJsonCheck<'a> {
    component_id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_unit: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
}

fn health_json_entry<'a>(
    name: &'a str,
    component: &'a ComponentHealth,
    details: bool,
) -> (String, [HealthJsonCheck<'a>; 1]) {
    let pseudo = component.duration() == Duration::ZERO
        && (name == crate::READINESS_STATE || name == crate::STARTUP_STATE);
    let measured = details && !pseudo;
    let output = (details && !component.status().is_passing())
        .then(|| {
            component.details().get("error").map(|e| match e {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
        .flatten();
    let key = if pseudo {
        format!("{name}:status")
    } else {
        format!("{name}:responseTime")
    };
    let check = HealthJsonCheck {
        component_id: name,
        status: component.status().health_json_status(),
        observed_value: measured.then(|| component.duration().as_secs_f64() * 1_000.0),
        observed_unit: measured.then_some("ms"),
        time: details.then(|| rfc3339(component.checked_at())),
        output,
    };
    (key, [check])
}

fn render_report(report: &HealthReport, health_json: bool, details: bool) -> (StatusCode, Vec<u8>) {
    let body = if health_json {
        let mut status = report.status().health_json_status();
        if status == "pass" && report.components().any(|(_, c)| c.status() != Status::Up) {
            status = "warn";
        }
        serde_json::to_vec(&HealthJsonBody {
            status,
            checks: report
                .components()
                .map(|(name, c)| health_json_entry(name, c, details))
                .collect(),
        })
    } else {
        serde_json::to_vec(&ActuatorBody {
            status: report.status().as_str(),
            details: None,
            components: report
                .components()
                .map(|(name, c)| (name, ActuatorBody::component(c, details)))
                .collect(),
        })
    };
    (report.http_status(), body.unwrap_or_default())
}

fn render_component(
    name: &str,
    component: &ComponentHealth,
    health_json: bool,
    details: bool,
) -> (StatusCode, Vec<u8>) {
    let body = if health_json {
        serde_json::to_vec(&HealthJsonBody {
            status: component.status().health_json_status(),
            checks: [health_json_entry(name, component, details)]
                .into_iter()
                .collect(),
        })
    } else {
        serde_json::to_vec(&ActuatorBody::component(component, details))
    };
    (component.status().http_status(), body.unwrap_or_default())
}

/// `time` as RFC 3339 in UTC with milliseconds, e.g. `2025-01-31T12:00:00.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::{CheckRegistration, Health};

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
            let (_, headers, _) =
                call(&service, Method::GET, "/health", &[("accept", accept)]).await;
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
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
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
}
