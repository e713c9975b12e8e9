//! Header names and checks shared by several layers.
//!
//! The layers cooperate through request headers and extensions only, never by importing one
//! another: the request-id layer writes the sanitised id to [`X_REQUEST_ID`] on the request, and
//! the trace layer and [`PropagateLayer`] read it from there. What both sides need to agree on
//! lives here.
//!
//! [`PropagateLayer`]: https://docs.rs/covet-layers/latest/covet_layers/trace/struct.PropagateLayer.html

use http::{HeaderMap, HeaderName, HeaderValue};

/// The request-id header, `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The trace-id response header, `x-trace-id`.
pub const X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");

/// The longest incoming request id that is accepted, in bytes (and characters: all are ASCII).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether `id` is an acceptable request id: 1–[`MAX_REQUEST_ID_LEN`] bytes, each one of
/// `A-Z a-z 0-9 - _ . :`.
///
/// ```
/// use covet_layers::headers::is_valid_request_id;
///
/// assert!(is_valid_request_id(b"0190b6e4-7c1a-7cc2-9a4e-5b0f6a3c2d11"));
/// assert!(is_valid_request_id(b"svc.checkout:42_a"));
/// assert!(!is_valid_request_id(b""));
/// assert!(!is_valid_request_id(b"a b"));
/// assert!(!is_valid_request_id("é".as_bytes()));
/// ```
pub fn is_valid_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The target of the request-id layer's `request` span, which records `request_id`: the trace
/// layer leaves the field out of its request log line when that span is the current one.
#[cfg(any(feature = "request-id", feature = "trace"))]
pub(crate) const REQUEST_ID_SPAN_TARGET: &str = "covet::request_id";

/// The name of the request-id layer's span (see [`REQUEST_ID_SPAN_TARGET`]).
#[cfg(any(feature = "request-id", feature = "trace"))]
pub(crate) const REQUEST_ID_SPAN_NAME: &str = "request";

/// Whether the current span (the subscriber's innermost entered one) is the request-id layer's
/// span, so that a log line written now shows its `request_id` already. `false` when the span
/// is disabled, or the subscriber does not track the current span.
#[cfg(feature = "trace")]
pub(crate) fn in_request_id_span() -> bool {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch.current_span().metadata().is_some_and(|meta| {
            meta.target() == REQUEST_ID_SPAN_TARGET && meta.name() == REQUEST_ID_SPAN_NAME
        })
    })
}

/// The request id in `headers` under `name`, if it is sent once and is safe
/// ([`is_valid_request_id`]). After the request-id layer this is the id it chose.
#[allow(dead_code)] // used by the trace feature only
pub(crate) fn request_id<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) if is_valid_request_id(value.as_bytes()) => Some(value),
        _ => None,
    }
}
