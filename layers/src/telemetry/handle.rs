//! [`Telemetry`]: the handle of the installed telemetry, which flushes spans at shutdown.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use opentelemetry_sdk::trace::SdkTracerProvider;

use super::{TelemetryBuilder, TelemetryError, output::LogQueue};

/// The longest [`Telemetry::shutdown`] waits for the queued log lines to be written.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// The installed telemetry: keeps the tracer provider and the log queue alive, and flushes and
/// shuts both down on [`shutdown`](Self::shutdown) or, failing that, on drop. Made by
/// [`TelemetryBuilder::init`].
///
/// Flushing blocks on the exporter, whose I/O runs on the Tokio runtime: use the `async`
/// methods from async code (they move the blocking wait off the runtime's threads), the
/// `_blocking` ones elsewhere.
pub struct Telemetry {
    pub(crate) provider: SdkTracerProvider,
    pub(crate) logs: Option<Arc<LogQueue>>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) shut_down: AtomicBool,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("dropped_log_lines", &self.dropped_log_lines())
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

    /// Log lines dropped so far because the log queue was full (the writer of
    /// [`TelemetryBuilder::output`] could not keep up); always 0 with
    /// [`TelemetryBuilder::writer`].
    pub fn dropped_log_lines(&self) -> u64 {
        self.logs.as_ref().map_or(0, |queue| queue.dropped())
    }

    /// Registers `log_lines_dropped_total` (the [`dropped_log_lines`](Self::dropped_log_lines)
    /// count, read on scrape) into `registry`.
    ///
    /// # Errors
    /// The registry's, when it already has the family.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        let queue = match &self.logs {
            Some(queue) => Arc::clone(queue),
            // A direct writer drops nothing: the family exists, at 0.
            None => Arc::new(LogQueue::idle()),
        };
        registry.register(Box::new(super::output::DroppedLines::new(queue)?))
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

    /// Flushes pending spans (within the configured timeout) and stops the exporter, then
    /// writes out the queued log lines (within a second) and stops the log writer: call it
    /// last, since lines logged afterwards are dropped. Later calls do nothing and return `Ok`.
    pub async fn shutdown(&self) -> Result<(), TelemetryError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let provider = self.provider.clone();
        let timeout = self.shutdown_timeout;
        let logs = self.logs.clone();
        off_runtime(move || stop(&provider, timeout, logs.as_deref())).await
    }

    /// [`shutdown`](Self::shutdown) for non-async code.
    pub fn shutdown_blocking(&self) -> Result<(), TelemetryError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        stop(&self.provider, self.shutdown_timeout, self.logs.as_deref())
    }
}

/// Stops the exporter, then the log writer (so the exporter's own last words are written).
fn stop(
    provider: &SdkTracerProvider,
    timeout: Duration,
    logs: Option<&LogQueue>,
) -> Result<(), TelemetryError> {
    let spans = provider
        .shutdown_with_timeout(timeout)
        .map_err(TelemetryError::Flush);
    if let Some(logs) = logs {
        logs.flush_and_stop(LOG_FLUSH_TIMEOUT);
    }
    spans
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.shutdown_blocking();
    }
}
