//! The [`RateLimit`] service.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};

use super::{
    body::RateLimitBody,
    future::{Outcome, ResponseFuture, decided},
    key::KeyExtractor,
    policy::{MissingKey, Shared},
    response::{is_grpc, problem_response},
    store::StoreKind,
};

/// The service made by [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Clone, Debug)]
pub struct RateLimit<S, K> {
    inner: S,
    shared: Arc<Shared>,
    key: K,
}

impl<S, K> RateLimit<S, K> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, key: K) -> Self {
        Self { inner, shared, key }
    }

    crate::inner_service_accessors!();
}

impl<S, K, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for RateLimit<S, K>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyExtractor,
{
    type Response = Response<RateLimitBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let shared = &*self.shared;
        let index = shared.select(&parts);
        let Some(key) = shared.key_or_missing(&self.key, &parts) else {
            let req = Request::from_parts(parts, body);
            return match shared.missing_key {
                MissingKey::Reject(status) => ResponseFuture::early(problem_response(
                    status,
                    shared.missing_body.clone(),
                    is_grpc(req.headers()),
                )),
                _ => ResponseFuture::inner(self.inner.call(req), None),
            };
        };
        let req = Request::from_parts(parts, body);
        let policy = &shared.policies[index];
        match &shared.store.0 {
            StoreKind::Memory(store) => {
                let decision = store.check(policy.seed, &key, policy.interval, policy.burst);
                decided(
                    &mut self.inner,
                    &self.shared,
                    index,
                    decision,
                    req,
                    Outcome::Store,
                )
            }
            #[cfg(feature = "rate-limit-redis")]
            StoreKind::Redis(store) if !store.admits() => {
                // The circuit is open: decide at once as if the store had failed.
                if policy.fail_closed {
                    let grpc = super::response::is_grpc(req.headers());
                    return ResponseFuture::early(super::response::unavailable(
                        shared, policy, grpc,
                    ));
                }
                let decision =
                    store
                        .fallback()
                        .check(policy.seed, &key, policy.interval, policy.burst);
                decided(
                    &mut self.inner,
                    &self.shared,
                    index,
                    decision,
                    req,
                    Outcome::Fallback,
                )
            }
            #[cfg(feature = "rate-limit-redis")]
            StoreKind::Redis(store) => {
                let decision = store.check(&policy.name, &key, policy.interval, policy.burst);
                // The ready service goes with the request; a fresh clone stays for the next.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(
                    decision,
                    service,
                    req,
                    key,
                    index,
                    std::time::Instant::now(),
                    self.shared.clone(),
                )
            }
        }
    }
}
