//! The [`RateLimit`] service.

use std::{
    io::Write,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};

use super::{
    future::{RateHeaders, ResponseFuture},
    key::KeyExtractor,
    layer::{CompiledPolicy, MissingKey, Shared},
    quota::ceil_secs,
    store::{Decision, StoreKind},
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
    type Response = Response<super::RateLimitBody<ResBody>>;
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
                    Instant::now(),
                    self.shared.clone(),
                )
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

/// The 503 of a fail-closed policy.
pub(crate) fn unavailable(shared: &Shared, policy: &CompiledPolicy, grpc: bool) -> Response<Bytes> {
    policy.fail_closed_count.inc();
    let mut response = problem_response(
        StatusCode::SERVICE_UNAVAILABLE,
        policy.unavailable_body.clone(),
        grpc,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, shared.unavailable_retry_after.clone());
    response
}

/// Whether a request is gRPC (`content-type: application/grpc…`).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A short-circuit answer: `status` with a problem+json body, or for gRPC requests a
/// trailers-only gRPC response (HTTP 200, `grpc-status` mapped from `status`), which gRPC
/// clients understand (`RESOURCE_EXHAUSTED` for 429, `UNAVAILABLE` for 503).
fn problem_response(status: StatusCode, body: Bytes, grpc: bool) -> Response<Bytes> {
    if grpc {
        let code = match status {
            StatusCode::TOO_MANY_REQUESTS => "8",
            StatusCode::SERVICE_UNAVAILABLE => "14",
            StatusCode::UNAUTHORIZED => "16",
            StatusCode::FORBIDDEN => "7",
            _ => "3",
        };
        let mut response = Response::new(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static(code));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static(match status {
                StatusCode::TOO_MANY_REQUESTS => "rate%20limit%20exceeded",
                StatusCode::SERVICE_UNAVAILABLE => "rate%20limit%20store%20unavailable",
                _ => "no%20rate%20limit%20key",
            }),
        );
        return response;
    }
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// The rate-limit fields of one response, or `None` when they are turned off. Only numbers are
/// carried; the values are written when the response is.
fn rate_headers(shared: &Arc<Shared>, policy: usize, d: &Decision) -> Option<RateHeaders> {
    (shared.headers || shared.legacy_headers).then(|| RateHeaders {
        shared: shared.clone(),
        policy,
        remaining: d.remaining,
        reset: ceil_secs(d.reset_after),
    })
}

impl RateHeaders {
    /// Adds the fields to a response's headers.
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        let policy = &self.shared.policies[self.policy];
        if self.shared.headers {
            // `"name";r=<u64>;t=<u64>` fits: the name is at most 64 bytes.
            let mut buf = [0u8; 128];
            let mut cursor = &mut buf[..];
            let _ = write!(
                cursor,
                "\"{}\";r={};t={}",
                policy.name, self.remaining, self.reset
            );
            let len = 128 - cursor.len();
            if let Ok(rate) = HeaderValue::from_bytes(&buf[..len]) {
                headers.insert(super::RATELIMIT_POLICY, policy.policy_header.clone());
                headers.insert(super::RATELIMIT, rate);
            }
        }
        if self.shared.legacy_headers {
            headers.insert(super::X_RATELIMIT_LIMIT, policy.limit_header.clone());
            headers.insert(
                super::X_RATELIMIT_REMAINING,
                HeaderValue::from(self.remaining),
            );
            headers.insert(super::X_RATELIMIT_RESET, HeaderValue::from(self.reset));
        }
    }
}
