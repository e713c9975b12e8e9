//! [`TelemetryBuilder`]: the settings of the process-wide telemetry, and [`init`](TelemetryBuilder::init).

use std::{borrow::Cow, fmt, io::Write, sync::atomic::AtomicBool, time::Duration};

use opentelemetry::{
    KeyValue, global, propagation::TextMapCompositePropagator, trace::TracerProvider,
};
use opentelemetry_sdk::{
    Resource,
    propagation::BaggagePropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_subscriber::{
    EnvFilter, Registry,
    filter::LevelFilter,
    fmt::{MakeWriter, writer::BoxMakeWriter},
    layer::SubscriberExt,
};

use super::{
    LogFormat, Protocol, Telemetry, TelemetryError, env, exporter, json,
    output::{DEFAULT_LOG_BUFFER_LINES, LogQueue, LogWriter, Output},
    sampler::parse_sampler,
};
use crate::trace::{TraceContextPropagator, otel_layer};

/// Configures what [`init`](Self::init) installs. Created by [`Telemetry::builder`]. Every
/// setting has a default; see the [module docs](super) for the environment variables.
pub struct TelemetryBuilder {
    filter: Option<String>,
    format: LogFormat,
    /// `Some` when set by [`TelemetryBuilder::colours`].
    colours: Option<bool>,
    /// Whether the logs go to the default output, stdout.
    to_stdout: bool,
    output: Output,
    log_buffer_lines: usize,
    export: Option<bool>,
    protocol: Option<Protocol>,
    endpoint: Option<String>,
    service_name: Option<String>,
    resource_attributes: Vec<KeyValue>,
    sampler: Option<Sampler>,
    shutdown_timeout: Duration,
    export_timeout: Duration,
}

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("filter", &self.filter)
            .field("format", &self.format)
            .field("colours", &self.colours)
            .field(
                "output",
                &match self.output {
                    Output::Direct(_) => "direct",
                    Output::Queued(_) => "queued",
                },
            )
            .field("log_buffer_lines", &self.log_buffer_lines)
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

impl TelemetryBuilder {
    /// Everything from the environment; JSON logs to stdout, through the log queue.
    pub(crate) fn new() -> Self {
        Self {
            filter: None,
            format: LogFormat::Json,
            colours: None,
            to_stdout: true,
            output: Output::Queued(Box::new(std::io::stdout())),
            log_buffer_lines: DEFAULT_LOG_BUFFER_LINES,
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

    /// Whether [`LogFormat::Pretty`] lines are coloured with ANSI escapes. JSON lines never are.
    ///
    /// Defaults to `true` only when the lines go to the default output (stdout) and it is a
    /// terminal: escapes in a file or a pipe are noise for whatever reads it, and styling each
    /// field name costs about a quarter of what a readable line costs to write. Set it for an
    /// [`output`](Self::output) that is a terminal (`colours(std::io::stderr().is_terminal())`).
    /// A non-empty `NO_COLOR` turns colours off either way.
    pub fn colours(mut self, enabled: bool) -> Self {
        self.colours = Some(enabled);
        self
    }

    /// Where log lines go, written by a thread of its own from a bounded queue (see
    /// [`log_buffer_lines`](Self::log_buffer_lines)): logging never waits for the writer. The
    /// thread writes the lines gathered over at most 10 ms in one call. When the writer falls
    /// behind (a stalled pipe, a stuck log shipper) and the queue is full, lines are dropped
    /// and counted ([`Telemetry::dropped_log_lines`], the `log_lines_dropped_total` metric);
    /// [`Telemetry::shutdown`] writes out what is queued.
    ///
    /// Defaults to stdout.
    pub fn output(mut self, writer: impl Write + Send + 'static) -> Self {
        self.output = Output::Queued(Box::new(writer));
        self.to_stdout = false;
        self
    }

    /// How many lines the log queue of [`output`](Self::output) holds before it drops new ones
    /// (the writer thread may hold as many again, taken out to be written). Must be at least 1.
    ///
    /// Defaults to 16,384.
    pub fn log_buffer_lines(mut self, lines: usize) -> Self {
        self.log_buffer_lines = lines;
        self
    }

    /// Where log lines go, written on the thread that logs (any tracing-subscriber
    /// `MakeWriter`), instead of [`output`](Self::output)'s queue: a slow writer then slows
    /// whatever logs, requests included. For tests, or a writer that never blocks.
    pub fn writer<W>(mut self, writer: W) -> Self
    where
        W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    {
        self.output = Output::Direct(BoxMakeWriter::new(writer));
        self.to_stdout = false;
        self
    }

    /// Whether spans are exported over OTLP. With `false`, spans still get ids (for the logs
    /// and the `x-trace-id` header) but go nowhere.
    ///
    /// Defaults to `OTEL_TRACES_EXPORTER` (`otlp` or `none`), else `true` when an exporter
    /// feature (`otlp-grpc`, `otlp-http`) is compiled in and `false` otherwise.
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

    /// How long [`Telemetry::shutdown`] may take to flush pending spans.
    ///
    /// Defaults to 5 seconds.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Installs logs, the OTLP exporter and the W3C propagator, process-wide. See the
    /// [module docs](super).
    pub fn init(self) -> Result<Telemetry, TelemetryError> {
        let config = self;
        if config.log_buffer_lines == 0 {
            return Err(TelemetryError::Setting {
                setting: "log_buffer_lines",
                problem: "must be at least 1",
            });
        }
        let (filter_text, source_name) = match (&config.filter, env("RUST_LOG")) {
            (Some(f), _) => (f.clone(), "TelemetryBuilder::filter"),
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
                None => exporter::COMPILED,
                Some("otlp") => true,
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
            let settings = exporter::ExporterSettings {
                protocol: exporter::protocol(config.protocol)?,
                endpoint: config.endpoint.as_deref(),
                timeout: config.export_timeout,
            };
            provider = exporter::install(provider, &settings, &handle)?;
        }
        let provider = provider.build();
        let tracer = provider.tracer("covet");
        let (writer, logs) = match config.output {
            Output::Direct(writer) => (LogWriter::Direct(writer), None),
            Output::Queued(writer) => {
                let (queue_writer, queue) = LogQueue::start(writer, config.log_buffer_lines);
                (LogWriter::Queued(queue_writer), Some(queue))
            }
        };

        let colours = config.colours.unwrap_or_else(|| {
            use std::io::IsTerminal as _;
            config.to_stdout && std::io::stdout().is_terminal()
        }) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let (json, pretty) = match config.format {
            LogFormat::Json => (Some(json::JsonLayer::new(writer)), None),
            LogFormat::Pretty => (
                None,
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(colours)
                        .with_writer(writer),
                ),
            ),
        };
        let subscriber = Registry::default()
            .with(filter)
            .with(otel_layer(tracer))
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

        Ok(Telemetry {
            provider,
            logs,
            shutdown_timeout: config.shutdown_timeout,
            shut_down: AtomicBool::new(false),
        })
    }
}
