//! Rate limiting with GCRA, in memory or in Redis, with the IETF `RateLimit` headers.
//!
//! [`RateLimitLayer`] finds the [`Policy`] a request falls under (a default, plus rules by route
//! template, path prefix and method), finds its [`Key`] (peer IP, client IP behind trusted
//! proxies, an API key header, one global key, or any closure), and asks the [`Store`] for a
//! GCRA decision:
//!
//! - **allowed:** the request goes through; the response gets
//!   `RateLimit-Policy: "name";q=100;w=60` and `RateLimit: "name";r=42;t=17` (IETF
//!   draft-ietf-httpapi-ratelimit-headers-10: `q` requests per `w` seconds, `r` remaining now,
//!   `t` seconds until the bucket is full), and optionally `X-RateLimit-Limit/Remaining/Reset`.
//! - **limited:** `429 Too Many Requests` with `Retry-After` in whole seconds rounded **up**
//!   (never 0), the same fields, and a small `application/problem+json` body.
//! - **store down** (Redis only): [fail open](OnStoreError::FailOpen) through a local fallback
//!   store, or [fail closed](Policy::fail_closed) with `503` and `Retry-After`.
//!
//! gRPC requests (`content-type: application/grpc…`) get a gRPC answer instead of the
//! problem+json body: HTTP 200 with `grpc-status` 8 (`RESOURCE_EXHAUSTED`) for 429, 14
//! (`UNAVAILABLE`) for 503, and the same `Retry-After` and rate-limit fields.
//!
//! A request without a key is never a 500: see [`MissingKey`] (by default such requests share
//! one bucket). Short-circuit answers are responses, not errors, so axum needs no
//! `HandleErrorLayer`.
//!
//! # Stores
//!
//! - [`MemoryStore`]: sharded, bounded and self-cleaning — see its module docs for why it is not
//!   `governor`, and for the memory bound (1,000,000 keys ≈ 36 MB).
//! - [`RedisStore`]: one atomic Lua script per decision using Redis's clock, so replicas share
//!   one limit; a short timeout and a fail-open fallback.
//!
//! # Metrics
//!
//! Registered into the registry given to [`RateLimitLayerBuilder::build`]:
//! `rate_limit_decisions_total{policy,outcome}` (`allowed`, `limited`, `fail_open`,
//! `fail_closed`), `app_rate_limit_exceeded_total{policy}`, `rate_limit_memory_keys` (the
//! memory store, or the Redis store's fallback), and with Redis
//! `rate_limit_store_errors_total{store="redis"}` and
//! `rate_limit_store_duration_seconds{store="redis"}`.
//!
//! # Peer addresses
//!
//! [`PeerIp`] and [`ClientIp`] read axum's `ConnectInfo<SocketAddr>` (serve with
//! `into_make_service_with_connect_info::<SocketAddr>()`) or a `SocketAddr` request extension.
//! With hyper, insert the address `accept` returned into each request, e.g.
//! `service_fn(move |mut req| { req.extensions_mut().insert(addr); svc.clone().call(req) })`.
//! With tonic, key by an API key ([`HeaderKey`] reads gRPC metadata, which is HTTP headers) or
//! read `tonic::transport::server::TcpConnectInfo` in a closure.
//!
//! # Ordering
//!
//! Put it after request-id, tracing and metrics layers (so 429s are traced and counted) and
//! before the handlers. In axum, add it with `Router::layer` so route templates are known.
//!
//! # Example
//!
//! ```
//! use covet_layers::rate_limit::{GlobalKey, Policy, Quota, RateLimitLayer};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = prometheus::Registry::new();
//! let limit = RateLimitLayer::builder(Policy::new("default", Quota::per_minute(2)))
//!     .route("/login", Policy::new("login", Quota::per_minute(1)).fail_closed())
//!     .key(GlobalKey)
//!     .build(&registry)?;
//! let service = ServiceBuilder::new().layer(limit).service(service_fn(|_req: Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//! }));
//!
//! let first = service.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(first.status(), StatusCode::OK);
//! assert_eq!(first.headers()["ratelimit-policy"], r#""default";q=2;w=60"#);
//! assert_eq!(first.headers()["ratelimit"], r#""default";r=1;t=30"#);
//!
//! service.clone().oneshot(Request::new(String::new())).await?;
//! let third = service.oneshot(Request::new(String::new())).await?;
//! assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(third.headers()["retry-after"], "30");
//! assert_eq!(third.headers()["content-type"], "application/problem+json");
//! # Ok(())
//! # }
//! ```

mod body;
mod error;
mod future;
mod key;
mod layer;
mod policy;
mod quota;
mod response;
mod service;
pub mod store;

#[cfg(test)]
mod tests;

use http::HeaderName;

#[cfg(feature = "rate-limit-redis")]
pub use self::store::{RedisStore, RedisStoreBuilder};
pub use self::{
    body::RateLimitBody,
    error::RateLimitError,
    future::ResponseFuture,
    key::{
        Client, ClientIp, DEFAULT_IPV6_PREFIX, ForwardedHeader, GlobalKey, HeaderKey, Key,
        KeyExtractor, PeerIp, client_ip, parse_forwarded, parse_x_forwarded_for_entry, peer_ip,
        resolve_client,
    },
    layer::{RateLimitLayer, RateLimitLayerBuilder},
    policy::{MissingKey, OnStoreError, Policy, STORE_DURATION_BUCKETS},
    quota::{Quota, QuotaParseError},
    service::RateLimit,
    store::{Decision, ManualClock, MemoryStore, MemoryStoreBuilder, Store, StoreError},
};

/// `ratelimit-policy` (IETF draft-10).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `ratelimit` (IETF draft-10).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `x-ratelimit-limit` (legacy).
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `x-ratelimit-remaining` (legacy).
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `x-ratelimit-reset` (legacy).
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
