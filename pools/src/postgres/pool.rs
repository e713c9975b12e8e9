//! `PgPool` and its builder.

#[cfg(feature = "tls")]
use std::path::PathBuf;
use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Weak},
    time::Duration,
};

use bb8::ManageConnection;
use bb8_postgres::PostgresConnectionManager;
use prometheus::Registry;
#[cfg(not(feature = "tls"))]
use tokio_postgres::NoTls;
use tokio_postgres::{Client, Config, Row, Statement, config::Host, types::ToSql};

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
/// The default limit on a connection's validity check at checkout: 1 second.
pub const DEFAULT_VALIDATION_TIMEOUT: Duration = Duration::from_secs(1);
/// The TCP keep-alive idle time set on connections whose URL does not set `keepalives_idle`:
/// 30 seconds (tokio-postgres' own default is 2 hours).
pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
/// The TCP keep-alive probe interval set unless the URL sets `keepalives_interval`: 10 seconds.
pub const DEFAULT_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(10);
/// The unanswered keep-alive probes before a connection counts as dead: 3.
pub const DEFAULT_KEEPALIVES_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection counts as dead
/// (`TCP_USER_TIMEOUT`, Linux), unless the URL sets `tcp_user_timeout`: 30 seconds.
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// tokio-postgres' default keep-alive idle time, which means the URL did not set one.
const TOKIO_POSTGRES_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// The connector: rustls with the `tls` feature, none without.
#[cfg(feature = "tls")]
type Tls = covet_tls::postgres::MakeRustlsConnect;
#[cfg(not(feature = "tls"))]
type Tls = NoTls;

/// A pooled PostgreSQL connection: the client and its prepared-statement cache.
pub(crate) struct PgConn {
    pub(crate) client: Client,
    pub(crate) statements: HashMap<String, Statement>,
}

/// Why the pool could not hand out a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgManagerError {
    /// Connecting, or the validity check, failed.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// The validity check got no answer in time: the connection is dead (a peer that vanished
    /// without a reset, a stalled network path) and is replaced.
    #[error("the connection did not answer its validity check within {0:?}")]
    ValidationTimeout(Duration),
}

/// bb8-postgres's manager, timed and counted, with a bounded validity check.
pub(crate) struct PgManager {
    inner: PostgresConnectionManager<Tls>,
    connect: Arc<ConnectMetrics>,
    validation_timeout: Duration,
}

impl ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = PgManagerError;

    async fn connect(&self) -> Result<PgConn, PgManagerError> {
        let client = self.connect.connect(self.inner.connect()).await?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
        })
    }

    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), PgManagerError> {
        match tokio::time::timeout(
            self.validation_timeout,
            self.inner.is_valid(&mut conn.client),
        )
        .await
        {
            Ok(result) => Ok(result?),
            Err(_) => Err(PgManagerError::ValidationTimeout(self.validation_timeout)),
        }
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
    validation_timeout: Duration,
    #[cfg(feature = "tls")]
    ca_file: Option<PathBuf>,
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

    /// The longest a connection's validity check at checkout (an empty query) may take. A
    /// connection that does not answer in time is dead — its server or network path went away
    /// without a reset — and is dropped; the checkout goes on with another connection or a new
    /// one. Keep it below the connection timeout.
    ///
    /// Defaults to [`DEFAULT_VALIDATION_TIMEOUT`] (1 s).
    pub fn validation_timeout(mut self, timeout: Duration) -> Self {
        self.validation_timeout = timeout;
        self
    }

    /// The PEM file of the CA that signed the server's certificate (a private CA, or a cloud
    /// provider's bundle such as RDS's `global-bundle.pem`), for `sslmode=verify-ca`,
    /// `verify-full` and `require`; the URL's `sslrootcert` wins over it.
    ///
    /// Without one, the verifying modes trust the system's roots. Read when the pool is built:
    /// an unreadable file is a [`PoolError::Setting`] naming `ca_file`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
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
        #[cfg(feature = "tls")]
        let (mut config, tls) =
            covet_tls::postgres::connect_config(&self.url, self.ca_file.as_deref())
                .map_err(|e| match e {
                    covet_tls::TlsError::Postgres(e) => {
                        PoolError::setting(pool_name, "url", describe(&e))
                    }
                    other => PoolError::setting(pool_name, other.setting(), other.to_string()),
                })?
                .into_parts();
        #[cfg(not(feature = "tls"))]
        let (mut config, tls) = (without_tls(&self.url, pool_name)?, NoTls);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(settings.connection_timeout);
        }
        // A server or path that vanishes without a reset is found by TCP itself, unless the URL
        // chose otherwise: keep-alive probes on an idle connection, and a bound on unacknowledged
        // data on a busy one.
        if config.get_keepalives() && config.get_keepalives_idle() == TOKIO_POSTGRES_KEEPALIVES_IDLE
        {
            config.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(DEFAULT_KEEPALIVES_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(DEFAULT_KEEPALIVES_RETRIES);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
        }
        if self.validation_timeout.is_zero() {
            return Err(PoolError::setting(
                pool_name,
                "validation_timeout",
                "must be longer than 0",
            ));
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
            inner: PostgresConnectionManager::new(config, tls),
            connect: Arc::clone(&connect),
            validation_timeout: self.validation_timeout,
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

/// A URL parsed for a pool without TLS: one that asks for TLS is refused, naming the feature.
#[cfg(not(feature = "tls"))]
fn without_tls(url: &str, pool_name: &str) -> Result<Config, PoolError> {
    const NEEDS_TLS: &str = "TLS (sslmode=require, verify-ca, verify-full or sslrootcert) needs covet-pools' `tls` feature";
    let config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
        // tokio-postgres does not know verify-ca / verify-full, nor sslrootcert.
        let message = describe(&e);
        if message.contains("sslmode") || message.contains("sslrootcert") {
            PoolError::setting(pool_name, "url", format!("{message}: {NEEDS_TLS}"))
        } else {
            PoolError::setting(pool_name, "url", message)
        }
    })?;
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err(PoolError::setting(pool_name, "url", NEEDS_TLS));
    }
    Ok(config)
}

/// An instrumented bb8 pool of PostgreSQL connections (tokio-postgres; rustls with the `tls`
/// feature, honouring libpq's `sslmode`).
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
            validation_timeout: DEFAULT_VALIDATION_TIMEOUT,
            #[cfg(feature = "tls")]
            ca_file: None,
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
