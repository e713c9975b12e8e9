//! [`ResponseFuture`]: the inner call, a short-circuit answer, or a wait for a remote store's
//! decision.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{
    body::RateLimitBody,
    key::Key,
    policy::Shared,
    quota::ceil_secs,
    response::{RateHeaders, is_grpc, problem_response, rate_headers, unavailable},
    store::{Decision, DecisionFuture},
};

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
    #[cfg_attr(not(feature = "rate-limit-redis"), allow(dead_code))]
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

/// Where a decision came from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The configured store.
    Store,
    /// The local fallback, because the store failed.
    Fallback,
}

/// Turns a decision into the inner call or a 429.
pub(crate) fn decided<S, ReqBody, ResBody>(
    service: &mut S,
    shared: &Arc<Shared>,
    index: usize,
    decision: Decision,
    req: Request<ReqBody>,
    outcome: Outcome,
) -> ResponseFuture<S, ReqBody>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    let policy = &shared.policies[index];
    if decision.allowed {
        match outcome {
            Outcome::Store => policy.allowed.inc(),
            Outcome::Fallback => policy.fail_open.inc(),
        }
        let headers = rate_headers(shared, index, &decision);
        ResponseFuture::inner(service.call(req), headers)
    } else {
        policy.limited.inc();
        policy.exceeded.inc();
        let mut response = problem_response(
            StatusCode::TOO_MANY_REQUESTS,
            policy.limited_body.clone(),
            is_grpc(req.headers()),
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(ceil_secs(decision.retry_after).max(1)),
        );
        if let Some(headers) = rate_headers(shared, index, &decision) {
            headers.apply(response.headers_mut());
        }
        ResponseFuture::early(response)
    }
}
