//! Real OTLP trace receivers, in process: OTLP/HTTP (protobuf bodies on a hyper server) and
//! OTLP/gRPC (the collector's `TraceService` on a tonic server). Both decode the protobuf the
//! exporter sent and keep every span with its resource's `service.name`.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value,
    trace::v1::Span,
};
use prost::Message;

/// A span as received, with the `service.name` of its resource.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) service_name: String,
    pub(crate) span: Span,
}

impl Received {
    pub(crate) fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    pub(crate) fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
    pub(crate) fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
    /// A string, integer or boolean attribute, rendered as a string.
    pub(crate) fn attr(&self, key: &str) -> Option<String> {
        let kv = self.span.attributes.iter().find(|kv| kv.key == key)?;
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            any_value::Value::BoolValue(b) => Some(b.to_string()),
            any_value::Value::DoubleValue(d) => Some(d.to_string()),
            other => Some(format!("{other:?}")),
        }
    }
    /// The OTLP status code: 0 unset, 1 ok, 2 error.
    pub(crate) fn status_code(&self) -> i32 {
        self.span.status.as_ref().map_or(0, |s| s.code)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans a receiver has decoded so far.
#[derive(Clone, Default)]
pub(crate) struct Spans(Arc<Mutex<Vec<Received>>>);

impl Spans {
    fn push(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.0.lock().unwrap();
        for resource_spans in request.resource_spans {
            let service_name = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push(Received {
                        service_name: service_name.clone(),
                        span,
                    });
                }
            }
        }
    }

    pub(crate) fn all(&self) -> Vec<Received> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) for a span matching `pred`.
    pub(crate) async fn wait_for(&self, what: &str, pred: impl Fn(&Received) -> bool) -> Received {
        for _ in 0..200 {
            if let Some(found) = self.all().into_iter().find(&pred) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no exported span matched {what}; received: {:#?}",
            self.all()
        );
    }
}

async fn http_export(
    spans: Spans,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        res.headers_mut()
            .insert("content-type", "application/x-protobuf".parse().unwrap());
        Ok(res)
    };
    if req.uri().path() != "/v1/traces" || req.method() != http::Method::POST {
        return reply(StatusCode::NOT_FOUND, Vec::new());
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    if content_type != "application/x-protobuf" {
        return reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            spans.push(request);
            reply(
                StatusCode::OK,
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        }
        Err(_) => reply(StatusCode::BAD_REQUEST, Vec::new()),
    }
}

/// Starts an OTLP/HTTP receiver on 127.0.0.1; returns its base URL and the decoded spans.
pub(crate) async fn http_receiver() -> (String, Spans) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spans = Spans::default();
    let store = spans.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| http_export(store.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), spans)
}

struct GrpcReceiver(Spans);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts an OTLP/gRPC receiver on 127.0.0.1; returns its URL and the decoded spans.
pub(crate) async fn grpc_receiver() -> (String, Spans) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let spans = Spans::default();
    let service = TraceServiceServer::new(GrpcReceiver(spans.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (format!("http://{addr}"), spans)
}
