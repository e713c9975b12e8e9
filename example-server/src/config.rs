//! Command-line flags and their environment variables.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

/// The covet reference server: an axum API composing every covet layer, with `/metrics` and
/// `/health*` on a separate admin port.
#[derive(Debug, Clone, Parser)]
#[command(name = "covet-server", version, about, long_about = None)]
pub struct Config {
    /// Address the API listens on.
    #[arg(long, env = "COVET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address the admin endpoints (`/metrics`, `/health*`) listen on.
    #[arg(long, env = "COVET_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,

    /// PostgreSQL URL for the notes; without it, notes live in memory. TLS follows libpq's
    /// `sslmode` (`require`, `verify-ca`, `verify-full`; `prefer` by default).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// PEM file of the CA that signed PostgreSQL's certificate (e.g. RDS's global bundle), for
    /// `sslmode=verify-full` / `verify-ca` / `require`; without it, the system's roots.
    #[arg(long, env = "COVET_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,

    /// Redis URL for the notes cache (and the shared rate limiter with `--rate-limit-store
    /// redis`); `rediss://` for TLS.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// PEM file of the CA that signed a `rediss://` server's certificate; without it, the
    /// system's roots.
    #[arg(long, env = "COVET_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Rate limit per client, e.g. `100/s`, `6000/min`, `10/h`.
    #[arg(long, env = "COVET_RATE_LIMIT", default_value = "100/s")]
    pub rate_limit: String,

    /// Burst allowed above the steady rate (requests); defaults to the per-period quota.
    #[arg(long, env = "COVET_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,

    /// Where rate-limit state lives: `memory` (this process) or `redis` (shared by replicas).
    #[arg(long, env = "COVET_RATE_LIMIT_STORE", value_enum, default_value_t = RateLimitStore::Memory)]
    pub rate_limit_store: RateLimitStore,

    /// The most client keys the in-memory rate limiter holds at once (`--rate-limit-store
    /// memory`); past it, keys whose bucket refilled are evicted and new clients wait (429).
    #[arg(long, env = "COVET_RATE_LIMIT_MAX_KEYS", default_value_t = covet_layers::rate_limit::store::memory::DEFAULT_MAX_KEYS)]
    pub rate_limit_max_keys: usize,

    /// Proxies whose `X-Forwarded-For` / `Forwarded` entries are trusted (comma-separated CIDRs).
    #[arg(long, env = "COVET_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Bearer token required by the write endpoints (`POST`/`DELETE /api/notes`). Without it the
    /// write endpoints are open to anyone who can reach the API port: set it outside
    /// development.
    #[arg(long, env = "COVET_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Peers (comma-separated CIDRs) whose `traceparent`, `tracestate` and `baggage` are
    /// continued; from every other peer a request starts a new trace that links to the
    /// caller's. Empty by default: the API port is an untrusted edge.
    #[arg(long, env = "COVET_TRUSTED_TRACE_SOURCES", value_delimiter = ',')]
    pub trusted_trace_sources: Vec<String>,

    /// Log format: `json`, `pretty`, or `auto` (pretty on a terminal, JSON otherwise).
    #[arg(long, env = "COVET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Log lines held while stderr's reader is slow; past it, new lines are dropped (counted in
    /// `log_lines_dropped_total`) rather than requests waiting for the reader.
    #[arg(long, env = "COVET_LOG_BUFFER_LINES", default_value_t = covet_layers::telemetry::DEFAULT_LOG_BUFFER_LINES)]
    pub log_buffer_lines: usize,

    /// After SIGTERM, how long to keep serving with readiness failing (e.g. `5s`, `0s`).
    #[arg(long, env = "COVET_PRE_STOP_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub pre_stop_delay: Duration,

    /// How long in-flight requests may take once accepting stops (e.g. `30s`).
    #[arg(long, env = "COVET_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// After the API port has drained, how long the admin port (`/metrics`, `/health*`) keeps
    /// answering before the process exits, so Prometheus's last scrape holds the final
    /// shutdown metrics (`shutdown_cancelled_requests_total`, `shutdown_phase`) and readiness
    /// answers 503, not connection refused. Set it to the scrape interval (e.g. `15s`).
    #[arg(long, env = "COVET_ADMIN_LINGER", default_value = "0s", value_parser = parse_duration)]
    pub admin_linger: Duration,

    /// How long a client may take to send a request head before its connection is closed: from
    /// connecting to its first complete request head, and from the first byte of each later
    /// head (slow-loris protection; e.g. `30s`).
    #[arg(long, env = "COVET_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// How long an idle keep-alive connection (HTTP/1 between requests, HTTP/2 without a
    /// stream) stays open. Keep it longer than every proxy's upstream keep-alive timeout
    /// (ALB, NGINX and ingress-nginx default to 60 s), so the proxy always closes first.
    #[arg(long, env = "COVET_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How long a request body may take to arrive after its head; a slower body fails (400)
    /// (e.g. `30s`).
    #[arg(long, env = "COVET_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// The most connections the API port holds open at once; past it new ones are closed at
    /// once. `auto` (the default) takes three quarters of the open-file limit less a reserve
    /// for the admin port, the pools and files, so the admin port keeps answering.
    #[arg(long, env = "COVET_MAX_CONNECTIONS", default_value = "auto", value_parser = parse_max_connections)]
    pub max_connections: MaxConnections,

    /// The most connections the admin port holds open at once (probes and scrapes need few);
    /// `auto`'s API cap leaves room for them.
    #[arg(long, env = "COVET_ADMIN_MAX_CONNECTIONS", default_value_t = DEFAULT_ADMIN_MAX_CONNECTIONS)]
    pub admin_max_connections: usize,

    /// The largest request head the API accepts, in bytes (larger heads get 431). Bounds the
    /// memory an unfinished head holds.
    #[arg(long, env = "COVET_MAX_HEADER_BYTES", default_value_t = covet_layers::serve::DEFAULT_MAX_HEADER_BYTES)]
    pub max_header_bytes: usize,

    /// A one-shot command instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One-shot commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Probe the local `/health/live` on the admin port; exit 0 when it answers 2xx/3xx, else 1.
    /// For container HEALTHCHECKs without curl.
    Healthcheck {
        /// Seconds to wait for the answer.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

/// The API port's connection cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxConnections {
    /// From the process's open-file limit.
    Auto,
    /// This many.
    Limit(usize),
}

/// Parses `auto` or a positive number of connections.
pub fn parse_max_connections(text: &str) -> Result<MaxConnections, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("auto") {
        return Ok(MaxConnections::Auto);
    }
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!(
            "`{text}` is not `auto` or a number of connections of at least 1"
        )),
        Ok(n) => Ok(MaxConnections::Limit(n)),
    }
}

/// The default cap on the admin port's connections: probes and scrapes need few.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 128;

/// File descriptors kept out of `auto`'s API cap besides the admin port's: the pools, log and
/// metric files, and headroom for accepting and closing over-cap connections.
pub const DESCRIPTOR_RESERVE: u64 = 128;

impl MaxConnections {
    /// The cap for an open-file limit of `nofile`, with `admin` descriptors for the admin port.
    pub fn resolve(self, nofile: u64, admin: usize) -> usize {
        match self {
            Self::Limit(n) => n,
            Self::Auto => {
                let spare = nofile.saturating_sub(DESCRIPTOR_RESERVE + admin as u64);
                (spare * 3 / 4).max(16) as usize
            }
        }
    }
}

/// The longest duration any setting takes: one day. Longer values are refused at start-up
/// rather than overflow a deadline later.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Where rate-limit state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RateLimitStore {
    /// In this process: exact for one replica.
    Memory,
    /// In Redis: shared by every replica (needs `--redis-url`).
    Redis,
}

/// The log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Parses `500ms`, `5s`, `2m` or `1h30m` (and `0`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration such as 500ms, 5s or 2m ({e})"))
}

impl Config {
    /// The PostgreSQL URL, if one is set and not empty.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url
            .as_deref()
            .filter(|url| !url.trim().is_empty())
    }

    /// The Redis URL, if one is set and not empty.
    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url
            .as_deref()
            .filter(|url| !url.trim().is_empty())
    }

    /// The PostgreSQL CA file, if one is set and not empty.
    pub fn database_ca_file(&self) -> Option<&std::path::Path> {
        self.database_ca_file
            .as_deref()
            .filter(|path| !path.as_os_str().is_empty())
    }

    /// The Redis CA file, if one is set and not empty.
    pub fn redis_ca_file(&self) -> Option<&std::path::Path> {
        self.redis_ca_file
            .as_deref()
            .filter(|path| !path.as_os_str().is_empty())
    }

    /// Checks what clap cannot: combinations of flags. The message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.database_ca_file().is_some() && self.database_url().is_none() {
            return Err(
                "--database-ca-file (COVET_DATABASE_CA_FILE) needs --database-url (DATABASE_URL)"
                    .into(),
            );
        }
        if self.redis_ca_file().is_some() && self.redis_url().is_none() {
            return Err(
                "--redis-ca-file (COVET_REDIS_CA_FILE) needs --redis-url (REDIS_URL)".into(),
            );
        }
        if self.rate_limit_store == RateLimitStore::Redis && self.redis_url().is_none() {
            return Err("--rate-limit-store redis needs --redis-url (REDIS_URL)".into());
        }
        if let Some(token) = &self.api_token
            && token.trim().is_empty()
        {
            return Err("--api-token (COVET_API_TOKEN) must not be empty".into());
        }
        if self.log_buffer_lines == 0 {
            return Err("--log-buffer-lines (COVET_LOG_BUFFER_LINES) must be at least 1".into());
        }
        if self.rate_limit_max_keys == 0 {
            return Err(
                "--rate-limit-max-keys (COVET_RATE_LIMIT_MAX_KEYS) must be at least 1".into(),
            );
        }
        let durations = [
            (
                "--pre-stop-delay (COVET_PRE_STOP_DELAY)",
                self.pre_stop_delay,
                true,
            ),
            (
                "--drain-timeout (COVET_DRAIN_TIMEOUT)",
                self.drain_timeout,
                false,
            ),
            (
                "--admin-linger (COVET_ADMIN_LINGER)",
                self.admin_linger,
                true,
            ),
            (
                "--header-read-timeout (COVET_HEADER_READ_TIMEOUT)",
                self.header_read_timeout,
                false,
            ),
            (
                "--idle-timeout (COVET_IDLE_TIMEOUT)",
                self.idle_timeout,
                false,
            ),
            (
                "--body-read-timeout (COVET_BODY_READ_TIMEOUT)",
                self.body_read_timeout,
                false,
            ),
        ];
        for (flag, value, zero_ok) in durations {
            if value.is_zero() && !zero_ok {
                return Err(format!("{flag} must be longer than 0"));
            }
            if value > MAX_DURATION {
                return Err(format!(
                    "{flag} must be at most 24h, not {}",
                    humantime::format_duration(value)
                ));
            }
        }
        if self.admin_max_connections == 0 {
            return Err(
                "--admin-max-connections (COVET_ADMIN_MAX_CONNECTIONS) must be at least 1".into(),
            );
        }
        if self.max_header_bytes < covet_layers::serve::MIN_MAX_HEADER_BYTES {
            return Err(format!(
                "--max-header-bytes (COVET_MAX_HEADER_BYTES) must be at least {}",
                covet_layers::serve::MIN_MAX_HEADER_BYTES
            ));
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(format!(
                "--listen and --admin-listen are both {}; the admin port must differ",
                self.listen
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_connection_caps_leave_room_below_the_open_file_limit() {
        let admin = DEFAULT_ADMIN_MAX_CONNECTIONS;
        assert_eq!(MaxConnections::Auto.resolve(1024, admin), 576);
        assert!(MaxConnections::Auto.resolve(1024, admin) + admin < 1024);
        assert_eq!(MaxConnections::Auto.resolve(100, admin), 16);
        assert_eq!(MaxConnections::Limit(7).resolve(1024, admin), 7);
    }

    #[test]
    fn defaults_are_the_embedded_mode() {
        let config = Config::try_parse_from(["covet-server"]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(config.pre_stop_delay, Duration::from_secs(5));
        assert_eq!(config.drain_timeout, Duration::from_secs(30));
        assert_eq!(config.rate_limit_store, RateLimitStore::Memory);
        assert_eq!(config.header_read_timeout, Duration::from_secs(30));
        assert_eq!(config.idle_timeout, Duration::from_secs(75));
        assert_eq!(config.body_read_timeout, Duration::from_secs(30));
        assert_eq!(config.max_connections, MaxConnections::Auto);
        assert_eq!(config.max_header_bytes, 32 * 1024);
        assert_eq!(config.rate_limit_max_keys, 2_000_000);
        // The URLs come from the environment when set there (the test suite sets them).
        assert_eq!(config.database_url, std::env::var("DATABASE_URL").ok());
        assert_eq!(config.redis_url, std::env::var("REDIS_URL").ok());
        config.validate().unwrap();
    }

    #[test]
    fn durations_and_lists_parse() {
        let config = Config::try_parse_from([
            "covet-server",
            "--pre-stop-delay",
            "0",
            "--drain-timeout",
            "1500ms",
            "--trusted-proxies",
            "10.0.0.0/8,192.168.0.0/16",
        ])
        .unwrap();
        assert_eq!(config.pre_stop_delay, Duration::ZERO);
        assert_eq!(config.drain_timeout, Duration::from_millis(1500));
        assert_eq!(config.trusted_proxies, ["10.0.0.0/8", "192.168.0.0/16"]);
        assert!(parse_duration("soon").unwrap_err().contains("soon"));
    }

    #[test]
    fn bad_combinations_name_the_setting() {
        let config = Config::try_parse_from([
            "covet-server",
            "--rate-limit-store",
            "redis",
            "--redis-url",
            "",
        ])
        .unwrap();
        assert!(config.validate().unwrap_err().contains("--redis-url"));
        let config = Config::try_parse_from([
            "covet-server",
            "--listen",
            "127.0.0.1:7000",
            "--admin-listen",
            "127.0.0.1:7000",
        ])
        .unwrap();
        assert!(config.validate().unwrap_err().contains("--admin-listen"));
        let config =
            Config::try_parse_from(["covet-server", "--header-read-timeout", "0"]).unwrap();
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("--header-read-timeout")
        );
        let config =
            Config::try_parse_from(["covet-server", "--drain-timeout", "500000000000years"])
                .unwrap();
        let err = config.validate().unwrap_err();
        assert!(
            err.contains("--drain-timeout") && err.contains("24h"),
            "{err}"
        );
        let config = Config::try_parse_from(["covet-server", "--idle-timeout", "0s"]).unwrap();
        assert!(config.validate().unwrap_err().contains("--idle-timeout"));
        assert!(
            Config::try_parse_from(["covet-server", "--max-connections", "0"]).is_err(),
            "0 connections is refused by the parser"
        );
        let config =
            Config::try_parse_from(["covet-server", "--rate-limit-max-keys", "0"]).unwrap();
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("--rate-limit-max-keys")
        );
    }
}
