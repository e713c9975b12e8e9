//! [`PropagateLayer`]: a CLIENT span per outgoing request, with W3C trace context and the
//! request id injected into its headers.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderName, Request, Response, header::Entry};
use opentelemetry::global;
use opentelemetry_http::HeaderInjector;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::attributes::{method_attribute, method_name, protocol_version};
use crate::headers::X_REQUEST_ID;

/// Traces outgoing requests made through any `Service<http::Request<B>>` (a hyper-util client,
/// a tonic channel, reqwest through tower).
///
/// For each request it opens an `INFO` span of kind CLIENT (target `covet::trace`, named
/// `{METHOD}`) under the current span, with `http.request.method`, `server.address`,
/// `server.port`, `url.full`, `network.protocol.version`, `http.response.status_code` and
/// `error.type` (status Error for 4xx, 5xx and transport errors); injects `traceparent`,
/// `tracestate` and `baggage` for that span through the global propagator; and sets the
/// request-id header to the id of the request being handled (see
/// [`current_request_id`](super::current_request_id)) unless the request already has one.
///
/// ```
/// use covet_layers::trace::PropagateLayer;
/// use http::{Request, Response};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), std::convert::Infallible> {
/// // Stands in for a hyper-util `Client`: echoes the request headers it received.
/// let client = service_fn(|req: Request<()>| async move {
///     let mut res = Response::new(());
///     *res.headers_mut() = req.headers().clone();
///     Ok::<_, std::convert::Infallible>(res)
/// });
/// let client = ServiceBuilder::new().layer(PropagateLayer::new()).service(client);
/// let res = client.oneshot(Request::get("http://127.0.0.1:9/").body(()).unwrap()).await?;
/// // Without a tracing subscriber or a request being handled there is nothing to propagate.
/// assert!(res.headers().get("traceparent").is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PropagateLayer {
    request_id_header: Option<HeaderName>,
}

impl PropagateLayer {
    /// A layer that writes `x-request-id`.
    pub fn new() -> Self {
        Self {
            request_id_header: Some(X_REQUEST_ID),
        }
    }

    /// The header that carries the current request id to the downstream service; `None` turns
    /// it off.
    ///
    /// Defaults to `x-request-id`.
    pub fn request_id_header(mut self, header: Option<HeaderName>) -> Self {
        self.request_id_header = header;
        self
    }
}

impl Default for PropagateLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Propagate {
            inner,
            request_id_header: self.request_id_header.clone(),
        }
    }
}

/// The service made by [`PropagateLayer`].
#[derive(Clone, Debug)]
pub struct Propagate<S> {
    inner: S,
    request_id_header: Option<HeaderName>,
}

impl<S> Propagate<S> {
    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Propagate<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = PropagateFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let uri = req.uri();
        let span = tracing::info_span!(
            target: "covet::trace",
            "HTTP client request",
            otel.name = method_name(req.method()),
            otel.kind = "client",
            otel.status_code = Empty,
            http.request.method = method_attribute(req.method()),
            server.address = uri.host(),
            server.port = uri.port_u16().or_else(|| match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            }),
            url.full = %uri,
            network.protocol.version = protocol_version(req.version()),
            http.response.status_code = Empty,
            error.type = Empty,
        );
        let cx = if span.is_disabled() {
            opentelemetry::Context::current()
        } else {
            span.context()
        };
        global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&cx, &mut HeaderInjector(req.headers_mut()))
        });
        if let Some(header) = &self.request_id_header
            && let Some(id) = super::scope::current_request_id()
            && let Entry::Vacant(entry) = req.headers_mut().entry(header)
        {
            entry.insert(id);
        }
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        PropagateFuture { inner, span }
    }
}

pin_project! {
    /// The response future of [`Propagate`]: records the status on the client span.
    pub struct PropagateFuture<F> {
        #[pin]
        inner: F,
        span: Span,
    }
}

impl<F, B, E> Future for PropagateFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = ready!(this.inner.poll(cx));
        match &result {
            Ok(response) => {
                let status = response.status();
                this.span
                    .record("http.response.status_code", status.as_u16());
                if status.is_client_error() || status.is_server_error() {
                    this.span.record("otel.status_code", "ERROR");
                    this.span.record("error.type", status.as_str());
                }
            }
            Err(_) => {
                this.span.record("otel.status_code", "ERROR");
                this.span.record("error.type", std::any::type_name::<E>());
            }
        }
        Poll::Ready(result)
    }
}

impl<F> fmt::Debug for PropagateFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateFuture")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}
