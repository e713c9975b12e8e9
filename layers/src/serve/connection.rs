//! One connection's timing state, shared by its I/O, its requests and its watchdog.
//!
//! A connection is in one of four phases:
//!
//! | phase | entered when | closed after |
//! |---|---|---|
//! | fresh | accepted | `header_read_timeout` without a complete first request head |
//! | idle | its last request finished | `idle_timeout` |
//! | head | the first byte of the next HTTP/1 request head arrived while idle | `header_read_timeout` |
//! | busy | a request head was read (any open HTTP/2 stream) | never by the watchdog |
//!
//! HTTP/2 bytes received while idle (pings, settings) do not leave the idle phase, so an idle
//! HTTP/2 connection is closed after `idle_timeout` whatever its peer sends.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use super::ServeOptions;

const FRESH: u8 = 0;
const IDLE: u8 = 1;
const HEAD: u8 = 2;
const BUSY: u8 = 3;

/// Why the watchdog closed a connection: the `kind` label of
/// `server_connection_timeouts_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeoutKind {
    /// No complete first request head in time.
    FirstRequest,
    /// Idle for too long between requests.
    Idle,
    /// A later HTTP/1 request head did not arrive in full in time.
    RequestHead,
}

impl TimeoutKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::FirstRequest => "first_request",
            Self::Idle => "idle",
            Self::RequestHead => "request_head",
        }
    }
}

/// The shared state of one connection.
#[derive(Debug)]
pub(crate) struct ConnState {
    phase: AtomicU8,
    in_flight: AtomicUsize,
    /// When the current phase began, in milliseconds since `epoch`.
    since_ms: AtomicU64,
    http2: AtomicBool,
    epoch: Instant,
    /// Wakes the watchdog when a deadline appears or moves earlier.
    changed: Notify,
}

impl ConnState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: AtomicU8::new(FRESH),
            in_flight: AtomicUsize::new(0),
            since_ms: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            epoch: Instant::now(),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Bytes were read from the client.
    #[inline]
    pub(crate) fn on_bytes(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE
            && !self.http2.load(Ordering::Relaxed)
            && self
                .phase
                .compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.since_ms.store(self.now_ms(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// A request head was read and handed to the service.
    #[inline]
    pub(crate) fn request_started(&self, http2: bool) {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.phase.store(BUSY, Ordering::Release);
    }

    /// A request's response was sent (or abandoned).
    #[inline]
    pub(crate) fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.since_ms.store(self.now_ms(), Ordering::Release);
            self.phase.store(IDLE, Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// When the watchdog must act, and why; `None` while a request is in progress.
    pub(crate) fn deadline(&self, options: &ServeOptions) -> Option<(Instant, TimeoutKind)> {
        let since = self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Acquire));
        match self.phase.load(Ordering::Acquire) {
            FRESH => Some((
                self.epoch + options.header_read_timeout,
                TimeoutKind::FirstRequest,
            )),
            IDLE => Some((since + options.idle_timeout, TimeoutKind::Idle)),
            HEAD => Some((
                since + options.header_read_timeout,
                TimeoutKind::RequestHead,
            )),
            _ => None,
        }
    }

    /// Waits until a deadline may have changed.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Ends a request's in-flight count when dropped: with the response body (sent or not), or
/// with the service's future when the client leaves before the response.
#[derive(Debug)]
pub(crate) struct InFlight(pub(crate) Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ServeOptions {
        ServeOptions::builder()
            .header_read_timeout(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn phases_move_with_bytes_and_requests() {
        let state = ConnState::new();
        let options = options();
        let start = state.epoch;
        assert_eq!(
            state.deadline(&options),
            Some((start + Duration::from_secs(10), TimeoutKind::FirstRequest))
        );
        // Bytes of a first head do not restart the first-request clock.
        state.on_bytes();
        assert_eq!(
            state.deadline(&options).unwrap().1,
            TimeoutKind::FirstRequest
        );
        state.request_started(false);
        assert_eq!(state.deadline(&options), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(InFlight(state.clone()));
        assert_eq!(
            state.deadline(&options),
            Some((start + Duration::from_secs(65), TimeoutKind::Idle))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        state.on_bytes();
        assert_eq!(
            state.deadline(&options),
            Some((start + Duration::from_secs(16), TimeoutKind::RequestHead))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn http2_frames_do_not_end_the_idle_phase() {
        let state = ConnState::new();
        let options = options();
        state.request_started(true);
        state.request_started(true);
        drop(InFlight(state.clone()));
        assert_eq!(state.deadline(&options), None, "one stream is still open");
        drop(InFlight(state.clone()));
        state.on_bytes();
        assert_eq!(state.deadline(&options).unwrap().1, TimeoutKind::Idle);
    }
}
