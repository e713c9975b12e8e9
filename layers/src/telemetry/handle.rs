//! [`Telemetry`]: the handle of the installed telemetry, which flushes spans at shutdown.

use std::{
    fmt,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use opentelemetry_sdk::trace::SdkTracerProvider;

use super::{TelemetryBuilder, TelemetryError};

/// The installed telemetry: keeps the tracer provider alive, and flushes and shuts it down on
/// [`shutdown`](Self::shutdown) or, failing that, on drop. Made by
/// [`TelemetryBuilder::init`].
///
/// Flushing blocks on the exporter, whose I/O runs on the Tokio runtime: use the `async`
/// methods from async code (they move the blocking wait off the runtime's threads), the
/// `_blocking` ones elsewhere.
pub struct Telemetry {
    pub(crate) provider: SdkTracerProvider,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) shut_down: AtomicBool,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("shut_down", &self.shut_down)
            .finish_non_exhaustive()
    }
}

async fn off_runtime<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(f).await {
            Ok(value) => value,
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        },
        Err(_) => f(),
    }
}

impl Telemetry {
    /// A builder with the defaults (everything from the environment, JSON logs to stdout).
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::new()
    }

    /// The installed tracer provider (also available as the OpenTelemetry global).
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Exports every finished span now.
    pub async fn force_flush(&self) -> Result<(), TelemetryError> {
        let provider = self.provider.clone();
        off_runtime(move || provider.force_flush().map_err(TelemetryError::Flush)).await
    }

    /// [`force_flush`](Self::force_flush) for non-async code.
    pub fn force_flush_blocking(&self) -> Result<(), TelemetryError> {
        self.provider.force_flush().map_err(TelemetryError::Flush)
    }

    /// Flushes pending spans (within the configured timeout) and stops the exporter. Later
    /// calls do nothing and return `Ok`.
    pub async fn shutdown(&self) -> Result<(), TelemetryError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let provider = self.provider.clone();
        let timeout = self.shutdown_timeout;
        off_runtime(move || {
            provider
                .shutdown_with_timeout(timeout)
                .map_err(TelemetryError::Flush)
        })
        .await
    }

    /// [`shutdown`](Self::shutdown) for non-async code.
    pub fn shutdown_blocking(&self) -> Result<(), TelemetryError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.provider
            .shutdown_with_timeout(self.shutdown_timeout)
            .map_err(TelemetryError::Flush)
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.shutdown_blocking();
    }
}
