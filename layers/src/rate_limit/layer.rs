//! [`RateLimitLayer`] and its builder.

use std::{borrow::Cow, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Method};
use prometheus::Registry;

use super::{
    error::RateLimitError,
    key::{KeyExtractor, PeerIp},
    policy::{CompiledPolicy, Matcher, Metrics, MissingKey, Policy, Shared, problem},
    service::RateLimit,
    store::Store,
};

/// Limits requests per key with GCRA. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct RateLimitLayer<K = PeerIp> {
    shared: std::sync::Arc<Shared>,
    key: K,
}

impl RateLimitLayer {
    /// A builder whose requests all fall under `default` unless a rule picks another policy.
    pub fn builder(default: Policy) -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            default,
            rules: Vec::new(),
            key: PeerIp,
            store: Store::default(),
            missing_key: MissingKey::Shared,
            headers: true,
            legacy_headers: false,
            unavailable_retry_after: Duration::from_secs(1),
        }
    }
}

impl<S, K: Clone> tower_layer::Layer<S> for RateLimitLayer<K> {
    type Service = RateLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.shared.clone(), self.key.clone())
    }
}

/// Configures a [`RateLimitLayer`]. Created by [`RateLimitLayer::builder`].
#[derive(Clone, Debug)]
pub struct RateLimitLayerBuilder<K = PeerIp> {
    default: Policy,
    rules: Vec<(Matcher, Policy)>,
    key: K,
    store: Store,
    missing_key: MissingKey,
    headers: bool,
    legacy_headers: bool,
    unavailable_retry_after: Duration,
}

impl<K> RateLimitLayerBuilder<K> {
    /// Requests whose route template is `template` (axum's `MatchedPath`, e.g. `/users/{id}`;
    /// without axum, requests whose path is exactly `template`) fall under `policy`.
    ///
    /// Rules are tried in the order they were added; the first that matches wins. Defaults to
    /// no rules: every request falls under the default policy.
    pub fn route(mut self, template: impl Into<Cow<'static, str>>, policy: Policy) -> Self {
        let matcher = Matcher {
            route: Some(template.into()),
            ..Matcher::default()
        };
        self.rules.push((matcher, policy));
        self
    }

    /// Requests whose path starts with `prefix` fall under `policy`.
    pub fn path_prefix(mut self, prefix: impl Into<Cow<'static, str>>, policy: Policy) -> Self {
        let matcher = Matcher {
            prefix: Some(prefix.into()),
            ..Matcher::default()
        };
        self.rules.push((matcher, policy));
        self
    }

    /// Requests with this method fall under `policy`.
    pub fn method(mut self, method: Method, policy: Policy) -> Self {
        let matcher = Matcher {
            method: Some(method),
            ..Matcher::default()
        };
        self.rules.push((matcher, policy));
        self
    }

    /// Requests with this method **and** route template fall under `policy`
    /// (e.g. `POST /login`).
    pub fn method_route(
        mut self,
        method: Method,
        template: impl Into<Cow<'static, str>>,
        policy: Policy,
    ) -> Self {
        let matcher = Matcher {
            method: Some(method),
            route: Some(template.into()),
            ..Matcher::default()
        };
        self.rules.push((matcher, policy));
        self
    }

    /// How requests are keyed: [`PeerIp`], [`ClientIp`](super::ClientIp),
    /// [`HeaderKey`](super::HeaderKey), [`GlobalKey`](super::GlobalKey) or a closure.
    ///
    /// Defaults to [`PeerIp`].
    pub fn key<K2: KeyExtractor>(self, key: K2) -> RateLimitLayerBuilder<K2> {
        RateLimitLayerBuilder {
            default: self.default,
            rules: self.rules,
            key,
            store: self.store,
            missing_key: self.missing_key,
            headers: self.headers,
            legacy_headers: self.legacy_headers,
            unavailable_retry_after: self.unavailable_retry_after,
        }
    }

    /// Where the buckets live: a [`MemoryStore`](super::MemoryStore) or a
    /// [`RedisStore`](super::RedisStore).
    ///
    /// Defaults to a `MemoryStore` with its defaults.
    pub fn store(mut self, store: impl Into<Store>) -> Self {
        self.store = store.into();
        self
    }

    /// What happens to requests without a key. See [`MissingKey`].
    ///
    /// Defaults to [`MissingKey::Shared`].
    pub fn missing_key(mut self, missing_key: MissingKey) -> Self {
        self.missing_key = missing_key;
        self
    }

    /// Whether every limited response carries the IETF draft-10 `RateLimit-Policy` and
    /// `RateLimit` fields (429s always carry `Retry-After`).
    ///
    /// Defaults to `true`.
    pub fn headers(mut self, enabled: bool) -> Self {
        self.headers = enabled;
        self
    }

    /// Whether responses also carry the legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
    /// `X-RateLimit-Reset` (seconds until the bucket is full).
    ///
    /// Defaults to `false`.
    pub fn legacy_headers(mut self, enabled: bool) -> Self {
        self.legacy_headers = enabled;
        self
    }

    /// The `Retry-After` of the 503 a fail-closed policy answers while the store is down.
    ///
    /// Defaults to 1 second. Rounded up to whole seconds; at least 1.
    pub fn unavailable_retry_after(mut self, after: Duration) -> Self {
        self.unavailable_retry_after = after;
        self
    }

    /// Checks the configuration, compiles the policies and header values, and registers the
    /// metrics into `registry`.
    pub fn build(self, registry: &Registry) -> Result<RateLimitLayer<K>, RateLimitError> {
        if let MissingKey::Reject(status) = self.missing_key
            && !status.is_client_error()
        {
            return Err(RateLimitError::Setting {
                setting: "missing_key",
                problem: format!("rejects with {status}, which is not a 4xx status"),
            });
        }
        let metrics = Metrics::register(registry, &self.store)?;
        let mut policies: Vec<Policy> = vec![self.default];
        let mut rules = Vec::with_capacity(self.rules.len());
        for (matcher, policy) in self.rules {
            let index = match policies.iter().position(|p| p.name == policy.name) {
                Some(i)
                    if policies[i].quota == policy.quota
                        && policies[i].on_store_error == policy.on_store_error =>
                {
                    i
                }
                Some(_) => {
                    return Err(RateLimitError::DuplicatePolicy {
                        name: policy.name.into_owned(),
                    });
                }
                None => {
                    policies.push(policy);
                    policies.len() - 1
                }
            };
            rules.push((matcher, index));
        }
        let policies = policies
            .into_iter()
            .map(|p| CompiledPolicy::compile(p, &metrics))
            .collect::<Result<Vec<_>, _>>()?;
        let missing_body = match self.missing_key {
            MissingKey::Reject(status) => problem(status, "The request carries no rate-limit key."),
            _ => Bytes::new(),
        };
        Ok(RateLimitLayer {
            shared: std::sync::Arc::new(Shared {
                policies,
                rules,
                store: self.store,
                missing_key: self.missing_key,
                missing_body,
                headers: self.headers,
                legacy_headers: self.legacy_headers,
                unavailable_retry_after: HeaderValue::from(
                    super::quota::ceil_secs(self.unavailable_retry_after).max(1),
                ),
                metrics,
            }),
            key: self.key,
        })
    }
}
