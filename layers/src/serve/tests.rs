//! The server loop's timeouts and limits, against hostile clients over real sockets.

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, routing::get};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::*;
use crate::shutdown::Shutdown;

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" })).route(
        "/upload",
        axum::routing::post(|body: Bytes| async move { format!("{} bytes", body.len()) }),
    )
}

fn options() -> ServeOptionsBuilder {
    ServeOptions::builder()
        .header_read_timeout(Duration::from_millis(300))
        .idle_timeout(Duration::from_millis(900))
        .body_read_timeout(Duration::from_millis(400))
}

/// Serves `app()` with `options` on a fresh port until the test ends.
async fn start(options: ServeOptions) -> (SocketAddr, Shutdown) {
    let shutdown = Shutdown::builder()
        .pre_stop_delay(Duration::ZERO)
        .drain_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let coordinator = shutdown.clone();
    tokio::spawn(async move { serve_with(listener, app(), &coordinator, options).await });
    (addr, shutdown)
}

/// Reads until the server closes the connection (or `limit` passes); returns what was read and
/// how long it took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, started.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection is still open after {limit:?}; read {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads one small `Content-Length` response off a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&out).ends_with("ok") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_read_timeout() {
    let (addr, _shutdown) = start(options().build().unwrap()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (read, took) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(read.is_empty());
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(850),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn a_slow_http2_preface_is_closed_at_the_header_read_timeout() {
    let (addr, _shutdown) = start(options().build().unwrap()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let (_, took) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(took < Duration::from_millis(850), "closed after {took:?}");
}

#[tokio::test]
async fn keep_alive_outlives_the_header_timeout_and_ends_at_the_idle_timeout() {
    let (addr, _shutdown) = start(options().build().unwrap()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header read timeout: still open, and serves again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.write_all(GET).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    let (read, took) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(read.is_empty());
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(1600),
        "closed after {took:?} idle (idle timeout 900 ms)"
    );
}

#[tokio::test]
async fn a_request_head_sent_byte_by_byte_is_cut_at_the_header_read_timeout() {
    let (addr, _shutdown) = start(options().build().unwrap()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    read_response(&mut stream).await;
    let started = Instant::now();
    let mut closed = false;
    for byte in b"GET / HTTP/1.1\r\nHost: slow\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaa\r\n" {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    let took = started.elapsed();
    assert!(closed, "the slow head was never cut");
    assert!(
        took < Duration::from_millis(800),
        "cut after {took:?} (header read timeout 300 ms, idle timeout 900 ms)"
    );
}

#[tokio::test]
async fn a_body_sent_byte_by_byte_fails_at_the_body_read_timeout() {
    let (addr, _shutdown) = start(options().build().unwrap()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    for _ in 0..40 {
        if stream.write_all(b"a").await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                reply.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("HTTP/1.1 400"),
        "the handler's body read fails (axum answers 400): {reply:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(1200));
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_are_closed_at_once() {
    let (addr, _shutdown) = start(options().max_connections(2).build().unwrap()).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(GET).await.unwrap();
        read_response(&mut stream).await;
        held.push(stream);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let (read, took) = read_until_closed(&mut third, Duration::from_secs(1)).await;
    assert!(read.is_empty());
    assert!(took < Duration::from_millis(250), "closed after {took:?}");
    // Once a held connection goes, a new one is served.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    fourth.write_all(GET).await.unwrap();
    assert!(read_response(&mut fourth).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_head_over_the_cap_gets_431() {
    let (addr, _shutdown) = start(options().max_header_bytes(16 * 1024).build().unwrap()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let _ = stream.write_all(big.as_bytes()).await;
    let (read, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(
        String::from_utf8_lossy(&read).starts_with("HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&read)
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_despite_the_clients_pings() {
    let (addr, _shutdown) = start(options().build().unwrap()).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(100))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(
            http::Request::get(format!("http://{addr}/"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), connection)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700),
        "closed after {took:?}, before the idle timeout"
    );
}

#[tokio::test]
async fn the_drain_deadline_counts_only_connections_still_open() {
    let shutdown = Shutdown::builder()
        .pre_stop_delay(Duration::ZERO)
        .drain_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tower::service_fn(|req: Request<RequestBody>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Ok::<_, Infallible>(Response::new(String::from("done")))
    });
    let coordinator = shutdown.clone();
    let server = tokio::spawn(async move { serve(listener, service, &coordinator).await.unwrap() });
    // One connection stays with a slow request; three more come and go after it.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        read_until_closed(&mut stream, Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.trigger();
    let report = server.await.unwrap();
    assert_eq!(report.connections, 4);
    assert_eq!(report.aborted_connections, 1);
}
