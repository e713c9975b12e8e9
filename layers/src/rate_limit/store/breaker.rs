//! The circuit breaker in front of Redis: after a run of failed decisions, requests skip Redis
//! for a cool-down (deciding with the fallback at once instead of waiting for the timeout),
//! then one request probes it.

use std::{
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

/// The default number of failed decisions in a row that opens the circuit: 5.
pub const DEFAULT_FAILURES: u32 = 5;
/// The default time the circuit stays open before one request probes Redis: 5 seconds.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(5);

/// Counts failed decisions and keeps requests away from a store that is down.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cool_down: Duration,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the circuit is open; 0 when closed.
    open_until_ms: AtomicU64,
    /// Whether one request is probing the store while the circuit is open.
    probing: AtomicBool,
    epoch: Instant,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        // Never 0, which means "closed".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether this request may ask the store: always while closed; while open, only one
    /// request once the cool-down has passed (the probe).
    #[inline]
    pub(crate) fn admits(&self) -> bool {
        let open_until = self.open_until_ms.load(Ordering::Acquire);
        if open_until == 0 {
            return true;
        }
        self.now_ms() >= open_until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Records the outcome of a decision the store was asked for.
    pub(crate) fn record(&self, ok: bool) {
        if ok {
            self.failures.store(0, Ordering::Release);
            if self.open_until_ms.swap(0, Ordering::AcqRel) != 0 {
                self.probing.store(false, Ordering::Release);
                tracing::info!(
                    target: "covet::rate_limit",
                    "rate-limit store answers again: deciding with it, no longer failing open"
                );
            }
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let was_open = self.open_until_ms.load(Ordering::Acquire) != 0;
        if was_open {
            // A failed probe: open for another cool-down.
            self.open_until_ms.store(
                self.now_ms() + self.cool_down.as_millis() as u64,
                Ordering::Release,
            );
            self.probing.store(false, Ordering::Release);
        } else if failures >= self.threshold
            && self
                .open_until_ms
                .compare_exchange(
                    0,
                    self.now_ms() + self.cool_down.as_millis() as u64,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::warn!(
                target: "covet::rate_limit",
                failures,
                cool_down_ms = self.cool_down.as_millis() as u64,
                "rate-limit store keeps failing: deciding locally (fail open) or answering 503 \
                 (fail closed) without asking it, probing it again after the cool-down"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_probes_after_the_cool_down_and_closes_on_success() {
        let breaker = Breaker::new(3, Duration::from_secs(5));
        for _ in 0..2 {
            assert!(breaker.admits());
            breaker.record(false);
        }
        assert!(breaker.admits(), "two failures keep it closed");
        breaker.record(false);
        assert!(!breaker.admits(), "the third opens it");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(breaker.admits(), "one probe after the cool-down");
        assert!(!breaker.admits(), "only one");
        breaker.record(false);
        assert!(!breaker.admits(), "a failed probe opens it again");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(breaker.admits());
        breaker.record(true);
        assert!(
            breaker.admits() && breaker.admits(),
            "a good probe closes it"
        );
    }
}
