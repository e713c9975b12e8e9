//! Graceful shutdown the Kubernetes way: readiness off, a pre-stop delay, draining with a
//! deadline, then hooks.
//!
//! The [`Shutdown`] coordinator runs the sequence every covet deploy file assumes:
//!
//! 1. SIGTERM or SIGINT ([`Shutdown::listen_for_signals`]) or [`Shutdown::trigger`].
//! 2. [`Phase::Draining`]: the [`on_draining`](Shutdown::on_draining) callbacks run (flip
//!    readiness to `OUT_OF_SERVICE` there), the [`token`](Shutdown::token) is cancelled so
//!    long-lived handlers (SSE, WebSockets) can end, and [`DrainLayer`] marks HTTP/1 responses
//!    `Connection: close`. Connections are still accepted for the pre-stop delay (default 5 s)
//!    so load balancers can stop sending traffic.
//! 3. [`Phase::Stopping`]: the server loop (`covet_layers::serve`, feature `serve`) closes its
//!    listener (new connections are refused), tells every connection to finish (idle
//!    keep-alive connections close, HTTP/2 gets GOAWAY) and waits for in-flight requests.
//! 4. At the drain deadline (default 30 s) the connections left are closed and their requests
//!    counted as cancelled.
//! 5. [`Shutdown::finish`]: [`Phase::Stopped`], then the hooks (flush telemetry, close pools) in
//!    reverse registration order, each abandoned after its own timeout.
//!
//! A second signal exits the process at once (status 1) for an operator who will not wait.
//!
//! Metrics (with [`ShutdownBuilder::metrics`]): `shutdown_phase{phase}`,
//! `server_open_connections`, `server_in_flight_requests`, `shutdown_cancelled_requests_total`
//! and `shutdown_drain_duration_seconds`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use covet_layers::shutdown::{DrainLayer, Phase, Shutdown};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shutdown = Shutdown::builder()
//!     .pre_stop_delay(Duration::from_millis(50))
//!     .drain_timeout(Duration::from_secs(1))
//!     .build()?;
//! shutdown.on_draining(|| println!("readiness: OUT_OF_SERVICE"));
//! shutdown.add_hook("flush telemetry", || async { /* guard.shutdown() */ });
//!
//! let service = ServiceBuilder::new()
//!     .layer(DrainLayer::new(&shutdown))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
//!     }));
//!
//! let response = service.clone().oneshot(Request::new(())).await?;
//! assert!(response.headers().get("connection").is_none());
//!
//! shutdown.trigger();
//! // Draining: still served, but HTTP/1 clients are told to close the connection.
//! let response = service.clone().oneshot(Request::new(())).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["connection"], "close");
//!
//! // After the pre-stop delay, a late request on an old connection gets a 503.
//! shutdown.reached(Phase::Stopping).await;
//! let response = service.oneshot(Request::new(())).await?;
//! assert_eq!(response.status(), 503);
//!
//! let report = shutdown.finish().await;
//! assert_eq!(report.hooks.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//!
//! To serve HTTP with this coordinator, see `covet_layers::serve` (feature `serve`).

mod coordinator;
mod drain;

#[cfg(feature = "serve")]
pub(crate) use coordinator::ShutdownMetrics;
pub use coordinator::{
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_HOOK_TIMEOUT, DEFAULT_PRE_STOP_DELAY, HookOutcome, Phase,
    Shutdown, ShutdownBuilder, ShutdownError, ShutdownReport,
};
pub use drain::{Drain, DrainLayer, ResponseFuture};
pub use tokio_util::sync::CancellationToken;

// The coordinator is exercised through the server loop, over real sockets.
#[cfg(all(test, feature = "serve"))]
mod tests;
