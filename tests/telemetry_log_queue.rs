//! `telemetry`'s log queue: a writer that stalls never stalls the code that logs; the lines
//! that do not fit are dropped and counted, and shutdown writes out the rest. Its own test
//! binary, because the telemetry installs the process-wide subscriber.

use std::{
    io::{self, Write},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use covet::telemetry::{Telemetry, TelemetryError};
use prometheus::{Encoder, Registry, TextEncoder};

/// Whether the gate is open, and what went through it.
#[derive(Default)]
struct Passed {
    open: bool,
    bytes: Vec<u8>,
}

/// A writer that blocks every write until opened, like a pipe nobody reads.
#[derive(Clone, Default)]
struct Gate {
    state: Arc<(Mutex<Passed>, Condvar)>,
}

impl Gate {
    fn open(&self) {
        let (lock, wake) = &*self.state;
        lock.lock().unwrap().open = true;
        wake.notify_all();
    }

    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.state.0.lock().unwrap().bytes.clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (lock, wake) = &*self.state;
        let mut state = wake.wait_while(lock.lock().unwrap(), |s| !s.open).unwrap();
        state.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_writer_costs_dropped_lines_never_a_stalled_caller() {
    assert!(matches!(
        Telemetry::builder()
            .log_buffer_lines(0)
            .export(false)
            .init(),
        Err(TelemetryError::Setting {
            setting: "log_buffer_lines",
            ..
        })
    ));

    let gate = Gate::default();
    let telemetry = Telemetry::builder()
        .export(false)
        .filter("info")
        .output(gate.clone())
        .log_buffer_lines(8)
        .init()
        .expect("telemetry installs");
    let registry = Registry::new();
    telemetry.register_metrics(&registry).unwrap();

    // 200 lines of over 1,000 bytes while nothing can be written: logging returns at once
    // every time. The writer thread holds the line it is writing, the queue holds 8, and its
    // 64 KiB write buffer at most 65 such lines: the rest are dropped.
    let padding = "x".repeat(1000);
    let started = Instant::now();
    for i in 0..200 {
        tracing::info!(line = i, padding, "a line nobody reads yet");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "logging waited for the stalled writer: {took:?}"
    );
    let dropped = telemetry.dropped_log_lines();
    assert!(
        (200 - 1 - 8 - 65 - 2..=192).contains(&dropped),
        "dropped {dropped}"
    );
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(&format!("log_lines_dropped_total {dropped}")),
        "{text}"
    );

    // The reader comes back: shutdown writes out what was queued, every line is accounted for.
    gate.open();
    telemetry.shutdown().await.unwrap();
    let lines = gate.lines();
    assert_eq!(lines.len() as u64 + dropped, 200, "{lines:?}");
    assert!(
        lines[0].contains(r#""line":0"#),
        "the oldest lines are kept: {}",
        lines[0]
    );
}
