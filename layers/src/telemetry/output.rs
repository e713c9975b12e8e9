//! Where log lines go. By default through a bounded, lossy queue that a thread of its own
//! writes out (tracing-appender's non-blocking writer): a reader that stalls (a full pipe, a
//! stuck log shipper) costs dropped lines, counted, never a stalled request or admin port.

use std::{
    io::Write,
    sync::{Arc, Mutex, PoisonError, mpsc},
    time::Duration,
};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// The default capacity of the log queue, in lines: 16,384 (a few MB of JSON lines at most).
pub const DEFAULT_LOG_BUFFER_LINES: usize = 16_384;

/// What the builder was told to write to.
pub(crate) enum Output {
    /// A `MakeWriter` called on the thread that logs.
    Direct(BoxMakeWriter),
    /// A writer behind the queue.
    Queued(Box<dyn Write + Send>),
}

/// The queue's worker and its count of dropped lines.
pub(crate) struct LogQueue {
    guard: Mutex<Option<WorkerGuard>>,
    dropped: Option<ErrorCounter>,
}

impl LogQueue {
    /// No queue at all (a direct writer): nothing to flush, nothing dropped.
    #[cfg(feature = "metrics")]
    pub(crate) fn idle() -> Self {
        Self {
            guard: Mutex::new(None),
            dropped: None,
        }
    }

    /// Starts the worker thread; returns the queue's `MakeWriter` and the queue.
    pub(crate) fn start(writer: Box<dyn Write + Send>, lines: usize) -> (NonBlocking, Arc<Self>) {
        let (non_blocking, guard) = NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(lines)
            .thread_name("covet-log-writer")
            .finish(writer);
        let queue = Arc::new(Self {
            guard: Mutex::new(Some(guard)),
            dropped: Some(non_blocking.error_counter()),
        });
        (non_blocking, queue)
    }

    /// Lines dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
            .as_ref()
            .map_or(0, |counter| counter.dropped_lines() as u64)
    }

    /// Writes out what is queued and stops the worker, waiting at most `timeout` (the writer
    /// may be the stalled reader itself). Lines logged afterwards are dropped.
    pub(crate) fn flush_and_stop(&self, timeout: Duration) {
        let Some(guard) = self
            .guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        // The guard's drop waits for the worker; bound that wait from outside.
        let (done, finished) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("covet-log-flush".into())
            .spawn(move || {
                drop(guard);
                let _ = done.send(());
            });
        if spawned.is_ok() {
            let _ = finished.recv_timeout(timeout);
        }
    }
}

#[cfg(feature = "metrics")]
pub(crate) use metrics::DroppedLines;

#[cfg(feature = "metrics")]
mod metrics {
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };

    use prometheus::{
        IntCounter,
        core::{Collector, Desc},
        proto::MetricFamily,
    };

    use super::LogQueue;

    /// `log_lines_dropped_total`, read from the queue on scrape.
    pub(crate) struct DroppedLines {
        counter: IntCounter,
        seen: AtomicU64,
        queue: Arc<LogQueue>,
    }

    impl DroppedLines {
        pub(crate) fn new(queue: Arc<LogQueue>) -> prometheus::Result<Self> {
            Ok(Self {
                counter: IntCounter::new(
                    "log_lines_dropped_total",
                    "Log lines dropped because the log writer could not keep up (its queue was full).",
                )?,
                seen: AtomicU64::new(0),
                queue,
            })
        }
    }

    impl Collector for DroppedLines {
        fn desc(&self) -> Vec<&Desc> {
            self.counter.desc()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            let now = self.queue.dropped();
            let before = self.seen.fetch_max(now, Ordering::AcqRel);
            if now > before {
                self.counter.inc_by(now - before);
            }
            self.counter.collect()
        }
    }
}
