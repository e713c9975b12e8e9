//! Graceful shutdown of the real `covet-server` process: signals, readiness, draining with a
//! deadline, keep-alive connections, and the forced exit on a second signal.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    thread,
    time::{Duration, Instant},
};

use support::{Server, get, parse, request};

fn assert_ready_fails_while_live_passes(server: &Server) {
    let ready = get(server.admin, "/health/ready");
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.json()["status"], "OUT_OF_SERVICE");
    let live = get(server.admin, "/health/live");
    assert_eq!(live.status, 200, "{live:?}");
}

fn drains_fifty_slow_requests(signal: &str) {
    let mut server = Server::start(&["--pre-stop-delay", "1s", "--drain-timeout", "10s"], &[]);
    assert_eq!(get(server.admin, "/health/ready").status, 200);
    let api = server.api;
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let ms = 500 + (i * 30) % 1500;
            thread::spawn(move || request(api, "GET", &format!("/api/slow?ms={ms}"), &[], ""))
        })
        .collect();
    thread::sleep(Duration::from_millis(250));
    let signalled = Instant::now();
    server.signal(signal);
    thread::sleep(Duration::from_millis(150));

    // Pre-stop delay: readiness fails, liveness passes, new connections are still served.
    assert_ready_fails_while_live_passes(&server);
    let during = get(server.api, "/api/hello");
    assert_eq!(during.status, 200);
    assert_eq!(during.header("connection"), Some("close"));

    // After the delay: new connections are refused.
    thread::sleep(Duration::from_millis(1_250).saturating_sub(signalled.elapsed()));
    assert!(
        TcpStream::connect(server.api).is_err(),
        "the API still accepts connections after the pre-stop delay"
    );

    for client in clients {
        let reply = client
            .join()
            .unwrap()
            .expect("every in-flight request completes");
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let status = server
        .wait_exit(Duration::from_secs(12))
        .expect("the server exits within the drain timeout plus a margin");
    assert!(status.success(), "exit status {status}");
    let logs = server.logs().join("\n");
    assert!(logs.contains("shutdown complete"), "{logs}");
    assert!(!logs.contains("drain deadline passed"), "{logs}");
}

#[test]
fn sigterm_drains_fifty_in_flight_requests_and_exits_0() {
    drains_fifty_slow_requests("TERM");
}

#[test]
fn sigint_behaves_the_same() {
    drains_fifty_slow_requests("INT");
}

#[test]
fn a_request_longer_than_the_drain_timeout_is_cut_and_counted() {
    let mut server = Server::start(&["--pre-stop-delay", "0s", "--drain-timeout", "1s"], &[]);
    let api = server.api;
    let long = thread::spawn(move || request(api, "GET", "/api/slow?ms=30000", &[], ""));
    thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(6))
        .expect("the server exits on time despite the stuck request");
    assert!(status.success(), "exit status {status}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "cut before the deadline: {took:?}"
    );
    assert!(
        long.join().unwrap().is_err(),
        "the cut request got no response"
    );
    let logs = server.logs();
    let cut = logs
        .iter()
        .find(|l| l.contains("drain deadline passed"))
        .unwrap_or_else(|| panic!("no drain-deadline log line: {logs:?}"));
    let line: serde_json::Value = serde_json::from_str(cut).unwrap();
    let cancelled = line
        .get("cancelled_requests")
        .or_else(|| line.get("fields").and_then(|f| f.get("cancelled_requests")));
    assert_eq!(cancelled, Some(&serde_json::json!(1)), "{cut}");
}

#[test]
fn keep_alive_clients_are_told_to_close() {
    let mut server = Server::start(&["--pre-stop-delay", "2s", "--drain-timeout", "5s"], &[]);
    let mut stream = TcpStream::connect(server.api).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let ask = |stream: &mut TcpStream| {
        stream
            .write_all(b"GET /api/hello HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut buf = vec![0u8; 8192];
        let n = stream.read(&mut buf).unwrap();
        parse(&buf[..n]).expect("a response")
    };
    let first = ask(&mut stream);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("connection"), None, "kept alive while running");

    server.signal("TERM");
    thread::sleep(Duration::from_millis(200));
    let second = ask(&mut stream);
    assert_eq!(second.status, 200);
    assert_eq!(second.header("connection"), Some("close"));
    let mut rest = [0u8; 16];
    assert_eq!(
        stream.read(&mut rest).unwrap(),
        0,
        "the server closed the connection"
    );

    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut server = Server::start(&["--pre-stop-delay", "30s"], &[]);
    server.signal("TERM");
    thread::sleep(Duration::from_millis(300));
    assert_ready_fails_while_live_passes(&server);
    let signalled = Instant::now();
    server.signal("INT");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("the second signal ends the process without waiting for the delay");
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert_eq!(status.code(), Some(1));
}

#[test]
fn the_admin_port_lingers_so_the_last_scrape_holds_the_cancelled_requests() {
    let mut server = Server::start(
        &[
            "--pre-stop-delay",
            "0s",
            "--drain-timeout",
            "1s",
            "--admin-linger",
            "2s",
        ],
        &[],
    );
    let api = server.api;
    let long = thread::spawn(move || request(api, "GET", "/api/slow?ms=30000", &[], ""));
    thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.signal("TERM");

    // Past the drain deadline the API is gone, but the admin port still answers: readiness with
    // 503, and /metrics with the cancelled request and the stopping phase.
    thread::sleep(Duration::from_millis(1_500));
    assert!(
        long.join().unwrap().is_err(),
        "the cut request got no response"
    );
    assert!(
        TcpStream::connect(server.api).is_err(),
        "the API port is closed"
    );
    assert_eq!(get(server.admin, "/health/ready").status, 503);
    let metrics = get(server.admin, "/metrics").body;
    assert_eq!(
        support::sample(&metrics, "shutdown_cancelled_requests_total", &[]),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        support::sample(&metrics, "shutdown_phase", &[r#"phase="stopping""#]),
        Some(1.0),
        "{metrics}"
    );

    let status = server
        .wait_exit(Duration::from_secs(6))
        .expect("the server exits after the linger");
    assert!(status.success(), "exit status {status}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(2_900),
        "exited before the linger ended: {took:?}"
    );
}
