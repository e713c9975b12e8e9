//! The choices of the telemetry set-up: the log format and the OTLP transport.

use super::TelemetryError;

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
    pub(crate) fn from_env_value(var: &'static str, value: &str) -> Result<Self, TelemetryError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
