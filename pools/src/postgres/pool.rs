//! `PgPool` and its builder.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Weak},
    time::Duration,
};

use bb8::ManageConnection;
use bb8_postgres::PostgresConnectionManager;
use prometheus::Registry;
use tokio_postgres::{Client, Config, NoTls, Row, Statement, config::Host, types::ToSql};

use super::{PgConnection, metrics::PgMetrics};
use crate::{
    PoolError,
    common::{self, ConnectMetrics, PoolState, Settings, StateCollector},
    error::describe,
};

/// The default slow-query threshold: 500 ms.
pub const DEFAULT_SLOW_QUERY_THRESHOLD: Duration = Duration::from_millis(500);
/// The default statement cache capacity per connection: 256 statements.
pub const DEFAULT_STATEMENT_CACHE_CAPACITY: usize = 256;

/// A pooled PostgreSQL connection: the client and its prepared-statement cache.
pub(crate) struct PgConn {
    pub(crate) client: Client,
    pub(crate) statements: HashMap<String, Statement>,
}

/// bb8-postgres's manager, timed and counted.
pub(crate) struct PgManager {
    inner: PostgresConnectionManager<NoTls>,
    connect: Arc<ConnectMetrics>,
}

impl ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<PgConn, tokio_postgres::Error> {
        let client = self.connect.connect(self.inner.connect()).await?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
        })
    }

    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), tokio_postgres::Error> {
        self.inner.is_valid(&mut conn.client).await
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// What every connection and transaction of one pool shares.
pub(crate) struct PgShared {
    pub(crate) settings: Settings,
    pub(crate) target: String,
    pub(crate) host: String,
    pub(crate) port: i64,
    pub(crate) namespace: String,
    pub(crate) slow_query_threshold: Duration,
    pub(crate) statement_cache_capacity: usize,
    pub(crate) metrics: PgMetrics,
    pub(crate) connect: Arc<ConnectMetrics>,
}

/// Builds a [`PgPool`]; from [`PgPool::builder`].
#[derive(Debug, Clone)]
pub struct PgPoolBuilder {
    url: String,
    settings: Settings,
    slow_query_threshold: Duration,
    statement_cache_capacity: usize,
}

impl PgPoolBuilder {
    common::settings_methods!();

    /// Statements slower than this are counted in `db_slow_queries_total` and logged once at
    /// WARN with their summary (`SELECT users`), never their text or parameters.
    ///
    /// Defaults to [`DEFAULT_SLOW_QUERY_THRESHOLD`] (500 ms).
    pub fn slow_query_threshold(mut self, threshold: Duration) -> Self {
        self.slow_query_threshold = threshold;
        self
    }

    /// Prepared statements kept per connection; 0 disables the cache (every statement is
    /// prepared afresh). When full, new statements are prepared without being cached.
    ///
    /// Defaults to [`DEFAULT_STATEMENT_CACHE_CAPACITY`] (256).
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.statement_cache_capacity = capacity;
        self
    }

    /// Validates the settings, registers the pool's metrics into `registry` and opens one
    /// connection to prove the server is reachable (it becomes the pool's first idle
    /// connection).
    ///
    /// A connect timeout of `connection_timeout` applies unless the URL sets `connect_timeout`.
    ///
    /// # Errors
    /// [`PoolError::Setting`] for a bad URL or setting, [`PoolError::Register`] when a metric
    /// is already registered under this `pool_name`, [`PoolError::Connect`] (naming
    /// `host:port`) when the server cannot be reached.
    pub async fn build(self, registry: &Registry) -> Result<PgPool, PoolError> {
        let settings = self.settings;
        settings.validate()?;
        let pool_name = settings.pool_name.as_str();
        let mut config: Config = self.url.parse().map_err(|e: tokio_postgres::Error| {
            PoolError::setting(pool_name, "url", describe(&e))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(settings.connection_timeout);
        }
        let target = render_target(&config);
        let (host, port) = first_host(&config);
        let namespace = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
            .to_owned();

        let metrics = PgMetrics::new(registry, pool_name)?;
        let connect = Arc::new(ConnectMetrics::new(
            registry,
            pool_name,
            metrics.connection_errors.clone(),
        )?);
        let manager = PgManager {
            inner: PostgresConnectionManager::new(config, NoTls),
            connect: Arc::clone(&connect),
        };
        let pool = Arc::new(settings.bb8().build_unchecked(manager));
        let adopted = StateCollector::register(
            registry,
            pool_name,
            settings.max_size,
            Arc::downgrade(&pool) as Weak<dyn PoolState>,
        )?;

        if settings.connect_at_build {
            let first = pool
                .dedicated_connection()
                .await
                .map_err(|e| PoolError::Connect {
                    pool_name: pool_name.to_owned(),
                    target: target.clone(),
                    message: describe(&e),
                })?;
            // Full only if min_idle filled the pool meanwhile; then the extra connection closes.
            if pool.add(first).is_ok() {
                adopted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }

        let shared = PgShared {
            target,
            host,
            port,
            namespace,
            slow_query_threshold: self.slow_query_threshold,
            statement_cache_capacity: self.statement_cache_capacity,
            metrics,
            connect,
            settings,
        };
        Ok(PgPool {
            pool,
            shared: Arc::new(shared),
        })
    }
}

/// An instrumented bb8 pool of PostgreSQL connections (tokio-postgres, no TLS).
///
/// Cheap to clone (two `Arc`s). Every statement run through it — [`query`](Self::query),
/// [`query_one`](Self::query_one), [`query_opt`](Self::query_opt), [`execute`](Self::execute),
/// [`PgConnection::prepare_cached`] and [`PgConnection::transaction`] — is measured and traced;
/// see the [module docs](super) for the metrics and span.
#[derive(Clone)]
pub struct PgPool {
    pool: Arc<bb8::Pool<PgManager>>,
    pub(crate) shared: Arc<PgShared>,
}

impl PgPool {
    /// A builder for a pool of connections to `url` (a `postgres://` URL or a key-value
    /// connection string; parsed when the pool is built).
    pub fn builder(url: impl Into<String>) -> PgPoolBuilder {
        PgPoolBuilder {
            url: url.into(),
            settings: Settings::default(),
            slow_query_threshold: DEFAULT_SLOW_QUERY_THRESHOLD,
            statement_cache_capacity: DEFAULT_STATEMENT_CACHE_CAPACITY,
        }
    }

    /// Checks a connection out, recording the wait in `db_client_connection_wait_time_seconds`.
    ///
    /// # Errors
    /// [`PoolError::Timeout`] when none is available within the connection timeout (counted in
    /// `db_client_connection_timeouts_total`; the message includes the last connection error,
    /// if the pool could not connect).
    pub async fn get(&self) -> Result<PgConnection, PoolError> {
        let conn = common::checkout(
            &self.pool,
            &self.shared.connect,
            &self.shared.settings,
            &self.shared.target,
        )
        .await?;
        Ok(PgConnection::new(conn, Arc::clone(&self.shared)))
    }

    /// Checks a connection out and runs [`PgConnection::query`] on it.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PoolError> {
        self.get().await?.query(sql, params).await
    }

    /// Checks a connection out and runs [`PgConnection::query_one`] on it.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PoolError> {
        self.get().await?.query_one(sql, params).await
    }

    /// Checks a connection out and runs [`PgConnection::query_opt`] on it.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PoolError> {
        self.get().await?.query_opt(sql, params).await
    }

    /// Checks a connection out and runs [`PgConnection::execute`] on it.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PoolError> {
        self.get().await?.execute(sql, params).await
    }

    /// bb8's view of the pool: connections, idle connections and statistics.
    pub fn state(&self) -> bb8::State {
        self.pool.state()
    }

    /// The `pool_name` label.
    pub fn pool_name(&self) -> &str {
        &self.shared.settings.pool_name
    }

    /// `host:port` of the server (comma-separated for several hosts); never credentials.
    pub fn target(&self) -> &str {
        &self.shared.target
    }
}

impl fmt::Debug for PgPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPool")
            .field("pool_name", &self.shared.settings.pool_name)
            .field("target", &self.shared.target)
            .field("state", &self.pool.state())
            .finish_non_exhaustive()
    }
}

/// `host:port` for each host, comma-separated; never the user or password.
fn render_target(config: &Config) -> String {
    let ports = config.get_ports();
    let targets: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(path) => format!("{}/.s.PGSQL.{port}", path.display()),
            }
        })
        .collect();
    if targets.is_empty() {
        "localhost:5432".to_owned()
    } else {
        targets.join(",")
    }
}

/// `server.address` and `server.port` of the first host.
fn first_host(config: &Config) -> (String, i64) {
    let port = i64::from(config.get_ports().first().copied().unwrap_or(5432));
    match config.get_hosts().first() {
        Some(Host::Tcp(name)) => (name.clone(), port),
        #[cfg(unix)]
        Some(Host::Unix(path)) => (path.display().to_string(), port),
        None => ("localhost".to_owned(), port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_never_shows_credentials() {
        let config: Config = "postgres://app:s3cret@db.internal:6543/app"
            .parse()
            .unwrap();
        assert_eq!(render_target(&config), "db.internal:6543");
        assert_eq!(first_host(&config), ("db.internal".to_owned(), 6543));
    }

    #[tokio::test]
    async fn bad_settings_are_typed_errors_naming_the_setting() {
        let registry = Registry::new();
        let err = PgPool::builder("postgres://u:s3cret@127.0.0.1:notaport/db")
            .build(&registry)
            .await
            .unwrap_err();
        assert!(
            matches!(err, PoolError::Setting { setting: "url", .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("s3cret"));

        let err = PgPool::builder("postgres://127.0.0.1/db")
            .max_size(2)
            .min_idle(3)
            .build(&registry)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                PoolError::Setting {
                    setting: "min_idle",
                    ..
                }
            ),
            "{err}"
        );
        let err = PgPool::builder("postgres://127.0.0.1/db")
            .max_size(0)
            .build(&registry)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                PoolError::Setting {
                    setting: "max_size",
                    ..
                }
            ),
            "{err}"
        );
    }
}
