//! The [`Shutdown`] coordinator: phases, signals, callbacks, the drain deadline and hooks.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The phases of a shutdown, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Serving normally.
    Running,
    /// Triggered: readiness is failing, the pre-stop delay runs, connections are still
    /// accepted and in-flight work continues; responses carry `Connection: close`.
    Draining,
    /// The pre-stop delay is over: no new connections; in-flight requests finish until the drain
    /// deadline, after which the rest is cancelled.
    Stopping,
    /// Serving is over; hooks run.
    Stopped,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 4] = [
        Phase::Running,
        Phase::Draining,
        Phase::Stopping,
        Phase::Stopped,
    ];

    /// The `phase` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
        }
    }
}

/// A configuration error of the [`Shutdown`] coordinator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Registering the shutdown metrics failed.
    #[error("shutdown: cannot register metric `{name}`: {source}")]
    Metrics {
        /// The metric family.
        name: &'static str,
        /// The registry's error.
        #[source]
        source: prometheus::Error,
    },
    /// Listening for SIGTERM/SIGINT failed.
    #[error("shutdown: cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
}

/// The default pre-stop delay: 5 seconds.
pub const DEFAULT_PRE_STOP_DELAY: Duration = Duration::from_secs(5);
/// The default drain timeout: 30 seconds.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The default timeout of each shutdown hook: 5 seconds.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5);

type Callback = Box<dyn FnOnce() + Send>;
type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type HookFn = Box<dyn FnOnce() -> HookFuture + Send>;

struct Hook {
    name: String,
    timeout: Duration,
    run: HookFn,
}

/// What happened to one shutdown hook.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookOutcome {
    /// The hook finished within its timeout.
    Completed,
    /// The hook was abandoned when its timeout passed.
    TimedOut,
}

/// What a finished shutdown reports.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Requests still in flight at the drain deadline, cancelled.
    pub cancelled_requests: usize,
    /// From the end of the pre-stop delay to the end of serving.
    pub drain_duration: Duration,
    /// Each hook, in the order it ran (reverse registration order).
    pub hooks: Vec<(String, HookOutcome)>,
}

/// Configures a [`Shutdown`]. Created by [`Shutdown::builder`].
#[derive(Debug)]
pub struct ShutdownBuilder<'a> {
    pre_stop_delay: Duration,
    drain_timeout: Duration,
    hook_timeout: Duration,
    registry: Option<&'a Registry>,
}

impl<'a> ShutdownBuilder<'a> {
    /// How long to keep serving after the trigger while readiness fails, so load balancers stop
    /// sending traffic. Zero is allowed.
    ///
    /// Defaults to [`DEFAULT_PRE_STOP_DELAY`] (5 s).
    pub fn pre_stop_delay(mut self, delay: Duration) -> Self {
        self.pre_stop_delay = delay;
        self
    }

    /// How long in-flight requests may take to finish once accepting stops; what is left after
    /// it is cancelled and counted.
    ///
    /// Defaults to [`DEFAULT_DRAIN_TIMEOUT`] (30 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// The timeout of hooks added without one of their own.
    ///
    /// Defaults to [`DEFAULT_HOOK_TIMEOUT`] (5 s).
    pub fn hook_timeout(mut self, timeout: Duration) -> Self {
        self.hook_timeout = timeout;
        self
    }

    /// Registers `shutdown_phase{phase}`, `server_open_connections`,
    /// `server_in_flight_requests`, `shutdown_cancelled_requests_total`,
    /// `shutdown_drain_duration_seconds`, and the server loop's
    /// `server_connections_rejected_total` and `server_connection_timeouts_total{kind}` into
    /// `registry`.
    ///
    /// Defaults to no metrics.
    pub fn metrics(mut self, registry: &'a Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Builds the coordinator. Needs a Tokio runtime only when triggered.
    pub fn build(self) -> Result<Shutdown, ShutdownError> {
        let metrics = self.registry.map(ShutdownMetrics::register).transpose()?;
        let (phase, _) = watch::channel(Phase::Running);
        Ok(Shutdown {
            inner: Arc::new(Inner {
                pre_stop_delay: self.pre_stop_delay,
                drain_timeout: self.drain_timeout,
                hook_timeout: self.hook_timeout,
                phase,
                fast_phase: AtomicU8::new(Phase::Running as u8),
                triggered: AtomicBool::new(false),
                token: CancellationToken::new(),
                on_draining: Mutex::new(Vec::new()),
                hooks: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
                cancelled: AtomicUsize::new(0),
                cancelled_recorded: AtomicBool::new(false),
                stopping_at: Mutex::new(None),
                drain_duration: Mutex::new(None),
                metrics,
            }),
        })
    }
}

#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "serve"), allow(dead_code))] // the server loop records the rest
pub(crate) struct ShutdownMetrics {
    phase: IntGaugeVec,
    pub(crate) open_connections: IntGauge,
    in_flight: IntGauge,
    cancelled: IntCounter,
    drain_duration: Gauge,
    /// Connections refused because a listener was at its connection cap.
    pub(crate) rejected_connections: IntCounter,
    /// Connections closed by a timeout, by `kind` (see `serve::TimeoutKind`).
    pub(crate) connection_timeouts: IntCounterVec,
}

impl ShutdownMetrics {
    fn register(registry: &Registry) -> Result<Self, ShutdownError> {
        let err = |name| move |source| ShutdownError::Metrics { name, source };
        let phase = IntGaugeVec::new(
            Opts::new(
                "shutdown_phase",
                "1 for the shutdown phase the server is in (running, draining, stopping, stopped).",
            ),
            &["phase"],
        )
        .map_err(err("shutdown_phase"))?;
        let open_connections = IntGauge::new(
            "server_open_connections",
            "Client connections the server holds open.",
        )
        .map_err(err("server_open_connections"))?;
        let in_flight = IntGauge::new(
            "server_in_flight_requests",
            "Requests inside the drain layer right now.",
        )
        .map_err(err("server_in_flight_requests"))?;
        let cancelled = IntCounter::new(
            "shutdown_cancelled_requests_total",
            "Requests still in flight at the drain deadline, cancelled.",
        )
        .map_err(err("shutdown_cancelled_requests_total"))?;
        let drain_duration = Gauge::new(
            "shutdown_drain_duration_seconds",
            "Seconds from the end of the pre-stop delay to the end of serving, for the last shutdown.",
        )
        .map_err(err("shutdown_drain_duration_seconds"))?;
        let rejected_connections = IntCounter::new(
            "server_connections_rejected_total",
            "Client connections closed at once because the listener was at its connection cap.",
        )
        .map_err(err("server_connections_rejected_total"))?;
        let connection_timeouts = IntCounterVec::new(
            Opts::new(
                "server_connection_timeouts_total",
                "Client connections closed by a timeout, by kind (first_request, idle, request_head).",
            ),
            &["kind"],
        )
        .map_err(err("server_connection_timeouts_total"))?;
        let collectors: [(&'static str, Box<dyn prometheus::core::Collector>); 7] = [
            ("shutdown_phase", Box::new(phase.clone())),
            (
                "server_open_connections",
                Box::new(open_connections.clone()),
            ),
            ("server_in_flight_requests", Box::new(in_flight.clone())),
            (
                "shutdown_cancelled_requests_total",
                Box::new(cancelled.clone()),
            ),
            (
                "shutdown_drain_duration_seconds",
                Box::new(drain_duration.clone()),
            ),
            (
                "server_connections_rejected_total",
                Box::new(rejected_connections.clone()),
            ),
            (
                "server_connection_timeouts_total",
                Box::new(connection_timeouts.clone()),
            ),
        ];
        for (name, collector) in collectors {
            registry.register(collector).map_err(err(name))?;
        }
        for kind in ["first_request", "idle", "request_head"] {
            connection_timeouts.with_label_values(&[kind]);
        }
        let metrics = Self {
            phase,
            open_connections,
            in_flight,
            cancelled,
            drain_duration,
            rejected_connections,
            connection_timeouts,
        };
        metrics.set_phase(Phase::Running);
        Ok(metrics)
    }

    fn set_phase(&self, current: Phase) {
        for phase in Phase::ALL {
            self.phase
                .with_label_values(&[phase.as_str()])
                .set(i64::from(phase == current));
        }
    }
}

struct Inner {
    pre_stop_delay: Duration,
    drain_timeout: Duration,
    hook_timeout: Duration,
    phase: watch::Sender<Phase>,
    /// The phase again, readable on the request path without the channel's lock.
    fast_phase: AtomicU8,
    triggered: AtomicBool,
    token: CancellationToken,
    on_draining: Mutex<Vec<Callback>>,
    hooks: Mutex<Vec<Hook>>,
    in_flight: AtomicUsize,
    cancelled: AtomicUsize,
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    cancelled_recorded: AtomicBool,
    stopping_at: Mutex<Option<Instant>>,
    drain_duration: Mutex<Option<Duration>>,
    metrics: Option<ShutdownMetrics>,
}

/// Coordinates a graceful shutdown. See the [module docs](super).
///
/// Cheap to clone; every clone is the same coordinator.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("phase", &self.phase())
            .field("pre_stop_delay", &self.inner.pre_stop_delay)
            .field("drain_timeout", &self.inner.drain_timeout)
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    /// A builder with the defaults.
    pub fn builder<'a>() -> ShutdownBuilder<'a> {
        ShutdownBuilder {
            pre_stop_delay: DEFAULT_PRE_STOP_DELAY,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
            registry: None,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.inner.phase.borrow()
    }

    /// Waits until the coordinator reaches `phase` (or a later one).
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.inner.phase.subscribe();
        // The sender lives as long as `self`, so this only ends by reaching the phase.
        let _ = rx.wait_for(|current| *current >= phase).await;
    }

    /// A token cancelled when draining starts: long-lived handlers (SSE, WebSockets) watch it
    /// (`token.cancelled().await`) to end cleanly.
    pub fn token(&self) -> CancellationToken {
        self.inner.token.clone()
    }

    /// Runs `callback` when draining starts (the reference server flips readiness to
    /// `OUT_OF_SERVICE` here). Runs at once if draining already started.
    pub fn on_draining(&self, callback: impl FnOnce() + Send + 'static) {
        let mut callbacks = self
            .inner
            .on_draining
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.inner.triggered.load(Ordering::Acquire) {
            drop(callbacks);
            callback();
        } else {
            callbacks.push(Box::new(callback));
        }
    }

    /// Adds a hook run after serving stops (flush telemetry, close pools), with the default
    /// hook timeout. Hooks run in reverse registration order; a hook that does not finish in
    /// time is abandoned.
    pub fn add_hook<F, Fut>(&self, name: impl Into<String>, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.add_hook_with_timeout(name, self.inner.hook_timeout, hook);
    }

    /// Adds a hook with its own timeout.
    pub fn add_hook_with_timeout<F, Fut>(&self, name: impl Into<String>, timeout: Duration, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Hook {
                name: name.into(),
                timeout,
                run: Box::new(move || Box::pin(hook())),
            });
    }

    /// Starts the shutdown sequence: draining callbacks, the token, the pre-stop delay, then the
    /// stopping phase. Idempotent. Must be called inside a Tokio runtime.
    pub fn trigger(&self) {
        if self.inner.triggered.swap(true, Ordering::AcqRel) {
            return;
        }
        let callbacks = std::mem::take(
            &mut *self
                .inner
                .on_draining
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for callback in callbacks {
            callback();
        }
        self.inner.token.cancel();
        self.set_phase(Phase::Draining);
        tracing::info!(
            target: "covet::shutdown",
            pre_stop_delay_ms = self.inner.pre_stop_delay.as_millis() as u64,
            drain_timeout_ms = self.inner.drain_timeout.as_millis() as u64,
            "shutdown triggered: draining"
        );
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.inner.pre_stop_delay).await;
            *this
                .inner
                .stopping_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            this.set_phase(Phase::Stopping);
            tracing::info!(target: "covet::shutdown", "pre-stop delay over: no new connections");
        });
    }

    /// Listens for SIGTERM and SIGINT (Ctrl-C): the first triggers the shutdown; a second one
    /// exits the process at once with status 1, for an operator who does not want to wait.
    pub fn listen_for_signals(&self) -> Result<(), ShutdownError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).map_err(ShutdownError::Signals)?;
            let mut int = signal(SignalKind::interrupt()).map_err(ShutdownError::Signals)?;
            let this = self.clone();
            tokio::spawn(async move {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!(target: "covet::shutdown", signal = name, "signal received");
                this.trigger();
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::warn!(
                    target: "covet::shutdown",
                    signal = name,
                    "second signal: exiting now without draining"
                );
                std::process::exit(1);
            });
        }
        #[cfg(not(unix))]
        {
            let this = self.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    this.trigger();
                }
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(1);
                }
            });
        }
        Ok(())
    }

    /// The configured pre-stop delay.
    pub fn pre_stop_delay(&self) -> Duration {
        self.inner.pre_stop_delay
    }

    /// The configured drain timeout.
    pub fn drain_timeout(&self) -> Duration {
        self.inner.drain_timeout
    }

    /// Waits for the drain deadline: the stopping phase plus the drain timeout.
    pub async fn deadline(&self) {
        self.reached(Phase::Stopping).await;
        let stopping_at = self
            .inner
            .stopping_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or_else(Instant::now);
        match stopping_at.checked_add(self.inner.drain_timeout) {
            Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
            // A drain timeout too long to add to a clock reading: no deadline.
            None => std::future::pending().await,
        }
    }

    /// When the drain deadline is (or was), once stopping has begun.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn deadline_at(&self) -> Option<Instant> {
        let stopping_at = *self
            .inner
            .stopping_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        stopping_at.and_then(|at| at.checked_add(self.inner.drain_timeout))
    }

    /// Requests inside a [`DrainLayer`](super::DrainLayer) right now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn request_started(&self) {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        if let Some(m) = &self.inner.metrics {
            m.in_flight.inc();
        }
    }

    pub(crate) fn request_finished(&self) {
        self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(m) = &self.inner.metrics {
            m.in_flight.dec();
        }
    }

    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn metrics(&self) -> Option<&ShutdownMetrics> {
        self.inner.metrics.as_ref()
    }

    /// Records that the drain deadline cut `requests` in-flight requests. Counted once, however
    /// many servers follow this coordinator (they all see the same in-flight count).
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn record_cancelled(&self, requests: usize) {
        if self.inner.cancelled_recorded.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.cancelled.fetch_add(requests, Ordering::AcqRel);
        if let Some(m) = &self.inner.metrics {
            m.cancelled.inc_by(requests as u64);
        }
    }

    /// Records the end of a server's drain.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn record_drained(&self) {
        let stopping_at = *self
            .inner
            .stopping_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(start) = stopping_at {
            let elapsed = start.elapsed();
            let mut slot = self
                .inner
                .drain_duration
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let longest = slot.map_or(elapsed, |d| d.max(elapsed));
            *slot = Some(longest);
            if let Some(m) = &self.inner.metrics {
                m.drain_duration.set(longest.as_secs_f64());
            }
        }
    }

    /// The phase, read with one atomic load (for the request path).
    pub(crate) fn fast_phase(&self) -> Phase {
        match self.inner.fast_phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Draining,
            2 => Phase::Stopping,
            _ => Phase::Stopped,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.inner
            .fast_phase
            .fetch_max(phase as u8, Ordering::AcqRel);
        self.inner.phase.send_if_modified(|current| {
            let changed = *current < phase;
            if changed {
                *current = phase;
            }
            changed
        });
        if let Some(m) = &self.inner.metrics {
            m.set_phase(self.phase());
        }
    }

    /// Ends the shutdown once serving is over: enters the stopped phase and runs the hooks in
    /// reverse registration order, each bounded by its timeout. Call it after every server's
    /// the server loop (`covet_layers::serve`) has returned.
    pub async fn finish(&self) -> ShutdownReport {
        self.set_phase(Phase::Stopped);
        let hooks = std::mem::take(
            &mut *self
                .inner
                .hooks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut outcomes = Vec::with_capacity(hooks.len());
        for hook in hooks.into_iter().rev() {
            let outcome = match tokio::time::timeout(hook.timeout, (hook.run)()).await {
                Ok(()) => HookOutcome::Completed,
                Err(_) => {
                    tracing::warn!(
                        target: "covet::shutdown",
                        hook = %hook.name,
                        timeout_ms = hook.timeout.as_millis() as u64,
                        "shutdown hook timed out; abandoned"
                    );
                    HookOutcome::TimedOut
                }
            };
            outcomes.push((hook.name, outcome));
        }
        let report = ShutdownReport {
            cancelled_requests: self.inner.cancelled.load(Ordering::Acquire),
            drain_duration: self
                .inner
                .drain_duration
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or_default(),
            hooks: outcomes,
        };
        tracing::info!(
            target: "covet::shutdown",
            cancelled_requests = report.cancelled_requests,
            drain_ms = report.drain_duration.as_millis() as u64,
            "shutdown complete"
        );
        report
    }
}
