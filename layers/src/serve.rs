//! [`serve`]: HTTP/1 and HTTP/2 on a listener, following the [`Shutdown`] coordinator.
//!
//! `axum::serve` and hyper-util's `GracefulShutdown` have no drain deadline: a stuck stream
//! would hang the process. [`serve`] is built on hyper-util's connection builder and
//! `GracefulShutdown`, adds the deadline, and serves HTTP/1 and HTTP/2 with the peer address in
//! each request's extensions.
//!
//! ```no_run
//! # async fn run(app: axum::Router, admin: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
//! use covet_layers::{serve::serve, shutdown::Shutdown};
//!
//! let shutdown = Shutdown::builder().build()?;
//! shutdown.listen_for_signals()?;
//! let api = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! tokio::try_join!(serve(api, app, &shutdown), serve(admin_listener, admin, &shutdown))?;
//! let report = shutdown.finish().await;
//! # let _ = report;
//! # Ok(())
//! # }
//! ```

use std::{
    error::Error as StdError,
    io,
    net::SocketAddr,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, task::JoinSet};
use tower_service::Service;

use crate::shutdown::{Phase, Shutdown};

/// The default limit on reading a request head: 30 seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of [`serve_with`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeOptions {
    /// How long a client may take to send a request head (slow-loris protection).
    ///
    /// Defaults to [`DEFAULT_HEADER_READ_TIMEOUT`] (30 s).
    pub header_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

impl ServeOptions {
    /// Sets [`header_read_timeout`](Self::header_read_timeout).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }
}

/// What one [`serve`] call saw.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ServeReport {
    /// Connections accepted.
    pub connections: u64,
    /// Connections still open at the drain deadline, closed by force.
    pub aborted_connections: usize,
}

/// Serves `service` (an axum `Router`, or any Tower service) on `listener` with HTTP/1 and
/// HTTP/2, until the `shutdown` coordinator stops it; see [`serve_with`].
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: &Shutdown,
) -> io::Result<ServeReport>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    serve_with(listener, service, shutdown, ServeOptions::default()).await
}

/// Serves `service` on `listener` until the `shutdown` coordinator stops it.
///
/// - Each request carries the peer address in its extensions: axum's `ConnectInfo<SocketAddr>`
///   with the `axum` feature, else a plain `SocketAddr`.
/// - While [`Phase::Draining`] (the pre-stop delay) connections are still accepted.
/// - At [`Phase::Stopping`] the listener is closed (new connections are refused), every
///   connection is told to finish: idle HTTP/1 keep-alive connections close, busy ones close
///   after their response, HTTP/2 connections get GOAWAY and finish their streams.
/// - At the drain deadline the connections left are closed by force; the requests still in a
///   [`DrainLayer`](crate::shutdown::DrainLayer) are counted as cancelled.
///
/// Several servers (an API port and an admin port) can follow one coordinator.
pub async fn serve_with<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: &Shutdown,
    options: ServeOptions,
) -> io::Result<ServeReport>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut report = ServeReport::default();
    let stopping = shutdown.reached(Phase::Stopping);
    tokio::pin!(stopping);
    loop {
        // Reap finished connections so the set does not grow with the server's lifetime.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut stopping => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(target: "covet::shutdown", error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        report.connections += 1;
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(WithPeer {
            inner: service.clone(),
            peer,
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let open = shutdown.metrics().map(|m| m.open_connections.clone());
        if let Some(open) = &open {
            open.inc();
        }
        connections.spawn(async move {
            let _ = connection.await;
            if let Some(open) = open {
                open.dec();
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = shutdown.deadline() => {
            let cancelled = shutdown.in_flight();
            report.aborted_connections = connections.len();
            tracing::warn!(
                target: "covet::shutdown",
                cancelled_requests = cancelled,
                connections = report.aborted_connections,
                "drain deadline passed: closing the connections left"
            );
            shutdown.record_cancelled(cancelled);
            connections.abort_all();
        }
    }
    while connections.join_next().await.is_some() {}
    shutdown.record_drained();
    Ok(report)
}

/// Puts the peer address into each request's extensions.
#[derive(Clone, Debug)]
struct WithPeer<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S, B> Service<Request<B>> for WithPeer<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        #[cfg(feature = "axum")]
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        #[cfg(not(feature = "axum"))]
        req.extensions_mut().insert(self.peer);
        self.inner.call(req)
    }
}
