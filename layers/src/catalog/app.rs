//! Application metrics: build info, uptime, queue depth, workers, background tasks and
//! authentication outcomes.
//!
//! [`AppMetrics`] is built with [`AppMetrics::builder`] and registered into a caller-supplied
//! [`Registry`]. It is a cheap [`Clone`] handle: keep one in your application state and call it
//! from anywhere.
//!
//! | metric | type | labels | set by |
//! |---|---|---|---|
//! | `app_info` | gauge, always 1 | `version`, `commit` | the builder |
//! | `app_uptime_seconds` | gauge | | computed at scrape time |
//! | `app_requests_queue_depth` | gauge | | [`AppMetrics::set_requests_queue_depth`] |
//! | `app_workers` | gauge | | [`AppMetrics::set_workers`] |
//! | `app_background_tasks_total` | counter | `task`, `outcome` | [`AppMetrics::track`] |
//! | `app_background_task_duration_seconds` | histogram | `task` | [`AppMetrics::track`] |
//! | `app_auth_attempts_total` | counter | `outcome` = `success` \| `failure` | [`AppMetrics::auth_succeeded`], [`AppMetrics::auth_failed`] |
//! | `app_auth_failures_total` | counter | `reason` | [`AppMetrics::auth_failed`] |
//!
//! Label sets are bounded by construction: `task` and `reason` are `&'static str` (write a
//! literal per kind of task or failure, never an id), and a failure reason outside the configured
//! set ([`DEFAULT_AUTH_FAILURE_REASONS`] unless changed) is counted as `other`.
//!
//! `app_rate_limit_exceeded_total` belongs to the rate-limit layer, which registers it.
//!
//! # Background tasks
//!
//! [`AppMetrics::track`] wraps a future. When it ends, `app_background_tasks_total{task, outcome}`
//! goes up by one, with `outcome` one of
//! - `ok`: it completed with `Ok(_)` (or `()`, see [`TaskOutput`]);
//! - `error`: it completed with `Err(_)`;
//! - `cancelled`: it was dropped before completing (aborted, timed out, lost a `select!`);
//! - `panicked`: its `poll` panicked.
//!
//! `app_background_task_duration_seconds{task}` observes the time from the first poll to
//! completion for the runs that completed (`ok` or `error`); cancelled and panicked runs have no
//! meaningful duration and are only counted.
//!
//! # Example
//!
//! ```
//! use covet_layers::catalog::app::AppMetrics;
//! use prometheus::{Encoder, Registry, TextEncoder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new();
//! let app = AppMetrics::builder()
//!     .version("1.2.3")
//!     .commit("abc")
//!     .build(&registry)?;
//!
//! app.set_workers(4);
//! let rows = app
//!     .track("cleanup", async { Ok::<_, std::io::Error>(12) })
//!     .await?;
//! assert_eq!(rows, 12);
//! app.auth_failed("invalid_credentials");
//! app.auth_failed("made_up_reason"); // counted as `other`
//!
//! let mut text = Vec::new();
//! TextEncoder::new().encode(&registry.gather(), &mut text)?;
//! let text = String::from_utf8(text)?;
//! assert!(text.contains("app_info{commit=\"abc\",version=\"1.2.3\"} 1\n"));
//! assert!(text.contains("app_workers 4\n"));
//! assert!(text.contains("app_background_tasks_total{outcome=\"ok\",task=\"cleanup\"} 1\n"));
//! assert!(text.contains("app_auth_attempts_total{outcome=\"failure\"} 2\n"));
//! assert!(text.contains("app_auth_failures_total{reason=\"other\"} 1\n"));
//! # Ok(())
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use pin_project_lite::pin_project;
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::register_collector;
use crate::metrics::MetricsError;

/// The default buckets of `app_background_task_duration_seconds`, in seconds: 10 ms to 1 h,
/// because background work ranges from cache refreshes to nightly jobs.
pub const DEFAULT_TASK_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// The default `reason` values of `app_auth_failures_total`, besides [`OTHER_REASON`].
pub const DEFAULT_AUTH_FAILURE_REASONS: [&str; 5] = [
    "missing_credentials",
    "invalid_credentials",
    "expired_credentials",
    "account_locked",
    "mfa_failed",
];

/// The `reason` under which any failure outside the configured set is counted.
pub const OTHER_REASON: &str = "other";

/// The most authentication failure reasons [`AppMetricsBuilder::auth_failure_reasons`] accepts.
pub const MAX_AUTH_FAILURE_REASONS: usize = 32;

/// Builds and registers [`AppMetrics`]; made by [`AppMetrics::builder`].
#[derive(Debug, Clone)]
pub struct AppMetricsBuilder {
    version: String,
    commit: String,
    started_at: Option<Instant>,
    task_duration_buckets: Vec<f64>,
    auth_failure_reasons: Vec<&'static str>,
}

impl Default for AppMetricsBuilder {
    fn default() -> Self {
        Self {
            version: "unknown".to_owned(),
            commit: "unknown".to_owned(),
            started_at: None,
            task_duration_buckets: DEFAULT_TASK_DURATION_BUCKETS.to_vec(),
            auth_failure_reasons: DEFAULT_AUTH_FAILURE_REASONS.to_vec(),
        }
    }
}

impl AppMetricsBuilder {
    /// The `version` label of `app_info`, usually `env!("CARGO_PKG_VERSION")` of your binary.
    ///
    /// Defaults to `unknown`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The `commit` label of `app_info`, usually the VCS revision baked in at build time.
    ///
    /// Defaults to `unknown`.
    pub fn commit(mut self, commit: impl Into<String>) -> Self {
        self.commit = commit.into();
        self
    }

    /// When the application started; `app_uptime_seconds` counts from here.
    ///
    /// Defaults to the moment [`build`](Self::build) is called.
    pub fn started_at(mut self, started_at: Instant) -> Self {
        self.started_at = Some(started_at);
        self
    }

    /// The upper bounds of the `app_background_task_duration_seconds` buckets, in seconds:
    /// finite and strictly increasing.
    ///
    /// Defaults to [`DEFAULT_TASK_DURATION_BUCKETS`] (10 ms to 1 h).
    pub fn task_duration_buckets(mut self, buckets: impl Into<Vec<f64>>) -> Self {
        self.task_duration_buckets = buckets.into();
        self
    }

    /// The failure reasons counted under their own name in `app_auth_failures_total`; any other
    /// reason passed to [`AppMetrics::auth_failed`] is counted as [`OTHER_REASON`]. Every reason
    /// is exported (at 0) from the first scrape. At most [`MAX_AUTH_FAILURE_REASONS`].
    ///
    /// Defaults to [`DEFAULT_AUTH_FAILURE_REASONS`].
    pub fn auth_failure_reasons(mut self, reasons: impl IntoIterator<Item = &'static str>) -> Self {
        self.auth_failure_reasons = reasons.into_iter().collect();
        self
    }

    /// Creates the metrics and registers them into `registry`.
    ///
    /// Fails with [`MetricsError::Setting`] for empty or unordered buckets, an empty reason or
    /// too many reasons, and with [`MetricsError::Register`] if the registry already has one of
    /// these families; nothing is registered then.
    pub fn build(self, registry: &Registry) -> Result<AppMetrics, MetricsError> {
        let metrics = self.create()?;
        register_collector(registry, Box::new(metrics.clone()), &metrics.inner.descs)?;
        Ok(metrics)
    }

    fn create(self) -> Result<AppMetrics, MetricsError> {
        let buckets = self.task_duration_buckets;
        if buckets.is_empty() {
            return Err(setting("task_duration_buckets", "must not be empty"));
        }
        if buckets.iter().any(|b| !b.is_finite()) || buckets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(setting(
                "task_duration_buckets",
                "must be finite and strictly increasing",
            ));
        }
        let mut reasons = self.auth_failure_reasons;
        if reasons.iter().any(|r| r.is_empty()) {
            return Err(setting("auth_failure_reasons", "must not contain \"\""));
        }
        reasons.retain(|r| *r != OTHER_REASON);
        reasons.sort_unstable();
        reasons.dedup();
        if reasons.len() > MAX_AUTH_FAILURE_REASONS {
            return Err(setting(
                "auth_failure_reasons",
                &format!(
                    "has {} reasons; at most {MAX_AUTH_FAILURE_REASONS} are allowed",
                    reasons.len()
                ),
            ));
        }

        let info = IntGauge::with_opts(
            Opts::new(
                "app_info",
                "Build information of the application; the value is always 1.",
            )
            .const_label("version", self.version)
            .const_label("commit", self.commit),
        )
        .map_err(|e| MetricsError::create("app_info", e))?;
        info.set(1);
        let uptime = Gauge::with_opts(Opts::new(
            "app_uptime_seconds",
            "Seconds since the application started.",
        ))
        .map_err(|e| MetricsError::create("app_uptime_seconds", e))?;
        let requests_queue_depth = IntGauge::with_opts(Opts::new(
            "app_requests_queue_depth",
            "Requests waiting to be handled, as reported by the application.",
        ))
        .map_err(|e| MetricsError::create("app_requests_queue_depth", e))?;
        let workers = IntGauge::with_opts(Opts::new(
            "app_workers",
            "Workers of the application, as reported by the application.",
        ))
        .map_err(|e| MetricsError::create("app_workers", e))?;
        let tasks = IntCounterVec::new(
            Opts::new(
                "app_background_tasks_total",
                "Background task runs that ended, by task and outcome (ok, error, cancelled, panicked).",
            ),
            &["task", "outcome"],
        )
        .map_err(|e| MetricsError::create("app_background_tasks_total", e))?;
        let task_duration = HistogramVec::new(
            HistogramOpts::new(
                "app_background_task_duration_seconds",
                "Duration of background task runs that completed (ok or error), by task.",
            )
            .buckets(buckets),
            &["task"],
        )
        .map_err(|e| MetricsError::create("app_background_task_duration_seconds", e))?;
        let auth_attempts = IntCounterVec::new(
            Opts::new(
                "app_auth_attempts_total",
                "Authentication attempts, by outcome (success, failure).",
            ),
            &["outcome"],
        )
        .map_err(|e| MetricsError::create("app_auth_attempts_total", e))?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "app_auth_failures_total",
                "Failed authentication attempts, by reason.",
            ),
            &["reason"],
        )
        .map_err(|e| MetricsError::create("app_auth_failures_total", e))?;

        let collectors: [&dyn Collector; 8] = [
            &info,
            &uptime,
            &requests_queue_depth,
            &workers,
            &tasks,
            &task_duration,
            &auth_attempts,
            &auth_failures,
        ];
        let descs = collectors
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();

        // Every bounded series exists from the first scrape, so `rate()` sees the first event.
        let auth_success = auth_attempts.with_label_values(&["success"]);
        let auth_failure = auth_attempts.with_label_values(&["failure"]);
        let auth_reasons = reasons
            .iter()
            .map(|r| (*r, auth_failures.with_label_values(&[r])))
            .collect();
        let auth_other = auth_failures.with_label_values(&[OTHER_REASON]);

        Ok(AppMetrics {
            inner: Arc::new(Inner {
                started_at: self.started_at.unwrap_or_else(Instant::now),
                descs,
                info,
                uptime,
                requests_queue_depth,
                workers,
                tasks,
                task_duration,
                auth_attempts,
                auth_failures,
                auth_success,
                auth_failure,
                auth_reasons,
                auth_other,
            }),
        })
    }
}

fn setting(setting: &'static str, problem: &str) -> MetricsError {
    MetricsError::Setting {
        setting,
        problem: problem.to_owned(),
    }
}

/// Application metrics for one [`Registry`]; clones share the same series.
///
/// Built with [`AppMetrics::builder`]. It is also the [`Collector`] that
/// [`AppMetricsBuilder::build`] registers.
#[derive(Clone)]
pub struct AppMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    started_at: Instant,
    descs: Vec<Desc>,
    info: IntGauge,
    uptime: Gauge,
    requests_queue_depth: IntGauge,
    workers: IntGauge,
    tasks: IntCounterVec,
    task_duration: HistogramVec,
    auth_attempts: IntCounterVec,
    auth_failures: IntCounterVec,
    auth_success: IntCounter,
    auth_failure: IntCounter,
    auth_reasons: Vec<(&'static str, IntCounter)>,
    auth_other: IntCounter,
}

impl AppMetrics {
    /// A builder with every setting at its default.
    pub fn builder() -> AppMetricsBuilder {
        AppMetricsBuilder::default()
    }

    /// The `app_requests_queue_depth` gauge, to `inc`/`dec` as requests queue and dequeue.
    pub fn requests_queue_depth(&self) -> &IntGauge {
        &self.inner.requests_queue_depth
    }

    /// Sets `app_requests_queue_depth`.
    pub fn set_requests_queue_depth(&self, depth: i64) {
        self.inner.requests_queue_depth.set(depth);
    }

    /// The `app_workers` gauge.
    pub fn workers(&self) -> &IntGauge {
        &self.inner.workers
    }

    /// Sets `app_workers`.
    pub fn set_workers(&self, workers: i64) {
        self.inner.workers.set(workers);
    }

    /// Counts a successful authentication: `app_auth_attempts_total{outcome="success"}`.
    pub fn auth_succeeded(&self) {
        self.inner.auth_success.inc();
    }

    /// Counts a failed authentication: `app_auth_attempts_total{outcome="failure"}` and
    /// `app_auth_failures_total{reason}`, where `reason` is one of the configured reasons
    /// ([`DEFAULT_AUTH_FAILURE_REASONS`] by default) or else [`OTHER_REASON`].
    pub fn auth_failed(&self, reason: &'static str) {
        let inner = &*self.inner;
        inner.auth_failure.inc();
        inner
            .auth_reasons
            .iter()
            .find(|(known, _)| *known == reason)
            .map_or(&inner.auth_other, |(_, counter)| counter)
            .inc();
    }

    /// Wraps `future` so that its end is counted in `app_background_tasks_total{task, outcome}`
    /// and, if it completes, its duration observed in `app_background_task_duration_seconds`.
    ///
    /// `task` names the kind of work (`"cleanup"`, `"send_emails"`); it is a label value, so
    /// use a fixed literal, never an id. See the [module docs](self) for the outcomes.
    ///
    /// ```
    /// # use covet_layers::catalog::app::AppMetrics;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let app = AppMetrics::builder().build(&prometheus::Registry::new()).unwrap();
    /// let handle = tokio::spawn(app.track("refresh_cache", async {
    ///     // ... the work ...
    ///     Ok::<(), std::io::Error>(())
    /// }));
    /// # handle.await.unwrap().unwrap();
    /// # }
    /// ```
    pub fn track<F>(&self, task: &'static str, future: F) -> Tracked<F>
    where
        F: Future,
        F::Output: TaskOutput,
    {
        Tracked {
            future,
            run: Run {
                metrics: self.clone(),
                task,
                started_at: None,
                in_poll: false,
                ended: false,
            },
        }
    }

    fn record(&self, task: &'static str, outcome: TaskOutcome, duration: Option<Duration>) {
        self.inner
            .tasks
            .with_label_values(&[task, outcome.as_str()])
            .inc();
        if let Some(duration) = duration {
            self.inner
                .task_duration
                .with_label_values(&[task])
                .observe(duration.as_secs_f64());
        }
    }
}

impl fmt::Debug for AppMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppMetrics")
            .field("started_at", &self.inner.started_at)
            .field("auth_failure_reasons", &self.inner.auth_reasons.len())
            .finish_non_exhaustive()
    }
}

impl Collector for AppMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let inner = &*self.inner;
        inner.uptime.set(inner.started_at.elapsed().as_secs_f64());
        let collectors: [&dyn Collector; 8] = [
            &inner.info,
            &inner.uptime,
            &inner.requests_queue_depth,
            &inner.workers,
            &inner.tasks,
            &inner.task_duration,
            &inner.auth_attempts,
            &inner.auth_failures,
        ];
        collectors.iter().flat_map(|c| c.collect()).collect()
    }
}

/// How a tracked background task ended: the `outcome` label of `app_background_tasks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// Completed successfully: `ok`.
    Ok,
    /// Completed with an error: `error`.
    Error,
    /// Dropped before completing: `cancelled`.
    Cancelled,
    /// Its `poll` panicked: `panicked`.
    Panicked,
}

impl TaskOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
            Self::Panicked => "panicked",
        }
    }
}

/// The output of a future that [`AppMetrics::track`] can classify as `ok` or `error`.
///
/// Implemented for `Result<T, E>` (`Err` is an error) and `()` (always ok).
pub trait TaskOutput {
    /// Whether this output counts as `error` rather than `ok`.
    fn is_error(&self) -> bool;
}

impl<T, E> TaskOutput for Result<T, E> {
    fn is_error(&self) -> bool {
        self.is_err()
    }
}

impl TaskOutput for () {
    fn is_error(&self) -> bool {
        false
    }
}

pin_project! {
    /// The future returned by [`AppMetrics::track`]: the wrapped future, counted when it ends.
    #[must_use = "futures do nothing unless polled"]
    pub struct Tracked<F> {
        #[pin]
        future: F,
        run: Run,
    }
}

impl<F: fmt::Debug> fmt::Debug for Tracked<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("task", &self.run.task)
            .field("future", &self.future)
            .finish()
    }
}

/// The bookkeeping of one tracked run; counts `cancelled` or `panicked` if dropped unended.
struct Run {
    metrics: AppMetrics,
    task: &'static str,
    started_at: Option<Instant>,
    in_poll: bool,
    ended: bool,
}

impl<F> Future for Tracked<F>
where
    F: Future,
    F::Output: TaskOutput,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let run = this.run;
        let started_at = *run.started_at.get_or_insert_with(Instant::now);
        // Still `true` when dropped only if the inner poll unwound.
        run.in_poll = true;
        let poll = this.future.poll(cx);
        run.in_poll = false;
        if let Poll::Ready(output) = &poll
            && !run.ended
        {
            run.ended = true;
            let outcome = if output.is_error() {
                TaskOutcome::Error
            } else {
                TaskOutcome::Ok
            };
            run.metrics
                .record(run.task, outcome, Some(started_at.elapsed()));
        }
        poll
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.ended {
            let outcome = if self.in_poll {
                TaskOutcome::Panicked
            } else {
                TaskOutcome::Cancelled
            };
            self.metrics.record(self.task, outcome, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_promtool_clean, encode, sample};

    fn registered() -> (Registry, AppMetrics) {
        let registry = Registry::new();
        let app = AppMetrics::builder()
            .version("1.2.3")
            .commit("abc")
            .build(&registry)
            .unwrap();
        (registry, app)
    }

    #[tokio::test]
    async fn info_is_one_with_version_and_commit() {
        let (registry, _app) = registered();
        let text = encode(&registry);
        assert_eq!(
            sample(&text, "app_info{commit=\"abc\",version=\"1.2.3\"}"),
            Some(1.0),
            "{text}"
        );
    }

    #[tokio::test]
    async fn defaults_say_unknown() {
        let registry = Registry::new();
        AppMetrics::builder().build(&registry).unwrap();
        let text = encode(&registry);
        assert_eq!(
            sample(&text, "app_info{commit=\"unknown\",version=\"unknown\"}"),
            Some(1.0),
            "{text}"
        );
    }

    #[tokio::test]
    async fn uptime_is_computed_at_scrape_time() {
        let registry = Registry::new();
        let started = Instant::now()
            .checked_sub(Duration::from_secs(3))
            .expect("the monotonic clock is older than 3 s");
        AppMetrics::builder()
            .started_at(started)
            .build(&registry)
            .unwrap();
        let first = sample(&encode(&registry), "app_uptime_seconds").unwrap();
        assert!((3.0..60.0).contains(&first), "{first}");
        std::thread::sleep(Duration::from_millis(20));
        let second = sample(&encode(&registry), "app_uptime_seconds").unwrap();
        assert!(second > first, "{first} then {second}");
    }

    #[tokio::test]
    async fn queue_depth_and_workers_are_what_the_app_sets() {
        let (registry, app) = registered();
        app.set_requests_queue_depth(7);
        app.requests_queue_depth().dec();
        app.set_workers(3);
        app.clone().workers().inc();
        let text = encode(&registry);
        assert_eq!(sample(&text, "app_requests_queue_depth"), Some(6.0));
        assert_eq!(sample(&text, "app_workers"), Some(4.0));
    }

    #[tokio::test]
    async fn track_counts_ok_and_error_and_times_them() {
        let (registry, app) = registered();
        let ok = app.track("sync", async { Ok::<_, &str>(1) }).await;
        let err = app.track("sync", async { Err::<u8, _>("boom") }).await;
        app.track("unit", async {}).await;
        assert_eq!(ok, Ok(1));
        assert_eq!(err, Err("boom"));

        let text = encode(&registry);
        let count = |outcome: &str, task: &str| {
            sample(
                &text,
                &format!("app_background_tasks_total{{outcome=\"{outcome}\",task=\"{task}\"}}"),
            )
        };
        assert_eq!(count("ok", "sync"), Some(1.0), "{text}");
        assert_eq!(count("error", "sync"), Some(1.0), "{text}");
        assert_eq!(count("ok", "unit"), Some(1.0), "{text}");
        assert_eq!(
            sample(
                &text,
                "app_background_task_duration_seconds_count{task=\"sync\"}"
            ),
            Some(2.0),
            "{text}"
        );
    }

    #[tokio::test]
    async fn dropped_before_completion_is_cancelled() {
        let (registry, app) = registered();
        // Never polled.
        drop(app.track("never", async { Ok::<(), ()>(()) }));
        // Polled, then abandoned by a timeout-like select.
        let mut pending = Box::pin(app.track("stuck", std::future::pending::<Result<(), ()>>()));
        let waker = std::task::Waker::noop();
        assert!(
            pending
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        drop(pending);

        let text = encode(&registry);
        for task in ["never", "stuck"] {
            assert_eq!(
                sample(
                    &text,
                    &format!("app_background_tasks_total{{outcome=\"cancelled\",task=\"{task}\"}}")
                ),
                Some(1.0),
                "{text}"
            );
        }
        assert!(!text.contains("app_background_task_duration_seconds_count{task=\"stuck\"}"));
    }

    #[tokio::test]
    async fn a_panicking_task_is_counted_as_panicked() {
        let (registry, app) = registered();
        let handle = tokio::spawn(app.track("explodes", async {
            if true {
                panic!("task panicked on purpose");
            }
            Ok::<(), ()>(())
        }));
        assert!(handle.await.unwrap_err().is_panic());
        let text = encode(&registry);
        assert_eq!(
            sample(
                &text,
                "app_background_tasks_total{outcome=\"panicked\",task=\"explodes\"}"
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[tokio::test]
    async fn auth_outcomes_and_bounded_reasons() {
        let (registry, app) = registered();
        // Every series exists at 0 before the first event.
        let text = encode(&registry);
        assert_eq!(
            sample(&text, "app_auth_attempts_total{outcome=\"success\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "app_auth_failures_total{reason=\"other\"}"),
            Some(0.0)
        );

        app.auth_succeeded();
        app.auth_succeeded();
        app.auth_failed("invalid_credentials");
        app.auth_failed("expired_credentials");
        app.auth_failed("user 42 typed the wrong thing");
        app.auth_failed("other");

        let text = encode(&registry);
        assert_eq!(
            sample(&text, "app_auth_attempts_total{outcome=\"success\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "app_auth_attempts_total{outcome=\"failure\"}"),
            Some(4.0)
        );
        assert_eq!(
            sample(
                &text,
                "app_auth_failures_total{reason=\"invalid_credentials\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "app_auth_failures_total{reason=\"other\"}"),
            Some(2.0)
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("app_auth_failures_total{"))
                .count(),
            DEFAULT_AUTH_FAILURE_REASONS.len() + 1,
            "{text}"
        );
    }

    #[tokio::test]
    async fn custom_reasons_replace_the_default_set() {
        let registry = Registry::new();
        let app = AppMetrics::builder()
            .auth_failure_reasons(["bad_password", "bad_otp", "bad_otp", "other"])
            .build(&registry)
            .unwrap();
        app.auth_failed("bad_otp");
        app.auth_failed("invalid_credentials");
        let text = encode(&registry);
        assert_eq!(
            sample(&text, "app_auth_failures_total{reason=\"bad_otp\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "app_auth_failures_total{reason=\"other\"}"),
            Some(1.0)
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("app_auth_failures_total{"))
                .count(),
            3,
            "{text}"
        );
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        let registry = Registry::new();
        let errors = [
            AppMetrics::builder()
                .task_duration_buckets(Vec::new())
                .build(&registry),
            AppMetrics::builder()
                .task_duration_buckets([1.0, 0.5])
                .build(&registry),
            AppMetrics::builder()
                .task_duration_buckets([1.0, f64::INFINITY])
                .build(&registry),
            AppMetrics::builder()
                .auth_failure_reasons([""])
                .build(&registry),
            AppMetrics::builder()
                .auth_failure_reasons(
                    (0..=MAX_AUTH_FAILURE_REASONS)
                        .map(|i| &*Box::leak(format!("r{i}").into_boxed_str())),
                )
                .build(&registry),
        ];
        for error in errors {
            assert!(
                matches!(error, Err(MetricsError::Setting { .. })),
                "{error:?}"
            );
        }
        // Nothing was registered by the failed attempts.
        assert!(registry.gather().is_empty());
    }

    #[test]
    fn registering_twice_is_a_register_error() {
        let registry = Registry::new();
        AppMetrics::builder().build(&registry).unwrap();
        let error = AppMetrics::builder().build(&registry).unwrap_err();
        assert!(
            matches!(&error, MetricsError::Register { name, .. } if name.starts_with("app_")),
            "{error:?}"
        );
    }

    /// Every metric of this module, `system` and `websocket` in one registry, as the `/metrics`
    /// endpoint would serve it, passes Prometheus's own linter.
    #[tokio::test]
    async fn all_metrics_pass_promtool() {
        let registry = Registry::new();
        #[cfg(feature = "system-metrics")]
        crate::catalog::system::SystemMetrics::register(&registry).unwrap();
        let ws = crate::catalog::websocket::WebSocketMetrics::register(&registry).unwrap();
        let app = AppMetrics::builder()
            .version("1.2.3")
            .commit("abc")
            .build(&registry)
            .unwrap();

        let conn = ws.connection_opened();
        conn.message_sent();
        conn.message_received();
        assert!(app.track("sync", async { Ok::<(), ()>(()) }).await.is_ok());
        assert!(
            app.track("sync", async { Err::<(), ()>(()) })
                .await
                .is_err()
        );
        app.auth_succeeded();
        app.auth_failed("invalid_credentials");

        let text = encode(&registry);
        for name in [
            "system_cpu_usage_ratio",
            "tokio_runtime_workers",
            "app_info",
            "app_background_task_duration_seconds_bucket",
            "websocket_connections_active",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        assert_promtool_clean(&text);
    }
}
