//! [`ServeOptions`]: the limits and timeouts of the server loop.

use std::time::Duration;

/// The default limit on receiving a request head: 30 seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The default limit on an idle keep-alive connection: 75 seconds, longer than the 60 s
/// upstream keep-alive of ALB, NGINX and ingress-nginx, so a proxy never sends a request on a
/// connection the server is closing.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// The default limit on receiving a request body: 30 seconds.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The default cap on open connections per listener: 10,000.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The default cap on a request head's size (HTTP/1) and header list (HTTP/2): 32 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// The smallest `max_header_bytes` accepted (hyper's minimum read buffer).
pub const MIN_MAX_HEADER_BYTES: usize = 8 * 1024;
/// The default interval of the server's HTTP/2 keep-alive pings: 20 seconds.
pub const DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// A setting of [`ServeOptionsBuilder`] that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A setting is out of range; the message names it.
    #[error("serve: `{setting}` {problem}")]
    Setting {
        /// The setting, as the builder method is named.
        setting: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// The limits and timeouts of [`serve_with`](super::serve_with). Made by
/// [`ServeOptions::builder`]; [`ServeOptions::default`] has every default.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_header_bytes: usize,
    pub(crate) http2_keep_alive_interval: Option<Duration>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            http2_keep_alive_interval: Some(DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL),
        }
    }
}

impl ServeOptions {
    /// A builder with the defaults.
    pub fn builder() -> ServeOptionsBuilder {
        ServeOptionsBuilder {
            options: Self::default(),
        }
    }

    /// The header read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The body read timeout.
    pub fn body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }

    /// The connection cap.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The head size cap.
    pub fn max_header_bytes(&self) -> usize {
        self.max_header_bytes
    }
}

/// Configures [`ServeOptions`]. Created by [`ServeOptions::builder`].
#[derive(Clone, Debug)]
pub struct ServeOptionsBuilder {
    options: ServeOptions,
}

impl ServeOptionsBuilder {
    /// How long a client may take to send a complete request head: from the moment a new
    /// connection is accepted until its first request head is read (a connection that sends
    /// nothing, or an HTTP/2 preface and no request, is closed then), and from the first byte of
    /// each later HTTP/1 request head (slow-loris protection).
    ///
    /// Defaults to [`DEFAULT_HEADER_READ_TIMEOUT`] (30 s).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.options.header_read_timeout = timeout;
        self
    }

    /// How long a keep-alive connection may stay idle (no request in progress) before it is
    /// closed: HTTP/1 between requests, HTTP/2 with no open stream (an HTTP/2 client's pings do
    /// not keep an idle connection open). Keep it longer than the upstream keep-alive timeout of
    /// every proxy in front, so the proxy always closes first.
    ///
    /// Defaults to [`DEFAULT_IDLE_TIMEOUT`] (75 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.options.idle_timeout = timeout;
        self
    }

    /// How long a request body may take to arrive, counted from the request head; after it,
    /// reading the body fails (the handler sees a body error; axum answers 400) and the
    /// connection is not reused.
    ///
    /// Defaults to [`DEFAULT_BODY_READ_TIMEOUT`] (30 s).
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.options.body_read_timeout = timeout;
        self
    }

    /// The most connections a listener holds open at once. Past it, a new connection is
    /// accepted and closed at once (counted in `server_connections_rejected_total`), so the
    /// process never runs out of file descriptors and other listeners (an admin port) keep
    /// answering. Keep it below the process's open-file limit, with room for the other
    /// listeners, pools and files.
    ///
    /// Defaults to [`DEFAULT_MAX_CONNECTIONS`] (10,000). Must be at least 1.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.options.max_connections = max;
        self
    }

    /// The largest request head (HTTP/1: the read buffer a head must fit in; HTTP/2: the header
    /// list), in bytes. A larger head is answered 431 (HTTP/1) or refused (HTTP/2). It bounds
    /// the memory an unfinished head holds.
    ///
    /// Defaults to [`DEFAULT_MAX_HEADER_BYTES`] (32 KiB). At least [`MIN_MAX_HEADER_BYTES`].
    pub fn max_header_bytes(mut self, max: usize) -> Self {
        self.options.max_header_bytes = max;
        self
    }

    /// How often the server pings an HTTP/2 peer to find dead connections (a peer that does
    /// not answer within the same interval is dropped); `None` turns the pings off.
    ///
    /// Defaults to [`DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL`] (20 s).
    pub fn http2_keep_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.options.http2_keep_alive_interval = interval;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<ServeOptions, ServeError> {
        let o = &self.options;
        let positive = [
            ("header_read_timeout", o.header_read_timeout),
            ("idle_timeout", o.idle_timeout),
            ("body_read_timeout", o.body_read_timeout),
        ];
        for (setting, value) in positive {
            if value.is_zero() {
                return Err(ServeError::Setting {
                    setting,
                    problem: "must be longer than 0".into(),
                });
            }
        }
        if o.http2_keep_alive_interval.is_some_and(|d| d.is_zero()) {
            return Err(ServeError::Setting {
                setting: "http2_keep_alive_interval",
                problem: "must be longer than 0 (or None to turn the pings off)".into(),
            });
        }
        if o.max_connections == 0 {
            return Err(ServeError::Setting {
                setting: "max_connections",
                problem: "must be at least 1".into(),
            });
        }
        if o.max_header_bytes < MIN_MAX_HEADER_BYTES || o.max_header_bytes > u32::MAX as usize {
            return Err(ServeError::Setting {
                setting: "max_header_bytes",
                problem: format!("must be from {MIN_MAX_HEADER_BYTES} to {} bytes", u32::MAX),
            });
        }
        Ok(self.options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_name_the_setting() {
        let zero = ServeOptions::builder()
            .idle_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(zero.to_string().contains("idle_timeout"), "{zero}");
        let small = ServeOptions::builder()
            .max_header_bytes(100)
            .build()
            .unwrap_err();
        assert!(small.to_string().contains("max_header_bytes"), "{small}");
        let none = ServeOptions::builder()
            .max_connections(0)
            .build()
            .unwrap_err();
        assert!(none.to_string().contains("max_connections"), "{none}");
        let options = ServeOptions::builder()
            .idle_timeout(Duration::from_secs(90))
            .build()
            .unwrap();
        assert_eq!(options.idle_timeout(), Duration::from_secs(90));
        assert_eq!(options.max_header_bytes(), DEFAULT_MAX_HEADER_BYTES);
    }
}
