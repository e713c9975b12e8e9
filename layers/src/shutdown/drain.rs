//! [`DrainLayer`]: counts in-flight requests and tells HTTP/1 clients to close while draining.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Phase, Shutdown};

/// Counts in-flight requests for the [`Shutdown`] coordinator and marks HTTP/1 responses
/// `Connection: close` once draining starts, so keep-alive clients reconnect elsewhere.
///
/// After the pre-stop delay (the stopping phase) a request that still arrives on an old
/// connection is answered `503 Service Unavailable` with `Retry-After: 1` and
/// `Connection: close` — a response, not an error. Place it outermost.
#[derive(Clone, Debug)]
pub struct DrainLayer {
    shutdown: Shutdown,
}

impl DrainLayer {
    /// A layer reporting to `shutdown`.
    pub fn new(shutdown: &Shutdown) -> Self {
        Self {
            shutdown: shutdown.clone(),
        }
    }
}

impl<S> Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Drain {
            inner,
            shutdown: self.shutdown.clone(),
        }
    }
}

/// The service made by [`DrainLayer`].
#[derive(Clone, Debug)]
pub struct Drain<S> {
    inner: S,
    shutdown: Shutdown,
}

impl<S> Drain<S> {
    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Drain<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let http1 = req.version() <= Version::HTTP_11;
        if self.shutdown.fast_phase() >= Phase::Stopping {
            return ResponseFuture {
                kind: Kind::Rejected { http1 },
            };
        }
        self.shutdown.request_started();
        ResponseFuture {
            kind: Kind::Inner {
                inner: self.inner.call(req),
                guard: InFlight(self.shutdown.clone()),
                http1,
            },
        }
    }
}

/// Keeps one request counted until its response head is ready or the future is dropped.
struct InFlight(Shutdown);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

pin_project! {
    /// The response future of [`Drain`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Rejected { http1: bool },
        Inner { #[pin] inner: F, guard: InFlight, http1: bool },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { http1 } => {
                let mut response = Response::new(B::default());
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                let headers = response.headers_mut();
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                if *http1 {
                    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Inner {
                inner,
                guard,
                http1,
            } => {
                let mut response = ready!(inner.poll(cx))?;
                // Connection-specific headers are forbidden in HTTP/2 and 3.
                if *http1 && guard.0.fast_phase() >= Phase::Draining {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
