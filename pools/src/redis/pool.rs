//! `RedisPool`, its builder and `RedisConnection`.

#[cfg(feature = "tls")]
use std::path::PathBuf;
use std::{
    fmt,
    ops::{Deref, DerefMut},
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use bb8::ManageConnection;
use bb8_redis::RedisConnectionManager;
use prometheus::Registry;
use redis::{
    Cmd, ConnectionAddr, FromRedisValue, Pipeline, RedisError, ToRedisArgs,
    aio::MultiplexedConnection,
};
use tracing::{Instrument, field::Empty};

use super::{
    metrics::{
        COMMANDS, DEL, EXPIRE, GET, INCRBY, MGET, PIPELINE, RedisMetrics, SET, command_index,
    },
    stats::ServerStats,
};
use crate::{
    PoolError,
    common::{self, ConnectMetrics, PoolState, Settings, StateCollector},
    error::describe,
};

/// How often, at most, the server figures are read: 15 seconds.
pub const DEFAULT_SERVER_STATS_INTERVAL: Duration = Duration::from_secs(15);

/// bb8-redis's manager, timed and counted.
pub(crate) struct RedisManager {
    inner: RedisConnectionManager,
    connect: Arc<ConnectMetrics>,
}

impl ManageConnection for RedisManager {
    type Connection = MultiplexedConnection;
    type Error = RedisError;

    async fn connect(&self) -> Result<MultiplexedConnection, RedisError> {
        self.connect.connect(self.inner.connect()).await
    }

    async fn is_valid(&self, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
        self.inner.is_valid(conn).await
    }

    fn has_broken(&self, conn: &mut MultiplexedConnection) -> bool {
        self.inner.has_broken(conn)
    }
}

pub(crate) struct RedisShared {
    settings: Settings,
    target: String,
    host: String,
    port: i64,
    namespace: String,
    metrics: RedisMetrics,
    connect: Arc<ConnectMetrics>,
}

/// Builds a [`RedisPool`]; from [`RedisPool::builder`].
#[derive(Debug, Clone)]
pub struct RedisPoolBuilder {
    url: String,
    settings: Settings,
    server_stats_interval: Duration,
    #[cfg(feature = "tls")]
    ca_file: Option<PathBuf>,
}

impl RedisPoolBuilder {
    common::settings_methods!();

    /// The server figures (`cache_evictions_total`, `cache_memory_used_bytes`, `cache_keys`,
    /// from `INFO` and `DBSIZE`) are read on scrape, at most once per this interval.
    ///
    /// Defaults to [`DEFAULT_SERVER_STATS_INTERVAL`] (15 s).
    pub fn server_stats_interval(mut self, interval: Duration) -> Self {
        self.server_stats_interval = interval;
        self
    }

    /// The PEM file of the CA that signed a `rediss://` server's certificate (which must also
    /// name the host); without one, the system's roots are trusted.
    ///
    /// Read when the pool is built: an unreadable file is a [`PoolError::Setting`] naming
    /// `ca_file`, and so is a CA file with a `redis://` URL.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Validates the settings, registers the metrics into `registry`, opens one connection to
    /// prove the server is reachable and reads the server figures once.
    ///
    /// The `cache_*` families have no `pool_name` label (see `METRICS.md`), so one registry
    /// takes one `RedisPool`; a second one fails with [`PoolError::Register`].
    ///
    /// # Errors
    /// [`PoolError::Setting`] for a bad URL or setting, [`PoolError::Register`],
    /// [`PoolError::Connect`] (naming `host:port`, never the password).
    pub async fn build(self, registry: &Registry) -> Result<RedisPool, PoolError> {
        let settings = self.settings;
        settings.validate()?;
        let pool_name = settings.pool_name.as_str();
        #[cfg(feature = "tls")]
        let client =
            covet_tls::redis::client(&self.url, self.ca_file.as_deref()).map_err(|e| match e {
                covet_tls::TlsError::Redis(e) => {
                    PoolError::setting(pool_name, "url", e.to_string())
                }
                other => PoolError::setting(pool_name, other.setting(), other.to_string()),
            })?;
        #[cfg(not(feature = "tls"))]
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            let message = e.to_string();
            if self.url.starts_with("rediss://") {
                PoolError::setting(
                    pool_name,
                    "url",
                    format!("{message}: rediss:// needs covet-pools' `tls` feature"),
                )
            } else {
                PoolError::setting(pool_name, "url", message)
            }
        })?;
        let info = client.get_connection_info();
        let (host, port, target) = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), i64::from(*port), format!("{host}:{port}"))
            }
            other => (other.to_string(), 0, other.to_string()),
        };
        let namespace = info.redis_settings().db().to_string();
        let manager = RedisConnectionManager::new(info.clone())
            .map_err(|e| PoolError::setting(pool_name, "url", e.to_string()))?;

        let metrics = RedisMetrics::new(registry, pool_name)?;
        let connect = Arc::new(ConnectMetrics::new(
            registry,
            pool_name,
            metrics.connection_errors.clone(),
        )?);
        let manager = RedisManager {
            inner: manager,
            connect: Arc::clone(&connect),
        };
        let pool = Arc::new(settings.bb8().build_unchecked(manager));
        let adopted = StateCollector::register(
            registry,
            pool_name,
            settings.max_size,
            Arc::downgrade(&pool) as Weak<dyn PoolState>,
        )?;
        let stats = ServerStats::register(
            registry,
            pool_name,
            Arc::downgrade(&pool),
            self.server_stats_interval,
        )?;

        let connect_error = |message: String| PoolError::Connect {
            pool_name: pool_name.to_owned(),
            target: target.clone(),
            message,
        };
        if settings.connect_at_build {
            let first =
                tokio::time::timeout(settings.connection_timeout, pool.dedicated_connection())
                    .await
                    .map_err(|_| {
                        connect_error(format!(
                            "no answer within {:?}",
                            settings.connection_timeout
                        ))
                    })?
                    .map_err(|e| connect_error(describe(&e)))?;
            if pool.add(first).is_ok() {
                adopted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            stats.refresh().await;
        }

        Ok(RedisPool {
            pool,
            stats,
            shared: Arc::new(RedisShared {
                settings,
                target,
                host,
                port,
                namespace,
                metrics,
                connect,
            }),
        })
    }
}

/// An instrumented bb8 pool of multiplexed Redis connections.
///
/// Cheap to clone. The typed helpers ([`get`](Self::get), [`set`](Self::set),
/// [`set_ex`](Self::set_ex), [`del`](Self::del), [`expire`](Self::expire),
/// [`incr`](Self::incr), [`mget`](Self::mget)), the generic [`cmd`](Self::cmd) and
/// [`pipeline`](Self::pipeline) check a connection out, run the command measured and traced, and
/// return the connection; [`connection`](Self::connection) checks one out for several calls.
#[derive(Clone)]
pub struct RedisPool {
    pool: Arc<bb8::Pool<RedisManager>>,
    stats: ServerStats,
    shared: Arc<RedisShared>,
}

impl RedisPool {
    /// A builder for a pool of connections to `url` (`redis://[:password@]host[:port][/db]`,
    /// or `rediss://` for TLS with the `tls` feature; parsed when the pool is built).
    pub fn builder(url: impl Into<String>) -> RedisPoolBuilder {
        RedisPoolBuilder {
            url: url.into(),
            settings: Settings::default(),
            server_stats_interval: DEFAULT_SERVER_STATS_INTERVAL,
            #[cfg(feature = "tls")]
            ca_file: None,
        }
    }

    /// Checks a connection out, recording the wait in `db_client_connection_wait_time_seconds`.
    ///
    /// # Errors
    /// [`PoolError::Timeout`] when none is available within the connection timeout.
    pub async fn connection(&self) -> Result<RedisConnection, PoolError> {
        let conn = common::checkout(
            &self.pool,
            &self.shared.connect,
            &self.shared.settings,
            &self.shared.target,
        )
        .await?;
        Ok(RedisConnection {
            conn,
            shared: Arc::clone(&self.shared),
            checked_out: Instant::now(),
        })
    }

    /// `GET key`: `None` when the key is missing. Counts `cache_hits_total` / `cache_misses_total`.
    pub async fn get<K: ToRedisArgs + Send + Sync, V: FromRedisValue>(
        &self,
        key: K,
    ) -> Result<Option<V>, PoolError> {
        self.connection().await?.get(key).await
    }

    /// `MGET keys…`: one `Option` per key; each key counts as a hit or a miss.
    pub async fn mget<K: ToRedisArgs + Send + Sync, V: FromRedisValue>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<V>>, PoolError> {
        self.connection().await?.mget(keys).await
    }

    /// `SET key value` without expiry.
    pub async fn set<K: ToRedisArgs + Send + Sync, V: ToRedisArgs + Send + Sync>(
        &self,
        key: K,
        value: V,
    ) -> Result<(), PoolError> {
        self.connection().await?.set(key, value).await
    }

    /// `SET key value PX ttl`; the TTL goes to `cache_ttl_seconds`.
    pub async fn set_ex<K: ToRedisArgs + Send + Sync, V: ToRedisArgs + Send + Sync>(
        &self,
        key: K,
        value: V,
        ttl: Duration,
    ) -> Result<(), PoolError> {
        self.connection().await?.set_ex(key, value, ttl).await
    }

    /// `DEL keys…`: the number of keys removed.
    pub async fn del<K: ToRedisArgs + Send + Sync>(&self, keys: K) -> Result<u64, PoolError> {
        self.connection().await?.del(keys).await
    }

    /// `PEXPIRE key ttl`: `true` when the key exists. The TTL goes to `cache_ttl_seconds`.
    pub async fn expire<K: ToRedisArgs + Send + Sync>(
        &self,
        key: K,
        ttl: Duration,
    ) -> Result<bool, PoolError> {
        self.connection().await?.expire(key, ttl).await
    }

    /// `INCRBY key by`: the new value.
    pub async fn incr<K: ToRedisArgs + Send + Sync>(
        &self,
        key: K,
        by: i64,
    ) -> Result<i64, PoolError> {
        self.connection().await?.incr(key, by).await
    }

    /// Any command, measured under its name (`command` label; names outside a fixed set of
    /// common commands are `_OTHER`).
    pub async fn cmd<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, PoolError> {
        self.connection().await?.cmd(cmd).await
    }

    /// A pipeline (or `MULTI`/`EXEC` transaction), measured as one `PIPELINE` operation.
    pub async fn pipeline<T: FromRedisValue>(&self, pipeline: &Pipeline) -> Result<T, PoolError> {
        self.connection().await?.pipeline(pipeline).await
    }

    /// Reads the server figures now (`INFO`, `DBSIZE`), whatever the interval.
    pub async fn refresh_server_stats(&self) {
        self.stats.refresh().await;
    }

    /// bb8's view of the pool: connections, idle connections and statistics.
    pub fn state(&self) -> bb8::State {
        self.pool.state()
    }

    /// The `pool_name` label.
    pub fn pool_name(&self) -> &str {
        &self.shared.settings.pool_name
    }

    /// `host:port` of the server; never credentials.
    pub fn target(&self) -> &str {
        &self.shared.target
    }
}

impl fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPool")
            .field("pool_name", &self.shared.settings.pool_name)
            .field("target", &self.shared.target)
            .field("state", &self.pool.state())
            .finish_non_exhaustive()
    }
}

/// A connection checked out of a [`RedisPool`]; returned on drop (the time it was held goes
/// to `db_client_connection_use_time_seconds`). Dereferences to the multiplexed connection for
/// calls this type does not wrap (those are not measured).
pub struct RedisConnection {
    conn: bb8::PooledConnection<'static, RedisManager>,
    shared: Arc<RedisShared>,
    checked_out: Instant,
}

impl RedisConnection {
    fn span(&self, command: usize) -> tracing::Span {
        let shared = &*self.shared;
        tracing::info_span!(
            target: "covet_pools",
            "db.command",
            otel.name = COMMANDS[command],
            otel.kind = "client",
            otel.status_code = Empty,
            db.system.name = "redis",
            db.namespace = shared.namespace.as_str(),
            db.operation.name = COMMANDS[command],
            server.address = shared.host.as_str(),
            server.port = shared.port,
            error.type = Empty,
        )
    }

    fn record<T>(
        &self,
        command: usize,
        started: Instant,
        span: &tracing::Span,
        result: &Result<T, RedisError>,
    ) {
        let elapsed = started.elapsed();
        match result {
            Ok(_) => self.shared.metrics.ok(command, elapsed),
            Err(error) => {
                let error_type = self.shared.metrics.failed(command, elapsed, error);
                span.record("error.type", error_type);
                span.record("otel.status_code", "ERROR");
            }
        }
    }

    async fn run<T: FromRedisValue>(&mut self, command: usize, cmd: &Cmd) -> Result<T, RedisError> {
        let span = self.span(command);
        let started = Instant::now();
        let result = cmd
            .query_async(&mut *self.conn)
            .instrument(span.clone())
            .await;
        self.record(command, started, &span, &result);
        result
    }

    /// Any command, measured under its name; see [`RedisPool::cmd`].
    pub async fn cmd<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T, PoolError> {
        Ok(self.run(command_index(cmd), cmd).await?)
    }

    /// A pipeline, measured as one `PIPELINE` operation; see [`RedisPool::pipeline`].
    pub async fn pipeline<T: FromRedisValue>(
        &mut self,
        pipeline: &Pipeline,
    ) -> Result<T, PoolError> {
        let span = self.span(PIPELINE);
        let started = Instant::now();
        let result = pipeline
            .query_async(&mut *self.conn)
            .instrument(span.clone())
            .await;
        self.record(PIPELINE, started, &span, &result);
        Ok(result?)
    }

    /// `GET`; see [`RedisPool::get`].
    pub async fn get<K: ToRedisArgs + Send + Sync, V: FromRedisValue>(
        &mut self,
        key: K,
    ) -> Result<Option<V>, PoolError> {
        let value: Option<V> = self.run(GET, redis::cmd("GET").arg(key)).await?;
        if value.is_some() {
            &self.shared.metrics.hits
        } else {
            &self.shared.metrics.misses
        }
        .inc();
        Ok(value)
    }

    /// `MGET`; see [`RedisPool::mget`].
    pub async fn mget<K: ToRedisArgs + Send + Sync, V: FromRedisValue>(
        &mut self,
        keys: &[K],
    ) -> Result<Vec<Option<V>>, PoolError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<V>> = self.run(MGET, redis::cmd("MGET").arg(keys)).await?;
        let hits = values.iter().filter(|v| v.is_some()).count() as u64;
        self.shared.metrics.hits.inc_by(hits);
        self.shared
            .metrics
            .misses
            .inc_by(values.len() as u64 - hits);
        Ok(values)
    }

    /// `SET`; see [`RedisPool::set`].
    pub async fn set<K: ToRedisArgs + Send + Sync, V: ToRedisArgs + Send + Sync>(
        &mut self,
        key: K,
        value: V,
    ) -> Result<(), PoolError> {
        let () = self.run(SET, redis::cmd("SET").arg(key).arg(value)).await?;
        Ok(())
    }

    /// `SET … PX`; see [`RedisPool::set_ex`].
    pub async fn set_ex<K: ToRedisArgs + Send + Sync, V: ToRedisArgs + Send + Sync>(
        &mut self,
        key: K,
        value: V,
        ttl: Duration,
    ) -> Result<(), PoolError> {
        let millis = ttl_millis(ttl);
        let () = self
            .run(
                SET,
                redis::cmd("SET").arg(key).arg(value).arg("PX").arg(millis),
            )
            .await?;
        self.shared.metrics.ttl.observe(ttl.as_secs_f64());
        Ok(())
    }

    /// `DEL`; see [`RedisPool::del`].
    pub async fn del<K: ToRedisArgs + Send + Sync>(&mut self, keys: K) -> Result<u64, PoolError> {
        Ok(self.run(DEL, redis::cmd("DEL").arg(keys)).await?)
    }

    /// `PEXPIRE`; see [`RedisPool::expire`].
    pub async fn expire<K: ToRedisArgs + Send + Sync>(
        &mut self,
        key: K,
        ttl: Duration,
    ) -> Result<bool, PoolError> {
        let set: bool = self
            .run(EXPIRE, redis::cmd("PEXPIRE").arg(key).arg(ttl_millis(ttl)))
            .await?;
        self.shared.metrics.ttl.observe(ttl.as_secs_f64());
        Ok(set)
    }

    /// `INCRBY`; see [`RedisPool::incr`].
    pub async fn incr<K: ToRedisArgs + Send + Sync>(
        &mut self,
        key: K,
        by: i64,
    ) -> Result<i64, PoolError> {
        Ok(self
            .run(INCRBY, redis::cmd("INCRBY").arg(key).arg(by))
            .await?)
    }
}

/// A TTL in whole milliseconds, at least 1 (Redis rejects 0).
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Deref for RedisConnection {
    type Target = MultiplexedConnection;

    fn deref(&self) -> &MultiplexedConnection {
        &self.conn
    }
}

impl DerefMut for RedisConnection {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.conn
    }
}

impl Drop for RedisConnection {
    fn drop(&mut self) {
        self.shared
            .connect
            .use_time
            .observe(self.checked_out.elapsed().as_secs_f64());
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("pool_name", &self.shared.settings.pool_name)
            .finish_non_exhaustive()
    }
}
