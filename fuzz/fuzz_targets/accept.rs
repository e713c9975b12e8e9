//! `Accept` negotiation for `/metrics` (`Format::negotiate`) and `/health*`
//! (`covet_health::service::wants_health_json`).
//!
//! Properties: no panic; OpenMetrics (resp. health+json) is chosen only when the header names
//! it; the choice does not depend on the order of the media ranges (up to the 32 ranges
//! `/metrics` reads); the health answer is the same whether the ranges come in one header
//! line or one line each (for ASCII headers: a line with other bytes is ignored as a whole).
#![no_main]

use covet_health::service::wants_health_json;
use covet_layers::metrics::Format;
use http::{HeaderMap, HeaderValue, header::ACCEPT};
use libfuzzer_sys::fuzz_target;

fn health(lines: &[&str]) -> Option<bool> {
    let mut headers = HeaderMap::new();
    for line in lines {
        headers.append(ACCEPT, HeaderValue::from_str(line).ok()?);
    }
    Some(wants_health_json(&headers))
}

fuzz_target!(|data: &str| {
    let ranges: Vec<&str> = data.split(',').collect();
    let reversed = ranges.iter().rev().copied().collect::<Vec<_>>().join(",");
    let lower = data.to_ascii_lowercase();

    let format = Format::negotiate(Some(data));
    if format == Format::OpenMetrics {
        assert!(lower.contains("application/openmetrics-text"), "{data:?}");
    }
    if ranges.len() <= 32 {
        assert_eq!(Format::negotiate(Some(&reversed)), format, "{data:?}");
    }

    let Some(wants) = health(&[data]) else {
        return;
    };
    if wants {
        assert!(lower.contains("application/health+json"), "{data:?}");
    }
    assert_eq!(health(&[&reversed]), Some(wants), "{data:?}");
    // A line with bytes outside visible ASCII is ignored as a whole (as `/metrics` does), so
    // splitting one would change which ranges are read.
    if !data.is_ascii() {
        return;
    }
    if let Some(split) = health(&ranges) {
        assert_eq!(split, wants, "one line per range differs: {data:?}");
    }
});
