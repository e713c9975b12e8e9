//! [`HealthRegistry`] and its builder: the named checks, the probes they belong to, and the
//! readiness and start-up states.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::{FutureExt, future::join_all};
use tokio::task::JoinHandle;

use crate::{
    BuildError, CheckRegistration, ComponentHealth, HealthReport, HealthService, Status,
    check::HealthCheck,
    metrics::Metrics,
    probe::{MAX_CHECK_NAME_LEN, Probe, READINESS_STATE, RESERVED_NAMES, STARTUP_STATE},
    slot::{Slot, SlotState},
};

/// Builds a [`HealthRegistry`]; made by [`HealthRegistry::builder`].
#[derive(Debug)]
pub struct HealthRegistryBuilder {
    checks: Vec<CheckRegistration>,
    timeout: Duration,
    cache_ttl: Duration,
    metrics: Option<prometheus::Registry>,
}

impl HealthRegistryBuilder {
    /// Registers `check` as `name` in the liveness probe (and `/health`).
    pub fn liveness(self, name: impl Into<String>, check: impl HealthCheck) -> Self {
        self.register(CheckRegistration::new(name, check).liveness())
    }

    /// Registers `check` as `name` in the readiness probe (and `/health`).
    pub fn readiness(self, name: impl Into<String>, check: impl HealthCheck) -> Self {
        self.register(CheckRegistration::new(name, check).readiness())
    }

    /// Registers `check` as `name` in the startup probe (and `/health`).
    pub fn startup(self, name: impl Into<String>, check: impl HealthCheck) -> Self {
        self.register(CheckRegistration::new(name, check).startup())
    }

    /// Registers a check with all its options.
    pub fn register(mut self, registration: CheckRegistration) -> Self {
        self.checks.push(registration);
        self
    }

    /// The default time a check may take before it counts as `DOWN` with a `timeout` detail.
    ///
    /// Defaults to 2 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The default time a check's result is reused: whatever the probe traffic, a check runs
    /// at most once per TTL, and requests that arrive while it runs share that run.
    ///
    /// Defaults to 1 second. `Duration::ZERO` turns caching off (concurrent requests still
    /// share a run in flight).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Records `health_check_status{check}` (gauge: 1 when the last run was `UP`, 0 otherwise)
    /// and `health_check_duration_seconds{check}` (gauge: how long the last run took) in
    /// `registry`. A check's series appear after its first run.
    ///
    /// Defaults to no metrics.
    pub fn metrics(mut self, registry: &prometheus::Registry) -> Self {
        self.metrics = Some(registry.clone());
        self
    }

    /// Validates the names and registers the metrics.
    pub fn build(self) -> Result<HealthRegistry, BuildError> {
        let metrics = self.metrics.as_ref().map(Metrics::register).transpose()?;
        let mut by_name = HashMap::with_capacity(self.checks.len());
        let mut slots = Vec::with_capacity(self.checks.len());
        for registration in self.checks {
            let name = registration.name;
            if name.is_empty()
                || name.len() > MAX_CHECK_NAME_LEN
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return Err(BuildError::InvalidName(name));
            }
            if RESERVED_NAMES.contains(&name.as_str()) {
                return Err(BuildError::ReservedName(name));
            }
            if by_name.contains_key(name.as_str()) {
                return Err(BuildError::DuplicateName(name));
            }
            let name: Arc<str> = name.into();
            by_name.insert(Arc::clone(&name), slots.len());
            slots.push(Arc::new(Slot {
                name,
                check: registration.check,
                probes: registration.probes,
                critical: registration.critical,
                timeout: registration.timeout.unwrap_or(self.timeout),
                ttl: registration.cache_ttl.unwrap_or(self.cache_ttl),
                metrics: metrics.clone(),
                state: Mutex::new(SlotState::default()),
            }));
        }
        Ok(HealthRegistry {
            inner: Arc::new(Inner {
                slots,
                by_name,
                readiness: Readiness::new(),
                started: AtomicBool::new(false),
            }),
        })
    }
}

/// Named health checks, the probes they belong to, and the readiness and start-up states.
///
/// Cheap to clone (an `Arc`); every clone sees the same checks, cache and states. Checks run on
/// Tokio tasks, so reports must be asked for inside a Tokio runtime.
///
/// ```
/// use covet_health::{HealthRegistry, Probe, Status};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), covet_health::BuildError> {
/// let registry = HealthRegistry::builder()
///     .readiness("cache", || async { Status::Up })
///     .build()?;
///
/// assert_eq!(registry.report(Probe::Readiness).await.status(), Status::Up);
/// assert_eq!(registry.report(Probe::Startup).await.status(), Status::Down);
/// registry.startup_complete();
/// assert_eq!(registry.report(Probe::Startup).await.status(), Status::Up);
///
/// registry.readiness().set_out_of_service();
/// assert_eq!(registry.report(Probe::Readiness).await.status(), Status::OutOfService);
/// assert_eq!(registry.report(Probe::Liveness).await.status(), Status::Up);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Vec<Arc<Slot>>,
    by_name: HashMap<Arc<str>, usize>,
    readiness: Readiness,
    started: AtomicBool,
}

impl HealthRegistry {
    /// A builder with no checks, a 2 s timeout, a 1 s cache TTL and no metrics.
    pub fn builder() -> HealthRegistryBuilder {
        HealthRegistryBuilder {
            checks: Vec::new(),
            timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(1),
            metrics: None,
        }
    }

    /// The readiness handle: give a clone to whatever takes the app out of service (the
    /// shutdown coordinator). Starts ready.
    pub fn readiness(&self) -> Readiness {
        self.inner.readiness.clone()
    }

    /// Marks start-up as done: `/health/startup` stops answering `DOWN` because of it.
    pub fn startup_complete(&self) {
        self.inner.started.store(true, Ordering::Release);
    }

    /// Whether [`startup_complete`](Self::startup_complete) was called.
    pub fn is_startup_complete(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    /// The names of the registered checks, in registration order.
    pub fn check_names(&self) -> impl Iterator<Item = &str> {
        self.inner.slots.iter().map(|slot| &*slot.name)
    }

    /// Whether a check named `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.inner.by_name.contains_key(name)
    }

    /// Runs (or reads from the cache) the checks of one probe, concurrently, and aggregates.
    ///
    /// - Liveness: its checks only; `UP` when it has none.
    /// - Readiness: its checks and the [`READINESS_STATE`] pseudo-component.
    /// - Startup: its checks and the [`STARTUP_STATE`] pseudo-component, `DOWN` until
    ///   [`startup_complete`](Self::startup_complete).
    pub async fn report(&self, probe: Probe) -> HealthReport {
        let mut report = self.collect(|slot| slot.probes & probe.bit() != 0).await;
        match probe {
            Probe::Liveness => {}
            Probe::Readiness => report.push_state(READINESS_STATE, self.readiness_state()),
            Probe::Startup => report.push_state(STARTUP_STATE, self.startup_state()),
        }
        report.finish()
    }

    /// Runs (or reads from the cache) every check, concurrently, and aggregates them with the
    /// [`READINESS_STATE`] pseudo-component (but not the start-up state, so that apps without a
    /// startup probe need not call [`startup_complete`](Self::startup_complete)).
    pub async fn report_all(&self) -> HealthReport {
        let mut report = self.collect(|_| true).await;
        report.push_state(READINESS_STATE, self.readiness_state());
        report.finish()
    }

    /// Runs (or reads from the cache) one check; `None` when no check has that name.
    pub async fn component(&self, name: &str) -> Option<Arc<ComponentHealth>> {
        let index = self.index_of(name)?;
        Some(self.component_at(index).await)
    }

    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.inner.by_name.get(name).copied()
    }

    pub(crate) async fn component_at(&self, index: usize) -> Arc<ComponentHealth> {
        Arc::clone(&self.inner.slots[index]).get(false).await
    }

    /// A [`HealthService`] serving this registry, with default options.
    pub fn service(&self) -> HealthService {
        HealthService::new(self.clone())
    }

    /// Runs every check every `period` on a background task, so that probes find fresh
    /// results in the cache (they still run a check themselves when its result is older than
    /// its cache TTL, so pick `period` at most the TTL). The task stops when the returned
    /// handle is dropped or every clone of the registry is gone.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn spawn_refresh(&self, period: Duration) -> BackgroundRefresh {
        let inner = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = inner.upgrade() else { break };
                let runs: Vec<_> = inner
                    .slots
                    .iter()
                    .map(|slot| Arc::clone(slot).get(true))
                    .collect();
                drop(inner);
                join_all(runs).await;
            }
        });
        BackgroundRefresh { task: Some(task) }
    }

    fn readiness_state(&self) -> Status {
        self.inner.readiness.status()
    }

    fn startup_state(&self) -> Status {
        if self.is_startup_complete() {
            Status::Up
        } else {
            Status::Down
        }
    }

    async fn collect(&self, filter: impl Fn(&Slot) -> bool) -> HealthReport {
        let runs = self
            .inner
            .slots
            .iter()
            .filter(|slot| filter(slot))
            .map(|slot| {
                let name = Arc::clone(&slot.name);
                Arc::clone(slot)
                    .get(false)
                    .map(move |health| (name, health))
            });
        HealthReport {
            status: Status::Up,
            components: join_all(runs).await,
        }
    }
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistry")
            .field("checks", &self.check_names().collect::<Vec<_>>())
            .field("ready", &self.inner.readiness.is_ready())
            .field("startup_complete", &self.is_startup_complete())
            .finish()
    }
}

/// The readiness switch: ready by default; the app (or its shutdown coordinator) takes it out of
/// service so that `/health/ready` and `/health` answer `OUT_OF_SERVICE` (503) while
/// `/health/live` still passes.
///
/// Cheap to clone; all clones flip together.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    fn new() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    /// Takes the app out of service: readiness answers `OUT_OF_SERVICE`.
    pub fn set_out_of_service(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Puts the app back in service.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the app is in service.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// `UP` when ready, `OUT_OF_SERVICE` otherwise.
    pub fn status(&self) -> Status {
        if self.is_ready() {
            Status::Up
        } else {
            Status::OutOfService
        }
    }
}

/// The background task made by [`HealthRegistry::spawn_refresh`]; dropping it stops the task.
#[derive(Debug)]
pub struct BackgroundRefresh {
    task: Option<JoinHandle<()>>,
}

impl BackgroundRefresh {
    /// Lets the task run until every clone of the registry is gone.
    pub fn detach(mut self) {
        self.task = None;
    }
}

impl Drop for BackgroundRefresh {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use prometheus::{Encoder, TextEncoder};

    use super::*;

    fn counting(
        counter: &Arc<AtomicUsize>,
        delay: Duration,
        status: Status,
    ) -> impl HealthCheck + use<> {
        let counter = Arc::clone(counter);
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(delay).await;
                status
            }
        }
    }

    #[tokio::test]
    async fn a_slow_check_times_out_as_down_with_a_timeout_detail() {
        let registry = HealthRegistry::builder()
            .register(
                CheckRegistration::new("slow", || async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Status::Up
                })
                .readiness()
                .timeout(Duration::from_millis(50)),
            )
            .readiness("fast", || async { Status::Up })
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let report = registry.report(Probe::Readiness).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(report.status(), Status::Down);
        let slow = report.component("slow").unwrap();
        assert_eq!(slow.status(), Status::Down);
        assert_eq!(slow.details()["timeout"], "50ms");
        assert_eq!(report.component("fast").unwrap().status(), Status::Up);
    }

    #[tokio::test]
    async fn the_default_timeout_is_two_seconds() {
        assert_eq!(HealthRegistry::builder().timeout, Duration::from_secs(2));
        assert_eq!(HealthRegistry::builder().cache_ttl, Duration::from_secs(1));
    }

    #[tokio::test]
    async fn checks_run_concurrently() {
        let counter = Arc::new(AtomicUsize::new(0));
        let mut builder = HealthRegistry::builder();
        for i in 0..5 {
            builder = builder.readiness(
                format!("c{i}"),
                counting(&counter, Duration::from_millis(300), Status::Up),
            );
        }
        let registry = builder.build().unwrap();
        let started = std::time::Instant::now();
        assert_eq!(registry.report(Probe::Readiness).await.status(), Status::Up);
        // Five 300 ms checks one after another would take 1.5 s.
        assert!(
            started.elapsed() < Duration::from_millis(1_000),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(counter.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn results_are_cached_for_the_ttl() {
        let counter = Arc::new(AtomicUsize::new(0));
        let registry = HealthRegistry::builder()
            .readiness("db", counting(&counter, Duration::ZERO, Status::Up))
            .cache_ttl(Duration::from_secs(1))
            .build()
            .unwrap();
        for _ in 0..10 {
            registry.report(Probe::Readiness).await;
        }
        assert_eq!(counter.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(1_001)).await;
        registry.report(Probe::Readiness).await;
        registry.report_all().await;
        assert_eq!(counter.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_run_continues_when_its_caller_goes_away() {
        let counter = Arc::new(AtomicUsize::new(0));
        let registry = HealthRegistry::builder()
            .readiness(
                "db",
                counting(&counter, Duration::from_millis(100), Status::Up),
            )
            .cache_ttl(Duration::from_secs(60))
            .build()
            .unwrap();
        let abandoned =
            tokio::time::timeout(Duration::from_millis(10), registry.component("db")).await;
        assert!(abandoned.is_err());
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The abandoned run finished and filled the cache.
        assert_eq!(registry.component("db").await.unwrap().status(), Status::Up);
        assert_eq!(counter.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn liveness_runs_only_liveness_checks() {
        let dependency = Arc::new(AtomicUsize::new(0));
        let registry = HealthRegistry::builder()
            .readiness("db", counting(&dependency, Duration::ZERO, Status::Down))
            .build()
            .unwrap();
        let report = registry.report(Probe::Liveness).await;
        assert_eq!(report.status(), Status::Up);
        assert_eq!(report.components().len(), 0);
        assert_eq!(dependency.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_non_critical_check_reports_without_failing_the_aggregate() {
        let registry = HealthRegistry::builder()
            .register(
                CheckRegistration::new("search", || async { Status::Down })
                    .readiness()
                    .non_critical(),
            )
            .readiness("db", || async { Status::Up })
            .build()
            .unwrap();
        let report = registry.report(Probe::Readiness).await;
        assert_eq!(report.status(), Status::Up);
        let search = report.component("search").unwrap();
        assert_eq!(search.status(), Status::Down);
        assert!(!search.is_critical());
    }

    #[tokio::test]
    async fn a_panicking_check_is_down_and_runs_again_later() {
        let registry = HealthRegistry::builder()
            .register(
                CheckRegistration::new("bad", || async {
                    if true {
                        panic!("check bug");
                    }
                    Status::Up
                })
                .readiness()
                .cache_ttl(Duration::ZERO),
            )
            .build()
            .unwrap();
        for _ in 0..2 {
            let report = registry.report(Probe::Readiness).await;
            assert_eq!(report.status(), Status::Down);
            assert_eq!(
                report.component("bad").unwrap().details()["error"],
                "check panicked"
            );
        }
    }

    #[tokio::test]
    async fn startup_is_down_until_complete_then_follows_its_checks() {
        let registry = HealthRegistry::builder()
            .startup("migrations", || async { Status::Up })
            .build()
            .unwrap();
        let report = registry.report(Probe::Startup).await;
        assert_eq!(report.status(), Status::Down);
        assert_eq!(
            report.component(STARTUP_STATE).unwrap().status(),
            Status::Down
        );
        // The overall view does not wait for start-up.
        assert_eq!(registry.report_all().await.status(), Status::Up);
        registry.startup_complete();
        assert!(registry.is_startup_complete());
        assert_eq!(registry.report(Probe::Startup).await.status(), Status::Up);
    }

    #[tokio::test]
    async fn readiness_flips_out_of_service_and_back() {
        let registry = HealthRegistry::builder()
            .readiness("db", || async { Status::Up })
            .liveness("loop", || async { Status::Up })
            .build()
            .unwrap();
        let handle = registry.readiness();
        handle.set_out_of_service();
        assert!(!registry.readiness().is_ready());
        assert_eq!(
            registry.report(Probe::Readiness).await.status(),
            Status::OutOfService
        );
        assert_eq!(registry.report_all().await.status(), Status::OutOfService);
        assert_eq!(registry.report(Probe::Liveness).await.status(), Status::Up);
        handle.set_ready();
        assert_eq!(registry.report(Probe::Readiness).await.status(), Status::Up);
    }

    #[tokio::test]
    async fn background_refresh_runs_checks_without_requests() {
        let counter = Arc::new(AtomicUsize::new(0));
        let registry = HealthRegistry::builder()
            .readiness("db", counting(&counter, Duration::ZERO, Status::Up))
            .cache_ttl(Duration::from_secs(60))
            .build()
            .unwrap();
        let refresh = registry.spawn_refresh(Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let runs = counter.load(Ordering::SeqCst);
        assert!(runs >= 3, "only {runs} runs");
        drop(refresh);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after_stop = counter.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(counter.load(Ordering::SeqCst), after_stop);
    }

    #[test]
    fn bad_names_are_typed_errors() {
        let up = || async { Status::Up };
        let err = |name: &str| {
            HealthRegistry::builder()
                .readiness(name, up)
                .build()
                .unwrap_err()
        };
        assert!(matches!(err(""), BuildError::InvalidName(_)));
        assert!(matches!(err("a b"), BuildError::InvalidName(_)));
        assert!(matches!(err("a/b"), BuildError::InvalidName(_)));
        assert!(matches!(err(&"x".repeat(65)), BuildError::InvalidName(_)));
        assert!(matches!(err("ready"), BuildError::ReservedName(_)));
        assert!(matches!(err(READINESS_STATE), BuildError::ReservedName(_)));
        let duplicate = HealthRegistry::builder()
            .readiness("db", up)
            .liveness("db", up)
            .build()
            .unwrap_err();
        assert!(matches!(duplicate, BuildError::DuplicateName(name) if name == "db"));
    }

    #[tokio::test]
    async fn metrics_land_in_the_callers_registry() {
        let metrics = prometheus::Registry::new();
        let registry = HealthRegistry::builder()
            .readiness("db", || async { Status::Up })
            .readiness("cache", || async { Status::Down })
            .metrics(&metrics)
            .build()
            .unwrap();
        registry.report(Probe::Readiness).await;
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&metrics.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("# HELP health_check_status "), "{text}");
        assert!(text.contains("# TYPE health_check_status gauge"), "{text}");
        assert!(
            text.contains("health_check_status{check=\"db\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("health_check_status{check=\"cache\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE health_check_duration_seconds gauge"),
            "{text}"
        );
        assert!(
            text.contains("health_check_duration_seconds{check=\"db\"} "),
            "{text}"
        );

        // A second registry in the same process, with its own Prometheus registry, is fine;
        // the same Prometheus registry twice is a typed error.
        let other = prometheus::Registry::new();
        HealthRegistry::builder().metrics(&other).build().unwrap();
        let again = HealthRegistry::builder()
            .metrics(&metrics)
            .build()
            .unwrap_err();
        assert!(matches!(again, BuildError::Metrics(_)));
    }
}
