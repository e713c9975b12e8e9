//! Where GCRA state lives: [`MemoryStore`] (one process) or `RedisStore` (shared by replicas;
//! feature `rate-limit-redis`).

#[cfg(feature = "rate-limit-redis")]
mod breaker;
pub mod memory;
#[cfg(feature = "rate-limit-redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit-redis")))]
pub mod redis;

use std::{future::Future, pin::Pin, time::Duration};

pub use self::memory::{ManualClock, MemoryStore, MemoryStoreBuilder};
#[cfg(feature = "rate-limit-redis")]
pub use self::{
    breaker::{DEFAULT_COOL_DOWN, DEFAULT_FAILURES},
    redis::{RedisStore, RedisStoreBuilder},
};

/// The verdict of a store on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Requests still allowed right now, after this one.
    pub remaining: u64,
    /// How long until a request would be allowed (zero when allowed).
    pub retry_after: Duration,
    /// How long until the bucket is full again.
    pub reset_after: Duration,
}

/// Why a store could not decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The decision took longer than the store's timeout.
    #[error("rate-limit store: no answer within {0:?}")]
    Timeout(Duration),
    /// No connection could be had from the pool.
    #[error("rate-limit store: no connection: {0}")]
    Pool(String),
    /// The store was built outside a Tokio runtime.
    #[error("rate-limit store: must be built inside a Tokio runtime")]
    NoRuntime,
    /// Redis answered with an error or the connection failed.
    #[cfg(feature = "rate-limit-redis")]
    #[error("rate-limit store: redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// TLS to Redis cannot be set up: an unusable CA file, a CA file with a `redis://` URL, or
    /// a `rediss://` URL without the `rate-limit-redis-tls` feature.
    #[cfg(feature = "rate-limit-redis")]
    #[error("rate-limit store: TLS ({setting}): {message}")]
    Tls {
        /// The setting at fault: `url` or `ca_file`.
        setting: &'static str,
        /// What is wrong (never the password).
        message: String,
    },
}

pub(crate) type DecisionFuture =
    Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send + 'static>>;

/// The store a [`RateLimitLayer`](super::RateLimitLayer) keeps its state in.
///
/// Made from a [`MemoryStore`] or a [`RedisStore`] with `From`.
#[derive(Clone, Debug)]
pub struct Store(pub(crate) StoreKind);

#[derive(Clone, Debug)]
pub(crate) enum StoreKind {
    Memory(MemoryStore),
    #[cfg(feature = "rate-limit-redis")]
    Redis(RedisStore),
}

impl Store {
    /// The in-memory store's key count gauge, for registration.
    pub(crate) fn memory(&self) -> &MemoryStore {
        match &self.0 {
            StoreKind::Memory(m) => m,
            #[cfg(feature = "rate-limit-redis")]
            StoreKind::Redis(r) => r.fallback(),
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Store(StoreKind::Memory(MemoryStore::new()))
    }
}

impl From<MemoryStore> for Store {
    fn from(store: MemoryStore) -> Self {
        Store(StoreKind::Memory(store))
    }
}

#[cfg(feature = "rate-limit-redis")]
impl From<RedisStore> for Store {
    fn from(store: RedisStore) -> Self {
        Store(StoreKind::Redis(store))
    }
}
