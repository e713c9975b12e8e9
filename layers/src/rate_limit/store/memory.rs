//! [`MemoryStore`]: a sharded, bounded, self-cleaning GCRA map for one process.
//!
//! # Why not `governor`
//!
//! `governor`'s keyed limiter (a `DashMap` of GCRA cells) is sharded and exact, but it does not
//! meet two requirements: it has no cap on the number of keys, and keys are only removed when
//! the application remembers to call `retain_recent()` — tower_governor's users report unbounded
//! memory growth for exactly that reason. This store is the same algorithm with both built in:
//!
//! - **Sharded:** [`shards`](MemoryStoreBuilder::shards) maps, each behind its own mutex, chosen
//!   by the key's hash; no global lock.
//! - **Small:** an entry is 16 bytes (a 64-bit keyed hash of policy and key, and the
//!   theoretical arrival time) plus hashbrown's 1 control byte. 1,000,000 live keys take about
//!   36 MB of tables (at most 2,097,152 buckets × 17 bytes), well under the 100 MB goal; see
//!   [`approx_memory_bytes`](MemoryStore::approx_memory_bytes). Keys are hashed with a random
//!   per-store seed, so clients cannot aim collisions at each other.
//! - **Bounded:** at most [`max_keys`](MemoryStoreBuilder::max_keys) keys, enforced per shard
//!   (`max_keys / shards` each). When a shard is full, keys whose bucket is full again are
//!   evicted first; if it is still full, the *new* key is refused (429 with the time until the
//!   first key in that shard frees up) — existing clients are never reset by a flood of new ones.
//! - **Self-cleaning:** a key whose bucket has refilled holds no information (a new key starts
//!   full), so it is dropped. Every [`sweep_interval`](MemoryStoreBuilder::sweep_interval) the
//!   first request after the interval sweeps every shard it can lock without waiting and
//!   shrinks tables that became mostly empty, so memory is reclaimed once keys go idle — no
//!   background task and nothing for the caller to remember. [`sweep`](MemoryStore::sweep)
//!   exists for callers that want it now.

use std::{
    fmt,
    hash::{BuildHasher, BuildHasherDefault, Hash, Hasher},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hashbrown::{DefaultHashBuilder, HashMap};

use super::Decision;
use crate::rate_limit::{key::Key, quota::gcra};

/// The default [`max_keys`](MemoryStoreBuilder::max_keys): 2,000,000.
pub const DEFAULT_MAX_KEYS: usize = 2_000_000;
/// The default [`shards`](MemoryStoreBuilder::shards): 64.
pub const DEFAULT_SHARDS: usize = 64;
/// The default [`sweep_interval`](MemoryStoreBuilder::sweep_interval): 10 seconds.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Keys are already hashes: the map uses them as they are.
#[derive(Default, Clone, Copy)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<u64, u64, BuildHasherDefault<Identity>>;

struct Shard {
    map: Map,
}

/// A clock tests can move by hand. Cloning shares the time.
///
/// ```
/// use covet_layers::rate_limit::{ManualClock, MemoryStore};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let store = MemoryStore::builder().clock(clock.clone()).build();
/// clock.advance(Duration::from_secs(1));
/// # let _ = store;
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }

    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug)]
enum Clock {
    Monotonic(Instant),
    Manual(ManualClock),
}

impl Clock {
    #[inline]
    fn now(&self) -> u64 {
        match self {
            // u64 nanoseconds last 584 years.
            Clock::Monotonic(start) => start.elapsed().as_nanos() as u64,
            Clock::Manual(clock) => clock.now(),
        }
    }
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    shard_mask: u64,
    per_shard: usize,
    hasher: DefaultHashBuilder,
    clock: Clock,
    sweep_interval: u64,
    next_sweep: AtomicU64,
    keys: prometheus::IntGauge,
}

/// A sharded, bounded, self-cleaning in-memory GCRA store. See the [module docs](self).
///
/// Cloning shares the state.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .field(
                "max_keys",
                &(self.inner.per_shard * self.inner.shards.len()),
            )
            .field("keys", &self.len())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the defaults.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder with the defaults.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_keys: DEFAULT_MAX_KEYS,
            shards: DEFAULT_SHARDS,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            clock: None,
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The memory the tables hold, in bytes: every allocated bucket (16-byte entry + 1 control
    /// byte, whether used or not) plus the shard headers. The allocator's own overhead is not
    /// included.
    pub fn approx_memory_bytes(&self) -> usize {
        let buckets: usize = self
            .inner
            .shards
            .iter()
            .map(|s| {
                let cap = s
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .map
                    .capacity();
                if cap == 0 {
                    0
                } else if cap < 8 {
                    (cap + 1).next_power_of_two()
                } else {
                    (cap * 8 / 7).next_power_of_two()
                }
            })
            .sum();
        buckets * (size_of::<(u64, u64)>() + 1)
            + self.inner.shards.len() * size_of::<Mutex<Shard>>()
    }

    /// Removes every key whose bucket is full again and shrinks mostly empty tables, now.
    /// Returns how many keys were removed. Done automatically; see the [module docs](self).
    pub fn sweep(&self) -> usize {
        let now = self.inner.clock.now();
        self.inner
            .shards
            .iter()
            .map(|s| {
                self.sweep_shard(&mut s.lock().unwrap_or_else(PoisonError::into_inner), now)
                    .0
            })
            .sum()
    }

    /// The gauge of keys held (`rate_limit_memory_keys`), unregistered.
    pub(crate) fn keys_gauge(&self) -> &prometheus::IntGauge {
        &self.inner.keys
    }

    fn sweep_shard(&self, shard: &mut Shard, now: u64) -> (usize, Option<u64>) {
        let before = shard.map.len();
        let mut earliest = None::<u64>;
        shard.map.retain(|_, tat| {
            let keep = *tat > now;
            if keep {
                earliest = Some(earliest.map_or(*tat, |e| e.min(*tat)));
            }
            keep
        });
        let removed = before - shard.map.len();
        self.inner.keys.sub(removed as i64);
        if shard.map.capacity() > 64 && shard.map.len() * 4 < shard.map.capacity() {
            shard.map.shrink_to(shard.map.len() * 2);
        }
        (removed, earliest)
    }

    /// Decides one request of `key` under the policy whose seed is `policy` (a hash of its
    /// name), with GCRA `interval` and `burst`.
    #[inline]
    pub(crate) fn check(&self, policy: u64, key: &Key, interval: u64, burst: u64) -> Decision {
        let inner = &*self.inner;
        let hash = {
            let mut h = inner.hasher.build_hasher();
            policy.hash(&mut h);
            key.hash_into(&mut h);
            h.finish()
        };
        let now = inner.clock.now();
        let shard = &inner.shards[((hash >> 32) & inner.shard_mask) as usize];
        let decision = {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            match shard.map.get_mut(&hash) {
                Some(tat) => {
                    let step = gcra(Some(*tat), now, interval, burst);
                    if step.allowed {
                        *tat = step.new_tat;
                    }
                    to_decision(
                        step.allowed,
                        step.remaining,
                        step.retry_after,
                        step.reset_after,
                    )
                }
                None => {
                    let step = gcra(None, now, interval, burst);
                    if shard.map.len() >= inner.per_shard {
                        let (_, earliest) = self.sweep_shard(&mut shard, now);
                        if shard.map.len() >= inner.per_shard {
                            let wait = earliest.map_or(interval, |e| e - now);
                            return to_decision(false, 0, wait.max(1), step.reset_after);
                        }
                    }
                    if step.allowed {
                        shard.map.insert(hash, step.new_tat);
                        inner.keys.inc();
                    }
                    to_decision(
                        step.allowed,
                        step.remaining,
                        step.retry_after,
                        step.reset_after,
                    )
                }
            }
        };
        if now >= inner.next_sweep.load(Ordering::Relaxed) {
            self.maybe_sweep(now);
        }
        decision
    }

    #[cold]
    fn maybe_sweep(&self, now: u64) {
        let due = self.inner.next_sweep.load(Ordering::Relaxed);
        if now < due
            || self
                .inner
                .next_sweep
                .compare_exchange(
                    due,
                    now.saturating_add(self.inner.sweep_interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        for shard in self.inner.shards.iter() {
            if let Ok(mut shard) = shard.try_lock() {
                self.sweep_shard(&mut shard, now);
            }
        }
    }
}

fn to_decision(allowed: bool, remaining: u64, retry_after: u64, reset_after: u64) -> Decision {
    Decision {
        allowed,
        remaining,
        retry_after: Duration::from_nanos(retry_after),
        reset_after: Duration::from_nanos(reset_after),
    }
}

/// Configures a [`MemoryStore`]. Created by [`MemoryStore::builder`].
#[derive(Clone, Debug)]
pub struct MemoryStoreBuilder {
    max_keys: usize,
    shards: usize,
    sweep_interval: Duration,
    clock: Option<ManualClock>,
}

impl MemoryStoreBuilder {
    /// The most keys held at once, over all policies (enforced per shard).
    ///
    /// Defaults to [`DEFAULT_MAX_KEYS`] (2,000,000: about 72 MB of tables when every one is live).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// How many independently locked maps the keys are spread over; rounded up to a power of two.
    ///
    /// Defaults to [`DEFAULT_SHARDS`] (64).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// How often full buckets are swept out of every shard.
    ///
    /// Defaults to [`DEFAULT_SWEEP_INTERVAL`] (10 seconds).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Uses a hand-moved clock instead of the monotonic clock (for tests).
    ///
    /// Defaults to the monotonic clock ([`Instant`]).
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the store. Zero shards count as one; a zero `max_keys` as one per shard.
    pub fn build(self) -> MemoryStore {
        let shards = self.shards.clamp(1, 1 << 16).next_power_of_two();
        let per_shard = self.max_keys.div_ceil(shards).max(1);
        let clock = match self.clock {
            Some(clock) => Clock::Manual(clock),
            None => Clock::Monotonic(Instant::now()),
        };
        let sweep_interval = u64::try_from(self.sweep_interval.as_nanos()).unwrap_or(u64::MAX);
        let keys = prometheus::IntGauge::new(
            "rate_limit_memory_keys",
            "Keys held by the in-memory rate-limit store.",
        )
        .expect("a valid metric name");
        MemoryStore {
            inner: Arc::new(Inner {
                shards: (0..shards)
                    .map(|_| {
                        Mutex::new(Shard {
                            map: Map::default(),
                        })
                    })
                    .collect(),
                shard_mask: (shards - 1) as u64,
                per_shard,
                hasher: DefaultHashBuilder::default(),
                next_sweep: AtomicU64::new(clock.now().saturating_add(sweep_interval)),
                clock,
                sweep_interval,
                keys,
            }),
        }
    }
}
