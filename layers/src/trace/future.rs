//! The response future of the server [`Trace`](super::Trace) service.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{HeaderValue, Method, Response, header::Entry};
use opentelemetry::{
    KeyValue,
    trace::{Status, TraceContextExt},
};
use pin_project_lite::pin_project;

use super::{
    attributes::{Route, method_attribute, route_str, trace_id_value},
    config::Config,
};

/// What the request log line needs, kept only for requests that are logged.
pub(crate) struct RequestLog {
    pub(crate) start: Instant,
    pub(crate) method: Method,
    pub(crate) route: Option<Route>,
}

pin_project! {
    /// The response future of [`Trace`](super::Trace): records the status on the span, sets the
    /// trace-id header and writes the request log line.
    pub struct ResponseFuture<F> {
        #[pin]
        pub(crate) inner: F,
        pub(crate) otel: Option<opentelemetry::Context>,
        pub(crate) config: Arc<Config>,
        pub(crate) request_id: Option<HeaderValue>,
        pub(crate) log: Option<RequestLog>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _otel = this.otel.as_ref().map(|cx| cx.clone().attach());
            let _scope = super::scope::enter(this.request_id.as_ref());
            ready!(this.inner.poll(cx))
        };
        // The log line leaves the id out when the request-id layer's span, current here,
        // shows it already (a formatting subscriber would print it twice).
        let logged_id = || {
            this.request_id
                .as_ref()
                .filter(|_| !crate::headers::in_request_id_span())
                .and_then(|v| v.to_str().ok())
        };
        // The span ends here, not when the last clone of its context is dropped.
        let otel = this.otel.take();
        let otel_span = otel.as_ref().map(TraceContextExt::span);
        match result {
            Ok(mut response) => {
                let status = response.status();
                if let Some(otel_span) = &otel_span {
                    if otel_span.is_recording() {
                        otel_span.set_attribute(KeyValue::new(
                            "http.response.status_code",
                            i64::from(status.as_u16()),
                        ));
                        if status.is_server_error() {
                            otel_span.set_status(Status::error(""));
                            otel_span.set_attribute(KeyValue::new(
                                "error.type",
                                status.as_str().to_owned(),
                            ));
                        }
                    }
                    otel_span.end();
                }
                if let Some(header) = &this.config.trace_id_header
                    && let Some(otel) = &otel
                    && let Entry::Vacant(entry) = response.headers_mut().entry(header)
                    && let Some(value) = trace_id_value(otel)
                {
                    entry.insert(value);
                }
                if let Some(log) = this.log.take() {
                    let _otel = otel.map(opentelemetry::Context::attach);
                    let latency_ms = latency_ms(log.start);
                    // Strings as Display: a formatting subscriber writes them as they are
                    // instead of escaping them character by character (`Debug` for `str`).
                    tracing::info!(
                        target: "covet::trace::request",
                        method = %method_attribute(&log.method),
                        route = log.route.as_ref().map(route_str).map(display),
                        status = status.as_u16(),
                        latency_ms,
                        bytes = response.body().size_hint().exact(),
                        request_id = logged_id().map(display),
                        "request completed"
                    );
                }
                Poll::Ready(Ok(response))
            }
            Err(error) => {
                let kind = std::any::type_name::<E>();
                if let Some(otel_span) = &otel_span {
                    if otel_span.is_recording() {
                        otel_span.set_status(Status::error(""));
                        otel_span.set_attribute(KeyValue::new("error.type", kind));
                    }
                    otel_span.end();
                }
                if let Some(log) = this.log.take() {
                    let _otel = otel.map(opentelemetry::Context::attach);
                    let latency_ms = latency_ms(log.start);
                    tracing::info!(
                        target: "covet::trace::request",
                        method = %method_attribute(&log.method),
                        route = log.route.as_ref().map(route_str).map(display),
                        error.type = %kind,
                        latency_ms,
                        request_id = logged_id().map(display),
                        "request failed"
                    );
                }
                Poll::Ready(Err(error))
            }
        }
    }
}

/// Milliseconds since `start`, to the microsecond (`0.271`, not `0.27143300000000004`).
fn latency_ms(start: Instant) -> f64 {
    // Exact below 2^53 µs (285 years).
    start.elapsed().as_micros() as f64 / 1e3
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("otel", &self.otel)
            .finish_non_exhaustive()
    }
}
