//! What both pools share: settings, pool metrics, checkout.

use std::{
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, core::Collector, proto::MetricFamily,
};

use crate::PoolError;

/// Buckets of `db_client_connection_wait_time_seconds`: 100 µs … 30 s.
pub const WAIT_TIME_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of `db_client_connection_use_time_seconds`: 1 ms … 60 s.
pub const USE_TIME_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets of `db_client_connection_create_time_seconds`: 1 ms … 10 s.
pub const CREATE_TIME_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of `db_client_operation_duration_seconds` and `db_query_duration_seconds`: the
/// OpenTelemetry `db.client.operation.duration` buckets, 1 ms … 10 s.
pub const OPERATION_DURATION_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// The default `pool_name`.
pub const DEFAULT_POOL_NAME: &str = "default";

/// Pool settings both builders share.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) pool_name: String,
    pub(crate) max_size: u32,
    pub(crate) min_idle: Option<u32>,
    pub(crate) connection_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) connect_at_build: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pool_name: DEFAULT_POOL_NAME.to_owned(),
            max_size: 10,
            connect_at_build: true,
            min_idle: None,
            connection_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
        }
    }
}

impl Settings {
    pub(crate) fn validate(&self) -> Result<(), PoolError> {
        let name = &self.pool_name;
        if name.is_empty() || name.len() > 64 {
            return Err(PoolError::setting(
                name,
                "pool_name",
                "must be 1 to 64 characters",
            ));
        }
        if self.max_size == 0 {
            return Err(PoolError::setting(name, "max_size", "must be at least 1"));
        }
        if let Some(min_idle) = self.min_idle
            && min_idle > self.max_size
        {
            return Err(PoolError::setting(
                name,
                "min_idle",
                format!("({min_idle}) must not exceed max_size ({})", self.max_size),
            ));
        }
        if self.connection_timeout.is_zero() {
            return Err(PoolError::setting(
                name,
                "connection_timeout",
                "must be above zero",
            ));
        }
        for (setting, value) in [
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(PoolError::setting(
                    name,
                    setting,
                    "must be above zero (or None)",
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn bb8<M: bb8::ManageConnection>(&self) -> bb8::Builder<M> {
        bb8::Pool::builder()
            .max_size(self.max_size)
            .min_idle(self.min_idle)
            .connection_timeout(self.connection_timeout)
            .idle_timeout(self.idle_timeout)
            .max_lifetime(self.max_lifetime)
    }
}

/// The builder methods both pool builders share.
macro_rules! settings_methods {
    () => {
        /// The `pool_name` label on every series of this pool (1 to 64 characters).
        ///
        /// Defaults to `"default"`.
        pub fn pool_name(mut self, pool_name: impl Into<String>) -> Self {
            self.settings.pool_name = pool_name.into();
            self
        }

        /// The most connections the pool opens.
        ///
        /// Defaults to 10.
        pub fn max_size(mut self, max_size: u32) -> Self {
            self.settings.max_size = max_size;
            self
        }

        /// Idle connections the pool keeps open (at most `max_size`); `None` opens on demand.
        ///
        /// Defaults to `None`.
        pub fn min_idle(mut self, min_idle: impl Into<Option<u32>>) -> Self {
            self.settings.min_idle = min_idle.into();
            self
        }

        /// How long a checkout waits for a connection before failing with
        /// [`PoolError::Timeout`](crate::PoolError::Timeout).
        ///
        /// Defaults to 30 seconds.
        pub fn connection_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.connection_timeout = timeout;
            self
        }

        /// Idle connections above `min_idle` are closed after this long; `None` keeps them.
        ///
        /// Defaults to 10 minutes.
        pub fn idle_timeout(mut self, timeout: impl Into<Option<std::time::Duration>>) -> Self {
            self.settings.idle_timeout = timeout.into();
            self
        }

        /// Connections are closed after this long, in use or not (when returned); `None` keeps
        /// them.
        ///
        /// Defaults to 30 minutes.
        pub fn max_lifetime(mut self, lifetime: impl Into<Option<std::time::Duration>>) -> Self {
            self.settings.max_lifetime = lifetime.into();
            self
        }

        /// Whether `build` opens one connection to prove the server answers (failing with
        /// [`PoolError::Connect`](crate::PoolError::Connect) when it does not). Set `false` for a
        /// service that must start while its database is still down: connections are then made
        /// on first use, and readiness checks report the outage.
        ///
        /// Defaults to `true`.
        pub fn connect_at_build(mut self, connect: bool) -> Self {
            self.settings.connect_at_build = connect;
            self
        }
    };
}
pub(crate) use settings_methods;

/// Registers `collector` into `registry`, naming `name` on failure.
pub(crate) fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    pool_name: &str,
    name: &'static str,
    collector: C,
) -> Result<C, PoolError> {
    registry
        .register(Box::new(collector.clone()))
        .map_err(|source| PoolError::Register {
            pool_name: pool_name.to_owned(),
            name,
            source,
        })?;
    Ok(collector)
}

pub(crate) fn create_error(
    pool_name: &str,
    name: &'static str,
    source: prometheus::Error,
) -> PoolError {
    PoolError::Register {
        pool_name: pool_name.to_owned(),
        name,
        source,
    }
}

/// A histogram with a `pool_name` const label, registered.
pub(crate) fn pool_histogram(
    registry: &Registry,
    pool_name: &str,
    name: &'static str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, PoolError> {
    let opts = HistogramOpts::new(name, help)
        .const_label("pool_name", pool_name)
        .buckets(buckets.to_vec());
    let histogram = Histogram::with_opts(opts).map_err(|e| create_error(pool_name, name, e))?;
    register(registry, pool_name, name, histogram)
}

/// A counter with a `pool_name` const label, registered.
#[cfg(feature = "postgres")]
pub(crate) fn pool_counter(
    registry: &Registry,
    pool_name: &str,
    name: &'static str,
    help: &str,
) -> Result<IntCounter, PoolError> {
    let counter = IntCounter::with_opts(Opts::new(name, help).const_label("pool_name", pool_name))
        .map_err(|e| create_error(pool_name, name, e))?;
    register(registry, pool_name, name, counter)
}

/// Per-connection-lifecycle metrics both pools record as events happen.
#[derive(Debug)]
pub(crate) struct ConnectMetrics {
    pub(crate) wait_time: Histogram,
    pub(crate) use_time: Histogram,
    pub(crate) create_time: Histogram,
    pub(crate) connection_errors: IntCounter,
    /// The last connect error, for timeout messages; written only on the error path.
    last_error: Mutex<Option<String>>,
}

impl ConnectMetrics {
    pub(crate) fn new(
        registry: &Registry,
        pool_name: &str,
        connection_errors: IntCounter,
    ) -> Result<Self, PoolError> {
        Ok(Self {
            wait_time: pool_histogram(
                registry,
                pool_name,
                "db_client_connection_wait_time_seconds",
                "Time spent waiting for a connection from the pool.",
                WAIT_TIME_BUCKETS,
            )?,
            use_time: pool_histogram(
                registry,
                pool_name,
                "db_client_connection_use_time_seconds",
                "Time between checking a connection out and returning it.",
                USE_TIME_BUCKETS,
            )?,
            create_time: pool_histogram(
                registry,
                pool_name,
                "db_client_connection_create_time_seconds",
                "Time it took to open a new connection.",
                CREATE_TIME_BUCKETS,
            )?,
            connection_errors,
            last_error: Mutex::new(None),
        })
    }

    /// Times one connection attempt, counting and remembering a failure.
    pub(crate) async fn connect<C, E, F>(&self, connecting: F) -> Result<C, E>
    where
        F: Future<Output = Result<C, E>>,
        E: std::error::Error + 'static,
    {
        let start = Instant::now();
        let result = connecting.await;
        match &result {
            Ok(_) => self.create_time.observe(start.elapsed().as_secs_f64()),
            Err(error) => {
                self.connection_errors.inc();
                let text = crate::error::describe(error);
                tracing::debug!(target: "covet_pools", error = %text, "connection attempt failed");
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
            }
        }
        result
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Checks a connection out of `pool`, recording the wait; a timeout becomes
/// [`PoolError::Timeout`].
pub(crate) async fn checkout<M>(
    pool: &bb8::Pool<M>,
    metrics: &ConnectMetrics,
    settings: &Settings,
    target: &str,
) -> Result<bb8::PooledConnection<'static, M>, PoolError>
where
    M: bb8::ManageConnection,
    M::Error: std::error::Error + 'static,
{
    let start = Instant::now();
    let result = pool.get_owned().await;
    metrics.wait_time.observe(start.elapsed().as_secs_f64());
    result.map_err(|error| match error {
        bb8::RunError::TimedOut => PoolError::Timeout {
            pool_name: settings.pool_name.clone(),
            target: target.to_owned(),
            timeout: settings.connection_timeout,
            last_error: metrics.last_error(),
        },
        bb8::RunError::User(error) => PoolError::Connect {
            pool_name: settings.pool_name.clone(),
            target: target.to_owned(),
            message: crate::error::describe(&error),
        },
    })
}

/// A source of bb8 pool state: the pool, seen through a weak reference by the collector.
pub(crate) trait PoolState: Send + Sync {
    fn state(&self) -> bb8::State;
}

impl<M: bb8::ManageConnection> PoolState for bb8::Pool<M> {
    fn state(&self) -> bb8::State {
        bb8::Pool::state(self)
    }
}

/// Reads bb8's `State` on scrape: connections by state, max, pending, and bb8's statistics as
/// monotonic counters.
#[derive(Clone)]
pub(crate) struct StateCollector {
    pool: Weak<dyn PoolState>,
    max_size: u32,
    /// Connections opened outside bb8 (the build-time probe) and handed to the pool.
    adopted: Arc<AtomicU64>,
    update: Arc<Mutex<()>>,
    connections: IntGaugeVec,
    active: IntGauge,
    idle: IntGauge,
    pool_size: IntGauge,
    max: IntGauge,
    pending: IntGauge,
    timeouts: IntCounter,
    created: IntCounter,
    closed: IntCounterVec,
}

impl StateCollector {
    pub(crate) fn register(
        registry: &Registry,
        pool_name: &str,
        max_size: u32,
        pool: Weak<dyn PoolState>,
    ) -> Result<Arc<AtomicU64>, PoolError> {
        let adopted = Arc::new(AtomicU64::new(0));
        let opts = |name: &'static str, help: &str| {
            Opts::new(name, help).const_label("pool_name", pool_name)
        };
        let fail = |name| move |e| create_error(pool_name, name, e);
        let gauge = |name: &'static str, help: &str| {
            IntGauge::with_opts(opts(name, help)).map_err(fail(name))
        };
        let counter = |name: &'static str, help: &str| {
            IntCounter::with_opts(opts(name, help)).map_err(fail(name))
        };
        let collector = Self {
            pool,
            max_size,
            adopted: Arc::clone(&adopted),
            update: Arc::new(Mutex::new(())),
            connections: IntGaugeVec::new(
                opts(
                    "db_client_connections",
                    "Connections in the pool, by state (idle or used).",
                ),
                &["state"],
            )
            .map_err(fail("db_client_connections"))?,
            active: gauge(
                "db_connections_active",
                "Connections checked out of the pool.",
            )?,
            idle: gauge("db_connections_idle", "Idle connections in the pool.")?,
            pool_size: gauge(
                "db_connection_pool_size",
                "The pool's configured maximum size.",
            )?,
            max: gauge(
                "db_client_connection_max",
                "The most connections the pool may open.",
            )?,
            pending: gauge(
                "db_client_connection_pending_requests",
                "Callers waiting for a connection from the pool.",
            )?,
            timeouts: counter(
                "db_client_connection_timeouts_total",
                "Checkouts that timed out waiting for a connection.",
            )?,
            created: counter(
                "db_client_connections_created_total",
                "Connections opened by the pool.",
            )?,
            closed: IntCounterVec::new(
                opts(
                    "db_client_connections_closed_total",
                    "Connections closed by the pool, by reason.",
                ),
                &["reason"],
            )
            .map_err(fail("db_client_connections_closed_total"))?,
        };
        register(registry, pool_name, "db_client_connections", collector)?;
        Ok(adopted)
    }

    fn refresh(&self, state: &bb8::State) {
        let _only_one = self.update.lock().unwrap_or_else(|e| e.into_inner());
        let used = i64::from(state.connections.saturating_sub(state.idle_connections));
        let idle = i64::from(state.idle_connections);
        self.connections.with_label_values(&["idle"]).set(idle);
        self.connections.with_label_values(&["used"]).set(used);
        self.active.set(used);
        self.idle.set(idle);
        self.pool_size.set(i64::from(self.max_size));
        self.max.set(i64::from(self.max_size));
        let stats = &state.statistics;
        self.pending
            .set(i64::try_from(stats.pending_gets()).unwrap_or(i64::MAX));
        advance(&self.timeouts, stats.get_timed_out);
        let adopted = self.adopted.load(Ordering::Relaxed);
        advance(&self.created, stats.connections_created + adopted);
        for (reason, value) in [
            ("broken", stats.connections_closed_broken),
            ("invalid", stats.connections_closed_invalid),
            ("max_lifetime", stats.connections_closed_max_lifetime),
            ("idle_timeout", stats.connections_closed_idle_timeout),
        ] {
            advance(&self.closed.with_label_values(&[reason]), value);
        }
    }

    fn parts(&self) -> [&dyn Collector; 9] {
        [
            &self.connections,
            &self.active,
            &self.idle,
            &self.pool_size,
            &self.max,
            &self.pending,
            &self.timeouts,
            &self.created,
            &self.closed,
        ]
    }
}

/// Moves a counter up to bb8's cumulative `value` (never down).
fn advance(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

impl Collector for StateCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.parts().into_iter().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(pool) = self.pool.upgrade() else {
            return Vec::new();
        };
        self.refresh(&pool.state());
        self.parts().into_iter().flat_map(|c| c.collect()).collect()
    }
}

/// `db_client_operation_duration_seconds`, shared in shape by both pools.
pub(crate) fn operation_duration(
    registry: &Registry,
    pool_name: &str,
) -> Result<HistogramVec, PoolError> {
    const NAME: &str = "db_client_operation_duration_seconds";
    let opts = HistogramOpts::new(
        NAME,
        "Duration of database client operations (OpenTelemetry db.client.operation.duration).",
    )
    .const_label("pool_name", pool_name)
    .buckets(OPERATION_DURATION_BUCKETS.to_vec());
    let vec = HistogramVec::new(opts, &["db_system_name", "db_operation_name", "error_type"])
        .map_err(|e| create_error(pool_name, NAME, e))?;
    register(registry, pool_name, NAME, vec)
}
