//! Command-line flags and their environment variables.

use std::{net::SocketAddr, time::Duration};

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

    /// PostgreSQL URL for the notes; without it, notes live in memory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Redis URL for the notes cache (and the shared rate limiter with `--rate-limit-store redis`).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

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

    /// Bearer token required by the write endpoints (`POST`/`DELETE /api/notes`); none by default.
    #[arg(long, env = "COVET_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Log format: `json`, `pretty`, or `auto` (pretty on a terminal, JSON otherwise).
    #[arg(long, env = "COVET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// After SIGTERM, how long to keep serving with readiness failing (e.g. `5s`, `0s`).
    #[arg(long, env = "COVET_PRE_STOP_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub pre_stop_delay: Duration,

    /// How long in-flight requests may take once accepting stops (e.g. `30s`).
    #[arg(long, env = "COVET_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// How long a client may take to send a request head before its connection is closed
    /// (slow-loris protection; e.g. `30s`).
    #[arg(long, env = "COVET_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

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

    /// Checks what clap cannot: combinations of flags. The message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.rate_limit_store == RateLimitStore::Redis && self.redis_url().is_none() {
            return Err("--rate-limit-store redis needs --redis-url (REDIS_URL)".into());
        }
        if let Some(token) = &self.api_token
            && token.trim().is_empty()
        {
            return Err("--api-token (COVET_API_TOKEN) must not be empty".into());
        }
        if self.rate_limit_max_keys == 0 {
            return Err(
                "--rate-limit-max-keys (COVET_RATE_LIMIT_MAX_KEYS) must be at least 1".into(),
            );
        }
        if self.header_read_timeout.is_zero() {
            return Err(
                "--header-read-timeout (COVET_HEADER_READ_TIMEOUT) must be longer than 0".into(),
            );
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
    fn defaults_are_the_embedded_mode() {
        let config = Config::try_parse_from(["covet-server"]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(config.pre_stop_delay, Duration::from_secs(5));
        assert_eq!(config.drain_timeout, Duration::from_secs(30));
        assert_eq!(config.rate_limit_store, RateLimitStore::Memory);
        assert_eq!(config.header_read_timeout, Duration::from_secs(30));
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
            Config::try_parse_from(["covet-server", "--rate-limit-max-keys", "0"]).unwrap();
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("--rate-limit-max-keys")
        );
    }
}
