//! [`Quota`]: a rate with unambiguous units and a burst, and its `FromStr` form (`100/s`).

use std::{fmt, str::FromStr, time::Duration};

/// How many requests a client may make: `count` per `period`, with bursts of up to `burst`.
///
/// `Quota::per_second(100).burst(20)` means 100 requests per second on average, at most 20 at
/// once. Without [`burst`](Quota::burst) the burst equals the count (a full period's worth may
/// arrive at once).
///
/// Enforced with GCRA: one request is allowed every `period / count` (the emission interval),
/// and up to `burst` requests may arrive back to back after an idle spell.
///
/// Parses from strings such as `100/s`, `6000/min`, `10/h` and `100/s burst 20`
/// (see [`FromStr`](#impl-FromStr-for-Quota)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    count: u32,
    period: Duration,
    burst: u32,
}

impl Quota {
    /// `count` requests per second; burst `count`.
    pub const fn per_second(count: u32) -> Self {
        Self::per(count, Duration::from_secs(1))
    }

    /// `count` requests per minute; burst `count`.
    pub const fn per_minute(count: u32) -> Self {
        Self::per(count, Duration::from_secs(60))
    }

    /// `count` requests per hour; burst `count`.
    pub const fn per_hour(count: u32) -> Self {
        Self::per(count, Duration::from_secs(3600))
    }

    /// `count` requests per `period`; burst `count`.
    pub const fn per(count: u32, period: Duration) -> Self {
        Self {
            count,
            period,
            burst: count,
        }
    }

    /// The most requests allowed back to back.
    ///
    /// Defaults to the count.
    pub const fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Requests per period.
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The period the count is spread over.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// The most requests allowed back to back.
    pub const fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The emission interval `period / count` in nanoseconds (at least 1).
    pub(crate) fn interval_nanos(&self) -> u64 {
        let period = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX);
        (period / u64::from(self.count.max(1))).max(1)
    }

    /// The period in whole seconds, rounded up (the `w` of `RateLimit-Policy`).
    pub(crate) fn window_secs(&self) -> u64 {
        ceil_secs(self.period)
    }

    /// Why this quota cannot be enforced, if it cannot.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.count == 0 {
            Some("has a count of 0")
        } else if self.burst == 0 {
            Some("has a burst of 0")
        } else if self.period.is_zero() {
            Some("has a period of 0")
        } else if self.period > Duration::from_secs(366 * 24 * 3600) {
            Some("has a period longer than a year")
        } else {
            None
        }
    }
}

/// Whole seconds in `d`, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.period.as_secs() {
            1 if self.period.subsec_nanos() == 0 => write!(f, "{}/s", self.count)?,
            60 if self.period.subsec_nanos() == 0 => write!(f, "{}/min", self.count)?,
            3600 if self.period.subsec_nanos() == 0 => write!(f, "{}/h", self.count)?,
            _ => write!(f, "{}/{}ms", self.count, self.period.as_millis())?,
        }
        if self.burst != self.count {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

/// Why a quota string did not parse. Returned by `"100/s".parse::<Quota>()`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaParseError {
    /// There is no `/` between the count and the unit.
    #[error("quota `{input}`: expected `<count>/<unit>`, such as `100/s`")]
    MissingSlash {
        /// The rejected input.
        input: String,
    },
    /// The count is not a whole number from 1 to 4294967295.
    #[error("quota `{input}`: the count must be a whole number from 1 to 4294967295")]
    InvalidCount {
        /// The rejected input.
        input: String,
    },
    /// The unit is not one of `s`, `sec`, `second`, `min`, `minute`, `h`, `hour`.
    #[error("quota `{input}`: unknown unit; use s, min or h")]
    InvalidUnit {
        /// The rejected input.
        input: String,
    },
    /// Something after the unit is not `burst <n>` with `n` from 1 to 4294967295.
    #[error("quota `{input}`: expected `burst <n>` after the unit, n from 1 to 4294967295")]
    InvalidBurst {
        /// The rejected input.
        input: String,
    },
}

/// Parses `<count>/<unit>` with an optional ` burst <n>`.
///
/// Units: `s`, `sec`, `second` (per second); `m`, `min`, `minute` (per minute); `h`, `hr`,
/// `hour` (per hour); a plural `s` is accepted. Spaces around the parts are ignored.
///
/// ```
/// use covet_layers::rate_limit::Quota;
///
/// assert_eq!("100/s".parse(), Ok(Quota::per_second(100)));
/// assert_eq!("6000/min".parse(), Ok(Quota::per_minute(6000)));
/// assert_eq!("10/h".parse(), Ok(Quota::per_hour(10)));
/// assert_eq!("100/s burst 20".parse(), Ok(Quota::per_second(100).burst(20)));
/// assert!("0/s".parse::<Quota>().is_err());
/// ```
impl FromStr for Quota {
    type Err = QuotaParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let owned = || input.to_owned();
        let (count, rest) = input
            .split_once('/')
            .ok_or_else(|| QuotaParseError::MissingSlash { input: owned() })?;
        let count = parse_positive(count.trim())
            .ok_or_else(|| QuotaParseError::InvalidCount { input: owned() })?;
        let mut words = rest.split_ascii_whitespace();
        let unit = words
            .next()
            .ok_or_else(|| QuotaParseError::InvalidUnit { input: owned() })?;
        let period = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => Duration::from_secs(1),
            "m" | "min" | "mins" | "minute" | "minutes" => Duration::from_secs(60),
            "h" | "hr" | "hrs" | "hour" | "hours" => Duration::from_secs(3600),
            _ => return Err(QuotaParseError::InvalidUnit { input: owned() }),
        };
        let mut quota = Quota::per(count, period);
        match (words.next(), words.next(), words.next()) {
            (None, _, _) => {}
            (Some(word), Some(n), None) if word.eq_ignore_ascii_case("burst") => {
                let burst = parse_positive(n)
                    .ok_or_else(|| QuotaParseError::InvalidBurst { input: owned() })?;
                quota = quota.burst(burst);
            }
            _ => return Err(QuotaParseError::InvalidBurst { input: owned() }),
        }
        Ok(quota)
    }
}

fn parse_positive(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|n| *n > 0)
}

/// The outcome of one GCRA step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Whether the request is allowed.
    pub(crate) allowed: bool,
    /// The new theoretical arrival time to store (only meaningful when allowed).
    pub(crate) new_tat: u64,
    /// Requests still allowed right now after this one.
    pub(crate) remaining: u64,
    /// Time until the next request would be allowed (0 when allowed), nanoseconds.
    pub(crate) retry_after: u64,
    /// Time until the bucket is full again, nanoseconds.
    pub(crate) reset_after: u64,
}

/// One GCRA step: `tat` is the stored theoretical arrival time (or `None` for a new key),
/// `now` the current time, `interval` the emission interval and `burst` the burst, all in the
/// same unit.
pub(crate) fn gcra(tat: Option<u64>, now: u64, interval: u64, burst: u64) -> Gcra {
    let tolerance = interval.saturating_mul(burst);
    let tat = tat.map_or(now, |tat| tat.max(now));
    let new_tat = tat.saturating_add(interval);
    let ahead = new_tat - now;
    if ahead > tolerance {
        Gcra {
            allowed: false,
            new_tat: tat,
            remaining: 0,
            retry_after: ahead - tolerance,
            reset_after: tat - now,
        }
    } else {
        Gcra {
            allowed: true,
            new_tat,
            remaining: (tolerance - ahead) / interval,
            retry_after: 0,
            reset_after: ahead,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_burst() {
        assert_eq!("100/s".parse(), Ok(Quota::per_second(100)));
        assert_eq!(" 6000 / minute ".parse(), Ok(Quota::per_minute(6000)));
        assert_eq!("10/HOURS".parse(), Ok(Quota::per_hour(10)));
        assert_eq!("5/m burst 2".parse(), Ok(Quota::per_minute(5).burst(2)));
        for bad in [
            "",
            "100",
            "/s",
            "x/s",
            "-1/s",
            "0/s",
            "1/day",
            "1/s burst",
            "1/s burst 0",
            "1/s burst 2 3",
            "1/s bust 2",
            "4294967296/s",
            "+1/s",
        ] {
            assert!(bad.parse::<Quota>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            "1/day".parse::<Quota>().unwrap_err().to_string(),
            "quota `1/day`: unknown unit; use s, min or h"
        );
    }

    #[test]
    fn display_round_trips() {
        for q in [
            Quota::per_second(100),
            Quota::per_minute(5).burst(2),
            Quota::per_hour(10),
        ] {
            assert_eq!(q.to_string().parse(), Ok(q));
        }
    }

    #[test]
    fn gcra_burst_then_steady_rate_then_recovery() {
        // 10 per second (interval 100), burst 3.
        let (interval, burst) = (100, 3);
        let mut tat = None;
        let mut step = |now: u64| {
            let g = gcra(tat, now, interval, burst);
            if g.allowed {
                tat = Some(g.new_tat);
            }
            g
        };
        // Burst: three at t=0, remaining 2, 1, 0; the fourth waits exactly one interval.
        assert_eq!(step(0).remaining, 2);
        assert_eq!(step(0).remaining, 1);
        assert_eq!(step(0).remaining, 0);
        let limited = step(0);
        assert!(!limited.allowed);
        assert_eq!(limited.retry_after, 100);
        assert_eq!(limited.reset_after, 300);
        // One nanosecond early is still too early; on time is allowed.
        assert!(!step(99).allowed);
        assert!(step(100).allowed);
        // Steady rate: exactly one per interval.
        for k in 2..50 {
            assert!(step(k * 100).allowed, "request at {}", k * 100);
            assert!(!step(k * 100 + 1).allowed);
        }
        // Recovery: after an idle spell the full burst is back, no more.
        let idle = 49 * 100 + 300;
        assert_eq!(step(idle).remaining, 2);
        assert!(step(idle).allowed);
        assert!(step(idle).allowed);
        assert!(!step(idle).allowed);
    }
}
