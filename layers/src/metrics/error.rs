/// A metrics configuration error, returned when metrics are built or registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Registering a metric family failed (most often: the registry already has that name).
    #[error("metrics: cannot register `{name}`: {source}")]
    Register {
        /// The metric family that could not be registered.
        name: String,
        /// The registry's error.
        #[source]
        source: prometheus::Error,
    },
    /// A metric could not be created (an invalid name, label or bucket list).
    #[error("metrics: cannot create `{name}`: {source}")]
    Create {
        /// The metric family that could not be created.
        name: String,
        /// The library's error.
        #[source]
        source: prometheus::Error,
    },
    /// A setting is out of range.
    #[error("metrics: `{setting}` {problem}")]
    Setting {
        /// The setting's name, as in the builder method.
        setting: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl MetricsError {
    /// Wraps a registration error for `name`.
    pub(crate) fn register(name: impl Into<String>, source: prometheus::Error) -> Self {
        Self::Register {
            name: name.into(),
            source,
        }
    }

    /// Wraps a creation error for `name`.
    pub(crate) fn create(name: impl Into<String>, source: prometheus::Error) -> Self {
        Self::Create {
            name: name.into(),
            source,
        }
    }
}
