//! The [`Metrics`] service and its response future.

use std::{
    borrow::Cow,
    fmt,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    pin::Pin,
    sync::{Arc, atomic::AtomicU64},
    task::{Context, Poll},
    time::Instant,
};

use http::{Request, Response, header::USER_AGENT, request::Parts};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{
    body::{RequestBody, ResponseBody},
    labels::{ClassifyRoute, UserAgentClass, method_index, unmatched_route},
    layer::Shared,
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

/// The route label of a request, found before it is handled.
enum Route {
    #[cfg(feature = "axum")]
    Matched(axum::extract::MatchedPath),
    Classified(Cow<'static, str>),
}

impl Route {
    fn find<C: ClassifyRoute>(parts: &Parts, classifier: &C) -> Option<Self> {
        #[cfg(feature = "axum")]
        if let Some(matched) = parts.extensions.get::<axum::extract::MatchedPath>() {
            return Some(Route::Matched(matched.clone()));
        }
        classifier.classify(parts).map(Route::Classified)
    }

    fn as_str(&self) -> &str {
        match self {
            #[cfg(feature = "axum")]
            Route::Matched(matched) => matched.as_str(),
            Route::Classified(route) => route,
        }
    }
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
        let route = Route::find(&parts, &self.classifier);
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

/// How the request body's size is known.
pub(crate) enum RequestSize {
    /// Exact, from the body's size hint.
    Exact(u64),
    /// Counted as the body is read.
    Counted(Arc<AtomicU64>),
}

impl RequestSize {
    fn get(&self) -> u64 {
        match self {
            RequestSize::Exact(n) => *n,
            RequestSize::Counted(n) => n.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// What a measured request carries until its response head is ready.
struct State {
    shared: Arc<Shared>,
    method: usize,
    route: Option<Route>,
    request_size: RequestSize,
    start: Instant,
}

impl Drop for State {
    fn drop(&mut self) {
        // Also runs when the client goes away before the response: the gauge never leaks.
        self.shared.active[self.method].dec();
    }
}

pin_project! {
    /// The response future of [`Metrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<State>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let polled = match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => result,
            Err(panic) => {
                if let Some(state) = this.state.take() {
                    let route = state.route.as_ref().map(Route::as_str);
                    state.shared.exception(state.method, route, "panic");
                }
                resume_unwind(panic)
            }
        };
        let Some(state) = this.state.take() else {
            return Poll::Ready(polled.map(|res| res.map(ResponseBody::unmeasured)));
        };
        let response = match polled {
            Ok(response) => response,
            Err(err) => {
                let route = state.route.as_ref().map(Route::as_str);
                state.shared.exception(state.method, route, "error");
                return Poll::Ready(Err(err));
            }
        };
        let status = response.status();
        let route = match &state.route {
            Some(route) => route.as_str(),
            None => unmatched_route(status),
        };
        let series = state.shared.series(state.method, status, route);
        series.requests.inc();
        series.duration.observe(state.start.elapsed().as_secs_f64());
        series.request_size.observe(state.request_size.get() as f64);
        Poll::Ready(Ok(response.map(|body| ResponseBody::measured(body, series))))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("measured", &self.state.is_some())
            .finish_non_exhaustive()
    }
}
