//! The server span's parent: the incoming trace context, read by the W3C rules.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName};
use opentelemetry::{
    global,
    propagation::{Extractor, TextMapPropagator},
    trace::{SpanContext, TraceContextExt},
};

use super::{
    propagator::remote_context,
    traceparent::{TRACEPARENT, TRACESTATE},
};

pub(crate) static TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);
pub(crate) static TRACESTATE_HEADER: HeaderName = HeaderName::from_static(TRACESTATE);
pub(crate) static BAGGAGE_HEADER: HeaderName = HeaderName::from_static("baggage");

static NO_PROPAGATOR_WARNED: AtomicBool = AtomicBool::new(false);

/// The incoming trace context of `headers` by the W3C rules, whatever propagator is installed.
fn w3c_context(headers: &HeaderMap) -> Option<opentelemetry::Context> {
    remote_context(
        headers
            .get_all(&TRACEPARENT_HEADER)
            .iter()
            .map(|v| v.as_bytes()),
        headers
            .get_all(&TRACESTATE_HEADER)
            .iter()
            .map(|v| v.as_bytes()),
    )
}

/// The server span's parent (from the incoming headers, or none) and, at an untrusted edge,
/// the incoming context to link to instead.
pub(crate) fn parent_context(
    headers: &HeaderMap,
    untrusted_edge: bool,
) -> (opentelemetry::Context, Option<SpanContext>) {
    let has_traceparent = headers.contains_key(&TRACEPARENT_HEADER);
    let has_baggage = headers.contains_key(&BAGGAGE_HEADER);
    if !has_traceparent && !has_baggage {
        // Nothing to continue: a new trace, whatever span encloses this layer.
        return (opentelemetry::Context::new(), None);
    }
    let remote = if has_traceparent {
        let remote = w3c_context(headers);
        if remote.is_none() {
            tracing::debug!(
                target: "covet::trace",
                "invalid traceparent; starting a new trace and dropping tracestate"
            );
        }
        remote
    } else {
        None
    };
    let incoming = global::get_text_map_propagator(|propagator| {
        if propagator.fields().next().is_none()
            && !NO_PROPAGATOR_WARNED.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                target: "covet::trace",
                "no global OpenTelemetry propagator is installed, so incoming trace context is \
                 ignored; call covet's telemetry::init or opentelemetry::global::set_text_map_propagator"
            );
        }
        // The common case, read without the propagator's general parser: trace context alone,
        // with a W3C propagator installed.
        if !has_baggage && is_w3c(propagator) {
            return remote.clone().unwrap_or_default();
        }
        let extractor = RequestExtractor {
            headers,
            hide_trace_context: remote.is_none(),
        };
        propagator.extract_with_context(&opentelemetry::Context::new(), &extractor)
    });
    if untrusted_edge {
        let remote = incoming.span().span_context().clone();
        (
            opentelemetry::Context::new(),
            remote.is_valid().then_some(remote),
        )
    } else {
        (incoming, None)
    }
}

/// Whether `propagator` reads W3C trace context (and perhaps W3C baggage) and nothing else.
fn is_w3c(propagator: &dyn TextMapPropagator) -> bool {
    let mut reads_traceparent = false;
    for field in propagator.fields() {
        match field {
            TRACEPARENT => reads_traceparent = true,
            TRACESTATE | "baggage" => {}
            _ => return false,
        }
    }
    reads_traceparent
}

/// Reads request headers for a propagator, hiding `traceparent` and `tracestate` when the
/// incoming trace context was rejected (so `baggage` is still read, the trace context never).
pub(crate) struct RequestExtractor<'a> {
    pub(crate) headers: &'a HeaderMap,
    pub(crate) hide_trace_context: bool,
}

impl RequestExtractor<'_> {
    fn hidden(&self, key: &str) -> bool {
        self.hide_trace_context
            && (key.eq_ignore_ascii_case(TRACEPARENT) || key.eq_ignore_ascii_case(TRACESTATE))
    }

    fn name(key: &str) -> Option<&HeaderName> {
        match key {
            TRACEPARENT => Some(&TRACEPARENT_HEADER),
            TRACESTATE => Some(&TRACESTATE_HEADER),
            "baggage" => Some(&BAGGAGE_HEADER),
            _ => None,
        }
    }
}

impl Extractor for RequestExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if self.hidden(key) {
            return None;
        }
        let value = match Self::name(key) {
            Some(name) => self.headers.get(name),
            None => self.headers.get(key),
        };
        value.and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.headers
            .keys()
            .map(|k| k.as_str())
            .filter(|k| !self.hidden(k))
            .collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        if self.hidden(key) {
            return None;
        }
        let values = match Self::name(key) {
            Some(name) => self.headers.get_all(name),
            None => self.headers.get_all(key),
        };
        let all: Vec<&str> = values.iter().filter_map(|v| v.to_str().ok()).collect();
        (!all.is_empty()).then_some(all)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::propagation::TextMapPropagator as _;

    use super::*;
    use crate::trace::TraceContextPropagator;

    /// The fast path reads trace context exactly as the installed W3C propagator does.
    #[test]
    fn the_fast_path_matches_the_propagator() {
        let propagator = TraceContextPropagator::new();
        for traceparent in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-03",
            "00-00000000000000000000000000000001-0000000000000001-fe",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-future",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
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
                let ours = w3c_context(&headers)
                    .map(|cx| cx.span().span_context().clone())
                    .unwrap_or(SpanContext::NONE);
                assert_eq!(ours, expected, "{traceparent} {tracestate:?}");
            }
        }
    }
}
