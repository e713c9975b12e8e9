//! `PING` against Redis.

#[cfg(feature = "tls")]
use std::path::Path;
use std::{fmt, future::Future, ops::DerefMut, sync::Arc, time::Duration};

use redis::{AsyncConnectionConfig, Client, aio::ConnectionLike};

use super::CheckConfigError;
use crate::{Health, HealthCheck, check::BoxFuture};

type Ping = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// `UP` when `PING` answers `PONG` on a connection from a factory.
///
/// Details: `target` (`host:port`, when built from a URL) and, when failing, `error`.
///
/// ```no_run
/// use covet_health::{HealthRegistry, checks::RedisCheck};
///
/// # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
/// // Connect afresh on every run (at most once per cache TTL), with a 1 s connect timeout.
/// let by_url = RedisCheck::from_url("redis://:secret@cache:6379")?;
///
/// // Or share a multiplexed connection (or a pool: any factory whose connection dereferences
/// // mutably to a `ConnectionLike`, such as bb8-redis's `Pool::get_owned`).
/// let connection = redis::Client::open("redis://cache:6379")?
///     .get_multiplexed_async_connection()
///     .await?;
/// let shared = RedisCheck::new(move || {
///     let connection = connection.clone();
///     async move { Ok::<_, std::convert::Infallible>(Box::new(connection)) }
/// });
///
/// let registry = HealthRegistry::builder()
///     .readiness("cache", by_url)
///     .readiness("cache-shared", shared)
///     .build()?;
/// # let _ = registry;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisCheck {
    probe: Arc<Ping>,
    target: Option<Arc<str>>,
}

impl RedisCheck {
    /// The connect (and response) timeout of [`from_url`](Self::from_url): 1 second.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A check that takes a connection from `connect` on every run and sends `PING` on it.
    pub fn new<F, Fut, C, T, E>(connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C, E>> + Send + 'static,
        C: DerefMut<Target = T> + Send + 'static,
        T: ConnectionLike + Send,
        E: fmt::Display + Send + 'static,
    {
        let probe = move || -> BoxFuture<'static, Result<(), String>> {
            let connecting = connect();
            Box::pin(async move {
                let mut connection = connecting.await.map_err(|e| e.to_string())?;
                let pong: String = redis::cmd("PING")
                    .query_async(&mut *connection)
                    .await
                    .map_err(|e| e.to_string())?;
                if pong == "PONG" {
                    Ok(())
                } else {
                    Err(format!("unexpected PING reply {pong:?}"))
                }
            })
        };
        Self {
            probe: Arc::new(probe),
            target: None,
        }
    }

    /// A check that connects with a Redis URL on every run, with
    /// [`DEFAULT_CONNECT_TIMEOUT`](Self::DEFAULT_CONNECT_TIMEOUT).
    ///
    /// `rediss://` (TLS, verified against the system's roots) needs the `tls` feature; without
    /// it, such a URL is a [`CheckConfigError::Tls`].
    pub fn from_url(url: &str) -> Result<Self, CheckConfigError> {
        #[cfg(feature = "tls")]
        let client = covet_tls::redis::client(url, None)?;
        #[cfg(not(feature = "tls"))]
        let client = Client::open(url).map_err(|e| {
            if url.starts_with("rediss://") {
                CheckConfigError::Tls {
                    setting: "url",
                    message: "rediss:// needs covet-health's `tls` feature".into(),
                }
            } else {
                CheckConfigError::Redis(e)
            }
        })?;
        Ok(Self::from_client(client))
    }

    /// Like [`from_url`](Self::from_url) for a `rediss://` URL whose server's certificate
    /// chains up to the CA certificates of the PEM file `ca_file`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn from_url_with_ca_file(url: &str, ca_file: &Path) -> Result<Self, CheckConfigError> {
        Ok(Self::from_client(covet_tls::redis::client(
            url,
            Some(ca_file),
        )?))
    }

    /// Like [`from_url`](Self::from_url), from a `redis::Client`.
    pub fn from_client(client: Client) -> Self {
        let target = client.get_connection_info().addr().to_string();
        let client = Arc::new(client);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Self::DEFAULT_CONNECT_TIMEOUT))
            .set_response_timeout(Some(Self::DEFAULT_CONNECT_TIMEOUT));
        let mut check = Self::new(move || {
            let client = Arc::clone(&client);
            let config = config.clone();
            async move {
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Box::new)
            }
        });
        check.target = Some(Arc::from(target));
        check
    }

    /// Names the target in the details (for example `cache.internal:6379`). Set automatically by
    /// [`from_url`](Self::from_url); never put credentials here.
    pub fn target(mut self, target: &str) -> Self {
        self.target = Some(Arc::from(target));
        self
    }
}

impl HealthCheck for RedisCheck {
    async fn check(&self) -> Health {
        let mut health = match (self.probe)().await {
            Ok(()) => Health::up(),
            Err(error) => Health::from_error(error),
        };
        if let Some(target) = &self.target {
            health
                .details_mut()
                .insert("target".into(), target.to_string().into());
        }
        health
    }
}

impl fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCheck")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_never_shows_credentials() {
        let check = RedisCheck::from_url("redis://user:s3cret@cache.internal:6380/2").unwrap();
        assert_eq!(check.target.as_deref(), Some("cache.internal:6380"));
        assert!(!format!("{check:?}").contains("s3cret"));
    }

    #[test]
    fn a_bad_url_is_a_typed_error() {
        let err = RedisCheck::from_url("http://nope").unwrap_err();
        assert!(matches!(err, CheckConfigError::Redis(_)));
    }
}
