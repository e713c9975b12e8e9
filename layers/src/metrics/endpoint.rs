//! [`MetricsService`]: the `/metrics` endpoint, a Tower service that encodes a registry for
//! Prometheus.

use std::{
    convert::Infallible,
    future::Future,
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
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use tokio::task::JoinHandle;
use tower_service::Service;

use super::{
    MetricsError,
    format::{Format, accepts_gzip, encode},
};

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
    /// (Prometheus does). Needs the `metrics-gzip` feature; without it, responses are never
    /// compressed.
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
        #[cfg(feature = "metrics-gzip")]
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

#[cfg(feature = "metrics-gzip")]
fn gzip_bytes(body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
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
            gzip: cfg!(feature = "metrics-gzip")
                && self.shared.gzip
                && accepts_gzip(header(ACCEPT_ENCODING)),
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
