//! W3C `tracestate`: the vendor list that travels with `traceparent`, checked against the
//! grammar of W3C Trace Context Level 1 (the Recommendation, and what the W3C test suite
//! enforces) before it is continued.
//!
//! The rules, each tested below under the name of the section it comes from:
//! - "tracestate Header Field Values": several `tracestate` header lines are one list, in
//!   order (RFC 9110 §5.3); empty and whitespace-only members are allowed and skipped, so an
//!   empty header is no tracestate at all; spaces and tabs around members are ignored; at most
//!   32 members;
//! - "Key": a simple key (`a-z` then up to 255 of `a-z 0-9 _ - * /`) or a multi-tenant key
//!   `tenant@system` (tenant: `a-z 0-9` then up to 240 more, system: `a-z` then up to 13 more);
//! - "Value": 1–256 printable ASCII characters other than `,` and `=`, not ending in a space
//!   (leading spaces belong to the value);
//! - "Combined Header Value": a key appears once.
//!
//! A list that breaks any rule is dropped whole: it is never forwarded malformed or cut short.

use std::sync::Arc;

use opentelemetry::trace::TraceState;

/// The most members a `tracestate` list may have.
pub(crate) const MAX_MEMBERS: usize = 32;

/// A checked `tracestate` list, joined into one header value (`k1=v1,k2=v2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TraceStateList {
    pub(crate) header: Arc<str>,
}

impl TraceStateList {
    /// The list as OpenTelemetry's `TraceState`, when OpenTelemetry can represent it.
    ///
    /// OpenTelemetry 0.33 rejects some keys the specification allows (a 14-character system id
    /// in `tenant@system`); such a list is carried beside the span context instead (see
    /// the incoming context).
    pub(crate) fn to_otel(&self) -> Option<TraceState> {
        TraceState::from_key_value(self.header.split(',').filter_map(|m| m.split_once('='))).ok()
    }
}

#[inline]
fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// Whether `key` is a simple key or a multi-tenant key ("Key").
pub(crate) fn is_valid_key(key: &[u8]) -> bool {
    match key.iter().position(|&b| b == b'@') {
        None => {
            (1..=256).contains(&key.len())
                && key[0].is_ascii_lowercase()
                && key.iter().all(|&b| is_key_char(b))
        }
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            (1..=241).contains(&tenant.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant.iter().all(|&b| is_key_char(b))
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && system.iter().all(|&b| is_key_char(b))
        }
    }
}

/// Whether `value` is a list-member value ("Value"): 1–256 of `%x20-2B / %x2D-3C / %x3E-7E`,
/// the last one not a space.
pub(crate) fn is_valid_value(value: &[u8]) -> bool {
    (1..=256).contains(&value.len())
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && value.last() != Some(&b' ')
}

/// Optional white space around list members: spaces and horizontal tabs.
fn trim_ows(mut member: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = member {
        member = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = member {
        member = rest;
    }
    member
}

/// Why a `tracestate` list was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// More than [`MAX_MEMBERS`] members.
    TooManyMembers,
    /// A member without `=`, or with a key or value outside the grammar.
    InvalidMember,
    /// A key sent twice.
    DuplicateKey,
}

/// Reads the `tracestate` header lines of one request as one list.
///
/// `Ok(None)`: no members (no header, or only empty ones). `Err`: the list breaks a rule and
/// must be dropped whole.
pub(crate) fn parse<'a, I>(lines: I) -> Result<Option<TraceStateList>, Rejected>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut members: Vec<&'a [u8]> = Vec::new();
    let mut keys: Vec<&'a [u8]> = Vec::new();
    for line in lines {
        for member in line.split(|&b| b == b',') {
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let Some(eq) = member.iter().position(|&b| b == b'=') else {
                return Err(Rejected::InvalidMember);
            };
            let (key, value) = (&member[..eq], &member[eq + 1..]);
            if !is_valid_key(key) || !is_valid_value(value) {
                return Err(Rejected::InvalidMember);
            }
            if keys.contains(&key) {
                return Err(Rejected::DuplicateKey);
            }
            if members.len() == MAX_MEMBERS {
                return Err(Rejected::TooManyMembers);
            }
            keys.push(key);
            members.push(member);
        }
    }
    if members.is_empty() {
        return Ok(None);
    }
    let mut header = String::with_capacity(members.iter().map(|m| m.len() + 1).sum());
    for member in members {
        if !header.is_empty() {
            header.push(',');
        }
        // Every byte was checked to be printable ASCII.
        header.push_str(std::str::from_utf8(member).unwrap_or_default());
    }
    Ok(Some(TraceStateList {
        header: header.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Option<String>, Rejected> {
        lines(&[line])
    }

    fn lines(lines: &[&str]) -> Result<Option<String>, Rejected> {
        parse(lines.iter().map(|l| l.as_bytes())).map(|l| l.map(|l| l.header.to_string()))
    }

    #[test]
    fn w3c_field_values_several_header_lines_are_one_list_in_order() {
        assert_eq!(
            lines(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"])
                .unwrap()
                .unwrap(),
            "foo=1,bar=2,rojo=1,congo=2,baz=3"
        );
    }

    #[test]
    fn w3c_field_values_empty_headers_and_members_are_skipped() {
        assert_eq!(one(""), Ok(None));
        assert_eq!(one(" \t "), Ok(None));
        assert_eq!(lines(&["foo=1", ""]).unwrap().unwrap(), "foo=1");
        assert_eq!(lines(&["", "foo=1"]).unwrap().unwrap(), "foo=1");
        assert_eq!(one("foo=1,,bar=2").unwrap().unwrap(), "foo=1,bar=2");
    }

    #[test]
    fn w3c_field_values_white_space_around_members_is_ignored() {
        assert_eq!(
            one("foo=1 \t , \t bar=2, \t baz=3").unwrap().unwrap(),
            "foo=1,bar=2,baz=3"
        );
        assert_eq!(
            one("foo=1\t \t,\t \tbar=2,\t \tbaz=3").unwrap().unwrap(),
            "foo=1,bar=2,baz=3"
        );
    }

    #[test]
    fn w3c_field_values_thirty_two_members_are_kept_and_thirty_three_drop_the_list() {
        let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
        let kept = one(&members[..32].join(",")).unwrap().unwrap();
        assert_eq!(kept.split(',').count(), 32);
        assert_eq!(one(&members.join(",")), Err(Rejected::TooManyMembers));
        // Also when the members come in several header lines.
        let (first, rest) = members.split_at(17);
        assert_eq!(
            lines(&[&first.join(","), &rest.join(",")]),
            Err(Rejected::TooManyMembers)
        );
    }

    #[test]
    fn w3c_combined_header_value_a_duplicated_key_drops_the_list() {
        assert_eq!(one("foo=1,foo=1"), Err(Rejected::DuplicateKey));
        assert_eq!(one("foo=1,foo=2"), Err(Rejected::DuplicateKey));
        assert_eq!(lines(&["foo=1", "foo=1"]), Err(Rejected::DuplicateKey));
    }

    #[test]
    fn w3c_key_up_to_256_characters_and_tenant_at_system() {
        let simple = "z".repeat(256);
        assert!(one(&format!("foo=1,{simple}=1")).unwrap().is_some());
        assert!(one(&format!("foo=1,{}=1", "z".repeat(257))).is_err());

        let tenant = "t".repeat(241);
        let system = "v".repeat(14);
        let listed = one(&format!("foo=1,{tenant}@{system}=1")).unwrap().unwrap();
        assert!(listed.contains(&format!("{tenant}@{system}=1")));
        assert!(one(&format!("foo=1,{}@{system}=1", "t".repeat(242))).is_err());
        assert!(one(&format!("foo=1,{tenant}@{}=1", "v".repeat(15))).is_err());
    }

    #[test]
    fn w3c_key_every_allowed_character() {
        assert!(
            one("abcdefghijklmnopqrstuvwxyz0123456789_-*/=1")
                .unwrap()
                .is_some()
        );
        assert!(
            one("abcdefghijklmnopqrstuvwxyz0123456789_-*/@a-z0-9_-*/=1")
                .unwrap()
                .is_some()
        );
        // A tenant id may start with a digit; a simple key and a system id may not.
        assert!(one("0tenant@system=1").unwrap().is_some());
        assert!(one("0foo=1").is_err());
        assert!(one("tenant@0system=1").is_err());
    }

    #[test]
    fn w3c_key_outside_the_grammar_drops_the_list() {
        for bad in [
            "foo =1",
            "FOO=1",
            "foo.bar=1",
            "=1",
            "foo@=1,bar=2",
            "@foo=1,bar=2",
            "foo@@bar=1,bar=2",
            "foo@bar@baz=1,bar=2",
            "foo",
        ] {
            assert_eq!(one(bad), Err(Rejected::InvalidMember), "{bad:?}");
        }
    }

    #[test]
    fn w3c_value_every_allowed_character() {
        let value: String = (0x20u8..=0x7e)
            .filter(|&b| b != b',' && b != b'=')
            .map(char::from)
            .collect();
        let listed = one(&format!("foo={value}")).unwrap().unwrap();
        assert_eq!(listed, format!("foo={value}"));
        // A value may start with spaces: only the member's trailing white space is optional.
        assert_eq!(one("foo=  1").unwrap().unwrap(), "foo=  1");
    }

    #[test]
    fn w3c_value_outside_the_grammar_drops_the_list() {
        let long = format!("foo={}", "v".repeat(257));
        for bad in [
            "foo=bar=baz",
            "foo=,bar=3",
            "foo=\u{7f}",
            "foo=é",
            long.as_str(),
        ] {
            assert_eq!(one(bad), Err(Rejected::InvalidMember), "{bad:?}");
        }
        assert!(one(&format!("foo={}", "v".repeat(256))).unwrap().is_some());
    }

    #[test]
    fn lists_otel_cannot_hold_are_still_valid() {
        let list = parse([format!("{}@{}=1", "t".repeat(241), "v".repeat(14)).as_bytes()])
            .unwrap()
            .unwrap();
        // OpenTelemetry 0.33 caps the system id at 13 characters.
        assert!(list.to_otel().is_none());
        let list = parse([b"foo=1,bar=2".as_slice()]).unwrap().unwrap();
        assert_eq!(list.to_otel().unwrap().header(), "foo=1,bar=2");
    }
}
