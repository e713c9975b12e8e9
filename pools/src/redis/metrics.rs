//! The Redis pool's command metrics, with handles resolved once per command.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, Registry};

use crate::{
    PoolError,
    common::{create_error, operation_duration, register},
};

/// Buckets of `cache_operation_duration_seconds`: 100 µs … 1 s.
pub const CACHE_DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Buckets of `cache_ttl_seconds`: 1 s … 30 days.
pub const TTL_BUCKETS: &[f64] = &[
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    21_600.0,
    86_400.0,
    604_800.0,
    2_592_000.0,
];

/// Commands with their own `command` label; anything else is `_OTHER`.
pub(crate) const COMMANDS: &[&str] = &[
    "GET",
    "SET",
    "DEL",
    "EXPIRE",
    "INCR",
    "INCRBY",
    "DECR",
    "DECRBY",
    "MGET",
    "MSET",
    "EXISTS",
    "TTL",
    "PTTL",
    "PEXPIRE",
    "GETDEL",
    "GETEX",
    "SETNX",
    "SETEX",
    "HGET",
    "HSET",
    "HDEL",
    "HGETALL",
    "HINCRBY",
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "LRANGE",
    "LLEN",
    "SADD",
    "SREM",
    "SMEMBERS",
    "SISMEMBER",
    "ZADD",
    "ZREM",
    "ZRANGE",
    "ZSCORE",
    "PUBLISH",
    "PING",
    "EVAL",
    "EVALSHA",
    "SCAN",
    "UNLINK",
    "PIPELINE",
    "_OTHER",
];
pub(crate) const GET: usize = 0;
pub(crate) const SET: usize = 1;
pub(crate) const DEL: usize = 2;
pub(crate) const EXPIRE: usize = 3;
pub(crate) const INCRBY: usize = 5;
pub(crate) const MGET: usize = 8;
pub(crate) const PIPELINE: usize = COMMANDS.len() - 2;
pub(crate) const OTHER: usize = COMMANDS.len() - 1;

/// The index into [`COMMANDS`] of a command's name.
pub(crate) fn command_index(cmd: &redis::Cmd) -> usize {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => COMMANDS[..PIPELINE]
            .iter()
            .position(|known| known.as_bytes().eq_ignore_ascii_case(name))
            .unwrap_or(OTHER),
        _ => OTHER,
    }
}

#[derive(Debug)]
struct Command {
    duration: Histogram,
    otel_ok: Histogram,
}

#[derive(Debug)]
pub(crate) struct RedisMetrics {
    commands: Vec<Command>,
    otel: HistogramVec,
    pub(crate) hits: IntCounter,
    pub(crate) misses: IntCounter,
    pub(crate) ttl: Histogram,
    pub(crate) connection_errors: IntCounter,
}

fn counter(
    registry: &Registry,
    pool_name: &str,
    name: &'static str,
    help: &str,
) -> Result<IntCounter, PoolError> {
    let counter = IntCounter::new(name, help).map_err(|e| create_error(pool_name, name, e))?;
    register(registry, pool_name, name, counter)
}

impl RedisMetrics {
    pub(crate) fn new(registry: &Registry, pool_name: &str) -> Result<Self, PoolError> {
        const DURATION: &str = "cache_operation_duration_seconds";
        let duration = register(
            registry,
            pool_name,
            DURATION,
            HistogramVec::new(
                HistogramOpts::new(DURATION, "Redis command duration, by command.")
                    .buckets(CACHE_DURATION_BUCKETS.to_vec()),
                &["command"],
            )
            .map_err(|e| create_error(pool_name, DURATION, e))?,
        )?;
        let otel = operation_duration(registry, pool_name)?;
        let commands = COMMANDS
            .iter()
            .map(|command| Command {
                duration: duration.with_label_values(&[command]),
                otel_ok: otel.with_label_values(&["redis", command, ""]),
            })
            .collect();
        const TTL: &str = "cache_ttl_seconds";
        let ttl = Histogram::with_opts(
            HistogramOpts::new(TTL, "TTLs this application set on Redis keys.")
                .buckets(TTL_BUCKETS.to_vec()),
        )
        .map_err(|e| create_error(pool_name, TTL, e))?;
        Ok(Self {
            commands,
            otel,
            hits: counter(
                registry,
                pool_name,
                "cache_hits_total",
                "Cache reads (GET, MGET keys) that found a value.",
            )?,
            misses: counter(
                registry,
                pool_name,
                "cache_misses_total",
                "Cache reads (GET, MGET keys) that found nothing.",
            )?,
            ttl: register(registry, pool_name, TTL, ttl)?,
            connection_errors: counter(
                registry,
                pool_name,
                "cache_connection_errors_total",
                "Failed Redis connection attempts and connections lost during a command.",
            )?,
        })
    }

    pub(crate) fn ok(&self, command: usize, elapsed: Duration) {
        let handles = &self.commands[command];
        let seconds = elapsed.as_secs_f64();
        handles.duration.observe(seconds);
        handles.otel_ok.observe(seconds);
    }

    /// Records a failed command; returns its `error.type`.
    pub(crate) fn failed(
        &self,
        command: usize,
        elapsed: Duration,
        error: &redis::RedisError,
    ) -> &'static str {
        let seconds = elapsed.as_secs_f64();
        self.commands[command].duration.observe(seconds);
        let error_type = error_type(error);
        if error_type == "connection" {
            self.connection_errors.inc();
        }
        self.otel
            .with_label_values(&["redis", COMMANDS[command], error_type])
            .observe(seconds);
        error_type
    }
}

/// A bounded `error.type`: `connection`, `timeout`, a well-known server error code, or `_OTHER`.
fn error_type(error: &redis::RedisError) -> &'static str {
    if error.is_timeout() {
        return "timeout";
    }
    if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
        return "connection";
    }
    const CODES: &[&str] = &[
        "ERR",
        "WRONGTYPE",
        "NOSCRIPT",
        "READONLY",
        "MOVED",
        "ASK",
        "TRYAGAIN",
        "LOADING",
        "BUSY",
        "NOAUTH",
        "OOM",
        "EXECABORT",
        "NOPERM",
    ];
    error
        .code()
        .and_then(|code| CODES.iter().find(|known| **known == code).copied())
        .unwrap_or("_OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_are_bounded() {
        assert_eq!(COMMANDS[command_index(&redis::cmd("get"))], "GET");
        assert_eq!(COMMANDS[command_index(redis::cmd("HSET").arg("k"))], "HSET");
        assert_eq!(COMMANDS[command_index(&redis::cmd("CLIENT"))], "_OTHER");
        assert_eq!(COMMANDS[command_index(&redis::cmd("PIPELINE"))], "_OTHER");
        assert_eq!(COMMANDS[INCRBY], "INCRBY");
        assert_eq!(COMMANDS[MGET], "MGET");
        assert_eq!(COMMANDS[EXPIRE], "EXPIRE");
    }
}
