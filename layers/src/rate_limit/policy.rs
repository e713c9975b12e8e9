//! [`Policy`] and what one layer compiles from its configuration: the policies with their
//! header values and counters, the route rules, and the metrics.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, request::Parts};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

use super::{
    error::RateLimitError,
    key::{Key, KeyExtractor},
    quota::Quota,
    store::Store,
};

/// Buckets of `rate_limit_store_duration_seconds`, in seconds.
pub const STORE_DURATION_BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// What a policy does when its store cannot decide (Redis down or too slow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Decide with the local fallback store and let the request through if it allows;
    /// counted as `outcome="fail_open"`.
    #[default]
    FailOpen,
    /// Answer 503 with `Retry-After`; counted as `outcome="fail_closed"`.
    FailClosed,
}

/// A named quota. The name appears in the `RateLimit-Policy` and `RateLimit` headers and in the
/// `policy` label of the metrics.
#[derive(Clone, Debug)]
pub struct Policy {
    pub(crate) name: Cow<'static, str>,
    pub(crate) quota: Quota,
    pub(crate) on_store_error: OnStoreError,
}

impl Policy {
    /// A policy named `name` (1–64 characters of `A-Z a-z 0-9 _ - . :`) enforcing `quota`.
    pub fn new(name: impl Into<Cow<'static, str>>, quota: Quota) -> Self {
        Self {
            name: name.into(),
            quota,
            on_store_error: OnStoreError::FailOpen,
        }
    }

    /// Answers 503 instead of failing open when the store cannot decide (login, OTP, …).
    pub fn fail_closed(mut self) -> Self {
        self.on_store_error = OnStoreError::FailClosed;
        self
    }

    /// What to do when the store cannot decide.
    ///
    /// Defaults to [`OnStoreError::FailOpen`].
    pub fn on_store_error(mut self, on_error: OnStoreError) -> Self {
        self.on_store_error = on_error;
        self
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy's quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }
}

/// What happens to a request whose key cannot be found (for example a missing API key header,
/// or no peer address because the server was not set up to provide one). Never a 500.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingKey {
    /// All such requests share one bucket per policy: they are limited together.
    #[default]
    Shared,
    /// They pass without being limited and without rate-limit headers.
    Allow,
    /// They are answered with this 4xx status and a problem+json body.
    Reject(StatusCode),
}

/// Which requests a rule applies to. Every part that is set must match.
#[derive(Clone, Debug, Default)]
pub(crate) struct Matcher {
    pub(crate) route: Option<Cow<'static, str>>,
    pub(crate) prefix: Option<Cow<'static, str>>,
    pub(crate) method: Option<Method>,
}

impl Matcher {
    fn matches(&self, parts: &Parts) -> bool {
        if let Some(method) = &self.method
            && parts.method != *method
        {
            return false;
        }
        if let Some(prefix) = &self.prefix
            && !parts.uri.path().starts_with(&**prefix)
        {
            return false;
        }
        if let Some(route) = &self.route {
            #[cfg(feature = "axum")]
            if let Some(matched) = parts.extensions.get::<axum::extract::MatchedPath>() {
                return matched.as_str() == route;
            }
            return parts.uri.path() == route;
        }
        true
    }
}

/// A problem+json (RFC 9457) body.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Bytes {
    let body = format!(
        r#"{{"type":"about:blank","title":"{}","status":{},"detail":"{}"}}"#,
        status.canonical_reason().unwrap_or("Error"),
        status.as_u16(),
        detail.replace('\\', "\\\\").replace('"', "\\\""),
    );
    Bytes::from(body)
}

/// The metric families, registered once per layer.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) decisions: IntCounterVec,
    pub(crate) exceeded: IntCounterVec,
    pub(crate) store_errors: IntCounter,
    pub(crate) store_duration: Histogram,
}

impl Metrics {
    pub(crate) fn register(registry: &Registry, store: &Store) -> Result<Self, RateLimitError> {
        let err = |name| move |source| RateLimitError::Register { name, source };
        let decisions = IntCounterVec::new(
            Opts::new(
                "rate_limit_decisions_total",
                "Rate-limit decisions, by policy and outcome (allowed, limited, fail_open, fail_closed).",
            ),
            &["policy", "outcome"],
        )
        .map_err(err("rate_limit_decisions_total"))?;
        let exceeded = IntCounterVec::new(
            Opts::new(
                "app_rate_limit_exceeded_total",
                "Requests refused with 429 because a rate-limit policy was exceeded, by policy.",
            ),
            &["policy"],
        )
        .map_err(err("app_rate_limit_exceeded_total"))?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "rate_limit_store_errors_total",
                "Rate-limit decisions the store could not make (errors and timeouts), by store.",
            ),
            &["store"],
        )
        .map_err(err("rate_limit_store_errors_total"))?;
        let store_duration = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "rate_limit_store_duration_seconds",
                "Time a remote rate-limit store took to decide, in seconds, by store.",
            )
            .buckets(STORE_DURATION_BUCKETS.to_vec()),
            &["store"],
        )
        .map_err(err("rate_limit_store_duration_seconds"))?;
        #[cfg(feature = "rate-limit-redis")]
        let is_redis = matches!(store.0, super::store::StoreKind::Redis(_));
        #[cfg(not(feature = "rate-limit-redis"))]
        let is_redis = false;
        registry
            .register(Box::new(decisions.clone()))
            .map_err(err("rate_limit_decisions_total"))?;
        registry
            .register(Box::new(exceeded.clone()))
            .map_err(err("app_rate_limit_exceeded_total"))?;
        if is_redis {
            registry
                .register(Box::new(store_errors.clone()))
                .map_err(err("rate_limit_store_errors_total"))?;
            registry
                .register(Box::new(store_duration.clone()))
                .map_err(err("rate_limit_store_duration_seconds"))?;
        }
        registry
            .register(Box::new(store.memory().keys_gauge().clone()))
            .map_err(err("rate_limit_memory_keys"))?;
        Ok(Self {
            decisions,
            exceeded,
            store_errors: store_errors.with_label_values(&["redis"]),
            store_duration: store_duration.with_label_values(&["redis"]),
        })
    }
}

/// A policy with everything a request needs precomputed.
#[derive(Debug)]
pub(crate) struct CompiledPolicy {
    /// Part of the Redis store's keys (and shown by `Debug`).
    #[cfg_attr(not(feature = "rate-limit-redis"), allow(dead_code))]
    pub(crate) name: Cow<'static, str>,
    /// A hash of the name: separates the policies' buckets in a shared memory store.
    pub(crate) seed: u64,
    pub(crate) interval: u64,
    pub(crate) burst: u64,
    pub(crate) fail_closed: bool,
    /// `"name";q=100;w=60`
    pub(crate) policy_header: HeaderValue,
    /// `"name";r=`, the start of every `RateLimit` value.
    pub(crate) rate_prefix: Box<[u8]>,
    /// The quota count, for `X-RateLimit-Limit`.
    pub(crate) limit_header: HeaderValue,
    pub(crate) limited_body: Bytes,
    pub(crate) unavailable_body: Bytes,
    pub(crate) allowed: IntCounter,
    pub(crate) limited: IntCounter,
    pub(crate) fail_open: IntCounter,
    pub(crate) fail_closed_count: IntCounter,
    pub(crate) exceeded: IntCounter,
}

impl CompiledPolicy {
    pub(crate) fn compile(policy: Policy, metrics: &Metrics) -> Result<Self, RateLimitError> {
        let name = policy.name;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !valid {
            return Err(RateLimitError::PolicyName {
                name: name.into_owned(),
            });
        }
        if let Some(problem) = policy.quota.problem() {
            return Err(RateLimitError::Quota {
                policy: name.into_owned(),
                problem,
            });
        }
        let quota = policy.quota;
        let policy_header = HeaderValue::try_from(format!(
            "\"{name}\";q={};w={}",
            quota.count(),
            quota.window_secs()
        ))
        .expect("validated name and numbers are a valid header value");
        // FNV-1a: the same name gives the same seed in every layer sharing a store.
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let outcome = |o: &str| metrics.decisions.with_label_values(&[&*name, o]);
        Ok(Self {
            seed,
            interval: quota.interval_nanos(),
            burst: u64::from(quota.burst_size()),
            fail_closed: policy.on_store_error == OnStoreError::FailClosed,
            policy_header,
            rate_prefix: format!("\"{name}\";r=").into_bytes().into_boxed_slice(),
            limit_header: HeaderValue::from(quota.count()),
            limited_body: problem(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Rate limit of policy '{name}' ({quota}) exceeded; retry later."),
            ),
            unavailable_body: problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "The rate-limit store is unavailable; retry later.",
            ),
            allowed: outcome("allowed"),
            limited: outcome("limited"),
            fail_open: outcome("fail_open"),
            fail_closed_count: outcome("fail_closed"),
            exceeded: metrics.exceeded.with_label_values(&[&*name]),
            name,
        })
    }
}

/// Everything the services share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) policies: Vec<CompiledPolicy>,
    pub(crate) rules: Vec<(Matcher, usize)>,
    pub(crate) store: Store,
    pub(crate) missing_key: MissingKey,
    pub(crate) missing_body: Bytes,
    pub(crate) headers: bool,
    pub(crate) legacy_headers: bool,
    pub(crate) unavailable_retry_after: HeaderValue,
    pub(crate) metrics: Metrics,
}

impl Shared {
    /// The index of the policy a request falls under.
    #[inline]
    pub(crate) fn select(&self, parts: &Parts) -> usize {
        self.rules
            .iter()
            .find(|(m, _)| m.matches(parts))
            .map_or(0, |(_, i)| *i)
    }

    /// The key of a request, or what to do without one.
    #[inline]
    pub(crate) fn key_or_missing<K: KeyExtractor>(&self, key: &K, parts: &Parts) -> Option<Key> {
        key.key(parts).or(match self.missing_key {
            MissingKey::Shared => Some(Key::missing()),
            _ => None,
        })
    }
}
