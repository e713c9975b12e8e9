//! A check's slot: the cached result, the shared run in flight, the timeout and the metrics.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, SystemTime},
};

use futures_util::{FutureExt, future::Shared};
use tokio::time::Instant;

use crate::{
    ComponentHealth, Health,
    check::{BoxFuture, DynHealthCheck},
    metrics::Metrics,
};

type SharedRun = Shared<BoxFuture<'static, Arc<ComponentHealth>>>;

/// One registered check: its settings, its last result and the run in flight.
pub(crate) struct Slot {
    pub(crate) name: Arc<str>,
    pub(crate) check: Arc<dyn DynHealthCheck>,
    pub(crate) probes: u8,
    pub(crate) critical: bool,
    pub(crate) timeout: Duration,
    pub(crate) ttl: Duration,
    pub(crate) metrics: Option<Metrics>,
    pub(crate) state: Mutex<SlotState>,
}

#[derive(Default)]
pub(crate) struct SlotState {
    last: Option<(Instant, Arc<ComponentHealth>)>,
    in_flight: Option<SharedRun>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // The lock is never held across a panic point that could leave the state torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached result if fresh (unless `force`), else the run in flight, else a new run.
    pub(crate) async fn get(self: Arc<Self>, force: bool) -> Arc<ComponentHealth> {
        let run = {
            let mut state = self.lock();
            if !force
                && let Some((at, health)) = &state.last
                && at.elapsed() < self.ttl
            {
                return Arc::clone(health);
            }
            match &state.in_flight {
                Some(run) => run.clone(),
                None => {
                    let run = self.start();
                    state.in_flight = Some(run.clone());
                    run
                }
            }
        };
        run.await
    }

    /// Starts a run on its own task, so that it completes (and fills the cache) even when
    /// every request waiting for it goes away. Called with the state locked.
    fn start(self: &Arc<Self>) -> SharedRun {
        let task = tokio::spawn(Arc::clone(self).run());
        let slot: Weak<Self> = Arc::downgrade(self);
        let name = Arc::clone(&self.name);
        let critical = self.critical;
        let joined: BoxFuture<'static, Arc<ComponentHealth>> = Box::pin(async move {
            match task.await {
                Ok(health) => health,
                Err(error) => {
                    // The runtime is shutting down (a panic in the check is caught in `run`).
                    if let Some(slot) = slot.upgrade() {
                        slot.lock().in_flight = None;
                    }
                    tracing::debug!(check = %name, %error, "health check task did not finish");
                    Arc::new(ComponentHealth {
                        health: Health::from_error("check task did not finish"),
                        critical,
                        duration: Duration::ZERO,
                        checked_at: SystemTime::now(),
                    })
                }
            }
        });
        joined.shared()
    }

    async fn run(self: Arc<Self>) -> Arc<ComponentHealth> {
        let checked_at = SystemTime::now();
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            self.timeout,
            AssertUnwindSafe(self.check.check_boxed()).catch_unwind(),
        )
        .await;
        let duration = started.elapsed();
        let health = match outcome {
            Ok(Ok(health)) => health,
            Ok(Err(_panic)) => Health::from_error("check panicked"),
            Err(_elapsed) => Health::down()
                .with_detail("error", "check timed out")
                .with_detail("timeout", format!("{:?}", self.timeout)),
        };
        if !health.status().is_passing() {
            tracing::debug!(check = %self.name, status = %health.status(), "health check failing");
        }
        if let Some(metrics) = &self.metrics {
            metrics.record(&self.name, health.status(), duration);
        }
        let health = Arc::new(ComponentHealth {
            health,
            critical: self.critical,
            duration,
            checked_at,
        });
        let mut state = self.lock();
        state.last = Some((Instant::now(), Arc::clone(&health)));
        state.in_flight = None;
        health
    }
}
