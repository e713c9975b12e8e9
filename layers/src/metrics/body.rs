//! Body wrappers that count the bytes that actually pass.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::instruments::Series;

/// How the request body's size is known.
pub(crate) enum RequestSize {
    /// Exact, from the body's size hint.
    Exact(u64),
    /// Counted as the body is read.
    Counted(Arc<AtomicU64>),
}

impl RequestSize {
    pub(crate) fn get(&self) -> u64 {
        match self {
            RequestSize::Exact(n) => *n,
            RequestSize::Counted(n) => n.load(Ordering::Relaxed),
        }
    }
}

pin_project! {
    /// The request body seen by the service inside [`MetricsLayer`](super::MetricsLayer): the
    /// original body, counting the bytes read when its size is not known up front.
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        counter: Option<Arc<AtomicU64>>,
    }
}

impl<B: Body> RequestBody<B> {
    pub(crate) fn unmeasured(inner: B) -> Self {
        Self {
            inner,
            counter: None,
        }
    }

    /// Wraps `inner`; the size is exact when the body says so, else counted as it is read.
    pub(crate) fn measured(inner: B) -> (Self, RequestSize) {
        match inner.size_hint().exact() {
            Some(exact) => (Self::unmeasured(inner), RequestSize::Exact(exact)),
            None => {
                let counter = Arc::new(AtomicU64::new(0));
                let body = Self {
                    inner,
                    counter: Some(counter.clone()),
                };
                (body, RequestSize::Counted(counter))
            }
        }
    }

    /// Consumes the wrapper, returning the original body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let (Some(counter), Poll::Ready(Some(Ok(frame)))) = (this.counter.as_ref(), &polled)
            && let Some(data) = frame.data_ref()
        {
            counter.fetch_add(data.remaining() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The response body returned through [`MetricsLayer`](super::MetricsLayer): the service's
    /// body, counting the bytes sent. The size is recorded when the body is dropped, so a body
    /// cut short by the client records what was actually sent.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        sent: u64,
        series: Option<Arc<Series>>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(series) = this.series.take() {
                series.response_size.observe(*this.sent as f64);
            }
        }
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn unmeasured(inner: B) -> Self {
        Self {
            inner,
            sent: 0,
            series: None,
        }
    }

    pub(crate) fn measured(inner: B, series: Arc<Series>) -> Self {
        Self {
            inner,
            sent: 0,
            series: Some(series),
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            *this.sent += data.remaining() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody")
            .field("counted", &self.counter.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl<B: Body + Default> Default for RequestBody<B> {
    fn default() -> Self {
        Self::unmeasured(B::default())
    }
}

impl<B: Default> Default for ResponseBody<B> {
    /// An unmeasured empty body (what a short-circuiting outer layer creates).
    fn default() -> Self {
        Self::unmeasured(B::default())
    }
}
