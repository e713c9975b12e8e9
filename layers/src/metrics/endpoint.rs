//! The `/metrics` endpoint: a Tower service that encodes a registry for Prometheus.

use std::{
    convert::Infallible,
    fmt::Write as _,
    future::Future,
    io::Write as _,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{
    HeaderValue, Method, Request, Response, StatusCode,
    header::{
        ACCEPT, ACCEPT_ENCODING, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
        VARY,
    },
};
use http_body_util::Full;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
    proto::{MetricFamily, MetricType},
};
use tokio::task::JoinHandle;
use tower_service::Service;

use super::MetricsError;

/// `Content-Type` of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition format chosen for a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text (ends with `# EOF`).
    OpenMetrics,
}

impl Format {
    /// Picks the format an `Accept` header asks for: OpenMetrics when it is listed with a
    /// quality at least that of any text/plain or wildcard range, the text format otherwise
    /// (including for a missing or unparsable header).
    ///
    /// ```
    /// use covet_layers::metrics::Format;
    ///
    /// let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    /// assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
    /// assert_eq!(Format::negotiate(None), Format::Text);
    /// ```
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',').take(32) {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim();
            let q = quality(params);
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                openmetrics = openmetrics.max(q);
            } else if media.eq_ignore_ascii_case("text/plain")
                || media.eq_ignore_ascii_case("text/*")
                || media == "*/*"
            {
                text = text.max(q);
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// The `q` parameter of a media range or coding (1 when absent, 0 when malformed).
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> f32 {
    for param in params {
        if let Some((name, value)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("q")
        {
            return match value.trim().parse::<f32>() {
                Ok(q) if (0.0..=1.0).contains(&q) => q,
                _ => 0.0,
            };
        }
    }
    1.0
}

fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|value| {
        value.split(',').take(32).any(|coding| {
            let mut params = coding.split(';');
            let name = params.next().unwrap_or("").trim();
            (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip"))
                && quality(params) > 0.0
        })
    })
}

/// Serves a registry to Prometheus. See the [module docs](super).
///
/// Answers `GET` and `HEAD` on whatever path it is mounted at (405 otherwise), picks the format
/// from `Accept`, compresses with gzip when asked (and enabled), answers 503 with
/// `Retry-After: 1` past its in-flight cap, and records its own `metrics_scrapes_total`,
/// `metrics_scrape_errors_total` and `metrics_scrape_duration_seconds`.
#[derive(Clone, Debug)]
pub struct MetricsService {
    shared: Arc<Endpoint>,
}

#[derive(Debug)]
struct Endpoint {
    registry: Registry,
    gzip: bool,
    max_in_flight: usize,
    in_flight: AtomicUsize,
    scrapes: IntCounter,
    errors: IntCounterVec,
    duration: Histogram,
}

/// The default cap on concurrent scrapes of one [`MetricsService`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;

/// Configures a [`MetricsService`]. Created by [`MetricsService::builder`].
#[derive(Clone, Debug)]
pub struct MetricsServiceBuilder {
    gzip: bool,
    max_in_flight: usize,
}

impl MetricsServiceBuilder {
    /// Whether responses are gzip-compressed for clients that send `Accept-Encoding: gzip`
    /// (Prometheus does).
    ///
    /// Defaults to `true`.
    pub fn gzip(mut self, enabled: bool) -> Self {
        self.gzip = enabled;
        self
    }

    /// The most scrapes encoded at once; more get 503 with `Retry-After: 1`.
    ///
    /// Defaults to [`DEFAULT_MAX_IN_FLIGHT`] (8). Must be at least 1.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// Registers the endpoint's own metrics into `registry` and builds the service serving it.
    pub fn build(self, registry: &Registry) -> Result<MetricsService, MetricsError> {
        if self.max_in_flight == 0 {
            return Err(MetricsError::Setting {
                setting: "max_in_flight",
                problem: "must be at least 1".into(),
            });
        }
        let scrapes = IntCounter::new(
            "metrics_scrapes_total",
            "Scrapes of the /metrics endpoint that were answered with metrics.",
        )
        .map_err(|e| MetricsError::create("metrics_scrapes_total", e))?;
        let errors = IntCounterVec::new(
            Opts::new(
                "metrics_scrape_errors_total",
                "Scrapes of the /metrics endpoint that failed, by reason (encode, overloaded).",
            ),
            &["reason"],
        )
        .map_err(|e| MetricsError::create("metrics_scrape_errors_total", e))?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "metrics_scrape_duration_seconds",
                "Time to gather and encode the registry for one scrape, in seconds.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
        )
        .map_err(|e| MetricsError::create("metrics_scrape_duration_seconds", e))?;
        for (name, collector) in [
            (
                "metrics_scrapes_total",
                Box::new(scrapes.clone()) as Box<dyn prometheus::core::Collector>,
            ),
            ("metrics_scrape_errors_total", Box::new(errors.clone())),
            (
                "metrics_scrape_duration_seconds",
                Box::new(duration.clone()),
            ),
        ] {
            registry
                .register(collector)
                .map_err(|e| MetricsError::register(name, e))?;
        }
        for reason in ["encode", "overloaded"] {
            errors.with_label_values(&[reason]);
        }
        Ok(MetricsService {
            shared: Arc::new(Endpoint {
                registry: registry.clone(),
                gzip: self.gzip,
                max_in_flight: self.max_in_flight,
                in_flight: AtomicUsize::new(0),
                scrapes,
                errors,
                duration,
            }),
        })
    }
}

impl MetricsService {
    /// A service with the defaults, serving `registry` (and registering its own metrics in it).
    pub fn new(registry: &Registry) -> Result<Self, MetricsError> {
        Self::builder().build(registry)
    }

    /// A builder with the defaults.
    pub fn builder() -> MetricsServiceBuilder {
        MetricsServiceBuilder {
            gzip: true,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// Encodes the registry as a scrape would, without HTTP.
    pub fn encode(&self, format: Format) -> Result<Vec<u8>, prometheus::Error> {
        encode(&self.shared.registry.gather(), format)
    }

    /// Takes a place under the in-flight cap, if one is free.
    fn try_reserve(&self) -> Option<Slot> {
        let endpoint = &self.shared;
        if endpoint.in_flight.fetch_add(1, Ordering::AcqRel) >= endpoint.max_in_flight {
            endpoint.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(Arc::clone(endpoint)))
    }
}

/// What a scrape asked for, read from its request before the encode leaves `call`.
#[derive(Clone, Copy)]
struct Scrape {
    head: bool,
    format: Format,
    gzip: bool,
}

impl Endpoint {
    /// Gathers, encodes and (if asked) compresses the registry: the work a place under the
    /// in-flight cap stands for.
    fn respond(&self, scrape: Scrape) -> Response<Full<Bytes>> {
        let start = Instant::now();
        let body = match encode(&self.registry.gather(), scrape.format) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(target: "covet::metrics", error = %err, "cannot encode the metrics registry");
                return self.failed();
            }
        };
        let body = if scrape.gzip { gzip_bytes(&body) } else { body };
        self.scrapes.inc();
        self.duration.observe(start.elapsed().as_secs_f64());
        let mut response = Response::new(Full::new(if scrape.head {
            Bytes::new()
        } else {
            Bytes::from(body)
        }));
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(scrape.format.content_type()),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(VARY, HeaderValue::from_static("accept, accept-encoding"));
        if scrape.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }

    /// Counts a failed encode and answers 500.
    fn failed(&self) -> Response<Full<Bytes>> {
        self.errors.with_label_values(&["encode"]).inc();
        plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n")
    }
}

/// One scrape's place under the in-flight cap, given back on drop. It owns the endpoint, so it
/// can travel with the encode to the blocking pool and outlive the request's future.
struct Slot(Arc<Endpoint>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The response future of [`MetricsService`]: ready at once, or waiting for an encode on
/// Tokio's blocking pool.
pub struct ScrapeFuture {
    state: ScrapeState,
}

enum ScrapeState {
    Ready(Option<Response<Full<Bytes>>>),
    Encoding {
        task: JoinHandle<Response<Full<Bytes>>>,
        endpoint: Arc<Endpoint>,
    },
}

impl ScrapeFuture {
    fn ready(response: Response<Full<Bytes>>) -> Self {
        ScrapeFuture {
            state: ScrapeState::Ready(Some(response)),
        }
    }
}

impl std::fmt::Debug for ScrapeFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            ScrapeState::Ready(_) => "ready",
            ScrapeState::Encoding { .. } => "encoding",
        };
        f.debug_struct("ScrapeFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for ScrapeFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both variants are `Unpin`: a `JoinHandle` may be polled through `&mut`.
        let this = self.get_mut();
        match &mut this.state {
            ScrapeState::Ready(response) => Poll::Ready(Ok(response
                .take()
                .expect("ScrapeFuture polled after completion"))),
            ScrapeState::Encoding { task, endpoint } => match Pin::new(task).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(response)) => Poll::Ready(Ok(response)),
                // A collector panicked (or the runtime is shutting down): a failed scrape.
                Poll::Ready(Err(err)) => {
                    tracing::error!(target: "covet::metrics", error = %err, "the metrics encode did not finish");
                    Poll::Ready(Ok(endpoint.failed()))
                }
            },
        }
    }
}

trait WithHeader {
    fn with_header(self, name: http::HeaderName, value: HeaderValue) -> Self;
}

impl<B> WithHeader for Response<B> {
    fn with_header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.headers_mut().insert(name, value);
        self
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
        .with_header(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )
        .with_header(CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

fn gzip_bytes(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    encoder.write_all(body).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

impl<B> Service<Request<B>> for MetricsService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ScrapeFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return ScrapeFuture::ready(
                plain(StatusCode::METHOD_NOT_ALLOWED, "use GET or HEAD\n")
                    .with_header(ALLOW, HeaderValue::from_static("GET, HEAD")),
            );
        }
        let Some(slot) = self.try_reserve() else {
            self.shared.errors.with_label_values(&["overloaded"]).inc();
            return ScrapeFuture::ready(
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many concurrent scrapes\n",
                )
                .with_header(RETRY_AFTER, HeaderValue::from_static("1")),
            );
        };
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let scrape = Scrape {
            head: method == Method::HEAD,
            format: Format::negotiate(header(ACCEPT)),
            gzip: self.shared.gzip && accepts_gzip(header(ACCEPT_ENCODING)),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = runtime.spawn_blocking(move || {
                    let response = slot.0.respond(scrape);
                    drop(slot);
                    response
                });
                ScrapeFuture {
                    state: ScrapeState::Encoding {
                        task,
                        endpoint: Arc::clone(&self.shared),
                    },
                }
            }
            Err(_) => {
                let response = slot.0.respond(scrape);
                ScrapeFuture::ready(response)
            }
        }
    }
}

/// Encodes metric families in `format`.
pub fn encode(families: &[MetricFamily], format: Format) -> Result<Vec<u8>, prometheus::Error> {
    match format {
        Format::Text => {
            let mut out = Vec::with_capacity(16 * 1024);
            TextEncoder::new().encode(families, &mut out)?;
            Ok(out)
        }
        Format::OpenMetrics => Ok(encode_openmetrics(families).into_bytes()),
    }
}

/// OpenMetrics 1.0 text: counters' families lose their `_total` suffix (their samples keep
/// it), histograms gain the `+Inf` bucket, floats use the canonical forms, `# EOF` ends it.
fn encode_openmetrics(families: &[MetricFamily]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for family in families {
        let name = family.name();
        let (kind, base) = match family.get_field_type() {
            MetricType::COUNTER => ("counter", name.strip_suffix("_total").unwrap_or(name)),
            MetricType::GAUGE => ("gauge", name),
            MetricType::HISTOGRAM => ("histogram", name),
            MetricType::SUMMARY => ("summary", name),
            MetricType::UNTYPED => ("unknown", name),
        };
        let _ = writeln!(out, "# TYPE {base} {kind}");
        let _ = writeln!(out, "# HELP {base} {}", escape(family.help()));
        for metric in family.get_metric() {
            let labels: Vec<(&str, String)> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), escape(l.value())))
                .collect();
            match family.get_field_type() {
                MetricType::COUNTER => {
                    let sample = format!("{base}_total");
                    sample_line(
                        &mut out,
                        &sample,
                        &labels,
                        None,
                        metric.get_counter().get_value(),
                    );
                }
                MetricType::GAUGE => {
                    sample_line(
                        &mut out,
                        base,
                        &labels,
                        None,
                        metric.get_gauge().get_value(),
                    );
                }
                MetricType::UNTYPED => {
                    #[allow(deprecated)] // the plain (non-protobuf) model still has it
                    let value = metric.get_untyped().get_value();
                    sample_line(&mut out, base, &labels, None, value);
                }
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    let bucket = format!("{base}_bucket");
                    let mut saw_inf = false;
                    for b in h.get_bucket() {
                        saw_inf |= b.upper_bound().is_infinite();
                        let le = canonical_float(b.upper_bound());
                        sample_line(
                            &mut out,
                            &bucket,
                            &labels,
                            Some(("le", &le)),
                            b.cumulative_count() as f64,
                        );
                    }
                    if !saw_inf {
                        sample_line(
                            &mut out,
                            &bucket,
                            &labels,
                            Some(("le", "+Inf")),
                            h.get_sample_count() as f64,
                        );
                    }
                    sample_line(
                        &mut out,
                        &format!("{base}_count"),
                        &labels,
                        None,
                        h.get_sample_count() as f64,
                    );
                    sample_line(
                        &mut out,
                        &format!("{base}_sum"),
                        &labels,
                        None,
                        h.get_sample_sum(),
                    );
                }
                MetricType::SUMMARY => {
                    let s = metric.get_summary();
                    for q in s.get_quantile() {
                        let quantile = canonical_float(q.quantile());
                        sample_line(
                            &mut out,
                            base,
                            &labels,
                            Some(("quantile", &quantile)),
                            q.value(),
                        );
                    }
                    sample_line(
                        &mut out,
                        &format!("{base}_count"),
                        &labels,
                        None,
                        s.sample_count() as f64,
                    );
                    sample_line(
                        &mut out,
                        &format!("{base}_sum"),
                        &labels,
                        None,
                        s.sample_sum(),
                    );
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

fn sample_line(
    out: &mut String,
    name: &str,
    labels: &[(&str, String)],
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        let mut first = true;
        let all = labels.iter().map(|(n, v)| (*n, v.as_str())).chain(extra);
        for (n, v) in all {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{n}=\"{v}\"");
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&canonical_float(value));
    out.push('\n');
}

/// Escapes `\`, `"` and line feeds, as OpenMetrics requires in label values and help text.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The canonical OpenMetrics form of a float (`1.0`, `0.005`, `1.0e+06`, `+Inf`, `NaN`), as
/// Prometheus's own clients write it.
fn canonical_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let repr = format!("{value:?}");
    if repr.contains('e') {
        return repr.replace("e", "e+").replace("e+-", "e-");
    }
    match repr.find('.') {
        Some(dot) if value > 0.0 && dot > 6 => {
            let digits: String = repr.chars().filter(char::is_ascii_digit).collect();
            let trimmed = digits.trim_end_matches('0');
            let (first, rest) = trimmed.split_at(1);
            let rest = if rest.is_empty() { "0" } else { rest };
            format!("{first}.{rest}e+{:02}", dot - 1)
        }
        _ => repr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_take_their_canonical_openmetrics_form() {
        let cases = [
            (1.0, "1.0"),
            (0.005, "0.005"),
            (2.5, "2.5"),
            (100.0, "100.0"),
            (1_000_000.0, "1.0e+06"),
            (10_000_000.0, "1.0e+07"),
            (123_456_789.0, "1.23456789e+08"),
            (0.0, "0.0"),
            (-3.0, "-3.0"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(canonical_float(value), expected, "{value}");
        }
    }

    #[test]
    fn accept_negotiation_follows_quality() {
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=1, application/openmetrics-text;q=0.5")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=banana")),
            Format::Text
        );
        assert_eq!(Format::negotiate(Some(",,;;=,")), Format::Text);
        assert!(accepts_gzip(Some("deflate, gzip;q=0.8")));
        assert!(!accepts_gzip(Some("gzip;q=0, br")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn help_and_labels_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
