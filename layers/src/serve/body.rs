//! The bodies the server loop hands out: [`RequestBody`] (the client's body, with a deadline)
//! and the response body that ends a request's in-flight count when it is dropped.

use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::connection::InFlight;

/// A boxed error, as hyper and axum take them.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The request body did not arrive within the server's body read timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout(pub Duration);

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the request body did not arrive within {:?}", self.0)
    }
}

impl StdError for BodyTimeout {}

pin_project! {
    /// The body of a request served by [`serve`](super::serve): hyper's body, failing with
    /// [`BodyTimeout`] once the body read timeout has passed since the request head.
    ///
    /// No timer exists for a body that arrives without waiting.
    pub struct RequestBody {
        #[pin]
        inner: Incoming,
        started: Instant,
        timeout: Duration,
        deadline: Option<Pin<Box<Sleep>>>,
    }
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            started: Instant::now(),
            timeout,
            deadline: None,
        }
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BoxError::from)));
        }
        let deadline = this.deadline.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(*this.started + *this.timeout))
        });
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimeout(*this.timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A response body that ends its request's in-flight count when dropped (fully sent, or
    /// abandoned because the connection closed).
    pub(crate) struct ResponseBody<B> {
        #[pin]
        pub(crate) inner: B,
        pub(crate) in_flight: InFlight,
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
