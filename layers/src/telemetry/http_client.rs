//! The HTTP client of the OTLP HTTP/protobuf exporter: hyper on the caller's Tokio runtime.
//!
//! The SDK's batch processor exports from its own thread, outside any runtime; each export is
//! therefore spawned onto the runtime captured at `init` and awaited through its join handle.
//! This keeps one hyper and one `http` in the dependency tree (no reqwest) and needs no
//! runtime on the exporting thread.

use std::{fmt, future::Future, pin::Pin, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use opentelemetry_http::{HttpClient, HttpError};

/// Responses from a collector are small; anything bigger is refused.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub(crate) struct RuntimeHyperClient {
    client: Client<HttpConnector, Full<Bytes>>,
    handle: tokio::runtime::Handle,
    timeout: Duration,
}

impl RuntimeHyperClient {
    pub(crate) fn new(handle: tokio::runtime::Handle, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Self {
            client,
            handle,
            timeout,
        }
    }
}

impl fmt::Debug for RuntimeHyperClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeHyperClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

async fn send(
    client: Client<HttpConnector, Full<Bytes>>,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, HttpError> {
    let response = client.request(request.map(Full::new)).await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await?
        .to_bytes();
    Ok(Response::from_parts(parts, body))
}

impl HttpClient for RuntimeHyperClient {
    // `HttpClient` is an `async_trait`; this is its desugared signature.
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.handle.spawn(async move {
            match tokio::time::timeout(timeout, send(client, request)).await {
                Ok(result) => result,
                Err(_) => Err(format!("OTLP export timed out after {timeout:?}").into()),
            }
        });
        Box::pin(async move { task.await.map_err(|e| Box::new(e) as HttpError)? })
    }
}
