//! The response future of the [`Metrics`](super::Metrics) service: records the request when
//! its response head is ready.

use std::{
    fmt,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http::Response;
use pin_project_lite::pin_project;

use super::{
    body::{RequestSize, ResponseBody},
    instruments::Shared,
    labels::{MatchedRoute, unmatched_route},
};

/// What a measured request carries until its response head is ready.
pub(crate) struct State {
    pub(crate) shared: Arc<Shared>,
    pub(crate) method: usize,
    pub(crate) route: Option<MatchedRoute>,
    pub(crate) request_size: RequestSize,
    pub(crate) start: Instant,
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
        pub(crate) inner: F,
        pub(crate) state: Option<State>,
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
                    let route = state.route.as_ref().map(MatchedRoute::as_str);
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
                let route = state.route.as_ref().map(MatchedRoute::as_str);
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
