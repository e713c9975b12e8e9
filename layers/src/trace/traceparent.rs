//! Strict W3C `traceparent` validation and the extractor that hides a rejected trace context.

use http::HeaderMap;
use opentelemetry::propagation::Extractor;

/// The W3C `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

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
    const LEN: usize = 55;
    if value.len() < LEN {
        return false;
    }
    let (head, rest) = value.split_at(LEN);
    let version = &head[0..2];
    let trace_id = &head[3..35];
    let parent_id = &head[36..52];
    let flags = &head[53..55];
    let lower_hex = |s: &[u8]| s.iter().all(|&b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let all_zero = |s: &[u8]| s.iter().all(|&b| b == b'0');
    head[2] == b'-'
        && head[35] == b'-'
        && head[52] == b'-'
        && lower_hex(version)
        && version != b"ff"
        && lower_hex(trace_id)
        && !all_zero(trace_id)
        && lower_hex(parent_id)
        && !all_zero(parent_id)
        && lower_hex(flags)
        && match rest.first() {
            None => true,
            // Version 00 has exactly four fields; later versions may append `-…`.
            Some(b'-') => version != b"00",
            Some(_) => false,
        }
}

/// Whether the request carries exactly one valid `traceparent` header.
pub(crate) fn has_valid_traceparent(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(TRACEPARENT).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => is_valid_traceparent(value.as_bytes()),
        _ => false,
    }
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
        self.headers.get(key).and_then(|v| v.to_str().ok())
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

    #[test]
    fn a_repeated_header_is_rejected() {
        let mut headers = HeaderMap::new();
        headers.append(TRACEPARENT, VALID.parse().unwrap());
        assert!(has_valid_traceparent(&headers));
        headers.append(TRACEPARENT, VALID.parse().unwrap());
        assert!(!has_valid_traceparent(&headers));
    }
}
