//! The response future of the health service.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use crate::check::BoxFuture;

/// The future returned by [`HealthService`](super::HealthService).
pub struct ResponseFuture {
    kind: Kind,
}

enum Kind {
    Ready(Option<Response<Full<Bytes>>>),
    Pending(BoxFuture<'static, Response<Full<Bytes>>>),
}

impl ResponseFuture {
    pub(super) fn ready(response: Response<Full<Bytes>>) -> Self {
        Self {
            kind: Kind::Ready(Some(response)),
        }
    }

    pub(super) fn pending(future: BoxFuture<'static, Response<Full<Bytes>>>) -> Self {
        Self {
            kind: Kind::Pending(future),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().kind {
            Kind::Ready(response) => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            Kind::Pending(fut) => fut.as_mut().poll(cx).map(Ok),
        }
    }
}
