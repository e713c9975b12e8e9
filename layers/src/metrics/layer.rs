//! [`MetricsLayer`], its builder, and the bounded cache of per-label-set metric handles.

use std::{
    borrow::Cow,
    collections::HashSet,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex, PoisonError, RwLock},
};

use http::StatusCode;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, core::Collector,
};

use super::{
    MetricsError,
    labels::{ClassifyRoute, METHODS, NoClassifier, ROUTE_OVERFLOW, ROUTE_UNKNOWN, UserAgentClass},
    service::Metrics,
};

/// Duration buckets of `http_server_request_duration_seconds`, in seconds: the OpenTelemetry
/// HTTP semantic conventions' advice.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Size buckets of the request and response body-size histograms, in bytes.
pub const SIZE_BUCKETS: [f64; 7] = [
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
    10_000_000.0,
    100_000_000.0,
];

/// The default cap on distinct `(method, route, status)` label sets.
pub const DEFAULT_MAX_LABEL_SETS: usize = 2_000;

/// Records RED metrics (rate, errors, duration) per route template. See the
/// [module docs](super).
#[derive(Clone, Debug)]
pub struct MetricsLayer<C = NoClassifier> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) classifier: C,
}

impl MetricsLayer {
    /// A layer with the defaults, registered into `registry`.
    ///
    /// Fails if the registry already holds these metric families (for instance, a second
    /// layer on the same registry: share one layer by cloning it instead).
    pub fn new(registry: &Registry) -> Result<Self, MetricsError> {
        Self::builder().build(registry)
    }

    /// A builder with the defaults.
    pub fn builder() -> MetricsLayerBuilder {
        MetricsLayerBuilder {
            excluded: vec![
                PathMatch::Exact("/metrics".into()),
                PathMatch::Prefix("/health".into()),
            ],
            max_label_sets: DEFAULT_MAX_LABEL_SETS,
            classifier: NoClassifier,
            user_agent_classes: true,
        }
    }
}

impl<S, C: Clone> tower_layer::Layer<S> for MetricsLayer<C> {
    type Service = Metrics<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics::new(inner, self.shared.clone(), self.classifier.clone())
    }
}

#[derive(Clone, Debug)]
enum PathMatch {
    Exact(Cow<'static, str>),
    Prefix(Cow<'static, str>),
}

/// Configures a [`MetricsLayer`]. Created by [`MetricsLayer::builder`].
#[derive(Clone, Debug)]
pub struct MetricsLayerBuilder<C = NoClassifier> {
    excluded: Vec<PathMatch>,
    max_label_sets: usize,
    classifier: C,
    user_agent_classes: bool,
}

impl<C> MetricsLayerBuilder<C> {
    /// Excludes requests to exactly this path from the HTTP metrics.
    ///
    /// Defaults to `/metrics` (and the `/health` prefix).
    pub fn exclude_path(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.excluded.push(PathMatch::Exact(path.into()));
        self
    }

    /// Excludes requests whose path starts with `prefix`.
    ///
    /// Defaults to `/health` (and the exact path `/metrics`).
    pub fn exclude_prefix(mut self, prefix: impl Into<Cow<'static, str>>) -> Self {
        self.excluded.push(PathMatch::Prefix(prefix.into()));
        self
    }

    /// Removes every exclusion, including the defaults, so probes and scrapes are measured too.
    pub fn clear_exclusions(mut self) -> Self {
        self.excluded.clear();
        self
    }

    /// The most distinct `(method, route, status)` label sets recorded. Past the cap, new label
    /// sets are recorded with route `OVERFLOW` and counted in
    /// `http_server_label_sets_dropped_total`.
    ///
    /// Defaults to [`DEFAULT_MAX_LABEL_SETS`] (2,000). Must be at least 1.
    pub fn max_label_sets(mut self, max: usize) -> Self {
        self.max_label_sets = max;
        self
    }

    /// Whether `http_requests_by_user_agent_total{class}` is recorded.
    ///
    /// Defaults to `true`.
    pub fn user_agent_classes(mut self, enabled: bool) -> Self {
        self.user_agent_classes = enabled;
        self
    }

    /// Finds route templates for requests that carry no axum `MatchedPath` (hyper, tonic, or
    /// axum layers outside the router). See [`ClassifyRoute`].
    ///
    /// Defaults to none: such requests get the sentinel routes.
    pub fn classify_route<C2: ClassifyRoute>(self, classifier: C2) -> MetricsLayerBuilder<C2> {
        MetricsLayerBuilder {
            excluded: self.excluded,
            max_label_sets: self.max_label_sets,
            classifier,
            user_agent_classes: self.user_agent_classes,
        }
    }

    /// Creates the metric families and registers them into `registry`.
    pub fn build(self, registry: &Registry) -> Result<MetricsLayer<C>, MetricsError> {
        if self.max_label_sets == 0 {
            return Err(MetricsError::Setting {
                setting: "max_label_sets",
                problem: "must be at least 1".into(),
            });
        }
        let labels = ["method", "route", "status"];
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by method, route template and status code.",
            ),
            &labels,
        )
        .map_err(|e| MetricsError::create("http_requests_total", e))?;
        let duration = histogram_vec(
            "http_server_request_duration_seconds",
            "Time from receiving an HTTP request to its response head, in seconds.",
            &DURATION_BUCKETS,
            &labels,
        )?;
        let request_size = histogram_vec(
            "http_server_request_body_size_bytes",
            "Size of HTTP request bodies in bytes: the exact size when known, else the bytes read.",
            &SIZE_BUCKETS,
            &labels,
        )?;
        let response_size = histogram_vec(
            "http_server_response_body_size_bytes",
            "Size of HTTP response bodies in bytes, counted as they are sent.",
            &SIZE_BUCKETS,
            &labels,
        )?;
        let active = IntGaugeVec::new(
            Opts::new(
                "http_server_active_requests",
                "HTTP requests being handled right now, by method.",
            ),
            &["method"],
        )
        .map_err(|e| MetricsError::create("http_server_active_requests", e))?;
        let exceptions = IntCounterVec::new(
            Opts::new(
                "http_server_exceptions_total",
                "HTTP requests whose service returned an error (kind=error) or panicked (kind=panic).",
            ),
            &["method", "route", "kind"],
        )
        .map_err(|e| MetricsError::create("http_server_exceptions_total", e))?;
        let user_agents = IntCounterVec::new(
            Opts::new(
                "http_requests_by_user_agent_total",
                "HTTP requests by user-agent class (browser, bot, cli, sdk, other).",
            ),
            &["class"],
        )
        .map_err(|e| MetricsError::create("http_requests_by_user_agent_total", e))?;
        let dropped = IntCounter::new(
            "http_server_label_sets_dropped_total",
            "New HTTP metric label sets recorded under route OVERFLOW because the cap was reached.",
        )
        .map_err(|e| MetricsError::create("http_server_label_sets_dropped_total", e))?;

        let mut collectors: Vec<(&str, Box<dyn Collector>)> = vec![
            ("http_requests_total", Box::new(requests.clone())),
            (
                "http_server_request_duration_seconds",
                Box::new(duration.clone()),
            ),
            (
                "http_server_request_body_size_bytes",
                Box::new(request_size.clone()),
            ),
            (
                "http_server_response_body_size_bytes",
                Box::new(response_size.clone()),
            ),
            ("http_server_active_requests", Box::new(active.clone())),
            ("http_server_exceptions_total", Box::new(exceptions.clone())),
            (
                "http_server_label_sets_dropped_total",
                Box::new(dropped.clone()),
            ),
        ];
        if self.user_agent_classes {
            collectors.push((
                "http_requests_by_user_agent_total",
                Box::new(user_agents.clone()),
            ));
        }
        for (name, collector) in collectors {
            registry
                .register(collector)
                .map_err(|e| MetricsError::register(name, e))?;
        }

        let active = std::array::from_fn(|i| active.with_label_values(&[METHODS[i]]));
        let user_agents = self.user_agent_classes.then(|| {
            UserAgentClass::ALL.map(|class| user_agents.with_label_values(&[class.as_str()]))
        });
        Ok(MetricsLayer {
            shared: Arc::new(Shared {
                families: Families {
                    requests,
                    duration,
                    request_size,
                    response_size,
                },
                cache: RwLock::new(SeriesCache::default()),
                max_label_sets: self.max_label_sets,
                dropped,
                active,
                user_agents,
                exceptions,
                exception_sets: Mutex::new(HashSet::new()),
                excluded: self.excluded.into_boxed_slice(),
            }),
            classifier: self.classifier,
        })
    }
}

fn histogram_vec(
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> Result<HistogramVec, MetricsError> {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .map_err(|e| MetricsError::create(name, e))
}

#[derive(Debug)]
pub(crate) struct Families {
    requests: IntCounterVec,
    duration: HistogramVec,
    request_size: HistogramVec,
    response_size: HistogramVec,
}

/// The cached handles of one `(method, route, status)` label set.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) requests: IntCounter,
    pub(crate) duration: Histogram,
    pub(crate) request_size: Histogram,
    pub(crate) response_size: Histogram,
}

#[derive(Debug, PartialEq, Eq)]
struct SeriesKey {
    method: u8,
    status: u16,
    route: Box<str>,
}

/// The borrowed form of [`SeriesKey`], looked up without allocating.
struct SeriesKeyRef<'a> {
    method: u8,
    status: u16,
    route: &'a str,
}

fn hash_key<H: Hasher>(method: u8, status: u16, route: &str, state: &mut H) {
    state.write_u8(method);
    state.write_u16(status);
    route.hash(state);
}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_key(self.method, self.status, &self.route, state);
    }
}

impl Hash for SeriesKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_key(self.method, self.status, self.route, state);
    }
}

impl hashbrown::Equivalent<SeriesKey> for SeriesKeyRef<'_> {
    fn equivalent(&self, key: &SeriesKey) -> bool {
        self.method == key.method && self.status == key.status && self.route == &*key.route
    }
}

/// The label sets seen so far.
#[derive(Debug, Default)]
struct SeriesCache {
    map: hashbrown::HashMap<SeriesKey, Arc<Series>>,
    /// Distinct label sets created under a real route (the `OVERFLOW` ones are not counted).
    label_sets: usize,
}

/// Everything the services made by one layer share.
#[derive(Debug)]
pub(crate) struct Shared {
    families: Families,
    cache: RwLock<SeriesCache>,
    max_label_sets: usize,
    dropped: IntCounter,
    pub(crate) active: [IntGauge; METHODS.len()],
    pub(crate) user_agents: Option<[IntCounter; UserAgentClass::ALL.len()]>,
    exceptions: IntCounterVec,
    exception_sets: Mutex<HashSet<(usize, String, &'static str)>>,
    excluded: Box<[PathMatch]>,
}

impl Shared {
    #[inline]
    pub(crate) fn is_excluded(&self, path: &str) -> bool {
        self.excluded.iter().any(|m| match m {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(&**p),
        })
    }

    /// The handles of a label set, created on first use, bounded by the cap.
    pub(crate) fn series(&self, method: usize, status: StatusCode, route: &str) -> Arc<Series> {
        let key = SeriesKeyRef {
            method: method as u8,
            status: status.as_u16(),
            route,
        };
        if let Some(series) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .get(&key)
        {
            return series.clone();
        }
        self.create_series(key, status)
    }

    #[cold]
    fn create_series(&self, key: SeriesKeyRef<'_>, status: StatusCode) -> Arc<Series> {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = cache.map.get(&key) {
            return series.clone();
        }
        let mut key = key;
        if cache.label_sets >= self.max_label_sets {
            self.dropped.inc();
            key.route = ROUTE_OVERFLOW;
            if let Some(series) = cache.map.get(&key) {
                return series.clone();
            }
        } else {
            cache.label_sets += 1;
        }
        let labels = [METHODS[key.method as usize], key.route, status.as_str()];
        let f = &self.families;
        let series = Arc::new(Series {
            requests: f.requests.with_label_values(&labels),
            duration: f.duration.with_label_values(&labels),
            request_size: f.request_size.with_label_values(&labels),
            response_size: f.response_size.with_label_values(&labels),
        });
        cache.map.insert(
            SeriesKey {
                method: key.method,
                status: key.status,
                route: key.route.into(),
            },
            series.clone(),
        );
        series
    }

    /// Counts a request whose service failed or panicked.
    #[cold]
    pub(crate) fn exception(&self, method: usize, route: Option<&str>, kind: &'static str) {
        let mut route = route.unwrap_or(ROUTE_UNKNOWN);
        {
            let mut sets = self
                .exception_sets
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let key = (method, route.to_owned(), kind);
            if !sets.contains(&key) {
                if sets.len() >= self.max_label_sets {
                    self.dropped.inc();
                    route = ROUTE_OVERFLOW;
                } else {
                    sets.insert(key);
                }
            }
        }
        self.exceptions
            .with_label_values(&[METHODS[method], route, kind])
            .inc();
    }
}
