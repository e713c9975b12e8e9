//! OpenMetrics 1.0 text, rewritten from the Prometheus text format 0.0.4 that prometheus's
//! `TextEncoder` writes.
//!
//! The differences handled: a counter family's name loses its `_total` suffix in `# TYPE` and
//! `# HELP` (its samples keep or gain it), `untyped` is `unknown`, `"` is escaped in help text,
//! sample values and the `le`/`quantile` label values take their canonical float forms
//! (`1.0`, `+Inf`), timestamps are seconds instead of milliseconds, and `# EOF` ends the text.
//! Label values are escaped the same way in both formats and are copied as they are.

use std::fmt::Write as _;

/// The kind of the family whose samples follow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Other,
}

/// Rewrites `text` (Prometheus text format 0.0.4, as prometheus's `TextEncoder` writes it)
/// as OpenMetrics 1.0.
pub(crate) fn from_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8 + 8);
    let mut help: Option<(&str, &str)> = None;
    let mut kind = Kind::Other;
    let mut base = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ');
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, type_name) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let om_type = match type_name {
                "counter" => "counter",
                "gauge" => "gauge",
                "histogram" => "histogram",
                "summary" => "summary",
                _ => "unknown",
            };
            kind = if om_type == "counter" {
                Kind::Counter
            } else {
                Kind::Other
            };
            base = match kind {
                Kind::Counter => name.strip_suffix("_total").unwrap_or(name),
                Kind::Other => name,
            };
            let _ = writeln!(out, "# TYPE {base} {om_type}");
            if let Some((help_name, help_text)) = help.take()
                && help_name == name
            {
                out.push_str("# HELP ");
                out.push_str(base);
                out.push(' ');
                // The text format escapes `\` and line feeds already; OpenMetrics also wants `"`.
                for c in help_text.chars() {
                    if c == '"' {
                        out.push_str("\\\"");
                    } else {
                        out.push(c);
                    }
                }
                out.push('\n');
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        sample(line, kind, base, &mut out);
    }
    out.push_str("# EOF\n");
    out
}

/// One sample line: `name[{labels}] value[ timestamp_ms]`.
fn sample(line: &str, kind: Kind, base: &str, out: &mut String) {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if kind == Kind::Counter && (name == base || name.strip_suffix("_total") == Some(base)) {
        out.push_str(base);
        out.push_str("_total");
    } else {
        out.push_str(name);
    }
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        let end = labels(rest, out);
        rest = &rest[end..];
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().unwrap_or("NaN");
    out.push(' ');
    out.push_str(&canonical_number(value));
    if let Some(ms) = fields.next().and_then(|ts| ts.parse::<i64>().ok()) {
        let _ = write!(out, " {}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    }
    out.push('\n');
}

/// Copies the label set at the start of `text` (from `{` to its `}`) to `out`, the `le` and
/// `quantile` values in canonical form; returns the length read.
fn labels(text: &str, out: &mut String) -> usize {
    let bytes = text.as_bytes();
    out.push('{');
    let mut i = 1;
    let mut first = true;
    while i < bytes.len() && bytes[i] != b'}' {
        if bytes[i] == b',' {
            i += 1;
            continue;
        }
        let eq = text[i..].find('=').map_or(bytes.len(), |p| i + p);
        let name = &text[i..eq];
        // The value: from the opening quote to the closing one, skipping escaped characters.
        let start = eq + 2;
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let end = end.min(bytes.len());
        let value = &text[start.min(end)..end];
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        if name == "le" || name == "quantile" {
            out.push_str(&canonical_number(value));
        } else {
            out.push_str(value);
        }
        out.push('"');
        i = end + 1;
    }
    out.push('}');
    (i + 1).min(bytes.len())
}

/// The canonical form of a number written by the text encoder (`1`, `0.5`, `inf`, `+Inf`).
fn canonical_number(text: &str) -> String {
    match text.parse::<f64>() {
        Ok(value) => canonical_float(value),
        Err(_) => text.to_owned(),
    }
}

/// The canonical OpenMetrics form of a float (`1.0`, `0.005`, `1.0e+06`, `+Inf`, `NaN`), as
/// Prometheus's own clients write it.
fn canonical_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let repr = format!("{value:?}");
    if repr.contains('e') {
        return repr.replace("e", "e+").replace("e+-", "e-");
    }
    match repr.find('.') {
        Some(dot) if value > 0.0 && dot > 6 => {
            let digits: String = repr.chars().filter(char::is_ascii_digit).collect();
            let trimmed = digits.trim_end_matches('0');
            let (first, rest) = trimmed.split_at(1);
            let rest = if rest.is_empty() { "0" } else { rest };
            format!("{first}.{rest}e+{:02}", dot - 1)
        }
        _ => repr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_take_their_canonical_openmetrics_form() {
        let cases = [
            (1.0, "1.0"),
            (0.005, "0.005"),
            (2.5, "2.5"),
            (100.0, "100.0"),
            (1_000_000.0, "1.0e+06"),
            (10_000_000.0, "1.0e+07"),
            (123_456_789.0, "1.23456789e+08"),
            (0.0, "0.0"),
            (-3.0, "-3.0"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(canonical_float(value), expected, "{value}");
        }
    }

    #[test]
    fn text_is_rewritten_family_by_family() {
        let text = "\
# HELP jobs_total Jobs \\\\ \"done\".\n\
# TYPE jobs_total counter\n\
jobs_total{queue=\"a,b}\\\"c\"} 3\n\
# TYPE plain counter\n\
plain 1\n\
# HELP latency_seconds Latency.\n\
# TYPE latency_seconds histogram\n\
latency_seconds_bucket{le=\"0.5\"} 1\n\
latency_seconds_bucket{le=\"1\"} 2\n\
latency_seconds_bucket{le=\"+Inf\"} 2\n\
latency_seconds_sum 1.25\n\
latency_seconds_count 2\n\
# TYPE temperature gauge\n\
temperature{room=\"x\"} -inf 1700000000123\n";
        let expected = "\
# TYPE jobs counter\n\
# HELP jobs Jobs \\\\ \\\"done\\\".\n\
jobs_total{queue=\"a,b}\\\"c\"} 3.0\n\
# TYPE plain counter\n\
plain_total 1.0\n\
# TYPE latency_seconds histogram\n\
# HELP latency_seconds Latency.\n\
latency_seconds_bucket{le=\"0.5\"} 1.0\n\
latency_seconds_bucket{le=\"1.0\"} 2.0\n\
latency_seconds_bucket{le=\"+Inf\"} 2.0\n\
latency_seconds_sum 1.25\n\
latency_seconds_count 2.0\n\
# TYPE temperature gauge\n\
temperature{room=\"x\"} -Inf 1700000000.123\n\
# EOF\n";
        assert_eq!(from_text(text), expected);
    }
}
