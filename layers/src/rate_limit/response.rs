//! The answers the layer writes itself (429, 503, rejected requests, gRPC trailers-only) and
//! the rate-limit fields added to every limited response.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::{
    policy::{CompiledPolicy, Shared},
    quota::ceil_secs,
    store::Decision,
};

/// The rate-limit fields to add to a response: the numbers, written out with the response.
#[derive(Debug)]
pub(crate) struct RateHeaders {
    pub(crate) shared: Arc<Shared>,
    pub(crate) policy: usize,
    pub(crate) remaining: u64,
    pub(crate) reset: u64,
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
pub(crate) fn problem_response(status: StatusCode, body: Bytes, grpc: bool) -> Response<Bytes> {
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
pub(crate) fn rate_headers(
    shared: &Arc<Shared>,
    policy: usize,
    d: &Decision,
) -> Option<RateHeaders> {
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
            // `"name";r=<u64>;t=<u64>`: at most 69 + 20 + 3 + 20 bytes, the name being at most
            // 64. Built from the policy's prefix and itoa's digits, without `core::fmt`.
            let mut buf = [0u8; 112];
            let mut len = 0;
            let mut push = |part: &[u8]| {
                buf[len..len + part.len()].copy_from_slice(part);
                len += part.len();
            };
            let mut digits = itoa::Buffer::new();
            push(&policy.rate_prefix);
            push(digits.format(self.remaining).as_bytes());
            push(b";t=");
            push(digits.format(self.reset).as_bytes());
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
