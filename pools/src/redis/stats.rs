//! Server figures from `INFO` and `DBSIZE`, read on scrape at most once per interval.

use std::{
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use prometheus::{IntCounter, IntGauge, Registry, core::Collector, proto::MetricFamily};

use super::pool::RedisManager;
use crate::{
    PoolError,
    common::{create_error, register},
};

/// Exports `cache_evictions_total`, `cache_memory_used_bytes` and `cache_keys`.
///
/// A scrape returns the figures last read; when they are older than the interval it starts
/// one background read (never more than one at a time), so the scrape itself never waits on
/// Redis.
#[derive(Clone)]
pub(crate) struct ServerStats {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Weak<bb8::Pool<RedisManager>>,
    interval: Duration,
    runtime: tokio::runtime::Handle,
    /// When the last read started; `None` before the first.
    last_read: Mutex<Option<Instant>>,
    evictions: IntCounter,
    memory: IntGauge,
    keys: IntGauge,
}

impl ServerStats {
    pub(crate) fn register(
        registry: &Registry,
        pool_name: &str,
        pool: Weak<bb8::Pool<RedisManager>>,
        interval: Duration,
    ) -> Result<Self, PoolError> {
        let stats = Self {
            inner: Arc::new(Inner {
                pool,
                interval,
                runtime: tokio::runtime::Handle::current(),
                last_read: Mutex::new(None),
                evictions: IntCounter::new(
                    "cache_evictions_total",
                    "Keys the Redis server evicted for lack of memory (INFO evicted_keys, server-wide).",
                )
                .map_err(|e| create_error(pool_name, "cache_evictions_total", e))?,
                memory: IntGauge::new("cache_memory_used_bytes", "Memory the Redis server uses (INFO used_memory).")
                    .map_err(|e| create_error(pool_name, "cache_memory_used_bytes", e))?,
                keys: IntGauge::new("cache_keys", "Keys in the Redis database (DBSIZE).")
                    .map_err(|e| create_error(pool_name, "cache_keys", e))?,
            }),
        };
        register(registry, pool_name, "cache_evictions_total", stats.clone())
    }

    /// Reads the figures now. Failures are logged at debug and leave the last figures.
    pub(crate) async fn refresh(&self) {
        *self
            .inner
            .last_read
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.inner.read().await;
    }
}

impl Inner {
    async fn read(&self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let result: Result<(String, i64), String> = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            let info: String = redis::cmd("INFO")
                .arg("stats")
                .arg("memory")
                .query_async(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            let keys: i64 = redis::cmd("DBSIZE")
                .query_async(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok((info, keys))
        }
        .await;
        match result {
            Ok((info, keys)) => {
                if let Some(evicted) = field(&info, "evicted_keys") {
                    let current = self.evictions.get();
                    if evicted > current {
                        self.evictions.inc_by(evicted - current);
                    }
                }
                if let Some(memory) = field(&info, "used_memory") {
                    self.memory.set(i64::try_from(memory).unwrap_or(i64::MAX));
                }
                self.keys.set(keys);
            }
            Err(error) => {
                tracing::debug!(target: "covet_pools", %error, "reading Redis INFO failed")
            }
        }
    }
}

/// The value of `name:` in `INFO` output.
fn field(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.trim().parse().ok()
    })
}

impl Collector for ServerStats {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let inner = &*self.inner;
        [
            inner.evictions.desc(),
            inner.memory.desc(),
            inner.keys.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let inner = &self.inner;
        {
            let mut last_read = inner.last_read.lock().unwrap_or_else(|e| e.into_inner());
            if last_read.is_none_or(|at| at.elapsed() >= inner.interval) {
                *last_read = Some(Instant::now());
                let stats = Arc::clone(inner);
                inner.runtime.spawn(async move { stats.read().await });
            }
        }
        [
            inner.evictions.collect(),
            inner.memory.collect(),
            inner.keys.collect(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn info_fields_are_parsed() {
        let info = "# Stats\r\nevicted_keys:7\r\nused_memory:1024\r\nused_memory_human:1K\r\n";
        assert_eq!(field(info, "evicted_keys"), Some(7));
        assert_eq!(field(info, "used_memory"), Some(1024));
        assert_eq!(field(info, "missing"), None);
    }
}
