//! Kubernetes-style health probes for any Tower HTTP stack, in Spring Boot Actuator's shape.
//!
//! - A [`HealthRegistry`] of named [`HealthCheck`]s (async trait, or any closure), each
//!   registered for some of the liveness, readiness and startup [`Probe`]s, critical or not,
//!   with its own timeout (default 2 s; a timeout is `DOWN` with a `timeout` detail).
//! - Statuses aggregate as in Actuator: `DOWN` > `OUT_OF_SERVICE` > `UP` > `UNKNOWN`, worst
//!   wins; `DOWN` and `OUT_OF_SERVICE` answer 503, the rest 200.
//! - Checks run concurrently, on their own tasks, at most once per cache TTL (default 1 s)
//!   whatever the probe traffic; requests arriving while a check runs share that run.
//!   [`HealthRegistry::spawn_refresh`] keeps the cache warm in the background.
//! - Liveness runs only liveness checks. Startup is `DOWN` until
//!   [`HealthRegistry::startup_complete`]. Readiness has a [`Readiness`] switch the app or the
//!   shutdown coordinator flips to `OUT_OF_SERVICE`.
//! - [`HealthService`] serves `GET`/`HEAD` `/health`, `/health/live`, `/health/ready`,
//!   `/health/startup` and `/health/{check}` as Actuator JSON or `application/health+json`.
//! - Optional metrics in a caller-supplied `prometheus::Registry`:
//!   `health_check_status{check}` and `health_check_duration_seconds{check}`.
//! - Built-in checks in [`checks`]: PostgreSQL (feature `postgres`), Redis (feature `redis`),
//!   disk space and memory (feature `system`); with feature `tls`, the URL checks speak TLS
//!   (libpq's `sslmode`, `rediss://`, a CA file).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use covet_health::{HealthRegistry, Status};
//! use http::Request;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = prometheus::Registry::new();
//! let registry = HealthRegistry::builder()
//!     .readiness("queue", || async { Ok::<_, std::io::Error>(()) })
//!     .liveness("event-loop", || async { Status::Up })
//!     .timeout(Duration::from_secs(1))
//!     .metrics(&metrics)
//!     .build()?;
//! let service = ServiceBuilder::new().service(registry.service());
//!
//! // Before start-up completes, the startup probe fails; readiness does not wait for it.
//! let startup = service.clone().oneshot(Request::get("/health/startup").body(())?).await?;
//! assert_eq!(startup.status(), 503);
//! registry.startup_complete();
//! let startup = service.clone().oneshot(Request::get("/health/startup").body(())?).await?;
//! assert_eq!(startup.status(), 200);
//!
//! // Shutting down: readiness goes OUT_OF_SERVICE, liveness stays UP.
//! registry.readiness().set_out_of_service();
//! let ready = service.clone().oneshot(Request::get("/health/ready").body(())?).await?;
//! assert_eq!(ready.status(), 503);
//! let live = service.oneshot(Request::get("/health/live").body(())?).await?;
//! assert_eq!(live.status(), 200);
//! # Ok(())
//! # }
//! ```
//!
//! See [`service`] for mounting the service in axum or on an admin port, and [`checks`] for the
//! PostgreSQL and Redis checks.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod check;
pub mod checks;
mod error;
mod metrics;
mod probe;
mod registration;
mod registry;
mod report;
pub mod service;
mod slot;
mod status;

pub use check::HealthCheck;
pub use error::BuildError;
pub use probe::{MAX_CHECK_NAME_LEN, Probe, READINESS_STATE, STARTUP_STATE};
pub use registration::CheckRegistration;
pub use registry::{BackgroundRefresh, HealthRegistry, HealthRegistryBuilder, Readiness};
pub use report::{ComponentHealth, HealthReport};
pub use service::{HealthService, ShowDetails};
pub use status::{Health, Status};
