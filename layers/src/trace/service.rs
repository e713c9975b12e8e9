//! [`Trace`]: the service made by [`TraceLayer`](super::TraceLayer).

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http::{Request, Response};
use tower_service::Service;

use super::{
    attributes::{method_name, route_of, route_str, span_attributes},
    config::Config,
    context::parent_context,
    future::{RequestLog, ResponseFuture},
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
        let request_id = self
            .config
            .request_id_header
            .as_ref()
            .and_then(|name| crate::headers::request_id(req.headers(), name))
            .cloned();
        let otel = ServerTracer::with_current(|tracer| {
            let continues = self
                .config
                .continues_context(crate::peer::peer_ip_of(req.extensions()));
            let (parent, link) = parent_context(req.headers(), !continues);
            tracer.start(method_name(req.method()), &parent, link, || {
                span_attributes(
                    &req,
                    &self.config,
                    route.map(route_str),
                    request_id.as_ref(),
                )
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
