//! JSON log lines with `request_id`, `trace_id` and `span_id` as top-level fields.
//!
//! [`JsonLayer`] keeps, in each span's extensions, the `request_id` recorded on it, and writes
//! one JSON object per event: `timestamp`, `level`, `target`, the event's fields (`message`
//! first among them), `span` (the innermost span's name), `request_id` (the event's own, else
//! the innermost span's that has one), and `trace_id`, `span_id` from the current
//! OpenTelemetry context (the server span while a request is handled, or a `tracing` span
//! exported through `tracing-opentelemetry` while it is entered).
//!
//! The line is written straight into a reused per-thread buffer and handed to the writer in one
//! `write_all`: no map of fields, no per-field strings. An event field that has the name of one
//! of the line's own keys (`timestamp`, `level`, `target`, `span`, `trace_id`, `span_id`) is
//! written as `fields.NAME`, so a line never holds a key twice.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
    io::Write as _,
};

use opentelemetry::trace::TraceContextExt;
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{
    fmt::MakeWriter,
    layer::{Context, Layer},
    registry::LookupSpan,
};

use smallvec::SmallVec;

use crate::headers::MAX_REQUEST_ID_LEN;

/// The `request_id` recorded on a span, in the span's extensions. An id of up to
/// [`MAX_REQUEST_ID_LEN`] bytes (every id the request-id layer sets) is kept inline, so keeping
/// it costs the extension's one allocation; a longer value spills to the heap.
struct SpanRequestId(SmallVec<[u8; MAX_REQUEST_ID_LEN]>);

impl SpanRequestId {
    fn as_str(&self) -> &str {
        // Only whole `str`s are ever copied in, so this never takes the fallback.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Write for SpanRequestId {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Records `request_id` fields into span extensions and writes each event as a JSON line to
/// `writer`.
pub(crate) struct JsonLayer<W> {
    writer: W,
}

impl<W> JsonLayer<W> {
    pub(crate) fn new(writer: W) -> Self {
        Self { writer }
    }
}

/// Finds the `request_id` among a span's fields.
struct RequestIdVisitor(Option<SpanRequestId>);

impl Visit for RequestIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "request_id" {
            self.0 = Some(SpanRequestId(SmallVec::from_slice(value.as_bytes())));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "request_id" {
            let mut id = SpanRequestId(SmallVec::new());
            let _ = write!(id, "{value:?}");
            self.0 = Some(id);
        }
    }
}

/// The keys the line writes itself; an event field named like one is prefixed with `fields.`.
const OWN_KEYS: [&str; 6] = [
    "timestamp",
    "level",
    "target",
    "span",
    "trace_id",
    "span_id",
];

thread_local! {
    /// The line being written, reused by every event on the thread.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A line longer than this is not kept as the thread's buffer afterwards.
const KEEP_CAPACITY: usize = 16 * 1024;

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut visitor = RequestIdVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(request_id), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(request_id);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let mut visitor = RequestIdVisitor(None);
        values.record(&mut visitor);
        if let (Some(request_id), Some(span)) = (visitor.0, ctx.span(id)) {
            let mut extensions = span.extensions_mut();
            extensions.remove::<SpanRequestId>();
            extensions.insert(request_id);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let write = |line: &mut String| {
            line.clear();
            if format_line(line, event, &ctx).is_ok() {
                let _ = self
                    .writer
                    .make_writer_for(event.metadata())
                    .write_all(line.as_bytes());
            }
        };
        // Should this thread's buffer be in use (an event raised while a field is formatted,
        // which tracing-core does not deliver today) or gone (an event logged by a thread-local
        // destructor), the line gets a buffer of its own.
        let reused = LINE.try_with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut line) => {
                write(&mut line);
                if line.capacity() > KEEP_CAPACITY {
                    *line = String::new();
                }
                true
            }
            Err(_) => false,
        });
        if reused != Ok(true) {
            write(&mut String::new());
        }
    }
}

/// Writes the whole line of `event`, with its newline, into `line`.
fn format_line<S>(line: &mut String, event: &Event<'_>, ctx: &Context<'_, S>) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    line.push_str("{\"timestamp\":\"");
    write_timestamp(line, std::time::SystemTime::now());
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push_str("\",\"target\":");
    write_str(line, meta.target());

    let mut fields = FieldWriter {
        line,
        request_id: false,
    };
    // `message` first, as readers expect, then the others in their order.
    event.record(&mut Only {
        message: true,
        inner: &mut fields,
    });
    event.record(&mut Only {
        message: false,
        inner: &mut fields,
    });
    let has_request_id = fields.request_id;

    if let Some(scope) = ctx.event_scope(event) {
        let mut request_id_written = has_request_id;
        for (depth, span) in scope.enumerate() {
            if depth == 0 {
                line.push_str(",\"span\":");
                write_str(line, span.name());
            }
            if request_id_written {
                break;
            }
            if let Some(id) = span.extensions().get::<SpanRequestId>() {
                line.push_str(",\"request_id\":");
                write_str(line, id.as_str());
                request_id_written = true;
            }
        }
    }
    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let span_context = span.span_context();
        if span_context.is_valid() {
            write!(
                line,
                ",\"trace_id\":\"{:032x}\",\"span_id\":\"{:016x}\"",
                span_context.trace_id(),
                span_context.span_id()
            )
        } else {
            Ok(())
        }
    })?;
    line.push_str("}\n");
    Ok(())
}

thread_local! {
    /// The last whole second written on this thread, and its RFC 3339 text
    /// (`2026-12-04T18:34:18`): the date is worked out once a second, not once a line.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends `now` as RFC 3339 UTC with microseconds: `2026-12-04T18:34:18.159437Z`.
fn write_timestamp(line: &mut String, now: std::time::SystemTime) {
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let whole_second = || {
        let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        let mut text = String::with_capacity(20);
        // humantime refuses years past 9999; a clock that far off is written as the last
        // second it can name.
        if write!(text, "{}", humantime::format_rfc3339_seconds(whole)).is_err() {
            text = "9999-12-31T23:59:59Z".to_owned();
        }
        // `…T18:34:18Z`: everything but the zone letter.
        text.pop();
        text
    };
    let cached = SECOND.try_with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return false;
        };
        if cache.0 != seconds {
            *cache = (seconds, whole_second());
        }
        line.push_str(&cache.1);
        true
    });
    if cached != Ok(true) {
        line.push_str(&whole_second());
    }
    let micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 7];
    digits[0] = b'.';
    let mut rest = micros;
    for digit in digits[1..].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    line.push_str(std::str::from_utf8(&digits).unwrap_or(".000000"));
    line.push('Z');
}

/// Passes on either the `message` field only or every other field.
struct Only<'a, V> {
    message: bool,
    inner: &'a mut V,
}

impl<V: Visit> Visit for Only<'_, V> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if (field.name() == "message") == self.message {
            self.inner.record_f64(field, value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if (field.name() == "message") == self.message {
            self.inner.record_i64(field, value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if (field.name() == "message") == self.message {
            self.inner.record_u64(field, value);
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if (field.name() == "message") == self.message {
            self.inner.record_bool(field, value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if (field.name() == "message") == self.message {
            self.inner.record_str(field, value);
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if (field.name() == "message") == self.message {
            self.inner.record_error(field, value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if (field.name() == "message") == self.message {
            self.inner.record_debug(field, value);
        }
    }
}

/// Writes each field as `,"name":value`.
struct FieldWriter<'a> {
    line: &'a mut String,
    /// Whether the event carried its own `request_id`.
    request_id: bool,
}

impl FieldWriter<'_> {
    fn key(&mut self, field: &Field) {
        let name = field.name();
        if name == "request_id" {
            self.request_id = true;
        }
        self.line.push_str(",\"");
        if OWN_KEYS.contains(&name) {
            self.line.push_str("fields.");
        }
        escape_into(self.line, name);
        self.line.push_str("\":");
    }
}

impl Visit for FieldWriter<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.line, "{value}");
        } else {
            self.line.push_str("null");
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        write_str(self.line, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.key(field);
        self.line.push('"');
        let _ = write!(Escaped(self.line), "{value}");
        self.line.push('"');
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.line.push('"');
        let _ = write!(Escaped(self.line), "{value:?}");
        self.line.push('"');
    }
}

/// Writes `value` as a JSON string.
fn write_str(line: &mut String, value: &str) {
    line.push('"');
    escape_into(line, value);
    line.push('"');
}

/// Appends `value` with JSON's string escapes (RFC 8259 §7: `"`, `\` and the control
/// characters below U+0020).
fn escape_into(line: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, byte) in value.bytes().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        line.push_str(&value[start..i]);
        if escape.is_empty() {
            line.push_str("\\u00");
            line.push(char::from(HEX[usize::from(byte >> 4)]));
            line.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            line.push_str(escape);
        }
        start = i + 1;
    }
    line.push_str(&value[start..]);
}

/// A `fmt::Write` that escapes what is written into the line.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(capture: &Capture) -> Vec<String> {
        String::from_utf8(capture.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every string, control characters, quotes and non-ASCII included, comes back unchanged
    /// through a JSON parser.
    #[test]
    fn escaping_round_trips_through_a_json_parser() {
        let mut samples: Vec<String> = (0u32..0x80)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        samples.push("\"quoted\" \\ back\\slash\u{7f}\u{2028}é😀".into());
        samples.push(String::new());
        for sample in samples {
            let mut line = String::new();
            write_str(&mut line, &sample);
            let parsed: String = serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("{line:?} is not a JSON string: {e}");
            });
            assert_eq!(parsed, sample);
        }
    }

    #[test]
    fn a_line_has_each_key_once_and_parses() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(capture.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "req-1");
            let _entered = span.enter();
            tracing::info!(
                level = "mine",
                span = 3,
                count = 7u64,
                ratio = 0.5,
                nan = f64::NAN,
                ok = true,
                text = "line\nbreak \"q\"",
                debug = ?("tuple", 1),
                "hello {}", "world"
            );
            tracing::info!(request_id = "own", "with its own id");
        });
        let lines = lines(&capture);
        assert_eq!(lines.len(), 2);
        for line in &lines {
            assert!(line.starts_with("{\"timestamp\":\""), "{line}");
            // serde_json keeps the last of duplicate keys; count them in the text.
            for key in [
                "timestamp",
                "level",
                "target",
                "span",
                "request_id",
                "message",
            ] {
                assert_eq!(
                    line.matches(&format!("\"{key}\":")).count(),
                    1,
                    "{key} in {line}"
                );
            }
        }
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "hello world");
        assert_eq!(first["fields.level"], "mine");
        assert_eq!(first["fields.span"], 3);
        assert_eq!(first["span"], "request");
        assert_eq!(first["request_id"], "req-1");
        assert_eq!(first["count"], 7);
        assert_eq!(first["ratio"], 0.5);
        assert!(first["nan"].is_null());
        assert_eq!(first["ok"], true);
        assert_eq!(first["text"], "line\nbreak \"q\"");
        assert_eq!(first["debug"], "(\"tuple\", 1)");
        assert!(first.get("trace_id").is_none(), "no OpenTelemetry context");
        assert!(
            lines[0].find("\"message\"").unwrap() < lines[0].find("\"count\"").unwrap(),
            "message comes first among the fields: {}",
            lines[0]
        );
        let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["request_id"], "own", "the event's own id wins");
    }

    /// Span ids of every length come back whole: as `str` or `Display`, within the inline room
    /// and past it, and recorded again later.
    #[test]
    fn span_request_ids_of_any_length_are_written_whole() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(capture.clone()));
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        let exact = "y".repeat(MAX_REQUEST_ID_LEN);
        tracing::subscriber::with_default(subscriber, || {
            for id in ["r", exact.as_str(), long.as_str()] {
                let span = tracing::info_span!("a", request_id = id);
                span.in_scope(|| tracing::info!("as str"));
                let span = tracing::info_span!("b", request_id = %id);
                span.in_scope(|| tracing::info!("as display"));
            }
            let span = tracing::info_span!("c", request_id = tracing::field::Empty);
            span.record("request_id", long.as_str());
            span.in_scope(|| tracing::info!("recorded later"));
        });
        let ids: Vec<String> = lines(&capture)
            .iter()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                value["request_id"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(ids, ["r", "r", &exact, &exact, &long, &long, &long]);
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        use std::time::{Duration, UNIX_EPOCH};
        let mut line = String::new();
        // 2026-12-04T18:34:18.000042Z, then the same second again (cached), then the next.
        let t = UNIX_EPOCH + Duration::from_secs(1_796_409_258) + Duration::from_micros(42);
        write_timestamp(&mut line, t);
        line.push(' ');
        write_timestamp(&mut line, t + Duration::from_micros(959_000));
        line.push(' ');
        write_timestamp(&mut line, t + Duration::from_secs(1));
        assert_eq!(
            line,
            "2026-12-04T18:34:18.000042Z 2026-12-04T18:34:18.959042Z 2026-12-04T18:34:19.000042Z"
        );
        let mut now = String::new();
        write_timestamp(&mut now, std::time::SystemTime::now());
        humantime::parse_rfc3339(&now).expect("RFC 3339");
        // Before the epoch and after year 9999: still a timestamp, never a panic.
        let mut odd = String::new();
        write_timestamp(&mut odd, UNIX_EPOCH - Duration::from_secs(5));
        odd.push(' ');
        write_timestamp(&mut odd, UNIX_EPOCH + Duration::from_secs(300_000_000_000));
        assert_eq!(
            odd,
            "1970-01-01T00:00:00.000000Z 9999-12-31T23:59:59.000000Z"
        );
    }

    /// A `Debug` impl that logs while its line is written: tracing-core does not deliver the
    /// inner event (the dispatcher is busy), and the outer line is written whole.
    #[test]
    fn an_event_logged_while_formatting_leaves_the_line_whole() {
        struct Noisy;
        impl fmt::Debug for Noisy {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                tracing::info!("from inside");
                f.write_str("noisy")
            }
        }
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(capture.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(value = ?Noisy, "outer");
        });
        let lines: Vec<serde_json::Value> = lines(&capture)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["message"], "outer");
        assert_eq!(lines[0]["value"], "noisy");
    }
}
