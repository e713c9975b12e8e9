//! An instrumented bb8-postgres pool: pool metrics, statement metrics and CLIENT spans.
//!
//! # Example
//!
//! ```
//! use covet_pools::PgPool;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let url = std::env::var("DATABASE_URL")
//! #     .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
//! let registry = prometheus::Registry::new();
//! let pool = PgPool::builder(url).pool_name("primary").build(&registry).await?;
//!
//! // Several statements on one connection, one of them in a transaction.
//! let mut conn = pool.get().await?;
//! conn.execute("CREATE TEMP TABLE items (id int)", &[]).await?;
//! let mut tx = conn.transaction().await?;
//! let inserted = tx.execute("INSERT INTO items VALUES (1), (2)", &[]).await?;
//! tx.commit().await?;
//! assert_eq!(inserted, 2);
//!
//! // A failed statement keeps its SQLSTATE.
//! let err = conn.execute("SELECT * FROM no_such_table", &[]).await.unwrap_err();
//! assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE));
//! drop(conn);
//!
//! let mut text = Vec::new();
//! prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut text)?;
//! assert!(String::from_utf8(text)?.contains("db_transactions_total{outcome=\"commit\",pool_name=\"primary\"} 1\n"));
//! # Ok(())
//! # }
//! ```
mod connection;
mod metrics;
mod pool;
mod sql;

pub use connection::{PgConnection, PgTransaction};
pub use metrics::{ROWS_BUCKETS, TRANSACTION_DURATION_BUCKETS};
pub use pool::{
    DEFAULT_KEEPALIVES_IDLE, DEFAULT_KEEPALIVES_INTERVAL, DEFAULT_KEEPALIVES_RETRIES,
    DEFAULT_SLOW_QUERY_THRESHOLD, DEFAULT_STATEMENT_CACHE_CAPACITY, DEFAULT_TCP_USER_TIMEOUT,
    DEFAULT_VALIDATION_TIMEOUT, PgPool, PgPoolBuilder,
};
pub use tokio_postgres;
