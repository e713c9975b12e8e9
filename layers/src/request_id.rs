//! Accept a safe incoming request id or make a new one, and carry it everywhere.
//!
//! [`RequestIdLayer`] looks at the `x-request-id` header (the name is configurable). A value of
//! 1–[`MAX_REQUEST_ID_LEN`] characters drawn from the safe set `A-Z a-z 0-9 - _ . :` is kept;
//! anything else — too long, empty, spaces, quotes, angle brackets, control or non-ASCII bytes,
//! or the header sent twice — is replaced by a fresh id. A rejected value is never echoed and
//! never logged: only its length is logged, at `DEBUG`.
//!
//! New ids are UUIDv7 (time-ordered) by default, made without a system call or a lock; any
//! [`MakeRequestId`] (including a closure) can replace the generator.
//!
//! The final id is then:
//! - put in the request extensions as a [`RequestId`], for handlers and later layers;
//! - written to the request header, so code reading the header sees the sanitised id;
//! - set on the response header, unless the handler already set one;
//! - recorded as `request_id` on an `INFO` span named `request` (target `covet::request_id`)
//!   that wraps the handling of the request, so every log line emitted inside carries it.
//!   Turn the span off with [`RequestIdLayer::span`] when another layer records the id.
//!
//! Place it outermost (before tracing and metrics) so every later layer sees the id.
//!
//! # Example
//!
//! ```
//! use covet_layers::request_id::{RequestId, RequestIdLayer};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), std::convert::Infallible> {
//! let service = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .service(service_fn(|req: Request<String>| async move {
//!         // Handlers find the id in the extensions.
//!         let id = req.extensions().get::<RequestId>().unwrap().clone();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("handled {id}")))
//!     }));
//!
//! // A safe incoming id is kept and echoed.
//! let request = Request::builder()
//!     .header("x-request-id", "checkout-42")
//!     .body(String::new())
//!     .unwrap();
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.headers()["x-request-id"], "checkout-42");
//! assert_eq!(response.body(), "handled checkout-42");
//!
//! // A hostile one is replaced by a fresh UUIDv7.
//! let request = Request::builder()
//!     .header("x-request-id", "<script>alert(1)</script>")
//!     .body(String::new())
//!     .unwrap();
//! let response = service.oneshot(request).await?;
//! let id = response.headers()["x-request-id"].to_str().unwrap();
//! assert_eq!(id.len(), 36);
//! assert_eq!(&id[14..15], "7");
//! # Ok(())
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderName, HeaderValue, Request, Response, header::Entry};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

pub use crate::headers::{MAX_REQUEST_ID_LEN, X_REQUEST_ID, is_valid_request_id};

/// A validated request id, found in the request extensions.
///
/// Every `RequestId` satisfies [`is_valid_request_id`], so it is safe to log, echo and use as a
/// header value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Validates a header value as a request id.
    pub fn from_header_value(value: HeaderValue) -> Option<Self> {
        is_valid_request_id(value.as_bytes()).then_some(Self(value))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        // Validated ids are ASCII, so this never takes the fallback.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// Consumes the id, returning the header value.
    pub fn into_header_value(self) -> HeaderValue {
        self.0
    }

    /// A new UUIDv7 request id, as [`MakeUuidV7`] makes them.
    pub fn new_v7() -> Self {
        MakeUuidV7.make_request_id()
    }
}

impl TryFrom<&str> for RequestId {
    type Error = InvalidRequestId;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        if !is_valid_request_id(value.as_bytes()) {
            return Err(InvalidRequestId(()));
        }
        HeaderValue::from_str(value)
            .map(Self)
            .map_err(|_| InvalidRequestId(()))
    }
}

impl TryFrom<String> for RequestId {
    type Error = InvalidRequestId;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::try_from(value.as_str())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

/// The error returned when a string is not a valid request id (see [`is_valid_request_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequestId(());

impl fmt::Display for InvalidRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a request id must be 1 to {MAX_REQUEST_ID_LEN} characters of A-Z a-z 0-9 - _ . :"
        )
    }
}

impl std::error::Error for InvalidRequestId {}

/// Makes new request ids.
///
/// Implemented for [`MakeUuidV7`] (the default) and for every `Fn() -> RequestId` closure:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use covet_layers::request_id::{RequestId, RequestIdLayer};
///
/// static NEXT: AtomicU64 = AtomicU64::new(1);
/// let layer = RequestIdLayer::new().make_request_id(|| {
///     let n = NEXT.fetch_add(1, Ordering::Relaxed);
///     RequestId::try_from(format!("req-{n}")).expect("digits and a dash are valid")
/// });
/// # let _ = layer;
/// ```
pub trait MakeRequestId {
    /// Makes a fresh request id.
    fn make_request_id(&self) -> RequestId;
}

impl<F> MakeRequestId for F
where
    F: Fn() -> RequestId,
{
    fn make_request_id(&self) -> RequestId {
        self()
    }
}

/// Makes UUIDv7 request ids (RFC 9562: 48-bit Unix-millisecond timestamp, then random bits),
/// lower-case and hyphenated.
///
/// The random bits come from a per-thread generator seeded once, so making an id costs no system
/// call and takes no lock; the only allocation is the id's own 36 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct MakeUuidV7;

impl MakeRequestId for MakeUuidV7 {
    fn make_request_id(&self) -> RequestId {
        let uuid = uuid::Uuid::new_v7(uuid::Timestamp::now(uuid::NoContext));
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid.hyphenated().encode_lower(&mut buf);
        // One allocation holding the 36 bytes and the reference count; clones only bump the
        // count (a `Vec`-backed value would allocate again on its first clone).
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
            .expect("a hyphenated UUID is a valid header value");
        RequestId(value)
    }
}

/// Sets, validates and propagates request ids. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct RequestIdLayer<M = MakeUuidV7> {
    header: HeaderName,
    make: M,
    trust_incoming: bool,
    span: bool,
}

impl RequestIdLayer {
    /// A layer using `x-request-id`, UUIDv7 ids, trusting safe incoming ids, with a span.
    pub fn new() -> Self {
        Self {
            header: X_REQUEST_ID,
            make: MakeUuidV7,
            trust_incoming: true,
            span: true,
        }
    }
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> RequestIdLayer<M> {
    /// The header read from requests and written to responses.
    ///
    /// Defaults to `x-request-id`.
    pub fn header_name(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// Replaces the id generator.
    ///
    /// Defaults to [`MakeUuidV7`].
    pub fn make_request_id<M2: MakeRequestId>(self, make: M2) -> RequestIdLayer<M2> {
        RequestIdLayer {
            header: self.header,
            make,
            trust_incoming: self.trust_incoming,
            span: self.span,
        }
    }

    /// Whether a safe incoming id is kept. Set `false` at an untrusted edge to always make a new
    /// id (the incoming header is then overwritten).
    ///
    /// Defaults to `true`.
    pub fn trust_incoming(mut self, trust: bool) -> Self {
        self.trust_incoming = trust;
        self
    }

    /// Whether the request is handled inside an `INFO` span named `request` (target
    /// `covet::request_id`) with a `request_id` field, so log lines emitted while handling it
    /// carry the id.
    ///
    /// Defaults to `true`.
    pub fn span(mut self, enabled: bool) -> Self {
        self.span = enabled;
        self
    }
}

impl<S, M: Clone> Layer<S> for RequestIdLayer<M> {
    type Service = SetRequestId<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RequestIdLayer`].
#[derive(Clone, Debug)]
pub struct SetRequestId<S, M = MakeUuidV7> {
    inner: S,
    layer: RequestIdLayer<M>,
}

impl<S, M> SetRequestId<S, M> {
    crate::inner_service_accessors!();
}

impl<S, M> SetRequestId<S, M>
where
    M: MakeRequestId,
{
    /// The id to use for this request, and whether it was freshly made.
    fn resolve(&self, headers: &http::HeaderMap) -> (RequestId, bool) {
        if self.layer.trust_incoming {
            let mut values = headers.get_all(&self.layer.header).iter();
            match (values.next(), values.next()) {
                (Some(value), None) => {
                    if let Some(id) = RequestId::from_header_value(value.clone()) {
                        return (id, false);
                    }
                    tracing::debug!(
                        target: "covet::request_id",
                        rejected_len = value.len(),
                        "incoming request id is not safe; replaced with a new one"
                    );
                }
                (Some(_), Some(_)) => tracing::debug!(
                    target: "covet::request_id",
                    "request id header sent more than once; replaced with a new one"
                ),
                (None, _) => {}
            }
        }
        (self.layer.make.make_request_id(), true)
    }
}

impl<S, M, ReqBody, ResBody> Service<Request<ReqBody>> for SetRequestId<S, M>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    M: MakeRequestId,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let (id, fresh) = self.resolve(req.headers());
        if fresh {
            req.headers_mut()
                .insert(self.layer.header.clone(), id.0.clone());
        }
        let span = if self.layer.span {
            // Display, not Debug: a formatting subscriber writes the id as is instead of escaping
            // it character by character.
            tracing::info_span!(
                target: crate::headers::REQUEST_ID_SPAN_TARGET,
                crate::headers::REQUEST_ID_SPAN_NAME,
                request_id = %id.as_str()
            )
        } else {
            tracing::Span::none()
        };
        let value = id.0.clone();
        req.extensions_mut().insert(id);
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ResponseFuture {
            inner,
            span,
            header: self.layer.header.clone(),
            value: Some(value),
        }
    }
}

pin_project! {
    /// The response future of [`SetRequestId`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        header: HeaderName,
        value: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = {
            let _entered = this.span.enter();
            ready!(this.inner.poll(cx))?
        };
        if let Some(value) = this.value.take()
            && let Entry::Vacant(entry) = response.headers_mut().entry(&*this.header)
        {
            entry.insert(value);
        }
        Poll::Ready(Ok(response))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        io,
        sync::{Arc, Mutex},
    };

    use http::{HeaderValue, Request, Response, StatusCode};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;

    async fn echo(req: Request<()>) -> Result<Response<String>, Infallible> {
        let id = req
            .extensions()
            .get::<RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let header = req
            .headers()
            .get(X_REQUEST_ID)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        Ok(Response::new(format!("{id}|{header}")))
    }

    fn with_header(value: &[u8]) -> Request<()> {
        let mut req = Request::new(());
        req.headers_mut()
            .insert(X_REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
        req
    }

    fn assert_uuid_v7(id: &str) {
        let uuid = uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("{id:?} is not a UUID"));
        assert_eq!(uuid.get_version_num(), 7, "{id} is not a UUIDv7");
        assert_eq!(id, id.to_ascii_lowercase());
    }

    #[tokio::test]
    async fn a_safe_incoming_id_is_kept_in_extensions_and_echoed() {
        let svc = RequestIdLayer::new().layer(service_fn(echo));
        let res = svc
            .oneshot(with_header(b"svc.checkout:42_a-b"))
            .await
            .unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID], "svc.checkout:42_a-b");
        assert_eq!(res.body(), "svc.checkout:42_a-b|svc.checkout:42_a-b");
    }

    #[tokio::test]
    async fn a_missing_id_is_generated_as_uuid_v7_everywhere() {
        let svc = RequestIdLayer::new().layer(service_fn(echo));
        let res = svc.oneshot(Request::new(())).await.unwrap();
        let echoed = res.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
        assert_uuid_v7(&echoed);
        // The same id reached the extensions, the request header and the response header.
        assert_eq!(res.body(), &format!("{echoed}|{echoed}"));
    }

    #[tokio::test]
    async fn hostile_ids_are_all_replaced_and_never_echoed() {
        let long = "a".repeat(300);
        let just_too_long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        let hostile: Vec<&[u8]> = vec![
            long.as_bytes(),
            just_too_long.as_bytes(),
            b"a b",
            b"<script>alert(1)</script>",
            b"\x7f",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
            b"\xff\xfe",
            b"",
            b"\"quoted\"",
            b"id;drop",
            b"a/b",
            b"%2e%2e",
        ];
        for value in hostile {
            assert!(!is_valid_request_id(value), "{value:?} accepted");
            // `http` itself refuses to carry DEL and other control bytes in a header value, so
            // those can never reach the layer; every value it does carry goes through it.
            if HeaderValue::from_bytes(value).is_err() {
                assert!(value.iter().any(|b| b.is_ascii_control() && *b != b'\t'));
                continue;
            }
            let svc = RequestIdLayer::new().layer(service_fn(echo));
            let res = svc.oneshot(with_header(value)).await.unwrap();
            let echoed = res.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
            assert_uuid_v7(&echoed);
            assert_ne!(echoed.as_bytes(), value);
            // Handlers see only the replacement, in extensions and in the request header.
            assert_eq!(res.body(), &format!("{echoed}|{echoed}"), "input {value:?}");
        }
    }

    #[tokio::test]
    async fn the_longest_accepted_id_is_kept() {
        let max = "b".repeat(MAX_REQUEST_ID_LEN);
        let svc = RequestIdLayer::new().layer(service_fn(echo));
        let res = svc.oneshot(with_header(max.as_bytes())).await.unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID], max.as_str());
    }

    #[tokio::test]
    async fn a_duplicated_header_is_replaced() {
        let mut req = Request::new(());
        req.headers_mut()
            .append(X_REQUEST_ID, HeaderValue::from_static("one"));
        req.headers_mut()
            .append(X_REQUEST_ID, HeaderValue::from_static("two"));
        let res = RequestIdLayer::new()
            .layer(service_fn(echo))
            .oneshot(req)
            .await
            .unwrap();
        let values: Vec<_> = res.headers().get_all(X_REQUEST_ID).iter().collect();
        assert_eq!(values.len(), 1);
        assert_uuid_v7(values[0].to_str().unwrap());
        let body = res.body();
        assert!(!body.contains("one") && !body.contains("two"), "{body}");
    }

    #[tokio::test]
    async fn never_trust_incoming_replaces_even_a_safe_id() {
        let svc = RequestIdLayer::new()
            .trust_incoming(false)
            .layer(service_fn(echo));
        let res = svc.oneshot(with_header(b"client-chosen")).await.unwrap();
        let echoed = res.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
        assert_uuid_v7(&echoed);
        assert_eq!(res.body(), &format!("{echoed}|{echoed}"));
    }

    #[tokio::test]
    async fn a_response_header_set_by_the_handler_is_not_clobbered() {
        let svc = RequestIdLayer::new().layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(X_REQUEST_ID, "from-handler")
                    .body(String::new())
                    .unwrap(),
            )
        }));
        let res = svc.oneshot(with_header(b"incoming")).await.unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID], "from-handler");
        assert_eq!(res.headers().get_all(X_REQUEST_ID).iter().count(), 1);
    }

    #[tokio::test]
    async fn header_name_and_generator_are_configurable() {
        let name = HeaderName::from_static("x-correlation-id");
        let svc = RequestIdLayer::new()
            .header_name(name.clone())
            .make_request_id(|| RequestId::try_from("fixed-7").unwrap())
            .layer(service_fn(|req: Request<()>| async move {
                let id = req.extensions().get::<RequestId>().unwrap().to_string();
                Ok::<_, Infallible>(Response::new(id))
            }));
        let res = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.headers()[&name], "fixed-7");
        assert_eq!(res.body(), "fixed-7");
        assert!(res.headers().get(X_REQUEST_ID).is_none());

        let mut req = Request::new(());
        req.headers_mut()
            .insert(name.clone(), HeaderValue::from_static("kept-1"));
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()[&name], "kept-1");
    }

    #[tokio::test]
    async fn generated_ids_are_unique_and_time_ordered() {
        let ids: Vec<String> = (0..2000).map(|_| RequestId::new_v7().to_string()).collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        // UUIDv7 sorts by its millisecond timestamp: the first 12 hex digits never decrease.
        for pair in ids.windows(2) {
            assert!(pair[0][..13] <= pair[1][..13], "{pair:?}");
        }
    }

    #[test]
    fn request_id_conversions_validate() {
        assert!(RequestId::try_from("ok-1").is_ok());
        assert!(RequestId::try_from("not ok").is_err());
        assert!(RequestId::try_from(String::new()).is_err());
        assert!(RequestId::from_header_value(HeaderValue::from_static("a<b")).is_none());
        let err = RequestId::try_from("x y").unwrap_err().to_string();
        assert!(err.contains("1 to 128"), "{err}");
    }

    /// A `MakeWriter` that appends every log line to a shared buffer.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn log_lines_inside_the_request_carry_the_id_and_rejected_ids_are_not_logged() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_current_span(true)
            .with_writer(capture.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let svc = ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .service(service_fn(|_req: Request<()>| async {
                tracing::info!("handler ran");
                tokio::task::yield_now().await;
                tracing::warn!("after an await");
                Ok::<_, Infallible>(Response::builder().status(StatusCode::OK).body(()).unwrap())
            }));
        let res = svc
            .clone()
            .oneshot(with_header(b"trace-me-1"))
            .await
            .unwrap();
        assert_eq!(res.headers()[X_REQUEST_ID], "trace-me-1");
        let res = svc
            .oneshot(with_header(b"<img src=x onerror=alert(1)>"))
            .await
            .unwrap();
        let replacement = res.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();

        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let handler_ids: Vec<&str> = lines
            .iter()
            .filter(|l| l["target"] != "covet::request_id")
            .map(|l| {
                l["span"]["request_id"]
                    .as_str()
                    .expect("line has request_id")
            })
            .collect();
        assert_eq!(
            handler_ids,
            ["trace-me-1", "trace-me-1", &replacement, &replacement]
        );
        assert!(
            !text.contains("onerror"),
            "the rejected value was logged: {text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l["fields"]["rejected_len"] == 28 && l["level"] == "DEBUG"),
            "the rejection is logged at debug with its length: {text}"
        );
    }
}
