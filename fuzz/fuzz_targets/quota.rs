//! Rate-limit quota strings (`--rate-limit 100/s burst 20`): `Quota::from_str`.
//!
//! Properties: no panic; a parsed quota has a count and a burst of at least 1 and a period of
//! one second, minute or hour; it prints as a string that parses back to the same quota; a
//! rejection names the rejected input.
#![no_main]

use std::time::Duration;

use covet_layers::rate_limit::Quota;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    match data.parse::<Quota>() {
        Ok(quota) => {
            assert!(quota.count() >= 1 && quota.burst_size() >= 1, "{data:?}");
            assert!(
                [1, 60, 3600]
                    .map(Duration::from_secs)
                    .contains(&quota.period()),
                "{data:?} -> {:?}",
                quota.period()
            );
            let printed = quota.to_string();
            assert_eq!(
                printed.parse::<Quota>(),
                Ok(quota),
                "{data:?} printed as {printed:?}"
            );
        }
        Err(err) => assert!(err.to_string().contains(data), "{err}"),
    }
});
