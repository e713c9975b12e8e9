//! [`RedisStore`]: GCRA in Redis, one atomic Lua script per decision, shared by replicas.
//!
//! Each decision runs one script (`EVALSHA`, loaded again on `NOSCRIPT`) that reads the
//! server's clock with `TIME` — so replicas whose clocks disagree still agree on every
//! decision — updates the key's theoretical arrival time, and sets the key to expire exactly
//! when the bucket is full again, so idle keys free themselves. The design is
//! go-redis/redis_rate's.
//!
//! Every decision (taking a pooled connection included) is bounded by a short
//! [`timeout`](RedisStoreBuilder::timeout), and a
//! [`circuit breaker`](RedisStoreBuilder::circuit_breaker) stops asking Redis for a while after
//! a run of failures, so an outage does not cost every request the timeout. When Redis fails or is slow, the layer either
//! **fails open** (the default) — deciding with a local [`MemoryStore`] fallback that applies
//! each policy's own quota *per replica* (so a fleet of N replicas lets through at most N times
//! the quota while Redis is down, and one replica never more than the quota) — or, for policies
//! marked [`fail_closed`](crate::rate_limit::Policy::fail_closed), answers 503.
//!
//! Connections come from a bb8 pool of `bb8_redis::RedisConnectionManager`. A pool built by
//! [`RedisStore::builder`] tests each connection on checkout (`PING`, bb8's default): bb8-redis
//! cannot otherwise tell that a multiplexed connection broke, and this is what makes decisions
//! go back to Redis by themselves once it returns.

#[cfg(feature = "rate-limit-redis-tls")]
use std::path::PathBuf;
use std::{fmt, sync::Arc, time::Duration};

use bb8_redis::{RedisConnectionManager, bb8};

use super::{Decision, DecisionFuture, MemoryStore, StoreError, breaker::Breaker};
use crate::rate_limit::key::Key;

/// The default decision timeout: 50 ms.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// The default key prefix: `covet:rl:`.
pub const DEFAULT_PREFIX: &str = "covet:rl:";

/// GCRA in microseconds. KEYS[1] the bucket; ARGV[1] the emission interval, ARGV[2] the burst.
/// Returns {allowed 0|1, remaining, retry_after_us, reset_after_us}.
const SCRIPT: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > tolerance then
  return {0, 0, ahead - tolerance, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(ahead / 1000))
return {1, math.floor((tolerance - ahead) / interval), 0, ahead}
";

type Pool = bb8::Pool<RedisConnectionManager>;

struct Inner {
    pool: Pool,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    fallback: MemoryStore,
    breaker: Breaker,
}

/// GCRA in Redis, shared by every replica that uses the same Redis and prefix. See the
/// [module docs](self). Cloning shares the pool.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A builder over a new pool for `url` (`redis://127.0.0.1:6379`), made by
    /// [`build`](RedisStoreBuilder::build). The pool opens its first connection in the
    /// background as it is built, and keeps one idle from then on; [`connect`](Self::connect)
    /// waits for it.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Source::Url(url.into()))
    }

    /// A builder over a pool the application already has. Keep its `test_on_check_out` on
    /// (bb8's default) so broken connections are replaced.
    pub fn with_pool(pool: Pool) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Source::Pool(pool))
    }

    /// The local store used when Redis cannot decide and the policy fails open.
    pub fn fallback(&self) -> &MemoryStore {
        &self.inner.fallback
    }

    /// The decision timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Waits up to `wait` for a connection from the pool and loads the decision script into
    /// Redis, so that the first decisions do not spend their short
    /// [`timeout`](RedisStoreBuilder::timeout) on the connection (a TLS handshake included)
    /// and fall back. Call it at start-up.
    ///
    /// An error ([`StoreError::Timeout`] when Redis did not answer in time) changes nothing
    /// else: decisions keep asking Redis, and fall open or closed by policy until it answers.
    pub async fn connect(&self, wait: Duration) -> Result<(), StoreError> {
        let attempt = async {
            loop {
                match self.inner.pool.get().await {
                    Ok(mut conn) => {
                        self.inner
                            .script
                            .prepare_invoke()
                            .load_async(&mut *conn)
                            .await?;
                        return Ok(());
                    }
                    // The pool's own wait ran out; the connection it started is still coming.
                    Err(bb8::RunError::TimedOut) => continue,
                    Err(bb8::RunError::User(e)) => return Err(StoreError::Redis(e)),
                }
            }
        };
        tokio::time::timeout(wait, attempt)
            .await
            .unwrap_or(Err(StoreError::Timeout(wait)))
    }

    /// Whether a decision may be asked of Redis now (the circuit breaker is closed, or this is
    /// its one probe).
    #[inline]
    pub(crate) fn admits(&self) -> bool {
        self.inner.breaker.admits()
    }

    /// Starts one decision for `key` under `policy` (its name), with the GCRA `interval`
    /// (nanoseconds) and `burst`.
    pub(crate) fn check(
        &self,
        policy: &str,
        key: &Key,
        interval: u64,
        burst: u64,
    ) -> DecisionFuture {
        let mut name = String::with_capacity(self.inner.prefix.len() + policy.len() + 48);
        name.push_str(&self.inner.prefix);
        name.push_str(policy);
        name.push(':');
        key.write_redis(&mut name);
        let interval_us = (interval / 1000).max(1);
        let inner = self.inner.clone();
        Box::pin(async move {
            let timeout = inner.timeout;
            let run = async {
                let mut conn = inner
                    .pool
                    .get()
                    .await
                    .map_err(|e| StoreError::Pool(e.to_string()))?;
                let (allowed, remaining, retry_us, reset_us): (i64, i64, i64, i64) = inner
                    .script
                    .key(&name)
                    .arg(interval_us)
                    .arg(burst)
                    .invoke_async(&mut *conn)
                    .await?;
                Ok(Decision {
                    allowed: allowed == 1,
                    remaining: remaining.max(0) as u64,
                    retry_after: Duration::from_micros(retry_us.max(0) as u64),
                    reset_after: Duration::from_micros(reset_us.max(0) as u64),
                })
            };
            let result = match tokio::time::timeout(timeout, run).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Timeout(timeout)),
            };
            inner.breaker.record(result.is_ok());
            result
        })
    }
}

/// Where the store's connections come from.
enum Source {
    Url(String),
    Pool(Pool),
}

/// Configures a [`RedisStore`]. Created by [`RedisStore::builder`] or [`RedisStore::with_pool`].
pub struct RedisStoreBuilder {
    source: Source,
    prefix: String,
    timeout: Duration,
    fallback: Option<MemoryStore>,
    breaker_failures: u32,
    breaker_cool_down: Duration,
    #[cfg(feature = "rate-limit-redis-tls")]
    ca_file: Option<PathBuf>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            fallback: None,
            breaker_failures: super::breaker::DEFAULT_FAILURES,
            breaker_cool_down: super::breaker::DEFAULT_COOL_DOWN,
            #[cfg(feature = "rate-limit-redis-tls")]
            ca_file: None,
        }
    }

    /// The PEM file of the CA that signed a `rediss://` server's certificate (which must also
    /// name the host); without one, the system's roots are trusted. Only for a store built from
    /// a URL.
    ///
    /// Read by [`build`](Self::build): an unreadable file is a [`StoreError::Tls`] naming
    /// `ca_file`, and so is a CA file with a `redis://` URL.
    #[cfg(feature = "rate-limit-redis-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit-redis-tls")))]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The circuit breaker: after `failures` failed decisions in a row (errors or timeouts),
    /// requests stop asking Redis for `cool_down` and are decided at once as if it had failed
    /// (fail-open policies by the local fallback, fail-closed ones with 503), instead of each
    /// one waiting for the timeout; then one request probes Redis, and a success closes the
    /// circuit. The opening and the recovery are logged (target `covet::rate_limit`).
    ///
    /// Defaults to 5 failures and 5 seconds.
    pub fn circuit_breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.breaker_failures = failures;
        self.breaker_cool_down = cool_down;
        self
    }

    /// The prefix of every key this store writes (`{prefix}{policy}:{key}`). Replicas that
    /// share limits must use the same prefix.
    ///
    /// Defaults to [`DEFAULT_PREFIX`] (`covet:rl:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest a decision (connection checkout included) may take before the store is
    /// treated as down for that request.
    ///
    /// Defaults to [`DEFAULT_TIMEOUT`] (50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The local store that decides for fail-open policies while Redis is down.
    ///
    /// Defaults to a [`MemoryStore`] with 100,000 keys at most.
    pub fn fallback(mut self, store: MemoryStore) -> Self {
        self.fallback = Some(store);
        self
    }

    /// Builds the store. With a URL, checks it and creates the pool: call it inside a Tokio
    /// runtime (the pool starts its reaper task); outside one it returns
    /// [`StoreError::NoRuntime`], an unparsable URL [`StoreError::Redis`], and a TLS setting
    /// that cannot be carried out [`StoreError::Tls`].
    ///
    /// `rediss://` URLs need the `rate-limit-redis-tls` feature.
    pub fn build(self) -> Result<RedisStore, StoreError> {
        let pool = match self.source {
            Source::Pool(pool) => pool,
            Source::Url(url) => {
                tokio::runtime::Handle::try_current().map_err(|_| StoreError::NoRuntime)?;
                #[cfg(feature = "rate-limit-redis-tls")]
                let manager = {
                    let client = covet_tls::redis::client(&url, self.ca_file.as_deref()).map_err(
                        |e| match e {
                            // A URL that does not parse is the same error with or without TLS.
                            covet_tls::TlsError::Redis(e) => StoreError::Redis(e),
                            other => StoreError::Tls {
                                setting: other.setting(),
                                message: other.to_string(),
                            },
                        },
                    )?;
                    // The CA travels in the connection info.
                    RedisConnectionManager::new(client.get_connection_info().clone())?
                };
                #[cfg(not(feature = "rate-limit-redis-tls"))]
                let manager = {
                    if url.starts_with("rediss://") {
                        return Err(StoreError::Tls {
                            setting: "url",
                            message: "rediss:// needs covet-layers' `rate-limit-redis-tls` feature"
                                .into(),
                        });
                    }
                    RedisConnectionManager::new(url.as_str())?
                };
                // One idle connection is kept open, so a request after a quiet spell does not
                // pay for a new one (a TLS handshake) within the decision's timeout.
                bb8::Pool::builder()
                    .max_size(16)
                    .min_idle(Some(1))
                    // bb8 panics on a zero wait; a zero timeout still fails every decision.
                    .connection_timeout(self.timeout.max(Duration::from_millis(1)))
                    .build_unchecked(manager)
            }
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                pool,
                script: redis::Script::new(SCRIPT),
                prefix: self.prefix,
                timeout: self.timeout,
                fallback: self
                    .fallback
                    .unwrap_or_else(|| MemoryStore::builder().max_keys(100_000).build()),
                breaker: Breaker::new(self.breaker_failures, self.breaker_cool_down),
            }),
        })
    }
}
