//! [`TraceLayer`]: the server layer's configuration.

use std::{borrow::Cow, fmt, sync::Arc};

use http::HeaderName;
use ipnet::IpNet;
use tower_layer::Layer;

use super::{
    config::{Config, DEFAULT_LOG_EXCLUDED},
    service::Trace,
};
use crate::{
    headers::{X_REQUEST_ID, X_TRACE_ID},
    peer::ForwardedHeader,
};

/// OpenTelemetry server spans for every request. See the [module docs](super).
#[derive(Clone)]
pub struct TraceLayer {
    pub(crate) config: Arc<Config>,
}

impl TraceLayer {
    /// A layer with the defaults: `x-trace-id` response header, incoming trace context trusted,
    /// a request log line for every path but `/health*` and `/metrics`.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                trace_id_header: Some(X_TRACE_ID),
                request_id_header: Some(X_REQUEST_ID),
                untrusted_edge: false,
                context_sources: Vec::new(),
                trusted_proxies: Vec::new(),
                forwarded_header: ForwardedHeader::XForwardedFor,
                request_log: true,
                log_excluded: DEFAULT_LOG_EXCLUDED
                    .iter()
                    .map(|p| Cow::Borrowed(*p))
                    .collect(),
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The response header that carries the trace id (32 lower-case hex digits), so a user can
    /// paste it into Jaeger or Tempo. `None` turns it off. The header is set only when the
    /// request's span has a valid trace id (an OpenTelemetry tracing layer is installed), and
    /// never replaces one set by the handler.
    ///
    /// Defaults to `x-trace-id`.
    pub fn trace_id_header(mut self, header: Option<HeaderName>) -> Self {
        self.config_mut().trace_id_header = header;
        self
    }

    /// The request header holding the request id, recorded as the span's `request_id`
    /// attribute, on the request log line and sent on by [`PropagateLayer`](super::PropagateLayer)
    /// for client calls made while the request is handled. The request-id layer writes its
    /// chosen id to this header, so place it before this layer; without it, an incoming value is
    /// used only if it is safe ([`is_valid_request_id`](crate::headers::is_valid_request_id)).
    /// `None` turns it off.
    ///
    /// Defaults to `x-request-id`.
    pub fn request_id_header(mut self, header: Option<HeaderName>) -> Self {
        self.config_mut().request_id_header = header;
        self
    }

    /// At an untrusted edge, never continue the caller's trace: every request starts a new
    /// trace, and a valid incoming trace context is attached to the server span as a **link**
    /// instead of a parent (incoming `tracestate` and `baggage` are dropped).
    ///
    /// Defaults to `false` (a valid incoming `traceparent` becomes the parent).
    pub fn untrusted_edge(mut self, untrusted: bool) -> Self {
        self.config_mut().untrusted_edge = untrusted;
        self
    }

    /// At an [`untrusted_edge`](Self::untrusted_edge), the peers whose trace context is still
    /// continued (a gateway that starts or checks traces itself, a mesh sidecar): requests whose
    /// TCP peer is in one of these networks keep their parent, tracestate and baggage.
    ///
    /// Defaults to none.
    pub fn trusted_context_sources(mut self, networks: impl IntoIterator<Item = IpNet>) -> Self {
        self.config_mut().context_sources = networks.into_iter().collect();
        self
    }

    /// The reverse proxies whose forwarding header names the client, for the `client.address`
    /// attribute: the client is resolved exactly as the rate limiter's `ClientIp` does (the
    /// rightmost entry that is not a trusted proxy; see `covet_layers::rate_limit::resolve_client`),
    /// so a client cannot put an address of its choice into its spans.
    ///
    /// Defaults to none: `client.address` is the TCP peer.
    pub fn trusted_proxies(mut self, networks: impl IntoIterator<Item = IpNet>) -> Self {
        self.config_mut().trusted_proxies = networks.into_iter().collect();
        self
    }

    /// The forwarding header the [`trusted_proxies`](Self::trusted_proxies) write; the other is
    /// never read.
    ///
    /// Defaults to [`ForwardedHeader::XForwardedFor`].
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.config_mut().forwarded_header = header;
        self
    }

    /// Whether each request ends with one `INFO` log line (target `covet::trace::request`,
    /// message `request completed`) with `method`, `route`, `status`, `latency_ms`, `bytes`
    /// (when the response size is known) and `request_id` (the request id header's). The line is
    /// written inside the request-id layer's `request` span when that layer runs first with its
    /// span on; the span carries `request_id` then, so the line does not repeat it (a formatting
    /// subscriber shows it once, in the span's fields, and `covet_layers::telemetry`'s JSON lines
    /// still have it as a top-level field).
    ///
    /// Defaults to `true`.
    pub fn request_log(mut self, enabled: bool) -> Self {
        self.config_mut().request_log = enabled;
        self
    }

    /// Paths left out of the request log: each entry matches itself and everything below it.
    /// Their spans are still recorded.
    ///
    /// Defaults to [`DEFAULT_LOG_EXCLUDED`] (`/health*` and `/metrics`).
    pub fn log_excluded_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Cow<'static, str>>,
    {
        self.config_mut().log_excluded = paths.into_iter().map(Into::into).collect();
        self
    }
}

impl Default for TraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TraceLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceLayer")
            .field("trace_id_header", &self.config.trace_id_header)
            .field("request_id_header", &self.config.request_id_header)
            .field("untrusted_edge", &self.config.untrusted_edge)
            .field("trusted_context_sources", &self.config.context_sources)
            .field("trusted_proxies", &self.config.trusted_proxies)
            .field("request_log", &self.config.request_log)
            .field("log_excluded", &self.config.log_excluded)
            .finish()
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            config: self.config.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusions_match_the_path_and_below_only() {
        let config = TraceLayer::new().config;
        assert!(!config.logs("/health"));
        assert!(!config.logs("/health/ready"));
        assert!(!config.logs("/metrics"));
        assert!(config.logs("/healthy"));
        assert!(config.logs("/users/42"));
        let config = TraceLayer::new().request_log(false).config;
        assert!(!config.logs("/users/42"));
    }
}
