//! The [`Metrics`] service.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http::{Request, Response, header::USER_AGENT};
use http_body::Body;
use tower_service::Service;

use super::{
    body::{RequestBody, ResponseBody},
    future::{ResponseFuture, State},
    instruments::Shared,
    labels::{ClassifyRoute, MatchedRoute, UserAgentClass, method_index},
};

/// The service made by [`MetricsLayer`](super::MetricsLayer).
#[derive(Clone, Debug)]
pub struct Metrics<S, C> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
}

impl<S, C> Metrics<S, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, classifier: C) -> Self {
        Self {
            inner,
            shared,
            classifier,
        }
    }

    crate::inner_service_accessors!();
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S, C>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    C: ClassifyRoute,
    ReqBody: Body,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if self.shared.is_excluded(req.uri().path()) {
            return ResponseFuture {
                inner: self.inner.call(req.map(RequestBody::unmeasured)),
                state: None,
            };
        }
        let (parts, body) = req.into_parts();
        let method = method_index(&parts.method);
        let route = MatchedRoute::find(&parts, &self.classifier);
        if let Some(counters) = &self.shared.user_agents {
            let class = parts
                .headers
                .get(USER_AGENT)
                .map_or(UserAgentClass::Other, |ua| {
                    UserAgentClass::classify(ua.as_bytes())
                });
            counters[class.index()].inc();
        }
        let (body, request_size) = RequestBody::measured(body);
        self.shared.active[method].inc();
        let state = State {
            shared: self.shared.clone(),
            method,
            route,
            request_size,
            start: Instant::now(),
        };
        ResponseFuture {
            inner: self.inner.call(Request::from_parts(parts, body)),
            state: Some(state),
        }
    }
}
