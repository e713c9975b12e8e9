//! [`SecurityHeaders`]: the service made by the layer.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{config::Config, future::ResponseFuture, nonce::CspNonce};

/// The service made by [`SecurityHeadersLayer`](super::SecurityHeadersLayer).
#[derive(Clone, Debug)]
pub struct SecurityHeaders<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> SecurityHeaders<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let nonce = self.config.nonce_policy.as_ref().map(|_| {
            let nonce = CspNonce::generate();
            req.extensions_mut().insert(nonce);
            nonce
        });
        ResponseFuture::new(self.inner.call(req), self.config.clone(), nonce)
    }
}
