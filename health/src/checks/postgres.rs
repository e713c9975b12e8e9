//! `SELECT 1` against PostgreSQL.

#[cfg(feature = "tls")]
use std::path::Path;
use std::{fmt, future::Future, ops::Deref, sync::Arc, time::Duration};

#[cfg(not(feature = "tls"))]
use tokio_postgres::NoTls;
use tokio_postgres::{Client, Config, config::Host};

use super::CheckConfigError;
use crate::{Health, HealthCheck, check::BoxFuture};

type RunQuery = dyn Fn(Arc<str>) -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// `UP` when a validation query (`SELECT 1` by default) succeeds on a connection from a factory.
///
/// Details: `database` (`"PostgreSQL"`), `target` (`host:port`, when built from a URL or
/// config) and, when failing, `error`.
///
/// ```no_run
/// use std::sync::Arc;
/// use covet_health::{HealthRegistry, checks::PostgresCheck};
///
/// # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
/// // Connect afresh on every run (at most once per cache TTL), with a 1 s connect timeout.
/// let by_url = PostgresCheck::from_url("postgres://app:secret@db:5432/app")?;
///
/// // Or use a connection you already have (or a pool: any factory whose connection
/// // dereferences to a `tokio_postgres::Client`, such as `bb8::Pool::get_owned`).
/// let (client, connection) =
///     tokio_postgres::connect("host=db user=app", tokio_postgres::NoTls).await?;
/// tokio::spawn(connection);
/// let client = Arc::new(client);
/// let shared = PostgresCheck::new(move || {
///     let client = Arc::clone(&client);
///     async move { Ok::<_, std::convert::Infallible>(client) }
/// });
///
/// let registry = HealthRegistry::builder()
///     .readiness("db", by_url)
///     .readiness("db-shared", shared)
///     .build()?;
/// # let _ = registry;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresCheck {
    probe: Arc<RunQuery>,
    query: Arc<str>,
    target: Option<Arc<str>>,
}

impl PostgresCheck {
    /// The default connect timeout of [`from_url`](Self::from_url) and
    /// [`from_config`](Self::from_config) when the configuration has none: 1 second.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A check that takes a connection from `connect` on every run and runs the query on it.
    ///
    /// The connection is dropped after the query (returned to its pool, for a pooled one).
    pub fn new<F, Fut, C, E>(connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C, E>> + Send + 'static,
        C: Deref<Target = Client> + Send + Sync + 'static,
        E: fmt::Display + Send + 'static,
    {
        let probe = move |query: Arc<str>| -> BoxFuture<'static, Result<(), String>> {
            let connecting = connect();
            Box::pin(async move {
                let connection = connecting.await.map_err(|e| e.to_string())?;
                connection
                    .simple_query(&query)
                    .await
                    .map(drop)
                    .map_err(|e| describe(&e))
            })
        };
        Self {
            probe: Arc::new(probe),
            query: Arc::from("SELECT 1"),
            target: None,
        }
    }

    /// A check that connects with a PostgreSQL URL or key-value connection string on every
    /// run, with a connect timeout of [`DEFAULT_CONNECT_TIMEOUT`](Self::DEFAULT_CONNECT_TIMEOUT)
    /// unless the string sets `connect_timeout`.
    ///
    /// With the `tls` feature, libpq's `sslmode` (`require`, `verify-ca`, `verify-full`) and
    /// `sslrootcert` are honoured (see covet-tls); without it, a string that asks for TLS is
    /// a [`CheckConfigError::Tls`].
    pub fn from_url(url: &str) -> Result<Self, CheckConfigError> {
        #[cfg(feature = "tls")]
        {
            let (config, tls) = covet_tls::postgres::connect_config(url, None)?.into_parts();
            Ok(Self::connecting(config, tls))
        }
        #[cfg(not(feature = "tls"))]
        {
            let config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
                let text = e.to_string();
                if text.contains("sslmode") || text.contains("sslrootcert") {
                    needs_tls()
                } else {
                    CheckConfigError::Postgres(e)
                }
            })?;
            if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
                return Err(needs_tls());
            }
            Ok(Self::connecting(config, NoTls))
        }
    }

    /// Like [`from_url`](Self::from_url), trusting the CA certificates of the PEM file
    /// `ca_file` for `sslmode=require`, `verify-ca` and `verify-full` (the URL's
    /// `sslrootcert` wins over it).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn from_url_with_ca_file(url: &str, ca_file: &Path) -> Result<Self, CheckConfigError> {
        let (config, tls) = covet_tls::postgres::connect_config(url, Some(ca_file))?.into_parts();
        Ok(Self::connecting(config, tls))
    }

    /// Like [`from_url`](Self::from_url), from a parsed configuration: its `ssl_mode`
    /// (`prefer` or `require`) encrypts without checking the certificate, as libpq without a CA
    /// file; use [`from_url`](Self::from_url) for the verifying modes. Without the `tls`
    /// feature the connection is never encrypted.
    pub fn from_config(config: Config) -> Self {
        #[cfg(feature = "tls")]
        let tls = {
            use tokio_postgres::config::SslMode as PgSslMode;
            let mode = match config.get_ssl_mode() {
                PgSslMode::Disable => covet_tls::SslMode::Disable,
                PgSslMode::Require => covet_tls::SslMode::Require,
                _ => covet_tls::SslMode::Prefer,
            };
            // Without a CA file no roots are read, so this cannot fail.
            covet_tls::postgres::connector(mode, None)
                .expect("a connector that checks no certificate needs no roots")
        };
        #[cfg(not(feature = "tls"))]
        let tls = NoTls;
        Self::connecting(config, tls)
    }

    /// A check that connects with `config` and `tls` on every run.
    fn connecting<T>(mut config: Config, tls: T) -> Self
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>
            + Clone
            + Send
            + Sync
            + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Self::DEFAULT_CONNECT_TIMEOUT);
        }
        let target = render_target(&config);
        let config = Arc::new(config);
        let mut check = Self::new(move || {
            let config = Arc::clone(&config);
            let tls = tls.clone();
            async move {
                let (client, connection) = config.connect(tls).await.map_err(|e| describe(&e))?;
                tokio::spawn(async move {
                    // Ends when the client is dropped; its errors surface through the client.
                    let _ = connection.await;
                });
                Ok::<_, String>(Box::new(client))
            }
        });
        check.target = target.map(Arc::from);
        check
    }

    /// The validation query, run with the simple-query protocol.
    ///
    /// Defaults to `SELECT 1`.
    pub fn query(mut self, query: &str) -> Self {
        self.query = Arc::from(query);
        self
    }

    /// Names the target in the details (for example `db.internal:5432`). Set automatically by
    /// [`from_url`](Self::from_url); never put credentials here.
    pub fn target(mut self, target: &str) -> Self {
        self.target = Some(Arc::from(target));
        self
    }
}

/// The error for a connection string that asks for TLS in a build without it.
#[cfg(not(feature = "tls"))]
fn needs_tls() -> CheckConfigError {
    CheckConfigError::Tls {
        setting: "url",
        message: "sslmode=require, verify-ca, verify-full or sslrootcert needs covet-health's `tls` feature".into(),
    }
}

/// The error and its sources, `: `-separated (tokio-postgres's `Display` shows only the first).
fn describe(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `host:port` for each host, comma-separated; never the user or password.
fn render_target(config: &Config) -> Option<String> {
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
    (!targets.is_empty()).then(|| targets.join(","))
}

impl HealthCheck for PostgresCheck {
    async fn check(&self) -> Health {
        let result = (self.probe)(Arc::clone(&self.query)).await;
        let mut health = match result {
            Ok(()) => Health::up(),
            Err(error) => Health::from_error(error),
        };
        let details = health.details_mut();
        details.insert("database".into(), "PostgreSQL".into());
        if let Some(target) = &self.target {
            details.insert("target".into(), target.to_string().into());
        }
        health
    }
}

impl fmt::Debug for PostgresCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresCheck")
            .field("query", &self.query)
            .field("target", &self.target)
            .finish_non_exhaustive()
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
        assert_eq!(render_target(&config).as_deref(), Some("db.internal:6543"));
        let config: Config = "host=a,b port=1,2 user=u password=s3cret".parse().unwrap();
        assert_eq!(render_target(&config).as_deref(), Some("a:1,b:2"));
    }

    #[test]
    fn a_bad_url_is_a_typed_error_without_the_url() {
        let err = PostgresCheck::from_url("postgres://u:s3cret@host:notaport/db").unwrap_err();
        assert!(matches!(err, CheckConfigError::Postgres(_)));
        assert!(!err.to_string().contains("s3cret"));
    }
}
