//! Helpers shared by the unit tests: read a registry as a scrape would, and judge an
//! exposition with Prometheus's own `promtool`.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use prometheus::{Encoder, Registry, TextEncoder};

/// The registry in the text exposition format, as a scrape would see it.
pub(crate) fn encode(registry: &Registry) -> String {
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .expect("text encoding");
    String::from_utf8(text).expect("utf-8 exposition")
}

/// The value of the sample written exactly as `series` (name and labels), if present.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().expect("numeric sample"))
}

/// Runs `promtool check metrics` on `text` and fails the test on any finding. Fails (never
/// skips) when `promtool` is missing.
pub(crate) fn assert_promtool_clean(text: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!(
            "`promtool` is required by this test and could not be run ({error}); install \
             Prometheus's tools (Debian/Ubuntu: `apt-get install -y prometheus`) so that \
             `promtool` is on PATH"
        ),
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool output");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "promtool check metrics found problems ({}):\n{findings}\n--- exposition ---\n{text}",
        output.status
    );
}

/// One sample of a text exposition: name, label pairs (unescaped) and value.
pub(crate) type Sample = (String, Vec<(String, String)>, f64);

/// The samples of a text exposition.
pub(crate) fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let mut labels = Vec::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let mut close = body.len();
            while let Some((i, c)) = chars.next() {
                if c == '}' {
                    close = i;
                    break;
                }
                if c == ',' {
                    continue;
                }
                let eq = body[i..].find('=').map(|p| i + p).expect("label =");
                let name = body[i..eq].to_owned();
                while chars.next_if(|(j, _)| *j <= eq + 1).is_some() {}
                let mut value = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some(other) => value.push(other),
                            None => {}
                        },
                        c => value.push(c),
                    }
                }
                labels.push((name, value));
            }
            rest = &body[(close + 1).min(body.len())..];
        }
        let value = rest
            .split_ascii_whitespace()
            .next()
            .expect("a value")
            .parse()
            .expect("numeric sample");
        out.push((line[..name_end].to_owned(), labels, value));
    }
    out
}

/// The value of sample `name` with exactly the label set `labels` (in any order), if the
/// registry has it.
pub(crate) fn sample_of(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(&encode(registry))
        .into_iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, value)| value)
}

#[test]
fn samples_are_read_with_their_escaped_labels() {
    let text = "# TYPE x counter\nx_total{a=\"1,}\\\"2\",b=\"\\\\\"} 3\ny 4.5\n";
    let read = samples(text);
    assert_eq!(read[0].0, "x_total");
    assert_eq!(
        read[0].1,
        [
            ("a".to_owned(), "1,}\"2".to_owned()),
            ("b".to_owned(), "\\".to_owned())
        ]
    );
    assert_eq!(read[0].2, 3.0);
    assert_eq!(read[1], ("y".to_owned(), vec![], 4.5));
}
