//! Helpers shared by the tracing tests: in-process OTLP receivers and a bare hyper client.
#![allow(dead_code, missing_docs)]

pub(crate) mod otlp;

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Sends one HTTP/1.1 request to `addr` on a fresh connection and collects the response.
pub(crate) async fn send(addr: SocketAddr, req: Request<Empty<Bytes>>) -> Response<Bytes> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let res = sender.send_request(req).await.expect("send request");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("read body").to_bytes();
    Response::from_parts(parts, body)
}

/// A `MakeWriter` collecting every log line.
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Arc<Mutex<Vec<u8>>>);

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

impl Capture {
    /// Every line, parsed as JSON (a line that is not JSON fails the test).
    pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}
