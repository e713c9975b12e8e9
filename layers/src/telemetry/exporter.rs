//! The OTLP span exporter: gRPC (feature `otlp-grpc`) or HTTP/protobuf (feature `otlp-http`),
//! chosen by the builder or the standard `OTEL_EXPORTER_OTLP_*` variables.

use std::time::Duration;

use super::{Protocol, TelemetryError, env};

/// The transport: the builder's, else `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, then
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, else HTTP/protobuf.
pub(crate) fn protocol(configured: Option<Protocol>) -> Result<Protocol, TelemetryError> {
    if let Some(protocol) = configured {
        return Ok(protocol);
    }
    match (
        env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        env("OTEL_EXPORTER_OTLP_PROTOCOL"),
    ) {
        (Some(v), _) => Protocol::from_env_value("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", &v),
        (None, Some(v)) => Protocol::from_env_value("OTEL_EXPORTER_OTLP_PROTOCOL", &v),
        (None, None) => Ok(Protocol::HttpProtobuf),
    }
}

/// Whether this build has an exporter at all (the default of `export`).
pub(crate) const COMPILED: bool = cfg!(any(feature = "otlp-grpc", feature = "otlp-http"));

/// The HTTP traces URL for a base endpoint.
#[allow(dead_code)] // without `otlp-http`, only its test uses it
pub(crate) fn http_traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// What the exporter needs from the builder.
pub(crate) struct ExporterSettings<'a> {
    pub(crate) protocol: Protocol,
    #[cfg_attr(
        not(any(feature = "otlp-grpc", feature = "otlp-http")),
        allow(dead_code)
    )]
    pub(crate) endpoint: Option<&'a str>,
    #[allow(dead_code)] // only the HTTP client has a timeout of its own
    pub(crate) timeout: Duration,
}

#[cfg(feature = "otlp-grpc")]
fn grpc(
    settings: &ExporterSettings<'_>,
    handle: &tokio::runtime::Handle,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    // Build on the runtime: tonic spawns its channel worker there.
    let _entered = handle.enter();
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_protocol(opentelemetry_otlp::Protocol::Grpc);
    if let Some(endpoint) = settings.endpoint {
        builder = builder.with_endpoint(endpoint.to_owned());
    }
    Ok(builder.build()?)
}

#[cfg(feature = "otlp-http")]
fn http(
    settings: &ExporterSettings<'_>,
    handle: &tokio::runtime::Handle,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(super::http_client::RuntimeHyperClient::new(
            handle.clone(),
            settings.timeout,
        ));
    if let Some(endpoint) = settings.endpoint {
        builder = builder.with_endpoint(http_traces_url(endpoint));
    }
    Ok(builder.build()?)
}

/// Installs the exporter for `settings` on `provider` (its batch processor runs the exports on
/// `handle`).
pub(crate) fn install(
    provider: opentelemetry_sdk::trace::TracerProviderBuilder,
    settings: &ExporterSettings<'_>,
    handle: &tokio::runtime::Handle,
) -> Result<opentelemetry_sdk::trace::TracerProviderBuilder, TelemetryError> {
    let _ = (&provider, handle);
    match settings.protocol {
        #[cfg(feature = "otlp-grpc")]
        Protocol::Grpc => Ok(provider.with_batch_exporter(grpc(settings, handle)?)),
        #[cfg(not(feature = "otlp-grpc"))]
        Protocol::Grpc => Err(TelemetryError::ExporterNotCompiled {
            protocol: "gRPC",
            feature: "otlp-grpc",
        }),
        #[cfg(feature = "otlp-http")]
        Protocol::HttpProtobuf => Ok(provider.with_batch_exporter(http(settings, handle)?)),
        #[cfg(not(feature = "otlp-http"))]
        Protocol::HttpProtobuf => Err(TelemetryError::ExporterNotCompiled {
            protocol: "HTTP/protobuf",
            feature: "otlp-http",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
