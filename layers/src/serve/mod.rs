//! [`serve`]: HTTP/1 and HTTP/2 on a listener, following the [`Shutdown`] coordinator, with a
//! timeout or a limit for everything a client controls.
//!
//! `axum::serve` and hyper-util's `GracefulShutdown` have no drain deadline (a stuck stream
//! would hang the process) and no connection limits. [`serve_with`] is built on hyper-util's
//! connection builder and adds:
//!
//! | client behaviour | what the server does | setting |
//! |---|---|---|
//! | connects and sends nothing, or an HTTP/2 preface and no request | closes it | [`header_read_timeout`](ServeOptionsBuilder::header_read_timeout) (30 s) |
//! | sends a request head byte by byte | closes it | `header_read_timeout`, from the head's first byte |
//! | keeps a connection idle (HTTP/1 keep-alive, HTTP/2 with pings) | closes it | [`idle_timeout`](ServeOptionsBuilder::idle_timeout) (75 s) |
//! | sends a body byte by byte | the body fails, the connection is not reused | [`body_read_timeout`](ServeOptionsBuilder::body_read_timeout) (30 s) |
//! | opens more connections than the cap | accepts and closes the new ones at once | [`max_connections`](ServeOptionsBuilder::max_connections) (10,000 per listener) |
//! | sends a huge or unfinished head | 431, and at most this much memory per head | [`max_header_bytes`](ServeOptionsBuilder::max_header_bytes) (32 KiB) |
//! | vanishes behind an HTTP/2 connection | pings, then drops it | [`http2_keep_alive_interval`](ServeOptionsBuilder::http2_keep_alive_interval) (20 s) |
//!
//! Each listener runs its own accept loop, so a flood on one (the API) never stops another
//! (the admin port) from accepting, as long as the caps leave file descriptors for it.
//!
//! The listener is yours: `tokio::net::TcpListener::bind` queues at most 128 finished
//! handshakes, so a burst past that (a load balancer opening its pool) has its SYNs dropped
//! and retried a second later. Bind through `tokio::net::TcpSocket` and `listen(1024)` for a
//! deeper queue, as covet-server does.
//!
//! Requests carry the peer address in their extensions (axum's `ConnectInfo<SocketAddr>` with
//! the `axum` feature, else a plain `SocketAddr`) and a [`RequestBody`].
//!
//! ```no_run
//! # async fn run(app: axum::Router, admin: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use covet_layers::{serve::{ServeOptions, serve_with}, shutdown::Shutdown};
//!
//! let shutdown = Shutdown::builder().build()?;
//! shutdown.listen_for_signals()?;
//! let options = ServeOptions::builder()
//!     .idle_timeout(Duration::from_secs(90))
//!     .max_connections(20_000)
//!     .build()?;
//! let api = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! tokio::try_join!(
//!     serve_with(api, app, &shutdown, options.clone()),
//!     serve_with(admin_listener, admin, &shutdown, options),
//! )?;
//! let report = shutdown.finish().await;
//! # let _ = report;
//! # Ok(())
//! # }
//! ```

mod body;
mod connection;
mod io;
mod options;
mod service;
#[cfg(test)]
mod tests;

use std::{
    future::Future,
    io as std_io,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{Request, Response};
use http_body::Body;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{net::TcpListener, sync::watch, task::JoinSet, time::Instant};
use tower_service::Service;

pub use body::{BodyTimeout, BoxError, RequestBody};
pub use options::{
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES, MIN_MAX_HEADER_BYTES,
    ServeError, ServeOptions, ServeOptionsBuilder,
};

use crate::shutdown::{Phase, Shutdown, ShutdownMetrics};
use connection::{ConnState, TimeoutKind};
use io::WatchedIo;
use service::ConnService;

/// How long a connection closed for being idle may take to say goodbye (an HTTP/2 GOAWAY).
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What one [`serve`] call saw.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ServeReport {
    /// Connections accepted.
    pub connections: u64,
    /// Connections closed at once because the listener was at its connection cap.
    pub rejected_connections: u64,
    /// Connections closed by a header, first-request or idle timeout.
    pub timed_out_connections: u64,
    /// Connections still open at the drain deadline, closed by force.
    pub aborted_connections: usize,
}

/// Serves `service` (an axum `Router`, or any Tower service) on `listener` with HTTP/1 and
/// HTTP/2 and the default [`ServeOptions`], until the `shutdown` coordinator stops it; see
/// [`serve_with`].
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: &Shutdown,
) -> std_io::Result<ServeReport>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve_with(listener, service, shutdown, ServeOptions::default()).await
}

/// Serves `service` on `listener` until the `shutdown` coordinator reaches
/// [`Phase::Stopping`].
///
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
) -> std_io::Result<ServeReport>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve_until(
        listener,
        service,
        shutdown,
        options,
        shutdown.reached(Phase::Stopping),
    )
    .await
}

/// [`serve_with`], but accepting connections until `stop` completes instead of until
/// [`Phase::Stopping`]: an admin port that should answer probes and scrapes until the API has
/// drained passes the API's end here. The connections then left get until the drain deadline
/// (or one second, when it has already passed) to finish.
pub async fn serve_until<S, B, F>(
    listener: TcpListener,
    service: S,
    shutdown: &Shutdown,
    options: ServeOptions,
    stop: F,
) -> std_io::Result<ServeReport>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The connection watchdog owns the head and idle timeouts (hyper's own would close
        // idle keep-alive connections at the head timeout).
        .header_read_timeout(None)
        .max_buf_size(options.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(options.http2_keep_alive_interval)
        .keep_alive_timeout(
            options
                .http2_keep_alive_interval
                .unwrap_or(DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL),
        )
        .max_header_list_size(options.max_header_bytes as u32);
    let options = Arc::new(options);
    let metrics = shutdown.metrics().cloned();
    let (finish_tx, finish_rx) = watch::channel(false);
    let live = Arc::new(AtomicUsize::new(0));
    let timed_out = Arc::new(AtomicU64::new(0));
    let mut connections = JoinSet::new();
    let mut report = ServeReport::default();
    let mut last_rejection_log: Option<Instant> = None;
    let mut stop = pin!(stop);
    loop {
        // Reap finished connections so the set does not grow with the server's lifetime.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(target: "covet::serve", error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        report.connections += 1;
        if live.load(Ordering::Acquire) >= options.max_connections {
            drop(stream);
            report.rejected_connections += 1;
            if let Some(metrics) = &metrics {
                metrics.rejected_connections.inc();
            }
            if last_rejection_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                last_rejection_log = Some(Instant::now());
                tracing::warn!(
                    target: "covet::serve",
                    max_connections = options.max_connections,
                    rejected_so_far = report.rejected_connections,
                    "connection cap reached: closing new connections"
                );
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        let state = ConnState::new();
        let service = ConnService {
            inner: service.clone(),
            peer,
            state: Arc::clone(&state),
            body_read_timeout: options.body_read_timeout,
        };
        let io = TokioIo::new(WatchedIo::new(stream, Arc::clone(&state)));
        let connection = builder
            .serve_connection_with_upgrades(
                io,
                hyper_util::service::TowerToHyperService::new(service),
            )
            .into_owned();
        live.fetch_add(1, Ordering::AcqRel);
        if let Some(metrics) = &metrics {
            metrics.open_connections.inc();
        }
        let watch = Watch {
            state,
            options: Arc::clone(&options),
            finish: finish_rx.clone(),
            metrics: metrics.clone(),
            timed_out: Arc::clone(&timed_out),
        };
        let live = Arc::clone(&live);
        let open = metrics.as_ref().map(|m| m.open_connections.clone());
        connections.spawn(async move {
            watch.drive(connection).await;
            live.fetch_sub(1, Ordering::AcqRel);
            if let Some(open) = open {
                open.dec();
            }
        });
    }
    drop(listener);
    let _ = finish_tx.send(true);
    // The connections left get until the drain deadline; when it has passed already (an admin
    // port stopping after the API's drain), a short grace instead.
    let stopped_at = std::time::Instant::now();
    let deadline = async {
        match shutdown.deadline_at() {
            Some(at) if at > stopped_at => tokio::time::sleep_until(at.into()).await,
            Some(_) => tokio::time::sleep(IDLE_CLOSE_GRACE).await,
            None => shutdown.deadline().await,
        }
    };
    tokio::select! {
        () = async { while connections.join_next().await.is_some() {} } => {}
        () = deadline => {
            while connections.try_join_next().is_some() {}
            let cancelled = shutdown.in_flight();
            report.aborted_connections = live.load(Ordering::Acquire);
            tracing::warn!(
                target: "covet::serve",
                cancelled_requests = cancelled,
                connections = report.aborted_connections,
                "drain deadline passed: closing the connections left"
            );
            shutdown.record_cancelled(cancelled);
            connections.abort_all();
        }
    }
    while connections.join_next().await.is_some() {}
    report.timed_out_connections = timed_out.load(Ordering::Acquire);
    shutdown.record_drained();
    Ok(report)
}

/// A served connection: a future that can be asked to finish gracefully.
trait Connection: Future {
    fn finish_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E, B> Connection for auto::UpgradeableConnection<'static, I, S, E>
where
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = Response<B>>,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: auto::HttpServerConnExec<S::Future, B>,
{
    fn finish_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// What a connection's task needs besides the connection.
struct Watch {
    state: Arc<ConnState>,
    options: Arc<ServeOptions>,
    finish: watch::Receiver<bool>,
    metrics: Option<ShutdownMetrics>,
    timed_out: Arc<AtomicU64>,
}

impl Watch {
    /// Drives `connection` to its end, closing it when its phase's deadline passes and asking it
    /// to finish when the server stops.
    async fn drive<C: Connection>(mut self, connection: C) {
        let mut connection = pin!(connection);
        let mut sleep = pin!(tokio::time::sleep(Duration::from_secs(86_400)));
        let mut finishing = false;
        loop {
            let deadline = self.state.deadline(&self.options);
            if let Some((at, _)) = deadline {
                sleep.as_mut().reset(at);
            }
            tokio::select! {
                _ = connection.as_mut() => return,
                () = sleep.as_mut(), if deadline.is_some() => {
                    let Some((at, kind)) = self.state.deadline(&self.options) else { continue };
                    if at > Instant::now() {
                        continue;
                    }
                    self.timed_out.fetch_add(1, Ordering::Relaxed);
                    if let Some(metrics) = &self.metrics {
                        metrics.connection_timeouts.with_label_values(&[kind.as_str()]).inc();
                    }
                    tracing::debug!(target: "covet::serve", kind = kind.as_str(), "connection timed out");
                    if kind == TimeoutKind::Idle {
                        // No request in progress: an HTTP/2 peer gets its GOAWAY.
                        connection.as_mut().finish_gracefully();
                        let _ = tokio::time::timeout(IDLE_CLOSE_GRACE, connection.as_mut()).await;
                    }
                    return;
                }
                () = self.state.changed() => {}
                _ = self.finish.changed(), if !finishing => {
                    finishing = true;
                    connection.as_mut().finish_gracefully();
                }
            }
        }
    }
}
