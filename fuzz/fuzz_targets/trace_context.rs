//! W3C trace context from clients: `is_valid_traceparent`, and `TraceLayer` on a request with
//! fuzzed `traceparent`, `tracestate` and `baggage` headers.
//!
//! Properties: no panic; an accepted `traceparent` has the W3C shape (lower-case hex fields,
//! version not `ff`, non-zero ids); the `x-trace-id` answered is always 32 lower-case hex
//! digits, non-zero; it is the incoming trace id exactly when a single valid `traceparent`
//! came in, and a rejected one is never continued.
#![no_main]

use std::{convert::Infallible, sync::OnceLock};

use arbitrary::Arbitrary;
use covet_layers::{
    telemetry::{LogFormat, Telemetry},
    trace::{TraceLayer, is_valid_traceparent},
};
use http::{HeaderValue, Request, Response};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt, service_fn};

#[derive(Debug, Arbitrary)]
struct Input {
    traceparent: Vec<Vec<u8>>,
    tracestate: Vec<Vec<u8>>,
    baggage: Vec<Vec<u8>>,
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

fn lower_hex(s: &[u8]) -> bool {
    s.iter().all(|&b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fuzz_target!(|input: Input| {
    // Spans recorded by the OpenTelemetry SDK (sampled, nothing exported), logs discarded.
    TELEMETRY.get_or_init(|| {
        Telemetry::builder()
            .filter("info")
            .format(LogFormat::Json)
            .writer(std::io::sink)
            .export(false)
            .init()
            .expect("telemetry installs once")
    });

    for value in &input.traceparent {
        if is_valid_traceparent(value) {
            assert!(value.len() >= 55, "{value:?}");
            assert_ne!(&value[..2], b"ff");
            assert!(
                lower_hex(&value[..2]) && lower_hex(&value[3..35]) && lower_hex(&value[36..52])
            );
            assert!(value[3..35].iter().any(|&b| b != b'0'));
            assert!(value[36..52].iter().any(|&b| b != b'0'));
        }
    }

    let mut request = Request::get("/orders").body(()).unwrap();
    let headers = request.headers_mut();
    for (name, values) in [
        ("traceparent", &input.traceparent),
        ("tracestate", &input.tracestate),
        ("baggage", &input.baggage),
    ] {
        for value in values.iter().take(4) {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(name, value);
            }
        }
    }
    let parents: Vec<Vec<u8>> = headers
        .get_all("traceparent")
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    let continued = match parents.as_slice() {
        [one] if is_valid_traceparent(one) => Some(one[3..35].to_vec()),
        _ => None,
    };

    let service = TraceLayer::new().layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let response = RUNTIME
        .with(|rt| rt.block_on(service.oneshot(request)))
        .unwrap();
    let trace_id = response.headers()["x-trace-id"].as_bytes();
    assert_eq!(trace_id.len(), 32, "{trace_id:?}");
    assert!(lower_hex(trace_id) && trace_id.iter().any(|&b| b != b'0'));
    match continued {
        Some(incoming) => assert_eq!(trace_id, incoming.as_slice(), "valid parent not continued"),
        None => {
            for parent in &parents {
                if parent.len() >= 35 {
                    assert_ne!(
                        trace_id,
                        &parent[3..35],
                        "a rejected traceparent was continued"
                    );
                }
            }
        }
    }
});
