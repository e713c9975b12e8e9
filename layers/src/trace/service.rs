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
use opentelemetry::{
    KeyValue, global,
    propagation::TextMapPropagator,
    trace::{SpanContext, TraceContextExt},
};
use tower_service::Service;

use super::{
    future::{RequestLog, ResponseFuture},
    layer::Config,
    traceparent::{
        BAGGAGE_HEADER, RequestExtractor, TRACEPARENT, TRACEPARENT_HEADER, TRACESTATE,
        TRACESTATE_HEADER, parse_traceparent, remote_span_context,
    },
    tracer::ServerTracer,
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

/// The server span's parent (from the incoming headers, or none) and, at an untrusted edge,
/// the incoming context to link to instead.
fn parent_context(
    headers: &HeaderMap,
    untrusted_edge: bool,
) -> (opentelemetry::Context, Option<SpanContext>) {
    let mut traceparents = headers.get_all(&TRACEPARENT_HEADER).iter();
    let (first, second) = (traceparents.next(), traceparents.next());
    let has_traceparent = first.is_some();
    let has_baggage = headers.contains_key(&BAGGAGE_HEADER);
    if !has_traceparent && !has_baggage {
        // Nothing to continue: a new trace, whatever span encloses this layer.
        return (opentelemetry::Context::new(), None);
    }
    // Exactly one `traceparent`, and a valid one.
    let valid = match (first, second) {
        (Some(value), None) => parse_traceparent(value.as_bytes()),
        _ => None,
    };
    if has_traceparent && valid.is_none() {
        tracing::debug!(
            target: "covet::trace",
            "invalid traceparent; starting a new trace and dropping tracestate"
        );
    }
    let extractor = RequestExtractor {
        headers,
        hide_trace_context: valid.is_none(),
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
        // The common case, read without the propagator's general parser: the checked
        // `traceparent` (and `tracestate`) alone, with the W3C propagator installed.
        if let Some(traceparent) = valid
            && !has_baggage
            && is_w3c(propagator)
        {
            let tracestate = headers.get(&TRACESTATE_HEADER);
            return opentelemetry::Context::new()
                .with_remote_span_context(remote_span_context(traceparent, tracestate));
        }
        propagator.extract_with_context(&opentelemetry::Context::new(), &extractor)
    });
    if untrusted_edge {
        let remote = incoming.span().span_context().clone();
        (
            opentelemetry::Context::new(),
            remote.is_valid().then_some(remote),
        )
    } else {
        (incoming, None)
    }
}

/// Whether `propagator` reads W3C trace context (and perhaps W3C baggage) and nothing else.
fn is_w3c(propagator: &dyn TextMapPropagator) -> bool {
    let mut reads_traceparent = false;
    for field in propagator.fields() {
        match field {
            TRACEPARENT => reads_traceparent = true,
            TRACESTATE | "baggage" => {}
            _ => return false,
        }
    }
    reads_traceparent
}

/// The server span's name when a route is known, and its attributes: made only for a span the
/// sampler records.
fn span_attributes<B>(
    req: &Request<B>,
    route: Option<&str>,
    request_id: Option<&http::HeaderValue>,
) -> (Option<String>, Vec<KeyValue>) {
    let method = req.method();
    let name = route.map(|route| format!("{} {route}", method_name(method)));
    let mut attributes = Vec::with_capacity(10);
    attributes.push(KeyValue::new(
        "http.request.method",
        method_attribute(method),
    ));
    attributes.push(KeyValue::new("url.path", req.uri().path().to_owned()));
    attributes.push(KeyValue::new(
        "url.scheme",
        match req.uri().scheme_str() {
            None | Some("http") => "http".into(),
            Some("https") => "https".into(),
            Some(other) => opentelemetry::Value::from(other.to_owned()),
        },
    ));
    if let Some(route) = route {
        attributes.push(KeyValue::new("http.route", route.to_owned()));
    }
    attributes.push(KeyValue::new(
        "network.protocol.version",
        protocol_version(req.version()),
    ));
    let owned = |value: &str| opentelemetry::Value::from(value.to_owned());
    if let Some(host) = server_address(req) {
        attributes.push(KeyValue::new("server.address", owned(host)));
    }
    if let Some(client) = client_address(req.headers()) {
        attributes.push(KeyValue::new("client.address", owned(client)));
    }
    if let Some(agent) = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", owned(agent)));
    }
    if let Some(id) = request_id.and_then(|v| v.to_str().ok()) {
        attributes.push(KeyValue::new("request_id", owned(id)));
    }
    (name, attributes)
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
        let otel = ServerTracer::with_current(|tracer| {
            let (parent, link) = parent_context(req.headers(), self.config.untrusted_edge);
            tracer.start(method_name(req.method()), &parent, link, || {
                span_attributes(&req, route.map(route_str), request_id.as_ref())
            })
        });
        let log =
            (self.config.request_log && self.config.logs(req.uri().path())).then(|| RequestLog {
                start: Instant::now(),
                method: req.method().clone(),
                route: route.cloned(),
            });

        let inner = {
            let _otel = otel.as_ref().map(|cx| cx.clone().attach());
            let _scope = super::scope::enter(request_id.as_ref());
            self.inner.call(req)
        };
        ResponseFuture {
            inner,
            otel,
            config: self.config.clone(),
            request_id,
            log,
        }
    }
}
