//! Instrumented bb8 connection pools for PostgreSQL and Redis: every call measured, traced and
//! safe.
//!
//! # Example
//!
//! ```
//! use covet_pools::{PgPool, RedisPool};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let database_url = std::env::var("DATABASE_URL")
//! #     .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
//! # let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
//! let registry = prometheus::Registry::new();
//! let db = PgPool::builder(database_url)
//!     .pool_name("primary")
//!     .max_size(16)
//!     .connection_timeout(Duration::from_secs(2))
//!     .slow_query_threshold(Duration::from_millis(250))
//!     .build(&registry)
//!     .await?;
//! let cache = RedisPool::builder(redis_url).pool_name("cache").build(&registry).await?;
//!
//! let row = db.query_one("SELECT $1::int + 1", &[&41_i32]).await?;
//! assert_eq!(row.get::<_, i32>(0), 42);
//! let cached: Option<String> = cache.get("covet-pools:doc:absent").await?;
//! assert_eq!(cached, None);
//!
//! // Serve `registry` on /metrics (covet-layers' `MetricsService`); here, read it directly.
//! let mut text = Vec::new();
//! prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut text)?;
//! let text = String::from_utf8(text)?;
//! assert!(text.contains(r#"db_queries_total{operation="SELECT",pool_name="primary"} 1"#));
//! assert!(text.contains("cache_misses_total 1"));
//! # Ok(())
//! # }
//! ```
//!
//! # What is measured
//!
//! Every family is registered into the [`prometheus::Registry`] passed to `build`; names follow
//! covet's `METRICS.md`. Pool families carry a `pool_name` label.
//!
//! - **Pool** (both kinds), read from bb8's `State` on scrape, no background task:
//!   `db_client_connections{state="idle"|"used"}`, `db_connections_active`,
//!   `db_connections_idle`, `db_connection_pool_size`, `db_client_connection_max`,
//!   `db_client_connection_pending_requests` (the seed's pool overflow),
//!   `db_client_connection_timeouts_total`, `db_client_connections_created_total`,
//!   `db_client_connections_closed_total{reason}` (bb8's cumulative statistics as monotonic
//!   counters). Recorded as they happen: `db_client_connection_wait_time_seconds` (every
//!   checkout, timed-out ones included), `db_client_connection_use_time_seconds` (checkout to
//!   return), `db_client_connection_create_time_seconds`.
//! - **PostgreSQL** ([`PgPool`]): `db_queries_total{operation}`,
//!   `db_query_duration_seconds{operation}`, `db_rows_affected{operation}`,
//!   `db_query_errors_total{sqlstate_class}`, `db_deadlocks_total` (40P01),
//!   `db_slow_queries_total` (plus one WARN log naming the statement summary, never its text or
//!   parameters), `db_transactions_total{outcome}`, `db_transaction_duration_seconds`,
//!   `db_statement_cache_hits_total` / `_misses_total`, `db_connection_errors_total`.
//!   `operation` is the SQL verb (`SELECT` … or `_OTHER`), never the statement.
//! - **Redis** ([`RedisPool`]): `cache_hits_total` / `cache_misses_total` (GET and each MGET
//!   key), `cache_operation_duration_seconds{command}`, `cache_connection_errors_total`,
//!   `cache_ttl_seconds`; and from `INFO` / `DBSIZE`, read on scrape at most once per interval:
//!   `cache_evictions_total`, `cache_memory_used_bytes`, `cache_keys`. The hit ratio is the
//!   recording rule `job:cache_hit:ratio_rate5m`.
//! - **Both**: OpenTelemetry's `db_client_operation_duration_seconds{db_system_name,
//!   db_operation_name, error_type}` (`error_type` empty on success).
//!
//! # Spans
//!
//! Each statement or command runs in an INFO `tracing` span that tracing-opentelemetry exports
//! as a CLIENT span, child of the current (request) span: named by the statement summary
//! (`SELECT users`) or the Redis command (`GET`), with `db.system.name` (`postgresql`,
//! `redis`), `db.operation.name`, `db.namespace`, `server.address`, `server.port`, and
//! `error.type` plus an error status when it fails.
//!
//! # Features
//!
//! `postgres` and `redis` (default) select the pools; `health` adds `health_check()` to each
//! pool, a covet-health check that runs on a pooled connection; `tls` speaks TLS (rustls,
//! through covet-tls): libpq's `sslmode` and `sslrootcert` in the PostgreSQL URL, `rediss://`
//! for Redis, and [`PgPoolBuilder::ca_file`](postgres::PgPoolBuilder) /
//! `RedisPoolBuilder::ca_file` for a private CA or a cloud provider's bundle. Without `tls`,
//! a URL that asks for TLS is a [`PoolError::Setting`] naming the feature.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg_attr(
    not(any(feature = "postgres", feature = "redis")),
    allow(dead_code, unused_macros, unused_imports)
)]
mod common;
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
mod error;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(feature = "health")]
mod health;

#[cfg(feature = "redis")]
pub use crate::redis::{RedisConnection, RedisPool, RedisPoolBuilder};
pub use common::{
    CREATE_TIME_BUCKETS, DEFAULT_POOL_NAME, OPERATION_DURATION_BUCKETS, USE_TIME_BUCKETS,
    WAIT_TIME_BUCKETS,
};
pub use error::PoolError;
#[cfg(feature = "postgres")]
pub use postgres::{PgConnection, PgPool, PgPoolBuilder, PgTransaction};
