//! One-call telemetry set-up: logs (JSON or readable) with `request_id`, `trace_id` and
//! `span_id` on every line logged inside a request, the OTLP span exporter, and the W3C
//! propagator.
//!
//! [`init`] installs, process-wide:
//! - a `tracing` subscriber filtered like `RUST_LOG` (the [`filter`](TelemetryConfig::filter)
//!   override, else `RUST_LOG`, else `info`);
//! - JSON lines ([`LogFormat::Json`], for production) or tracing-subscriber's readable format
//!   ([`LogFormat::Pretty`], for development). A JSON line looks like
//!   `{"level":"INFO","message":"request completed","request_id":"…","span":"request",
//!   "span_id":"…","status":200,"target":"covet::trace::request","timestamp":"…","trace_id":"…",…}`:
//!   the three ids are top-level fields: the request id from the innermost span that records
//!   one (the request-id layer's), the trace and span ids from the current OpenTelemetry
//!   context, so they match the exported span;
//! - an OpenTelemetry tracer provider exporting over OTLP (gRPC or HTTP/protobuf) from a batch
//!   processor, configured from the standard environment variables with builder overrides:
//!
//!   | variable | meaning | override |
//!   |---|---|---|
//!   | `OTEL_TRACES_EXPORTER` | `otlp` (default) or `none` | [`export`](TelemetryConfig::export) |
//!   | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf` (default) or `grpc` | [`protocol`](TelemetryConfig::protocol) |
//!   | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` | collector address (`http://localhost:4318` / `:4317`) | [`endpoint`](TelemetryConfig::endpoint) |
//!   | `OTEL_SERVICE_NAME` | `service.name` | [`service_name`](TelemetryConfig::service_name) |
//!   | `OTEL_RESOURCE_ATTRIBUTES` | `k=v,k2=v2` resource attributes | [`resource_attribute`](TelemetryConfig::resource_attribute) |
//!   | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | sampler (default `parentbased_always_on`) | [`sampler`](TelemetryConfig::sampler) |
//!
//!   (`OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`, `…_COMPRESSION` and `OTEL_BSP_*` are read by
//!   the OpenTelemetry crates themselves.) Spans get real ids even with the exporter off, so
//!   logs still carry them;
//! - the W3C `traceparent`/`tracestate` and `baggage` propagator, as the global propagator.
//!
//! It returns a [`TelemetryGuard`]: its [`shutdown`](TelemetryGuard::shutdown) flushes pending
//! spans within a timeout (the shutdown coordinator calls it last). A second `init` in the same
//! process returns [`TelemetryError::AlreadyInstalled`].
//!
//! Call `init` inside a Tokio runtime: both exporters run their network I/O on it.
//!
//! # Example
//!
//! ```no_run
//! use covet_layers::trace::{TraceLayer, telemetry::{self, LogFormat, TelemetryConfig}};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let telemetry = telemetry::init(
//!     TelemetryConfig::new()
//!         .service_name("checkout")
//!         .format(LogFormat::Json),
//! )?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(TraceLayer::new())
//!     .service(service_fn(|_req: Request<()>| async {
//!         tracing::info!("handled"); // carries request_id, trace_id and span_id
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     }));
//! let response = service.oneshot(Request::new(())).await?;
//! assert_eq!(response.headers()["x-trace-id"].len(), 32);
//!
//! telemetry.shutdown().await?; // flush pending spans
//! # Ok(())
//! # }
//! ```

mod http_client;
pub(crate) mod json;

use std::{
    borrow::Cow,
    fmt,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use opentelemetry::{
    KeyValue, global, propagation::TextMapCompositePropagator, trace::TracerProvider,
};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};

use super::ServerTracer;
pub use opentelemetry_sdk::trace::Sampler;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkError,
    propagation::{BaggagePropagator, TraceContextPropagator},
    trace::{SdkTracer, SdkTracerProvider},
};
use tracing_subscriber::{
    EnvFilter, Layer as _, Registry,
    filter::LevelFilter,
    fmt::{MakeWriter, writer::BoxMakeWriter},
    layer::SubscriberExt,
};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line, with `request_id`, `trace_id` and `span_id` as top-level
    /// fields: for production and log shippers.
    #[default]
    Json,
    /// tracing-subscriber's readable multi-field format, with span fields (and so
    /// `request_id`): for development.
    Pretty,
}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318, path `/v1/traces`).
    HttpProtobuf,
}

impl Protocol {
    /// Parses an `OTEL_EXPORTER_OTLP_PROTOCOL` value (`grpc`, `http/protobuf`).
    fn from_env_value(var: &'static str, value: &str) -> Result<Self, TelemetryError> {
        match value.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            other => Err(TelemetryError::InvalidEnv {
                var,
                value: other.to_owned(),
                expected: "`grpc` or `http/protobuf`",
            }),
        }
    }
}

/// A configuration error or an export failure from the telemetry set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("log filter {filter:?} (from {source_name}) is invalid: {error}")]
    Filter {
        /// The filter text.
        filter: String,
        /// Where it came from: `RUST_LOG` or `TelemetryConfig::filter`.
        source_name: &'static str,
        /// What is wrong with it.
        error: tracing_subscriber::filter::ParseError,
    },
    /// An `OTEL_*` variable has a value covet does not support.
    #[error("{var}={value:?} is not supported; expected {expected}")]
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// The OTLP exporter could not be built (bad endpoint, headers, …).
    #[error("the OTLP span exporter could not be built: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// `init` was called outside a Tokio runtime while the exporter is on.
    #[error("telemetry::init must run inside a Tokio runtime when the OTLP exporter is on")]
    NoRuntime,
    /// A global `tracing` subscriber is already installed (a second `init`, or another
    /// library's). Nothing was changed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    /// Flushing or shutting down the tracer provider failed (a collector timeout, say).
    #[error("flushing spans failed: {0}")]
    Flush(#[source] OTelSdkError),
}

/// What [`init`] installs. Every setting has a default; see the [module docs](self) for the
/// environment variables.
pub struct TelemetryConfig {
    filter: Option<String>,
    format: LogFormat,
    writer: BoxMakeWriter,
    export: Option<bool>,
    protocol: Option<Protocol>,
    endpoint: Option<String>,
    service_name: Option<String>,
    resource_attributes: Vec<KeyValue>,
    sampler: Option<Sampler>,
    shutdown_timeout: Duration,
    export_timeout: Duration,
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("filter", &self.filter)
            .field("format", &self.format)
            .field("export", &self.export)
            .field("protocol", &self.protocol)
            .field("endpoint", &self.endpoint)
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("sampler", &self.sampler)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl TelemetryConfig {
    /// Everything from the environment; JSON logs to stdout.
    pub fn new() -> Self {
        Self {
            filter: None,
            format: LogFormat::Json,
            writer: BoxMakeWriter::new(std::io::stdout),
            export: None,
            protocol: None,
            endpoint: None,
            service_name: None,
            resource_attributes: Vec::new(),
            sampler: None,
            shutdown_timeout: Duration::from_secs(5),
            export_timeout: Duration::from_secs(10),
        }
    }

    /// The log filter, in `RUST_LOG` syntax (`info,covet=debug,hyper=warn`).
    ///
    /// Defaults to `RUST_LOG`, else `info`.
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// JSON or readable log lines.
    ///
    /// Defaults to [`LogFormat::Json`].
    pub fn format(mut self, format: LogFormat) -> Self {
        self.format = format;
        self
    }

    /// Where log lines go (any tracing-subscriber `MakeWriter`).
    ///
    /// Defaults to stdout.
    pub fn writer<W>(mut self, writer: W) -> Self
    where
        W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    {
        self.writer = BoxMakeWriter::new(writer);
        self
    }

    /// Whether spans are exported over OTLP. With `false`, spans still get ids (for the logs
    /// and the `x-trace-id` header) but go nowhere.
    ///
    /// Defaults to `OTEL_TRACES_EXPORTER` (`otlp` or `none`), else `true`.
    pub fn export(mut self, enabled: bool) -> Self {
        self.export = Some(enabled);
        self
    }

    /// The OTLP transport.
    ///
    /// Defaults to `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, then `OTEL_EXPORTER_OTLP_PROTOCOL`,
    /// else [`Protocol::HttpProtobuf`].
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// The collector's base address, like `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (`http://127.0.0.1:4318`); for HTTP/protobuf `/v1/traces` is appended unless present.
    ///
    /// Defaults to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), then
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, else `http://localhost:4318` (HTTP) or
    /// `http://localhost:4317` (gRPC).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The `service.name` resource attribute.
    ///
    /// Defaults to `OTEL_SERVICE_NAME`, then `service.name` in `OTEL_RESOURCE_ATTRIBUTES`,
    /// else `unknown_service`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Adds a resource attribute (`deployment.environment.name`, `service.version`, …); it wins
    /// over the same key in `OTEL_RESOURCE_ATTRIBUTES`.
    ///
    /// Defaults to none beyond `OTEL_RESOURCE_ATTRIBUTES` and the SDK's `telemetry.sdk.*`.
    pub fn resource_attribute(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        let key: Cow<'static, str> = key.into();
        let value: Cow<'static, str> = value.into();
        self.resource_attributes
            .push(KeyValue::new(key, value.into_owned()));
        self
    }

    /// The sampler.
    ///
    /// Defaults to `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, else
    /// `parentbased_always_on`.
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = Some(sampler);
        self
    }

    /// How long [`TelemetryGuard::shutdown`] may take to flush pending spans.
    ///
    /// Defaults to 5 seconds.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
}

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// Parses `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (the ratio, default 1.0).
pub(crate) fn parse_sampler(
    name: Option<&str>,
    arg: Option<&str>,
) -> Result<Sampler, TelemetryError> {
    let ratio = || -> Result<f64, TelemetryError> {
        match arg {
            None => Ok(1.0),
            Some(arg) => match arg.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(TelemetryError::InvalidEnv {
                    var: "OTEL_TRACES_SAMPLER_ARG",
                    value: arg.to_owned(),
                    expected: "a ratio from 0 to 1",
                }),
            },
        }
    };
    Ok(match name.map(str::trim) {
        None | Some("parentbased_always_on") => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => Sampler::TraceIdRatioBased(ratio()?),
        Some("parentbased_always_off") => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Some("parentbased_traceidratio") => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?)))
        }
        Some(other) => {
            return Err(TelemetryError::InvalidEnv {
                var: "OTEL_TRACES_SAMPLER",
                value: other.to_owned(),
                expected: "always_on, always_off, traceidratio, parentbased_always_on, \
                           parentbased_always_off or parentbased_traceidratio",
            });
        }
    })
}

/// The HTTP traces URL for a base endpoint.
pub(crate) fn http_traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

fn build_exporter(
    config: &TelemetryConfig,
    handle: tokio::runtime::Handle,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let protocol = match config.protocol {
        Some(p) => p,
        None => match (
            env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
            env("OTEL_EXPORTER_OTLP_PROTOCOL"),
        ) {
            (Some(v), _) => Protocol::from_env_value("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", &v)?,
            (None, Some(v)) => Protocol::from_env_value("OTEL_EXPORTER_OTLP_PROTOCOL", &v)?,
            (None, None) => Protocol::HttpProtobuf,
        },
    };
    let exporter = match protocol {
        Protocol::Grpc => {
            // Build on the runtime: tonic spawns its channel worker there.
            let _entered = handle.enter();
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_protocol(opentelemetry_otlp::Protocol::Grpc);
            if let Some(endpoint) = &config.endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            builder.build()?
        }
        Protocol::HttpProtobuf => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(http_client::RuntimeHyperClient::new(
                    handle,
                    config.export_timeout,
                ));
            if let Some(endpoint) = &config.endpoint {
                builder = builder.with_endpoint(http_traces_url(endpoint));
            }
            builder.build()?
        }
    };
    Ok(exporter)
}

/// The target of the request-id layer's span.
const REQUEST_ID_SPAN_TARGET: &str = "covet::request_id";

/// The OpenTelemetry layers as [`init`] installs them, for a subscriber assembled by hand
/// (tests, benchmarks): the [`ServerTracer`] that [`TraceLayer`](super::TraceLayer) starts
/// its server spans on, and `tracing-opentelemetry` for every other `tracing` span (handlers'
/// `#[instrument]` spans, the pools' database spans, the client spans of
/// [`PropagateLayer`](super::PropagateLayer)), which become children of the server span.
///
/// The request-id layer's `tracing` span (target `covet::request_id`), which gives log lines
/// their request id, is kept out of the trace: it would be a root span of its own. Busy/idle
/// timing (two clock reads per poll), thread and source-location attributes are off: they are
/// not part of the HTTP semantic conventions and cost time on every request.
pub fn otel_layer<S>(tracer: SdkTracer) -> impl tracing_subscriber::Layer<S> + Send + Sync
where
    S: tracing::Subscriber
        + for<'span> tracing_subscriber::registry::LookupSpan<'span>
        + Send
        + Sync,
{
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer.clone())
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.target() != REQUEST_ID_SPAN_TARGET
        }));
    ServerTracer::new(tracer).and_then(spans)
}

/// Installs logs, the OTLP exporter and the W3C propagator. See the [module docs](self).
pub fn init(config: TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let (filter_text, source_name) = match (&config.filter, env("RUST_LOG")) {
        (Some(f), _) => (f.clone(), "TelemetryConfig::filter"),
        (None, Some(f)) => (f, "RUST_LOG"),
        (None, None) => ("info".to_owned(), "the default"),
    };
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(&filter_text)
        .map_err(|error| TelemetryError::Filter {
            filter: filter_text.clone(),
            source_name,
            error,
        })?;

    let sampler = match config.sampler.clone() {
        Some(s) => s,
        None => parse_sampler(
            env("OTEL_TRACES_SAMPLER").as_deref(),
            env("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )?,
    };
    let export = match config.export {
        Some(e) => e,
        None => match env("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => true,
            Some("none") => false,
            Some(other) => {
                return Err(TelemetryError::InvalidEnv {
                    var: "OTEL_TRACES_EXPORTER",
                    value: other.to_owned(),
                    expected: "`otlp` or `none`",
                });
            }
        },
    };

    let mut resource = Resource::builder().with_attributes(config.resource_attributes.clone());
    if let Some(name) = &config.service_name {
        resource = resource.with_service_name(name.clone());
    }
    let mut provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(resource.build());
    if export {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        provider = provider.with_batch_exporter(build_exporter(&config, handle)?);
    }
    let provider = provider.build();
    let tracer = provider.tracer("covet");

    let (json, pretty) = match config.format {
        LogFormat::Json => (
            Some(
                tracing_subscriber::fmt::layer()
                    .event_format(json::JsonFormat)
                    .with_writer(config.writer),
            ),
            None,
        ),
        LogFormat::Pretty => (
            None,
            Some(tracing_subscriber::fmt::layer().with_writer(config.writer)),
        ),
    };
    let subscriber = Registry::default()
        .with(filter)
        .with(otel_layer(tracer))
        .with(json::IdsLayer)
        .with(json)
        .with(pretty);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        let _ = provider.shutdown_with_timeout(Duration::from_millis(100));
        return Err(TelemetryError::AlreadyInstalled);
    }
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    global::set_tracer_provider(provider.clone());

    Ok(TelemetryGuard {
        provider,
        shutdown_timeout: config.shutdown_timeout,
        shut_down: AtomicBool::new(false),
    })
}

/// Keeps the tracer provider alive; flushes and shuts it down on
/// [`shutdown`](Self::shutdown) or, failing that, on drop.
///
/// Flushing blocks on the exporter, whose I/O runs on the Tokio runtime: use the `async`
/// methods from async code (they move the blocking wait off the runtime's threads), the
/// `_blocking` ones elsewhere.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    shutdown_timeout: Duration,
    shut_down: AtomicBool,
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("shut_down", &self.shut_down)
            .finish_non_exhaustive()
    }
}

async fn off_runtime<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(f).await {
            Ok(value) => value,
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        },
        Err(_) => f(),
    }
}

impl TelemetryGuard {
    /// The installed tracer provider (also available as the OpenTelemetry global).
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Exports every finished span now.
    pub async fn force_flush(&self) -> Result<(), TelemetryError> {
        let provider = self.provider.clone();
        off_runtime(move || provider.force_flush().map_err(TelemetryError::Flush)).await
    }

    /// [`force_flush`](Self::force_flush) for non-async code.
    pub fn force_flush_blocking(&self) -> Result<(), TelemetryError> {
        self.provider.force_flush().map_err(TelemetryError::Flush)
    }

    /// Flushes pending spans (within the configured timeout) and stops the exporter. Later
    /// calls do nothing and return `Ok`.
    pub async fn shutdown(&self) -> Result<(), TelemetryError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let provider = self.provider.clone();
        let timeout = self.shutdown_timeout;
        off_runtime(move || {
            provider
                .shutdown_with_timeout(timeout)
                .map_err(TelemetryError::Flush)
        })
        .await
    }

    /// [`shutdown`](Self::shutdown) for non-async code.
    pub fn shutdown_blocking(&self) -> Result<(), TelemetryError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.provider
            .shutdown_with_timeout(self.shutdown_timeout)
            .map_err(TelemetryError::Flush)
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.shutdown_blocking();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_parse_from_the_standard_names() {
        assert!(matches!(
            parse_sampler(None, None).unwrap(),
            Sampler::ParentBased(_)
        ));
        assert!(matches!(
            parse_sampler(Some("always_off"), None).unwrap(),
            Sampler::AlwaysOff
        ));
        assert!(matches!(
            parse_sampler(Some("traceidratio"), Some("0.25")).unwrap(),
            Sampler::TraceIdRatioBased(r) if r == 0.25
        ));
        let err = parse_sampler(Some("sometimes"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTEL_TRACES_SAMPLER"), "{err}");
        let err = parse_sampler(Some("traceidratio"), Some("2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
    }

    #[test]
    fn http_endpoints_get_the_traces_path_once() {
        assert_eq!(
            http_traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn protocols_parse_and_unknown_ones_name_the_variable() {
        assert_eq!(
            Protocol::from_env_value("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").unwrap(),
            Protocol::Grpc
        );
        let err = Protocol::from_env_value("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
    }
}
