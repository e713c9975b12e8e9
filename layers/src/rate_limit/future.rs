//! [`ResponseFuture`] and [`RateLimitBody`].

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{
    key::Key,
    layer::Shared,
    service::{Outcome, decided, is_grpc, unavailable},
    store::DecisionFuture,
};

/// The rate-limit fields to add to a response: the numbers, written out with the response.
#[derive(Debug)]
pub(crate) struct RateHeaders {
    pub(crate) shared: Arc<Shared>,
    pub(crate) policy: usize,
    pub(crate) remaining: u64,
    pub(crate) reset: u64,
}

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
        headers: Option<RateHeaders>,
    }
}

/// A decision from a remote store, with what is needed once it arrives.
struct Waiting<S, ReqBody> {
    decision: DecisionFuture,
    service: S,
    request: Request<ReqBody>,
    key: Key,
    policy: usize,
    started: Instant,
    shared: Arc<Shared>,
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Inner { #[pin] fut: S::Future },
        Early { response: Option<Box<Response<Bytes>>> },
        Waiting { waiting: Option<Box<Waiting<S, ReqBody>>> },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn inner(fut: S::Future, headers: Option<RateHeaders>) -> Self {
        Self {
            state: State::Inner { fut },
            headers,
        }
    }

    pub(crate) fn early(response: Response<Bytes>) -> Self {
        Self {
            state: State::Early {
                response: Some(Box::new(response)),
            },
            headers: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn waiting(
        decision: DecisionFuture,
        service: S,
        request: Request<ReqBody>,
        key: Key,
        policy: usize,
        started: Instant,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            state: State::Waiting {
                waiting: Some(Box::new(Waiting {
                    decision,
                    service,
                    request,
                    key,
                    policy,
                    started,
                    shared,
                })),
            },
            headers: None,
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<RateLimitBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { fut } => {
                    let mut response = ready!(fut.poll(cx))?;
                    if let Some(headers) = this.headers.take() {
                        headers.apply(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response.map(RateLimitBody::inner)));
                }
                StateProj::Early { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok((*response).map(RateLimitBody::full)));
                }
                StateProj::Waiting { waiting } => {
                    let w = waiting.as_mut().expect("polled after completion");
                    let result = ready!(w.decision.as_mut().poll(cx));
                    let Waiting {
                        mut service,
                        request,
                        key,
                        policy: index,
                        started,
                        shared,
                        ..
                    } = *waiting.take().expect("checked above");
                    let metrics = &shared.metrics;
                    let policy = &shared.policies[index];
                    let next = match result {
                        Ok(decision) => {
                            metrics
                                .store_duration
                                .observe(started.elapsed().as_secs_f64());
                            decided(
                                &mut service,
                                &shared,
                                index,
                                decision,
                                request,
                                Outcome::Store,
                            )
                        }
                        Err(_) => {
                            metrics.store_errors.inc();
                            if policy.fail_closed {
                                ResponseFuture::early(unavailable(
                                    &shared,
                                    policy,
                                    is_grpc(request.headers()),
                                ))
                            } else {
                                let decision = shared.store.memory().check(
                                    policy.seed,
                                    &key,
                                    policy.interval,
                                    policy.burst,
                                );
                                decided(
                                    &mut service,
                                    &shared,
                                    index,
                                    decision,
                                    request,
                                    Outcome::Fallback,
                                )
                            }
                        }
                    };
                    // Move the next state in; its `state` is not pinned yet, so this is a move.
                    let ResponseFuture { state, headers } = next;
                    *this.headers = headers;
                    this.state.set(state);
                }
            }
        }
    }
}

pin_project! {
    /// The response body of [`RateLimit`](super::RateLimit): the inner service's body, or the
    /// problem+json body of a 429, 503 or rejected request.
    pub struct RateLimitBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> RateLimitBody<B> {
    fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
}

impl<B: Default> Default for RateLimitBody<B> {
    /// The inner body's default (what a short-circuiting outer layer creates).
    fn default() -> Self {
        Self::inner(B::default())
    }
}

impl<B> std::fmt::Debug for RateLimitBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("RateLimitBody::Inner"),
            Kind::Full { .. } => f.write_str("RateLimitBody::Full"),
        }
    }
}

impl<B> Body for RateLimitBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
