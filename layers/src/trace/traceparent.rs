//! Strict W3C `traceparent` validation (W3C Trace Context Level 1 and Level 2).

/// The W3C `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

/// Whether `value` is a well-formed W3C `traceparent` that may be continued.
///
/// The form is `{version}-{trace-id}-{parent-id}-{flags}`: 2, 32, 16 and 2 **lower-case** hex
/// digits, with optional spaces and tabs around the value. Rejected: version `ff`; an all-zero
/// trace id or parent id; upper-case or non-hex digits; any field of the wrong length; a
/// version `00` value with anything after the flags. A future version (`01`–`fe`) may carry
/// more fields after a `-`, which are ignored ("Versioning of traceparent").
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

/// The `sampled` trace flag (W3C Trace Context Level 1).
pub(crate) const FLAG_SAMPLED: u8 = 0x01;
/// The `random` trace flag: the trace id's right-most 7 bytes are random (W3C Trace Context
/// Level 2). It is kept when a trace is continued.
pub(crate) const FLAG_RANDOM: u8 = 0x02;

/// The trace id, parent id and flags of a valid `traceparent` (see [`is_valid_traceparent`]),
/// checked and decoded in one pass. Of the flags, only those the specification defines
/// (`sampled`, `random`) are kept: the others "MUST be set to zero".
pub(crate) fn parse_traceparent(value: &[u8]) -> Option<(u128, u64, u8)> {
    const LEN: usize = 55;
    let value = trim_ows(value);
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
    valid.then_some((
        trace_id,
        parent_id as u64,
        flags as u8 & (FLAG_SAMPLED | FLAG_RANDOM),
    ))
}

/// Optional white space around a header value: spaces and horizontal tabs.
fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Writes a version-00 `traceparent` (the highest version this implementation knows, as
/// "Versioning of traceparent" requires when continuing a later version).
pub(crate) fn format_traceparent(trace_id: u128, span_id: u64, flags: u8) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    for i in 0..32 {
        out[3 + i] = HEX[((trace_id >> (124 - 4 * i)) & 0xf) as usize];
    }
    out[35] = b'-';
    for i in 0..16 {
        out[36 + i] = HEX[((span_id >> (60 - 4 * i)) & 0xf) as usize];
    }
    out[52] = b'-';
    out[53] = HEX[usize::from(flags >> 4)];
    out[54] = HEX[usize::from(flags & 0xf)];
    // Every byte is an ASCII hex digit or a dash.
    String::from_utf8(out.to_vec()).unwrap_or_default()
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
    fn w3c_versioning_of_traceparent_future_versions_parse_the_known_fields() {
        let cc = "cc-12345678901234567890123456789012-1234567890123456-01";
        assert!(is_valid_traceparent(cc.as_bytes()));
        assert!(is_valid_traceparent(
            format!("{cc}-what-the-future-will-be-like").as_bytes()
        ));
        assert!(!is_valid_traceparent(
            format!("{cc}.what-the-future-will-be-like").as_bytes()
        ));
        assert!(!is_valid_traceparent(
            b"00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like"
        ));
        assert!(!is_valid_traceparent(
            b"00-12345678901234567890123456789012-1234567890123456-01."
        ));
    }

    #[test]
    fn w3c_header_values_may_have_white_space_around_them() {
        for padded in [" {}", "\t{}", "{} ", "{}\t", "\t {} \t"] {
            let value = padded.replace("{}", VALID);
            assert!(is_valid_traceparent(value.as_bytes()), "{value:?}");
        }
        assert!(!is_valid_traceparent(format!("{VALID}\n").as_bytes()));
    }

    #[test]
    fn w3c_trace_flags_keep_sampled_and_random_and_zero_the_rest() {
        let flags = |f: &str| {
            parse_traceparent(
                format!(
                    "00-{}-00f067aa0ba902b7-{f}",
                    "4bf92f3577b34da6a3ce929d0e0e4736"
                )
                .as_bytes(),
            )
            .unwrap()
            .2
        };
        assert_eq!(flags("01"), FLAG_SAMPLED);
        assert_eq!(flags("02"), FLAG_RANDOM);
        assert_eq!(flags("03"), FLAG_SAMPLED | FLAG_RANDOM);
        assert_eq!(flags("ff"), FLAG_SAMPLED | FLAG_RANDOM);
        assert_eq!(flags("08"), 0);
    }

    #[test]
    fn written_traceparents_are_version_00_and_read_back() {
        let written = format_traceparent(0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 3);
        assert_eq!(
            written,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
        );
        assert_eq!(
            parse_traceparent(written.as_bytes()),
            Some((0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 3))
        );
    }
}
