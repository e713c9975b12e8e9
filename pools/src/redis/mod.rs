//! An instrumented bb8-redis pool: typed commands with cache metrics, server figures, spans.
//!
//! # Example
//!
//! ```
//! use covet_pools::RedisPool;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
//! let registry = prometheus::Registry::new();
//! let cache = RedisPool::builder(url).pool_name("cache").build(&registry).await?;
//!
//! let key = format!("covet-pools:doc:{}", std::process::id());
//! cache.set_ex(&key, "value", Duration::from_secs(60)).await?;
//! let value: Option<String> = cache.get(&key).await?;
//! assert_eq!(value.as_deref(), Some("value"));
//! let (count,): (i64,) = cache.pipeline(redis::pipe().cmd("EXISTS").arg(&key)).await?;
//! assert_eq!(count, 1);
//! cache.del(&key).await?;
//!
//! let mut text = Vec::new();
//! prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut text)?;
//! assert!(String::from_utf8(text)?.contains("\ncache_hits_total 1\n"));
//! # Ok(())
//! # }
//! ```
mod metrics;
mod pool;
mod stats;

pub use metrics::{CACHE_DURATION_BUCKETS, TTL_BUCKETS};
pub use pool::{DEFAULT_SERVER_STATS_INTERVAL, RedisConnection, RedisPool, RedisPoolBuilder};
pub use redis;
