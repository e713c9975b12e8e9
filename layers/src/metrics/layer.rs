//! [`MetricsLayer`] and its builder.

use std::{
    borrow::Cow,
    collections::HashSet,
    sync::{Arc, Mutex, RwLock},
};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    core::Collector,
};

use super::{
    MetricsError,
    instruments::{Families, PathMatch, SeriesCache, Shared},
    labels::{ClassifyRoute, METHODS, NoClassifier, UserAgentClass},
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

    /// Excludes requests to `prefix` and every path below it, by whole segments: `/health`
    /// covers `/health/ready` but not `/healthz` (end the prefix with `/` to cover any path
    /// that starts with it).
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
