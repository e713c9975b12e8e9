//! The error of every pool operation.

use std::time::Duration;

/// An error building a pool, checking out a connection, or running a query or command.
///
/// Build-time errors ([`Setting`](Self::Setting), [`Register`](Self::Register),
/// [`Connect`](Self::Connect)) name the setting, metric or target (`host:port`, never the
/// password). Database and Redis errors are passed through intact: [`code`](Self::code) gives a
/// PostgreSQL error's SQLSTATE.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool setting is invalid (the URL, a size or a duration).
    #[error("pool `{pool_name}`: `{setting}` {problem}")]
    Setting {
        /// The pool's `pool_name`.
        pool_name: String,
        /// The setting's name, as in the builder method.
        setting: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Registering a metric family failed (most often: the registry already has it).
    #[error("pool `{pool_name}`: cannot register metric `{name}`: {source}")]
    Register {
        /// The pool's `pool_name`.
        pool_name: String,
        /// The metric family.
        name: &'static str,
        /// The registry's error.
        #[source]
        source: prometheus::Error,
    },
    /// A connection could not be opened.
    #[error("pool `{pool_name}`: cannot connect to {target}: {message}")]
    Connect {
        /// The pool's `pool_name`.
        pool_name: String,
        /// `host:port` of the server (never credentials).
        target: String,
        /// The driver's error, with its causes.
        message: String,
    },
    /// No connection became available within the pool's connection timeout.
    #[error(
        "pool `{pool_name}`: timed out after {timeout:?} waiting for a connection to {target}{}",
        last_error.as_deref().map(|e| format!(" (last connection error: {e})")).unwrap_or_default()
    )]
    Timeout {
        /// The pool's `pool_name`.
        pool_name: String,
        /// `host:port` of the server.
        target: String,
        /// The configured connection timeout.
        timeout: Duration,
        /// The last error seen while opening a connection, if the pool could not connect.
        last_error: Option<String>,
    },
    /// PostgreSQL returned an error (or the connection failed during a query).
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// Redis returned an error (or the connection failed during a command).
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

impl PoolError {
    /// `true` for [`Timeout`](Self::Timeout): no connection was available in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// The SQLSTATE of a PostgreSQL error (for example `40P01` for a deadlock).
    #[cfg(feature = "postgres")]
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            Self::Postgres(error) => error.code(),
            _ => None,
        }
    }

    pub(crate) fn setting(
        pool_name: &str,
        setting: &'static str,
        problem: impl Into<String>,
    ) -> Self {
        Self::Setting {
            pool_name: pool_name.to_owned(),
            setting,
            problem: problem.into(),
        }
    }
}

/// An error and its sources, `: `-separated (drivers' `Display` often shows only the first).
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
