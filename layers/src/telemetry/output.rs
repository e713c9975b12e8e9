//! Where log lines go. By default through a bounded, lossy queue that a thread of its own
//! writes out: a reader that stalls (a full pipe, a stuck log shipper) costs dropped lines,
//! counted, never a stalled request or admin port.
//!
//! The queue is one byte buffer behind a mutex: logging a line appends its bytes and returns.
//! The writer thread wakes every [`FLUSH_INTERVAL`] while lines are pending (or at once when
//! the queue is half full), takes the whole buffer and writes it with one `write_all`. So a
//! line costs a lock and a copy on the thread that logs: no allocation, no channel message and
//! no wake-up of the writer thread per line (tracing-appender's non-blocking writer sends each
//! line as a heap-allocated message through a channel and wakes the writer for it, a `futex`
//! system call per line whenever the writer is idle, which measured a tenth of a request's cost
//! in `benches/telemetry.rs`).

use std::{
    io::{self, Write},
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tracing_subscriber::fmt::{
    MakeWriter,
    writer::{BoxMakeWriter, EitherWriter},
};

/// The default capacity of the log queue, in lines: 16,384 (a few MB of JSON lines at most).
pub const DEFAULT_LOG_BUFFER_LINES: usize = 16_384;

/// How long a line may wait in the queue before the writer thread writes it out: 10 ms.
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// A batch buffer larger than this (4 MiB) is freed once written.
const KEEP_BATCH_BYTES: usize = 4 << 20;

/// What the builder was told to write to.
pub(crate) enum Output {
    /// A `MakeWriter` called on the thread that logs.
    Direct(BoxMakeWriter),
    /// A writer behind the queue.
    Queued(Box<dyn Write + Send>),
}

/// The log queue: pending lines, the writer thread's state and the count of dropped lines.
pub(crate) struct LogQueue {
    state: Mutex<State>,
    /// Wakes the writer thread.
    wake: Condvar,
    /// Tells [`flush_and_stop`](Self::flush_and_stop) the writer thread has finished.
    finished: Condvar,
    /// The most lines [`State::pending`] holds.
    capacity: usize,
    dropped: AtomicU64,
}

struct State {
    /// The bytes of the pending lines, in order.
    pending: Vec<u8>,
    /// How many lines `pending` holds.
    lines: usize,
    /// The writer thread waits for a first line (nothing pending): the next line wakes it.
    idle: bool,
    stopping: bool,
    finished: bool,
}

impl LogQueue {
    /// No queue at all (a direct writer): nothing to flush, nothing dropped.
    #[cfg(feature = "metrics")]
    pub(crate) fn idle() -> Self {
        Self::new(1, true)
    }

    fn new(capacity: usize, finished: bool) -> Self {
        Self {
            state: Mutex::new(State {
                pending: Vec::new(),
                lines: 0,
                idle: false,
                stopping: finished,
                finished,
            }),
            wake: Condvar::new(),
            finished: Condvar::new(),
            capacity,
            dropped: AtomicU64::new(0),
        }
    }

    /// Starts the writer thread for `writer`, holding at most `lines` pending lines; returns
    /// the queue's `MakeWriter` and the queue.
    pub(crate) fn start(writer: Box<dyn Write + Send>, lines: usize) -> (QueueWriter, Arc<Self>) {
        let queue = Arc::new(Self::new(lines, false));
        let worker = queue.clone();
        let spawned = std::thread::Builder::new()
            .name("covet-log-writer".into())
            .spawn(move || worker.write_out(writer));
        if spawned.is_err() {
            // No thread to write: every line is dropped and counted, logging still returns,
            // and there is nothing for `flush_and_stop` to wait for.
            let mut state = queue.lock();
            state.stopping = true;
            state.finished = true;
        }
        (QueueWriter(queue.clone()), queue)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one line, or drops and counts it when the queue is full or stopped.
    fn push(&self, line: &[u8]) {
        let mut state = self.lock();
        if state.stopping || state.lines >= self.capacity {
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.pending.extend_from_slice(line);
        state.lines += 1;
        let wake = if state.idle {
            state.idle = false;
            true
        } else {
            state.lines == self.capacity.div_ceil(2)
        };
        drop(state);
        if wake {
            self.wake.notify_one();
        }
    }

    /// The writer thread: waits for lines, lets them gather for up to [`FLUSH_INTERVAL`], writes
    /// them out in one call; until stopped, and then writes what is left.
    fn write_out(&self, mut writer: Box<dyn Write + Send>) {
        let mut batch = Vec::new();
        loop {
            let mut state = self.lock();
            loop {
                if state.stopping || state.lines >= self.capacity.div_ceil(2) {
                    break;
                }
                if state.lines == 0 {
                    state.idle = true;
                    state = self
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                let (next, waited) = self
                    .wake
                    .wait_timeout(state, FLUSH_INTERVAL)
                    .unwrap_or_else(PoisonError::into_inner);
                state = next;
                if waited.timed_out() {
                    break;
                }
            }
            std::mem::swap(&mut state.pending, &mut batch);
            state.lines = 0;
            state.idle = false;
            let stopping = state.stopping;
            drop(state);
            if !batch.is_empty() {
                // A failed write loses these lines; the next batch is tried again.
                let _ = writer.write_all(&batch).and_then(|()| writer.flush());
                batch.clear();
                // After a burst of long lines, give the memory back rather than keep it.
                if batch.capacity() > KEEP_BATCH_BYTES {
                    batch = Vec::new();
                }
            }
            if stopping {
                break;
            }
        }
        let mut state = self.lock();
        state.finished = true;
        drop(state);
        self.finished.notify_all();
    }

    /// Lines dropped because the queue was full (or already stopped).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes out what is queued and stops the writer thread, waiting at most `timeout` (the
    /// writer may be the stalled reader itself). Lines logged afterwards are dropped and
    /// counted.
    pub(crate) fn flush_and_stop(&self, timeout: Duration) {
        let mut state = self.lock();
        state.stopping = true;
        self.wake.notify_one();
        let _ = self
            .finished
            .wait_timeout_while(state, timeout, |s| !s.finished)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// The queue's `MakeWriter`: each `write` call appends one line (tracing-subscriber's layers
/// and covet's JSON layer write each event with one call).
#[derive(Clone)]
pub(crate) struct QueueWriter(Arc<LogQueue>);

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(&self.0)
    }
}

/// The writer the log layer is given: the queue's, or a direct one. Not boxed per line, as
/// `BoxMakeWriter` would be for the queue's writer.
pub(crate) enum LogWriter {
    Direct(BoxMakeWriter),
    Queued(QueueWriter),
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = EitherWriter<Box<dyn Write + 'a>, LineWriter<'a>>;

    fn make_writer(&'a self) -> Self::Writer {
        match self {
            Self::Direct(direct) => EitherWriter::A(direct.make_writer()),
            Self::Queued(queued) => EitherWriter::B(queued.make_writer()),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        match self {
            Self::Direct(direct) => EitherWriter::A(direct.make_writer_for(meta)),
            Self::Queued(queued) => EitherWriter::B(queued.make_writer()),
        }
    }
}

/// Appends what it is given to the queue as one line.
pub(crate) struct LineWriter<'a>(&'a LogQueue);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(buf);
            *self.writes.lock().unwrap() += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Lines come out whole and in order, a burst in far fewer writes than lines; after the
    /// stop, lines are dropped and counted.
    #[test]
    fn lines_are_written_in_order_in_batches_and_counted_after_the_stop() {
        let sink = Sink::default();
        let (writer, queue) = LogQueue::start(Box::new(sink.clone()), 100_000);
        let expected: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        for line in expected.lines() {
            writer
                .make_writer()
                .write_all(format!("{line}\n").as_bytes())
                .unwrap();
        }
        queue.flush_and_stop(Duration::from_secs(10));
        assert_eq!(
            String::from_utf8(sink.bytes.lock().unwrap().clone()).unwrap(),
            expected
        );
        assert_eq!(queue.dropped(), 0);
        let writes = *sink.writes.lock().unwrap();
        assert!(writes < 1_000, "{writes} write calls for 10,000 lines");

        writer.make_writer().write_all(b"too late\n").unwrap();
        assert_eq!(queue.dropped(), 1);
        assert!(!String::from_utf8_lossy(&sink.bytes.lock().unwrap()).contains("too late"));
    }
}
