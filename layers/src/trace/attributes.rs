//! What the server span and the request log line are made of: the HTTP semantic conventions'
//! attribute values, the route, and the trace-id header value.

use http::{HeaderValue, Method, Request, Version};
use opentelemetry::{KeyValue, trace::TraceContextExt};

use super::config::Config;
use crate::peer::{Client, peer_ip_of, resolve_client};

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

/// The `client.address` attribute: the client as the trusted proxies name it, else the TCP
/// peer; nothing when the peer is unknown or a trusted proxy could not name its client.
fn client_address<B>(req: &Request<B>, config: &Config) -> Option<opentelemetry::Value> {
    let peer = peer_ip_of(req.extensions())?;
    match resolve_client(
        peer,
        req.headers(),
        &config.trusted_proxies,
        config.forwarded_header,
    ) {
        Client::Ip(ip) => {
            // Formatted on the stack, then copied once: `to_string` grows its `String` twice
            // and the attribute shrinks it again.
            use std::io::Write as _;
            let mut buf = [0u8; 45]; // the longest IPv6 text, with an embedded IPv4
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            write!(cursor, "{ip}").ok()?;
            let len = usize::try_from(cursor.position()).ok()?;
            let text = std::str::from_utf8(&buf[..len]).ok()?;
            Some(text.to_owned().into())
        }
        Client::Obfuscated(token) => Some(token.into()),
        _ => None,
    }
}

/// The route template, when a router recorded one.
#[cfg(feature = "axum")]
pub(crate) type Route = axum::extract::MatchedPath;
#[cfg(not(feature = "axum"))]
pub(crate) type Route = std::convert::Infallible;

#[inline]
pub(crate) fn route_of<B>(req: &Request<B>) -> Option<&Route> {
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

/// The server span's name when a route is known, and its attributes: made only for a span the
/// sampler records.
pub(crate) fn span_attributes<B>(
    req: &Request<B>,
    config: &Config,
    route: Option<&str>,
    request_id: Option<&HeaderValue>,
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
    if let Some(client) = client_address(req, config) {
        attributes.push(KeyValue::new("client.address", client));
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

/// Lower-case hex of a trace id, as a header value.
pub(crate) fn trace_id_value(cx: &opentelemetry::Context) -> Option<HeaderValue> {
    let otel_span = cx.span();
    let span_context = otel_span.span_context();
    if !span_context.is_valid() {
        return None;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, byte) in span_context.trace_id().to_bytes().iter().enumerate() {
        buf[2 * i] = HEX[usize::from(byte >> 4)];
        buf[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    HeaderValue::from_bytes(&buf).ok()
}
