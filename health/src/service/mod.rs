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

mod future;
mod render;
mod request;

use std::{
    convert::Infallible,
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, StatusCode,
    header::{ALLOW, AUTHORIZATION},
};
use http_body_util::Full;
use tower_service::Service;

pub use future::ResponseFuture;
use render::{APPLICATION_JSON, HEALTH_JSON, empty, render_component, render_report, respond};
#[doc(hidden)]
pub use request::wants_health_json;
use request::{bearer_token, constant_time_eq};

use crate::{HealthRegistry, Probe};

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
        ResponseFuture::pending(Box::pin(async move {
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
        }))
    }
}

#[cfg(test)]
mod tests;
