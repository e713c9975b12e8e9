//! The coordinator and the drain layer, driven in-process over real sockets.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower::{Layer as _, ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::serve::{ServeReport, serve};

fn coordinator(pre_stop: u64, drain: u64) -> Shutdown {
    Shutdown::builder()
        .pre_stop_delay(Duration::from_millis(pre_stop))
        .drain_timeout(Duration::from_millis(drain))
        .build()
        .unwrap()
}

/// A server whose requests sleep for `?ms=N` milliseconds.
async fn start(
    shutdown: &Shutdown,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<ServeReport>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ServiceBuilder::new()
        .layer(DrainLayer::new(shutdown))
        .service(service_fn(
            |req: Request<crate::serve::RequestBody>| async move {
                let ms: u64 = req
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("ms="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("done"))))
            },
        ));
    let shutdown = shutdown.clone();
    let server = tokio::spawn(async move { serve(listener, service, &shutdown).await.unwrap() });
    (addr, server)
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Result<Response<Bytes>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", "test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_and_new_connections_are_refused_after_the_delay() {
    let shutdown = coordinator(300, 5_000);
    let (addr, server) = start(&shutdown).await;
    let slow: Vec<_> = (0..20)
        .map(|i| tokio::spawn(get(addr, if i % 2 == 0 { "/?ms=600" } else { "/?ms=900" })))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(shutdown.in_flight(), 20);
    shutdown.trigger();
    assert_eq!(shutdown.phase(), Phase::Draining);
    // During the pre-stop delay new connections are still served, told to close.
    let during = get(addr, "/").await.unwrap();
    assert_eq!(during.status(), 200);
    assert_eq!(during.headers()["connection"], "close");
    shutdown.reached(Phase::Stopping).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "new connections are refused once stopping"
    );
    for request in slow {
        let response = request.await.unwrap().expect("in-flight request completes");
        assert_eq!(response.status(), 200);
        assert_eq!(&response.body()[..], b"done");
    }
    server.await.unwrap();
    let report = shutdown.finish().await;
    assert_eq!(report.cancelled_requests, 0);
    assert_eq!(shutdown.phase(), Phase::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_drain_timeout_is_cut_and_counted() {
    let registry = prometheus::Registry::new();
    let shutdown = Shutdown::builder()
        .pre_stop_delay(Duration::ZERO)
        .drain_timeout(Duration::from_millis(300))
        .metrics(&registry)
        .build()
        .unwrap();
    let (addr, server) = start(&shutdown).await;
    let long = tokio::spawn(get(addr, "/?ms=60000"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    shutdown.trigger();
    let report = server.await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "drain took {elapsed:?}");
    assert_eq!(report.aborted_connections, 1);
    assert!(
        long.await.unwrap().is_err(),
        "the cut request fails on the client"
    );
    let report = shutdown.finish().await;
    assert_eq!(report.cancelled_requests, 1);
    let text = crate::test_support::encode(&registry);
    assert!(
        text.contains("shutdown_cancelled_requests_total 1"),
        "{text}"
    );
    assert!(
        text.contains("shutdown_phase{phase=\"stopped\"} 1"),
        "{text}"
    );
    assert!(text.contains("server_in_flight_requests 0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_when_stopping() {
    let shutdown = coordinator(0, 5_000);
    let (addr, server) = start(&shutdown).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The connection is idle and kept alive; stopping closes it from the server side.
    shutdown.trigger();
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
        .await
        .expect("server closed the idle connection");
    assert_eq!(closed.unwrap(), 0, "EOF");
    server.await.unwrap();
}

#[tokio::test]
async fn hooks_run_in_reverse_order_and_a_hanging_hook_is_abandoned() {
    let shutdown = coordinator(0, 100);
    let order = Arc::new(Mutex::new(Vec::new()));
    for name in ["close pools", "flush telemetry"] {
        let order = order.clone();
        shutdown.add_hook(
            name,
            move || async move { order.lock().unwrap().push(name) },
        );
    }
    shutdown.add_hook_with_timeout("hangs", Duration::from_millis(100), || {
        std::future::pending::<()>()
    });
    let started = Instant::now();
    let report = shutdown.finish().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(*order.lock().unwrap(), ["flush telemetry", "close pools"]);
    let outcomes: Vec<_> = report
        .hooks
        .iter()
        .map(|(n, o)| (n.as_str(), o.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("hangs", HookOutcome::TimedOut),
            ("flush telemetry", HookOutcome::Completed),
            ("close pools", HookOutcome::Completed)
        ]
    );
}

#[tokio::test]
async fn draining_callbacks_and_the_token_fire_once() {
    let shutdown = coordinator(10, 100);
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    shutdown.on_draining(move || *c.lock().unwrap() += 1);
    let token = shutdown.token();
    assert!(!token.is_cancelled());
    shutdown.trigger();
    shutdown.trigger();
    assert!(token.is_cancelled());
    assert_eq!(*calls.lock().unwrap(), 1);
    // A callback added after the trigger runs at once.
    let c = calls.clone();
    shutdown.on_draining(move || *c.lock().unwrap() += 10);
    assert_eq!(*calls.lock().unwrap(), 11);
}

#[tokio::test]
async fn http2_responses_never_carry_connection_close() {
    let shutdown = coordinator(1_000, 100);
    let service = DrainLayer::new(&shutdown).layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    }));
    shutdown.trigger();
    let mut request = Request::new(());
    *request.version_mut() = http::Version::HTTP_2;
    let response = service.clone().oneshot(request).await.unwrap();
    assert!(response.headers().get("connection").is_none());
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.headers()["connection"], "close");
}
