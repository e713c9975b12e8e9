//! [`BuildError`]: a health registry that cannot be built.

/// An error found while building a [`HealthRegistry`](crate::HealthRegistry).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A check name is empty, longer than [`MAX_CHECK_NAME_LEN`](crate::MAX_CHECK_NAME_LEN), or has a character outside
    /// `A-Z a-z 0-9 _ - .`.
    #[error("invalid health check name {0:?}: use 1-64 characters from A-Z a-z 0-9 _ - .")]
    InvalidName(String),
    /// A check name is one of the reserved names (`live`, `ready`, `startup`,
    /// `readinessState`, `startupState`).
    #[error("health check name {0:?} is reserved")]
    ReservedName(String),
    /// Two checks have the same name.
    #[error("two health checks are named {0:?}")]
    DuplicateName(String),
    /// The metrics could not be registered (for example, the registry already has them).
    #[error("registering the health metrics failed: {0}")]
    Metrics(#[from] prometheus::Error),
}
