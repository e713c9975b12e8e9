//! [`RateLimitError`]: what can be wrong with a rate-limit configuration.

/// A configuration error found by
/// [`RateLimitLayerBuilder::build`](super::RateLimitLayerBuilder::build).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// A policy's quota cannot be enforced.
    #[error("rate limit: the quota of policy `{policy}` {problem}")]
    Quota {
        /// The policy's name.
        policy: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A policy name is empty, too long or has characters other than `A-Z a-z 0-9 _ - . :`.
    #[error("rate limit: policy name `{name}` must be 1-64 characters of A-Z a-z 0-9 _ - . :")]
    PolicyName {
        /// The rejected name.
        name: String,
    },
    /// Two policies have the same name.
    #[error("rate limit: two policies are named `{name}`")]
    DuplicatePolicy {
        /// The repeated name.
        name: String,
    },
    /// A setting is out of range.
    #[error("rate limit: `{setting}` {problem}")]
    Setting {
        /// The setting's name, as in the builder method.
        setting: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A metric family could not be created or registered (most often: the registry already
    /// has it — share one layer by cloning it instead of building two on one registry).
    #[error("rate limit: cannot register `{name}`: {source}")]
    Register {
        /// The metric family.
        name: &'static str,
        /// The registry's error.
        #[source]
        source: prometheus::Error,
    },
}
