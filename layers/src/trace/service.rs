//! [`Trace`]: the service made by [`TraceLayer`](super::TraceLayer).

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderMap, Method, Request, Response, Version};
use opentelemetry::{global, trace::TraceContextExt};
use tower_service::Service;
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{
    future::{RequestLog, ResponseFuture},
    layer::Config,
    traceparent::{RequestExtractor, TRACEPARENT, has_valid_traceparent},
};

/// The service made by [`TraceLayer`](super::TraceLayer).
#[derive(Clone)]
pub struct Trace<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
}

impl<S> Trace<S> {
    crate::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Trace<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trace")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The `http.request.method` attribute: a standard method, or `_OTHER`.
#[inline]
pub(crate) fn method_attribute(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// The span name's method part: the method, or `HTTP` for a non-standard one.
#[inline]
pub(crate) fn method_name(method: &Method) -> &'static str {
    match method_attribute(method) {
        "_OTHER" => "HTTP",
        m => m,
    }
}

/// The `network.protocol.version` attribute.
#[inline]
pub(crate) fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "_OTHER",
    }
}

/// The `server.address` attribute: the URI's host, else the `Host` header's host part.
fn server_address<B>(req: &Request<B>) -> Option<&str> {
    if let Some(host) = req.uri().host() {
        return Some(host);
    }
    let host = req.headers().get(http::header::HOST)?.to_str().ok()?;
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(host.split(':').next().unwrap_or(host))
}

/// The `client.address` attribute: the first `X-Forwarded-For` entry, which is what the proxy
/// saw (it is client-controlled; the attribute is informational, never a decision input).
fn client_address(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("x-forwarded-for")?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// The span name, formatted only when the span is recorded.
struct SpanName<'a> {
    method: &'static str,
    route: Option<&'a str>,
}

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.route {
            Some(route) => write!(f, "{} {}", self.method, route),
            None => f.write_str(self.method),
        }
    }
}

/// The route template, when a router recorded one.
#[cfg(feature = "axum")]
pub(crate) type Route = axum::extract::MatchedPath;
#[cfg(not(feature = "axum"))]
pub(crate) type Route = std::convert::Infallible;

#[inline]
fn route_of<B>(req: &Request<B>) -> Option<&Route> {
    #[cfg(feature = "axum")]
    {
        req.extensions().get::<Route>()
    }
    #[cfg(not(feature = "axum"))]
    {
        let _ = req;
        None
    }
}

#[inline]
pub(crate) fn route_str(route: &Route) -> &str {
    #[cfg(feature = "axum")]
    {
        route.as_str()
    }
    #[cfg(not(feature = "axum"))]
    {
        match *route {}
    }
}

/// The request id put in the extensions by the request-id layer, if it ran.
#[inline]
fn request_id_of<B>(req: &Request<B>) -> Option<&http::HeaderValue> {
    #[cfg(feature = "request-id")]
    {
        req.extensions()
            .get::<crate::request_id::RequestId>()
            .map(|id| id.header_value())
    }
    #[cfg(not(feature = "request-id"))]
    {
        let _ = req;
        None
    }
}

static NO_PROPAGATOR_WARNED: AtomicBool = AtomicBool::new(false);

/// Makes the server span's parent from the incoming headers (or none), per the layer's rules.
fn set_parent(span: &Span, headers: &HeaderMap, untrusted_edge: bool) {
    let has_traceparent = headers.contains_key(TRACEPARENT);
    if !has_traceparent && !headers.contains_key("baggage") {
        // Nothing to continue: a new trace, whatever span encloses this layer.
        let _ = span.set_parent(opentelemetry::Context::new());
        return;
    }
    let valid = has_traceparent && has_valid_traceparent(headers);
    if has_traceparent && !valid {
        tracing::debug!(
            target: "covet::trace",
            "invalid traceparent; starting a new trace and dropping tracestate"
        );
    }
    let extractor = RequestExtractor {
        headers,
        hide_trace_context: !valid,
    };
    let incoming = global::get_text_map_propagator(|propagator| {
        if propagator.fields().next().is_none()
            && !NO_PROPAGATOR_WARNED.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                target: "covet::trace",
                "no global OpenTelemetry propagator is installed, so incoming trace context is \
                 ignored; call covet's telemetry::init or opentelemetry::global::set_text_map_propagator"
            );
        }
        propagator.extract_with_context(&opentelemetry::Context::new(), &extractor)
    });
    if untrusted_edge {
        let _ = span.set_parent(opentelemetry::Context::new());
        let remote = incoming.span().span_context().clone();
        if remote.is_valid() {
            span.add_link(remote);
        }
    } else {
        let _ = span.set_parent(incoming);
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Trace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let route = route_of(&req);
        let request_id = request_id_of(&req).cloned();
        let method = req.method();
        let span = tracing::info_span!(
            target: "covet::trace",
            "HTTP request",
            otel.name = %SpanName { method: method_name(method), route: route.map(route_str) },
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = method_attribute(method),
            url.path = req.uri().path(),
            url.scheme = req.uri().scheme_str().unwrap_or("http"),
            http.route = route.map(route_str),
            http.response.status_code = Empty,
            network.protocol.version = protocol_version(req.version()),
            server.address = server_address(&req),
            client.address = client_address(req.headers()),
            user_agent.original = req
                .headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
            error.type = Empty,
            request_id = request_id.as_ref().and_then(|v| v.to_str().ok()),
        );
        if !span.is_disabled() {
            set_parent(&span, req.headers(), self.config.untrusted_edge);
        }
        let log =
            (self.config.request_log && self.config.logs(req.uri().path())).then(|| RequestLog {
                start: Instant::now(),
                method: req.method().clone(),
                route: route.cloned(),
            });

        let inner = {
            let _entered = span.enter();
            let _scope = super::scope::enter(request_id.as_ref());
            self.inner.call(req)
        };
        ResponseFuture {
            inner,
            span,
            config: self.config.clone(),
            request_id,
            log,
        }
    }
}
