//! Strict W3C `traceparent` validation and the extractor that hides a rejected trace context.

use std::str::FromStr as _;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    propagation::Extractor,
    trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState},
};

/// The W3C `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

pub(crate) static TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);
pub(crate) static TRACESTATE_HEADER: HeaderName = HeaderName::from_static(TRACESTATE);
pub(crate) static BAGGAGE_HEADER: HeaderName = HeaderName::from_static("baggage");

/// Whether `value` is a well-formed W3C `traceparent` that may be continued.
///
/// The form is `{version}-{trace-id}-{parent-id}-{flags}`: 2, 32, 16 and 2 **lower-case** hex
/// digits. Rejected: version `ff`; an all-zero trace id or parent id; upper-case or non-hex
/// digits; any field of the wrong length; a version `00` value with anything after the flags.
/// A future version (`01`–`fe`) may carry more fields after a `-`, which are ignored.
///
/// OpenTelemetry's own propagator parses the fields as numbers, so it accepts short fields
/// (`00-abc-def-01`) and signs; the [`TraceLayer`](super::TraceLayer) checks with this function
/// first and starts a new trace when it fails.
///
/// ```
/// use covet_layers::trace::is_valid_traceparent;
///
/// assert!(is_valid_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent(b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent(b"00-abc-def-01"));
/// ```
pub fn is_valid_traceparent(value: &[u8]) -> bool {
    parse_traceparent(value).is_some()
}

/// The value of each lower-case hex digit, and `0xff` for every other byte.
static HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// The value of `digits`, if they are all lower-case hex digits.
#[inline]
fn lower_hex(digits: &[u8]) -> Option<u128> {
    let mut value = 0u128;
    let mut bad = 0u8;
    for &d in digits {
        let nibble = HEX_VALUE[usize::from(d)];
        bad |= nibble & 0xf0;
        value = (value << 4) | u128::from(nibble & 0x0f);
    }
    (bad == 0).then_some(value)
}

/// The trace id, parent id and flags of a valid `traceparent` (see [`is_valid_traceparent`]),
/// checked and decoded in one pass.
pub(crate) fn parse_traceparent(value: &[u8]) -> Option<(u128, u64, u8)> {
    const LEN: usize = 55;
    if value.len() < LEN {
        return None;
    }
    let (head, rest) = value.split_at(LEN);
    if head[2] != b'-' || head[35] != b'-' || head[52] != b'-' {
        return None;
    }
    let version = lower_hex(&head[0..2])?;
    let trace_id = lower_hex(&head[3..35])?;
    let parent_id = lower_hex(&head[36..52])?;
    let flags = lower_hex(&head[53..55])?;
    let valid = version != 0xff
        && trace_id != 0
        && parent_id != 0
        && match rest.first() {
            None => true,
            // Version 00 has exactly four fields; later versions may append `-…`.
            Some(b'-') => version != 0,
            Some(_) => false,
        };
    valid.then_some((trace_id, parent_id as u64, flags as u8))
}

/// The remote span context of a parsed `traceparent` (see [`parse_traceparent`]), with the
/// `tracestate` (an unparsable one is dropped), as OpenTelemetry's W3C propagator reads them:
/// of the flags only `sampled` is kept.
pub(crate) fn remote_span_context(
    (trace_id, parent_id, flags): (u128, u64, u8),
    tracestate: Option<&HeaderValue>,
) -> SpanContext {
    let trace_id = TraceId::from(trace_id);
    let span_id = SpanId::from(parent_id);
    let flags = TraceFlags::new(flags) & TraceFlags::SAMPLED;
    let state = tracestate
        .and_then(|v| v.to_str().ok())
        .and_then(|v| TraceState::from_str(v).ok())
        .unwrap_or_default();
    SpanContext::new(trace_id, span_id, flags, true, state)
}

/// Reads request headers for a propagator, hiding `traceparent` and `tracestate` when the
/// incoming trace context was rejected (so `baggage` is still read, the trace context never).
pub(crate) struct RequestExtractor<'a> {
    pub(crate) headers: &'a HeaderMap,
    pub(crate) hide_trace_context: bool,
}

impl Extractor for RequestExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if self.hide_trace_context
            && (key.eq_ignore_ascii_case(TRACEPARENT) || key.eq_ignore_ascii_case(TRACESTATE))
        {
            return None;
        }
        let value = match key {
            TRACEPARENT => self.headers.get(&TRACEPARENT_HEADER),
            TRACESTATE => self.headers.get(&TRACESTATE_HEADER),
            "baggage" => self.headers.get(&BAGGAGE_HEADER),
            other => self.headers.get(other),
        };
        value.and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.headers
            .keys()
            .map(|k| k.as_str())
            .filter(|k| !(self.hide_trace_context && (*k == TRACEPARENT || *k == TRACESTATE)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_values_are_accepted() {
        assert!(is_valid_traceparent(VALID.as_bytes()));
        assert!(is_valid_traceparent(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        ));
        // A future version may append fields.
        assert!(is_valid_traceparent(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
    }

    #[test]
    fn invalid_values_are_rejected() {
        for bad in [
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0G",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-abc-def-01",
            "",
        ] {
            assert!(!is_valid_traceparent(bad.as_bytes()), "{bad} accepted");
        }
    }

    /// The fast path reads a checked `traceparent` exactly as OpenTelemetry's W3C propagator
    /// does.
    #[test]
    fn the_fast_path_matches_the_w3c_propagator() {
        use opentelemetry::{propagation::TextMapPropagator as _, trace::TraceContextExt as _};
        use opentelemetry_sdk::propagation::TraceContextPropagator;

        let propagator = TraceContextPropagator::new();
        for traceparent in [
            VALID,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-03",
            "00-00000000000000000000000000000001-0000000000000001-fe",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-future",
        ] {
            for tracestate in [
                None,
                Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
                Some("=bad="),
            ] {
                let mut headers = HeaderMap::new();
                headers.insert(&TRACEPARENT_HEADER, traceparent.parse().unwrap());
                if let Some(state) = tracestate {
                    headers.insert(&TRACESTATE_HEADER, state.parse().unwrap());
                }
                let extractor = RequestExtractor {
                    headers: &headers,
                    hide_trace_context: false,
                };
                let expected = propagator.extract(&extractor).span().span_context().clone();
                assert!(expected.is_valid(), "{traceparent}");
                let ours = remote_span_context(
                    parse_traceparent(traceparent.as_bytes()).unwrap(),
                    headers.get(&TRACESTATE_HEADER),
                );
                assert_eq!(ours, expected, "{traceparent} {tracestate:?}");
            }
        }
    }
}
