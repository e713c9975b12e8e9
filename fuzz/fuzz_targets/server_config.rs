//! The reference server's settings: `covet_server::config::parse_duration` and
//! `Config::try_parse_from` with fuzzed arguments, then `Config::validate`.
//!
//! Properties: no panic; a parsed duration prints (humantime) as a string that parses back to
//! it; a rejected duration's message quotes the input; any argument list either parses or is
//! refused with an error, and a parsed config validates or names the setting it rejects.
#![no_main]

use arbitrary::Arbitrary;
use clap::Parser;
use covet_server::config::{Config, parse_duration};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    duration: String,
    args: Vec<(Flag, String)>,
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Flag {
    Listen,
    AdminListen,
    RateLimit,
    RateLimitBurst,
    RateLimitStore,
    RateLimitMaxKeys,
    TrustedProxies,
    ApiToken,
    LogFormat,
    PreStopDelay,
    DrainTimeout,
    HeaderReadTimeout,
    RedisUrl,
    Raw,
}

impl Flag {
    fn name(self) -> Option<&'static str> {
        Some(match self {
            Flag::Listen => "--listen",
            Flag::AdminListen => "--admin-listen",
            Flag::RateLimit => "--rate-limit",
            Flag::RateLimitBurst => "--rate-limit-burst",
            Flag::RateLimitStore => "--rate-limit-store",
            Flag::RateLimitMaxKeys => "--rate-limit-max-keys",
            Flag::TrustedProxies => "--trusted-proxies",
            Flag::ApiToken => "--api-token",
            Flag::LogFormat => "--log-format",
            Flag::PreStopDelay => "--pre-stop-delay",
            Flag::DrainTimeout => "--drain-timeout",
            Flag::HeaderReadTimeout => "--header-read-timeout",
            Flag::RedisUrl => "--redis-url",
            Flag::Raw => return None,
        })
    }
}

fuzz_target!(|input: Input| {
    match parse_duration(&input.duration) {
        Ok(duration) => {
            let printed = humantime::format_duration(duration).to_string();
            assert_eq!(
                parse_duration(&printed),
                Ok(duration),
                "{:?}",
                input.duration
            );
        }
        Err(message) => assert!(message.contains(&input.duration), "{message}"),
    }

    let mut args = vec!["covet-server".to_owned()];
    for (flag, value) in input.args.iter().take(12) {
        if let Some(name) = flag.name() {
            args.push(name.to_owned());
        }
        args.push(value.clone());
    }
    if let Ok(config) = Config::try_parse_from(&args) {
        if let Err(message) = config.validate() {
            assert!(message.contains("--"), "names no setting: {message}");
        }
    }
});
