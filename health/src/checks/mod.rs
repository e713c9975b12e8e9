//! Built-in checks: PostgreSQL, Redis, disk space and memory.
//!
//! | check | feature | `UP` when |
//! |---|---|---|
//! | [`PostgresCheck`] | `postgres` | `SELECT 1` succeeds through a connection factory or a URL |
//! | [`RedisCheck`] | `redis` | `PING` answers `PONG` through a connection factory or a URL |
//! | [`DiskSpaceCheck`] | `system` | the file system holding a path has enough free space |
//! | [`MemoryCheck`] | `system` | process RSS is under, or host available memory over, a threshold |
//!
//! The PostgreSQL and Redis checks are dependency checks: register them for readiness (and
//! perhaps startup), never for liveness. Their details name the target as `host:port` only,
//! never the user or password of a URL.
//!
//! They take a *connection factory* so that any pool fits: a closure returning a future of a
//! connection (anything that dereferences to a `tokio_postgres::Client`, or mutably to a Redis
//! `ConnectionLike`, such as a bb8 `PooledConnection`). The `from_url` constructors connect
//! afresh on every run, with a connect timeout.

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresCheck;

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisCheck;

#[cfg(feature = "system")]
mod disk;
#[cfg(feature = "system")]
#[cfg_attr(docsrs, doc(cfg(feature = "system")))]
pub use disk::DiskSpaceCheck;

#[cfg(feature = "system")]
mod memory;
#[cfg(feature = "system")]
#[cfg_attr(docsrs, doc(cfg(feature = "system")))]
pub use memory::MemoryCheck;

/// A built-in check could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckConfigError {
    /// The PostgreSQL connection string did not parse. (The string itself is never included.)
    #[cfg(feature = "postgres")]
    #[error("invalid PostgreSQL connection string")]
    Postgres(#[source] tokio_postgres::Error),
    /// The Redis URL did not parse. (The URL itself is never included.)
    #[cfg(feature = "redis")]
    #[error("invalid Redis URL")]
    Redis(#[source] ::redis::RedisError),
    /// TLS was asked for and cannot be set up: an `sslmode` libpq does not know, an unusable
    /// CA file, a `rediss://` URL or TLS `sslmode` without the `tls` feature.
    #[cfg(any(feature = "postgres", feature = "redis"))]
    #[error("TLS ({setting}): {message}")]
    Tls {
        /// The setting at fault: `url` or `ca_file`.
        setting: &'static str,
        /// What is wrong (never the password).
        message: String,
    },
}

#[cfg(all(feature = "tls", any(feature = "postgres", feature = "redis")))]
impl From<covet_tls::TlsError> for CheckConfigError {
    fn from(error: covet_tls::TlsError) -> Self {
        match error {
            // A URL that does not parse is the same error with or without TLS.
            #[cfg(feature = "postgres")]
            covet_tls::TlsError::Postgres(e) => Self::Postgres(e),
            #[cfg(feature = "redis")]
            covet_tls::TlsError::Redis(e) => Self::Redis(e),
            other => Self::Tls {
                setting: other.setting(),
                message: other.to_string(),
            },
        }
    }
}
