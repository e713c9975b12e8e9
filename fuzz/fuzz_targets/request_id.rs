//! Request ids from clients: `is_valid_request_id`, the `RequestId` round trip, and what
//! `RequestIdLayer` echoes.
//!
//! Properties: an id the validator accepts survives `RequestId` unchanged and re-validates; a
//! rejected id is never echoed — the response carries a fresh UUIDv7 instead; the id the layer
//! answers with is always valid.
#![no_main]

use std::convert::Infallible;

use covet_layers::request_id::{RequestId, RequestIdLayer, is_valid_request_id};
use http::{HeaderValue, Request, Response};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt, service_fn};

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
}

fuzz_target!(|data: &[u8]| {
    let valid = is_valid_request_id(data);
    if valid {
        assert!(data.len() <= 128 && data.is_ascii(), "{data:?}");
        let text = std::str::from_utf8(data).expect("valid ids are ASCII");
        let id = RequestId::try_from(text).expect("a valid id converts");
        assert_eq!(id.as_str().as_bytes(), data);
        assert!(is_valid_request_id(id.as_str().as_bytes()));
        assert_eq!(RequestId::try_from(id.to_string()), Ok(id));
    } else if let Ok(text) = std::str::from_utf8(data) {
        assert!(RequestId::try_from(text).is_err(), "{text:?}");
    }

    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let parsed = RequestId::from_header_value(value.clone());
    assert_eq!(parsed.is_some(), valid, "{data:?}");
    if let Some(id) = &parsed {
        assert_eq!(id.header_value(), &value);
    }

    let service = RequestIdLayer::new()
        .span(false)
        .layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
    let request = Request::get("/")
        .header("x-request-id", value)
        .body(())
        .unwrap();
    let response = RUNTIME
        .with(|rt| rt.block_on(service.oneshot(request)))
        .unwrap();
    let answered = response.headers()["x-request-id"].as_bytes();
    assert!(is_valid_request_id(answered), "answered {answered:?}");
    if valid {
        assert_eq!(answered, data, "a valid id is kept");
    } else {
        assert_ne!(answered, data, "a rejected id was echoed");
        assert_eq!(answered.len(), 36, "a UUIDv7 replaces a rejected id");
    }
});
