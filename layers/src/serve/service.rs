//! The per-connection service: the peer address into each request's extensions, the request
//! body's deadline, and the connection's in-flight count.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{Request, Response, Version};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{
    body::{RequestBody, ResponseBody},
    connection::{ConnState, InFlight},
};

/// Wraps the user's service for one connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnService<S> {
    pub(crate) inner: S,
    pub(crate) peer: SocketAddr,
    pub(crate) state: Arc<ConnState>,
    pub(crate) body_read_timeout: Duration,
}

impl<S, B> Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
{
    type Response = Response<ResponseBody<B>>;
    type Error = S::Error;
    type Future = ConnFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        self.state.request_started(req.version() == Version::HTTP_2);
        let in_flight = InFlight(Arc::clone(&self.state));
        let timeout = self.body_read_timeout;
        let mut req = req.map(|body| RequestBody::new(body, timeout));
        #[cfg(feature = "axum")]
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        #[cfg(not(feature = "axum"))]
        req.extensions_mut().insert(self.peer);
        ConnFuture {
            inner: self.inner.call(req),
            in_flight: Some(in_flight),
        }
    }
}

pin_project! {
    /// The response future: hands the in-flight guard to the response body.
    pub(crate) struct ConnFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, B, E> Future for ConnFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let in_flight = this
            .in_flight
            .take()
            .expect("ConnFuture polled after completion");
        Poll::Ready(Ok(response.map(|inner| ResponseBody { inner, in_flight })))
    }
}
