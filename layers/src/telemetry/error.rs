//! [`TelemetryError`]: what can go wrong in the telemetry set-up.

use opentelemetry_sdk::error::OTelSdkError;

/// A configuration error or an export failure from the telemetry set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("log filter {filter:?} (from {source_name}) is invalid: {error}")]
    Filter {
        /// The filter text.
        filter: String,
        /// Where it came from: `RUST_LOG` or `TelemetryBuilder::filter`.
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
    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    #[error("the OTLP span exporter could not be built: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// Span export over `protocol` was asked for, but covet-layers was built without the
    /// Cargo feature that provides it.
    #[error("OTLP export over {protocol} needs covet-layers' `{feature}` feature")]
    ExporterNotCompiled {
        /// The transport asked for.
        protocol: &'static str,
        /// The feature to enable.
        feature: &'static str,
    },
    /// A builder setting is out of range.
    #[error("telemetry: {setting} {problem}")]
    Setting {
        /// The builder method.
        setting: &'static str,
        /// What is wrong with its value.
        problem: &'static str,
    },
    /// `init` was called outside a Tokio runtime while the exporter is on.
    #[error("telemetry must be initialised inside a Tokio runtime when the OTLP exporter is on")]
    NoRuntime,
    /// A global `tracing` subscriber is already installed (a second `init`, or another
    /// library's). Nothing was changed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    /// Flushing or shutting down the tracer provider failed (a collector timeout, say).
    #[error("flushing spans failed: {0}")]
    Flush(#[source] OTelSdkError),
}
