//! [`SecurityHeadersError`]: a header name or value the builder cannot use.

/// A configuration error found by [`SecurityHeadersBuilder::build`](super::SecurityHeadersBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityHeadersError {
    /// A header name is not a valid HTTP header name.
    #[error("security headers: `{name}` is not a valid HTTP header name")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// A header value is not a valid HTTP header value (control characters, non-visible bytes).
    #[error("security headers: the value of `{name}` is not a valid HTTP header value")]
    InvalidValue {
        /// The header whose value was rejected.
        name: String,
    },
    /// [`csp_nonce`](super::SecurityHeadersBuilder::csp_nonce) is on but `content-security-policy` is off.
    #[error("security headers: csp_nonce needs a content-security-policy, which is turned off")]
    NonceWithoutPolicy,
}
