//! [`TraceContextPropagator`]: W3C `traceparent` and `tracestate`, read and written by the
//! rules of W3C Trace Context Level 1, plus Level 2's `random` flag.

use std::sync::Arc;

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator, text_map_propagator::FieldIter},
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};

use super::{
    traceparent::{
        FLAG_RANDOM, FLAG_SAMPLED, TRACEPARENT, TRACESTATE, format_traceparent, parse_traceparent,
    },
    tracestate::{self, TraceStateList},
};

/// The W3C trace-context propagator that `covet_layers::telemetry` installs:
/// OpenTelemetry's `TraceContextPropagator` with the specification's rules enforced.
///
/// Reading (`extract`):
/// - exactly one `traceparent`, valid per [`is_valid_traceparent`](super::is_valid_traceparent)
///   (strict lower-case hex, no all-zero ids, version `ff` refused, later versions read by
///   their known fields), else no remote context at all;
/// - every `tracestate` header line combined into one list and checked against the grammar
///   (keys of up to 256 characters, `tenant@system` keys, values, 32 members, no duplicate
///   key); a list that breaks a rule is dropped whole, never forwarded malformed;
/// - the `sampled` and `random` flags kept, the undefined ones zeroed.
///
/// Writing (`inject`): a version-00 `traceparent` with the span's `sampled` and `random` flags
/// (Level 2: a continued trace keeps `random`), and the `tracestate` the trace arrived with.
///
/// Combine it with OpenTelemetry's `BaggagePropagator` in a `TextMapCompositePropagator` for
/// W3C baggage, as `telemetry::init` does.
///
/// ```
/// use std::collections::HashMap;
/// use covet_layers::trace::TraceContextPropagator;
/// use opentelemetry::{propagation::TextMapPropagator, trace::TraceContextExt};
///
/// let propagator = TraceContextPropagator::new();
/// let incoming = HashMap::from([
///     ("traceparent".to_owned(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03".to_owned()),
///     ("tracestate".to_owned(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".to_owned()),
/// ]);
/// let cx = propagator.extract(&incoming);
///
/// let mut outgoing = HashMap::new();
/// propagator.inject_context(&cx, &mut outgoing);
/// // Sampled and random flags kept; the tracestate passed on as received.
/// assert_eq!(outgoing["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03");
/// assert_eq!(outgoing["tracestate"], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
///
/// // An upper-case trace id is not continued.
/// let bad = HashMap::from([
///     ("traceparent".to_owned(), "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".to_owned()),
/// ]);
/// assert!(!propagator.extract(&bad).span().span_context().is_valid());
/// ```
#[derive(Debug)]
pub struct TraceContextPropagator {
    fields: [String; 2],
}

impl TraceContextPropagator {
    /// The propagator.
    pub fn new() -> Self {
        Self {
            fields: [TRACEPARENT.to_owned(), TRACESTATE.to_owned()],
        }
    }
}

impl Default for TraceContextPropagator {
    fn default() -> Self {
        Self::new()
    }
}

/// What of an incoming trace context the OpenTelemetry SDK does not carry to child spans,
/// kept in the context beside the remote span context so it is still passed on with the trace
/// it arrived with:
/// - the `random` flag (Level 2), which the SDK drops from children it does not sample;
/// - a checked `tracestate` that OpenTelemetry's `TraceState` cannot hold (it refuses some keys
///   the specification allows).
///
/// Only made when there is something to keep.
#[derive(Clone, Debug)]
pub(crate) struct Incoming {
    trace_id: TraceId,
    random: bool,
    tracestate: Option<Arc<str>>,
}

/// The remote context of a request's `traceparent` and `tracestate` header lines, by the
/// W3C rules; `None` when there is no single valid `traceparent`.
pub(crate) fn remote_context<'a>(
    traceparents: impl IntoIterator<Item = &'a [u8]>,
    tracestates: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Context> {
    let mut traceparents = traceparents.into_iter();
    let (trace_id, parent_id, flags) = match (traceparents.next(), traceparents.next()) {
        (Some(value), None) => parse_traceparent(value)?,
        _ => return None,
    };
    let trace_id = TraceId::from(trace_id);
    let list = match tracestate::parse(tracestates) {
        Ok(list) => list,
        Err(rejected) => {
            tracing::debug!(
                target: "covet::trace",
                reason = ?rejected,
                "invalid tracestate; continuing the trace without it"
            );
            None
        }
    };
    let (state, unrepresentable) = match list {
        None => (TraceState::default(), None),
        Some(list) => match list.to_otel() {
            Some(state) => (state, None),
            None => (TraceState::default(), Some(list)),
        },
    };
    let span_context = SpanContext::new(
        trace_id,
        SpanId::from(parent_id),
        TraceFlags::new(flags),
        true,
        state,
    );
    let cx = Context::new().with_remote_span_context(span_context);
    let random = flags & FLAG_RANDOM != 0;
    Some(if random || unrepresentable.is_some() {
        cx.with_value(Incoming {
            trace_id,
            random,
            tracestate: unrepresentable.map(|TraceStateList { header }| header),
        })
    } else {
        cx
    })
}

impl TextMapPropagator for TraceContextPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return;
        }
        let incoming = cx
            .get::<Incoming>()
            .filter(|incoming| incoming.trace_id == span_context.trace_id());
        let mut flags = span_context.trace_flags().to_u8() & (FLAG_SAMPLED | FLAG_RANDOM);
        if incoming.is_some_and(|incoming| incoming.random) {
            flags |= FLAG_RANDOM;
        }
        injector.set(
            TRACEPARENT,
            format_traceparent(
                u128::from_be_bytes(span_context.trace_id().to_bytes()),
                u64::from_be_bytes(span_context.span_id().to_bytes()),
                flags,
            ),
        );
        let state = span_context.trace_state().header();
        if !state.is_empty() {
            injector.set(TRACESTATE, state);
        } else if let Some(tracestate) = incoming.and_then(|incoming| incoming.tracestate.as_ref())
        {
            injector.set(TRACESTATE, tracestate.to_string());
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let values = |key| extractor.get_all(key).unwrap_or_default();
        let (traceparents, tracestates) = (values(TRACEPARENT), values(TRACESTATE));
        match remote_context(
            traceparents.iter().map(|v| v.as_bytes()),
            tracestates.iter().map(|v| v.as_bytes()),
        ) {
            Some(remote) => {
                let span_context = remote.span().span_context().clone();
                let mut out = cx.with_remote_span_context(span_context);
                if let Some(incoming) = remote.get::<Incoming>() {
                    out = out.with_value(incoming.clone());
                }
                out
            }
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const TRACE_ID: &str = "12345678901234567890123456789012";

    /// Headers as the test harness sends them: possibly several lines per name.
    struct Lines(Vec<(&'static str, String)>);

    impl Extractor for Lines {
        fn get(&self, key: &str) -> Option<&str> {
            self.get_all(key).and_then(|v| v.first().copied())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| *k).collect()
        }
        fn get_all(&self, key: &str) -> Option<Vec<&str>> {
            let all: Vec<&str> = self
                .0
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
                .collect();
            (!all.is_empty()).then_some(all)
        }
    }

    /// What a service continuing the trace sends on: extract, start a child, inject.
    fn forwarded(lines: &[(&'static str, &str)]) -> HashMap<String, String> {
        use opentelemetry::trace::{Tracer as _, TracerProvider as _};
        let propagator = TraceContextPropagator::new();
        let incoming = Lines(lines.iter().map(|(k, v)| (*k, (*v).to_owned())).collect());
        let parent = propagator.extract(&incoming);
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let span = provider.tracer("test").start_with_context("child", &parent);
        let child = parent.with_span(span);
        let mut out = HashMap::new();
        propagator.inject_context(&child, &mut out);
        out
    }

    fn trace_id_of(out: &HashMap<String, String>) -> &str {
        &out["traceparent"][3..35]
    }

    #[test]
    fn w3c_traceparent_a_continued_trace_keeps_its_id_and_gets_a_new_parent() {
        let out = forwarded(&[(
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-01",
        )]);
        assert_eq!(trace_id_of(&out), TRACE_ID);
        assert_ne!(&out["traceparent"][36..52], "1234567890123456");
        assert!(!out.contains_key("tracestate"));
    }

    #[test]
    fn w3c_traceparent_sent_twice_starts_a_new_trace() {
        let out = forwarded(&[
            (
                "traceparent",
                "00-12345678901234567890123456789011-1234567890123456-01",
            ),
            (
                "traceparent",
                "00-12345678901234567890123456789012-1234567890123456-01",
            ),
        ]);
        assert!(!trace_id_of(&out).starts_with("123456789012345678901234567890"));
    }

    #[test]
    fn w3c_tracestate_of_a_rejected_traceparent_is_dropped() {
        let out = forwarded(&[
            (
                "traceparent",
                "00-00000000000000000000000000000000-1234567890123456-01",
            ),
            ("tracestate", "foo=1"),
        ]);
        assert_ne!(trace_id_of(&out), "00000000000000000000000000000000");
        assert!(!out.contains_key("tracestate"));
    }

    #[test]
    fn w3c_tracestate_header_lines_are_combined_and_passed_on() {
        let out = forwarded(&[
            (
                "traceparent",
                "00-12345678901234567890123456789012-1234567890123456-00",
            ),
            ("tracestate", "foo=1,bar=2"),
            ("tracestate", ""),
            ("tracestate", "rojo=1,congo=2"),
            ("tracestate", "baz=3"),
        ]);
        assert_eq!(trace_id_of(&out), TRACE_ID);
        assert_eq!(out["tracestate"], "foo=1,bar=2,rojo=1,congo=2,baz=3");
    }

    #[test]
    fn w3c_tracestate_an_invalid_list_is_dropped_but_the_trace_continues() {
        for bad in ["foo=1,foo=2", "foo@=1,bar=2", "foo=,bar=3", "FOO=1"] {
            let out = forwarded(&[
                (
                    "traceparent",
                    "00-12345678901234567890123456789012-1234567890123456-00",
                ),
                ("tracestate", bad),
            ]);
            assert_eq!(trace_id_of(&out), TRACE_ID, "{bad}");
            assert!(!out.contains_key("tracestate"), "{bad} was forwarded");
        }
    }

    #[test]
    fn w3c_tracestate_a_fourteen_character_system_id_is_passed_on() {
        let key = format!("{}@{}", "t".repeat(241), "v".repeat(14));
        let out = forwarded(&[
            (
                "traceparent",
                "00-12345678901234567890123456789012-1234567890123456-00",
            ),
            ("tracestate", "foo=1"),
            ("tracestate", &format!("{key}=1")),
        ]);
        assert_eq!(out["tracestate"], format!("foo=1,{key}=1"));
    }

    #[test]
    fn w3c_level_2_the_random_flag_is_propagated() {
        let out = forwarded(&[(
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-03",
        )]);
        assert_eq!(&out["traceparent"][53..], "03");
        let out = forwarded(&[(
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-02",
        )]);
        // Not sampled by the caller, so not by the parent-based sampler either: `random` stays.
        assert_eq!(&out["traceparent"][53..], "02");
        let out = forwarded(&[(
            "traceparent",
            "cc-12345678901234567890123456789012-1234567890123456-0b-future",
        )]);
        assert_eq!(
            &out["traceparent"][..2],
            "00",
            "written as the known version"
        );
        assert_eq!(
            &out["traceparent"][53..],
            "03",
            "undefined flags are zeroed"
        );
    }

    #[test]
    fn the_fields_are_the_two_w3c_headers() {
        let propagator = TraceContextPropagator::new();
        assert_eq!(
            propagator.fields().collect::<Vec<_>>(),
            ["traceparent", "tracestate"]
        );
    }
}
