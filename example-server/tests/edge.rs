//! The real `covet-server` process behind a proxy, under hostile clients, and with failing
//! dependencies (issue 18): who a client is, connection limits and timeouts, what Redis being
//! down does to readiness, bad durations, and the answers the layers write themselves.

mod support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use support::{Server, get, request, rss_kib, sample};

/// Connects to `to` from the local address `from` (any of 127.0.0.0/8), as a proxy at that
/// address would.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    // std cannot bind before connecting; tokio's TcpSocket can, on a small runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = runtime.block_on(async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        socket.connect(to).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends one request from `from` and reads the reply.
fn request_from(
    from: [u8; 4],
    to: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> support::Reply {
    let mut stream = connect_from(from, to);
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    support::parse(&raw).expect("a reply")
}

fn status(reply: &support::Reply) -> u16 {
    reply.status
}

/// Behind the trusted proxy (127.0.0.1), a client's own `Forwarded` header never moves its
/// rate-limit key: only the proxy's `X-Forwarded-For` counts. IPv6 clients share one bucket
/// per /64. Hops the proxy could not name are counted against that proxy, not pooled.
#[test]
fn behind_the_proxy_clients_cannot_pick_or_multiply_their_rate_limit_key() {
    let server = Server::start(
        &[
            "--trusted-proxies",
            "127.0.0.1/32,127.0.0.2/32",
            "--rate-limit",
            "2/h",
        ],
        &[],
    );
    let api = server.api;
    let hello = "/api/hello";
    // The proxy appends the real client; the client adds a Forwarded header of its choice.
    let client = |forwarded: &str| {
        request_from(
            [127, 0, 0, 1],
            api,
            hello,
            &[
                ("x-forwarded-for", "198.51.100.7"),
                ("forwarded", forwarded),
            ],
        )
    };
    assert_eq!(status(&client("for=192.0.2.1")), 200);
    assert_eq!(status(&client("for=192.0.2.2")), 200);
    let third = client("for=192.0.2.3");
    assert_eq!(status(&third), 429, "{third:?}");
    // Another client behind the same proxy has its own bucket.
    let other = request_from(
        [127, 0, 0, 1],
        api,
        hello,
        &[("x-forwarded-for", "198.51.100.8")],
    );
    assert_eq!(status(&other), 200);

    // IPv6: one /64 is one client, however many addresses it uses.
    let v6 = |addr: &str| request_from([127, 0, 0, 1], api, hello, &[("x-forwarded-for", addr)]);
    assert_eq!(status(&v6("2001:db8:1:2::1")), 200);
    assert_eq!(status(&v6("2001:db8:1:2::2")), 200);
    assert_eq!(status(&v6("2001:db8:1:2:ffff::3")), 429);
    assert_eq!(
        status(&v6("2001:db8:1:3::1")),
        200,
        "the next /64 is someone else"
    );

    // `unknown` from two proxies: two buckets, not one shared by every such request.
    let unknown =
        |proxy: [u8; 4]| request_from(proxy, api, hello, &[("x-forwarded-for", "unknown")]);
    assert_eq!(status(&unknown([127, 0, 0, 1])), 200);
    assert_eq!(status(&unknown([127, 0, 0, 1])), 200);
    assert_eq!(status(&unknown([127, 0, 0, 1])), 429);
    assert_eq!(status(&unknown([127, 0, 0, 2])), 200);
}

/// The API port is an untrusted edge: a client's `traceparent` does not become the parent (so
/// it cannot choose trace ids or sampling), unless it comes from a trusted trace source.
#[test]
fn the_public_port_starts_its_own_traces_unless_the_source_is_trusted() {
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let server = Server::start(&["--trusted-trace-sources", "127.0.0.2/32"], &[]);
    let public = request_from(
        [127, 0, 0, 1],
        server.api,
        "/api/hello",
        &[("traceparent", traceparent), ("baggage", "user=mallory")],
    );
    let trace_id = public.header("x-trace-id").expect("a trace id");
    assert_ne!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    let trusted = request_from(
        [127, 0, 0, 2],
        server.api,
        "/api/hello",
        &[("traceparent", traceparent)],
    );
    assert_eq!(
        trusted.header("x-trace-id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

/// Reads from `stream` until the server closes it; how long that took. Panics if it is still
/// open after `limit`.
fn closed_after(stream: &mut TcpStream, limit: Duration) -> Duration {
    stream.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("still open after {limit:?}")
            }
            Err(_) => return started.elapsed(),
        }
    }
}

/// Silent connections, idle keep-alive connections and slow bodies are all closed in time.
#[test]
fn silent_idle_and_slow_body_connections_are_closed_in_time() {
    let server = Server::start(
        &[
            "--header-read-timeout",
            "1s",
            "--idle-timeout",
            "3s",
            "--body-read-timeout",
            "1s",
        ],
        &[],
    );
    // Connects and sends nothing.
    let mut silent = TcpStream::connect(server.api).unwrap();
    let took = closed_after(&mut silent, Duration::from_secs(5));
    assert!(took < Duration::from_millis(2500), "silent for {took:?}");

    // A keep-alive connection outlives the header timeout while idle, up to the idle timeout.
    let mut conn = support::Conn::open(server.api).unwrap();
    let hello = b"GET /api/hello HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(conn.round_trip(hello).unwrap().status, 200);
    thread::sleep(Duration::from_millis(1800));
    assert_eq!(
        conn.round_trip(hello).unwrap().status,
        200,
        "kept alive past 1 s idle"
    );
    let idle_started = Instant::now();
    assert!(
        conn.read_reply().is_err(),
        "the idle connection is closed by the server"
    );
    let idle = idle_started.elapsed();
    assert!(
        idle >= Duration::from_millis(2500) && idle < Duration::from_secs(6),
        "closed after {idle:?} idle (idle timeout 3 s)"
    );

    // A body sent one byte at a time fails at the body timeout: 400, no 5xx.
    let mut slow = TcpStream::connect(server.api).unwrap();
    slow.write_all(
        b"POST /api/notes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{",
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        if slow.write_all(b" ").is_err() {
            break;
        }
        let mut buf = [0u8; 2048];
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// With 1,100 silent connections under `ulimit -n 1024`, the admin port keeps answering
/// (the API port's cap leaves descriptors for it), new API connections are shed, and once the
/// header timeout closes the silent ones the API answers again.
#[test]
fn a_flood_of_silent_connections_never_starves_the_admin_port() {
    let server = Server::start_with_nofile(&["--header-read-timeout", "3s"], &[], Some(1024));
    let logs = server.logs();
    assert!(
        logs.iter().any(|l| l.contains("\"max_connections\":576")),
        "auto cap from the 1024 limit: {logs:?}"
    );
    let mut flood = Vec::new();
    for _ in 0..1_100 {
        flood.push(TcpStream::connect(server.api).expect("connect"));
    }
    let live = get(server.admin, "/health/live");
    assert_eq!(live.status, 200, "the admin port answers during the flood");
    assert_eq!(get(server.admin, "/health/ready").status, 200);
    let counts = || {
        let text = get(server.admin, "/metrics").body;
        let value = |name: &str, labels: &[&str]| sample(&text, name, labels).unwrap();
        (
            value("server_connections_rejected_total", &[]),
            value(
                "server_connection_timeouts_total",
                &["kind=\"first_request\""],
            ),
            value("server_open_connections", &[]),
        )
    };
    // Every flood connection ends up shed at the cap or closed by the first-request timeout,
    // and the server never holds more than its cap (plus the admin scrape itself).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (rejected, timed_out) = loop {
        let (rejected, timed_out, open) = counts();
        assert!(open <= 576.0 + 2.0, "{open} connections open, over the cap");
        if rejected + timed_out >= 1_100.0 {
            break (rejected, timed_out);
        }
        assert!(
            Instant::now() < deadline,
            "{rejected} shed and {timed_out} timed out of 1,100"
        );
        thread::sleep(Duration::from_millis(100));
    };
    assert!(
        rejected > 0.0 && timed_out >= 576.0,
        "{rejected} shed, {timed_out} timed out; the server's serve-loop lines: {:?}",
        server
            .logs()
            .iter()
            .filter(|l| l.contains("covet::serve"))
            .collect::<Vec<_>>()
    );
    drop(flood);
    // The API answers again.
    assert_eq!(get(server.api, "/api/hello").status, 200);
}

/// A burst of new connections while the server accepts none (stopped with SIGSTOP) waits in
/// the kernel's accept queue: all 600 handshakes complete at once. With the 128 that
/// `TcpListener::bind` asks for, the 130th SYN is dropped and its connect waits for the
/// retransmission a second later, past the 600 ms allowed here.
#[test]
fn a_connection_burst_waits_in_the_accept_queue() {
    let server = Server::start(&[], &[]);
    server.signal("STOP");
    let mut burst = Vec::new();
    let queued = (0..600).try_for_each(|i| {
        let stream = TcpStream::connect_timeout(&server.api, Duration::from_millis(600))
            .map_err(|e| format!("connection {i} of the burst was not queued: {e}"))?;
        burst.push(stream);
        Ok::<_, String>(())
    });
    server.signal("CONT");
    queued.unwrap();
    drop(burst);
    assert_eq!(get(server.api, "/api/hello").status, 200);
}

/// 200 parked, never-finished request heads hold a bounded amount of memory.
#[test]
fn parked_unfinished_heads_hold_bounded_memory() {
    let server = Server::start(&["--header-read-timeout", "30s"], &[]);
    // Warm up allocator and runtime.
    for _ in 0..20 {
        get(server.api, "/api/hello");
    }
    let before = rss_kib(server.child.id());
    let padding = "a".repeat(30 * 1024);
    let mut parked = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(server.api).unwrap();
        let _ = stream.write_all(
            format!("GET /api/hello HTTP/1.1\r\nHost: t\r\nX-Pad: {padding}").as_bytes(),
        );
        parked.push(stream);
    }
    thread::sleep(Duration::from_millis(500));
    let during = rss_kib(server.child.id());
    let grown_mib = during.saturating_sub(before) as f64 / 1024.0;
    assert!(
        grown_mib < 24.0,
        "200 parked heads grew the server by {grown_mib:.1} MiB"
    );
    drop(parked);
    assert_eq!(get(server.api, "/api/hello").status, 200);
}

/// Redis down does not take the replica out of the load balancer: readiness stays 200 with
/// Redis reported DOWN in `/health` as a non-critical component.
#[test]
fn redis_down_is_reported_but_does_not_fail_readiness() {
    let closed = support::free_addr();
    let server = Server::start(&["--redis-url", &format!("redis://{closed}")], &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let health = get(server.admin, "/health");
        if health.json()["components"]["redis"]["status"] == "DOWN" {
            break health;
        }
        assert!(Instant::now() < deadline, "{health:?}");
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health.status, 200, "a non-critical DOWN: {health:?}");
    let ready = get(server.admin, "/health/ready");
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.json()["components"]["redis"]["status"], "DOWN");
    // Notes (in memory) still work without their cache.
    assert_eq!(get(server.api, "/api/notes").status, 200);
}

/// Durations no deadline can hold are refused at start-up, naming the setting.
#[test]
fn absurd_durations_exit_2_naming_the_setting() {
    for (flag, value) in [
        ("--drain-timeout", "500000000000years"),
        ("--pre-stop-delay", "90000h"),
        ("--idle-timeout", "0s"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_covet-server"))
            .args([
                flag,
                value,
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}

/// The answers the layers write themselves (429 from the rate limiter, 503 while draining)
/// carry the security headers like every other API response.
#[test]
fn the_layers_own_answers_carry_the_security_headers() {
    let server = Server::start(&["--rate-limit", "1/h"], &[]);
    assert_eq!(get(server.api, "/api/hello").status, 200);
    let limited = get(server.api, "/api/hello");
    assert_eq!(limited.status, 429);
    assert_security_headers(&limited.headers);

    // The drain layer's 503 for a request on an old connection after the pre-stop delay,
    // through the server's own router.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use clap::Parser as _;
        use tower::ServiceExt as _;
        let config = covet_server::Config::parse_from([
            "covet-server",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--pre-stop-delay",
            "0s",
        ]);
        let server = covet_server::Server::build(&config).await.unwrap();
        let router = server.api_router();
        server.shutdown().trigger();
        server
            .shutdown()
            .reached(covet_layers::shutdown::Phase::Stopping)
            .await;
        let response = router
            .oneshot(
                axum::http::Request::get("/api/hello")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_security_headers(&headers);
    });
}

fn assert_security_headers(headers: &[(String, String)]) {
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        (
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        ),
    ] {
        let found = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        assert_eq!(found, Some(value), "{name} in {headers:?}");
    }
}

/// `/healthz`-like paths are measured: only `/health` and what is below it is left out.
#[test]
fn only_the_health_paths_themselves_are_left_out_of_the_metrics() {
    let server = Server::start(&[], &[]);
    for path in ["/healthz-7", "/health-check", "/healthz"] {
        assert_eq!(get(server.api, path).status, 404);
    }
    let text = get(server.admin, "/metrics").body;
    let counted = sample(
        &text,
        "http_requests_total",
        &["route=\"NOT_FOUND\"", "status=\"404\""],
    )
    .unwrap_or(0.0);
    assert_eq!(counted, 3.0, "{text}");
}

/// The in-memory notes store is capped (507 past it, with a message saying why), and
/// `--help` warns that writes are open without a token.
#[test]
fn the_in_memory_store_is_capped_and_open_writes_are_documented() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_covet-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Without it the write endpoints are open"),
        "{help}"
    );
    let server = Server::start(&["--rate-limit", "100000/s"], &[]);
    let json = [("content-type", "application/json")];
    let mut conn = support::Conn::open(server.api).unwrap();
    let body = r#"{"title":"t","body":"b"}"#;
    let create = format!(
        "POST /api/notes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..1_000 {
        assert_eq!(conn.round_trip(create.as_bytes()).unwrap().status, 201);
    }
    let full = request(server.api, "POST", "/api/notes", &json, body).unwrap();
    assert_eq!(full.status, 507, "{full:?}");
    assert!(full.body.contains("full"), "{full:?}");
    let big = format!(r#"{{"title":"t","body":"{}"}}"#, "b".repeat(100 * 1024));
    let too_big = request(server.api, "POST", "/api/notes", &json, &big).unwrap();
    assert_eq!(too_big.status, 413, "{too_big:?}");
}

#[test]
fn a_stalled_log_reader_never_stops_the_api_or_the_admin_port() {
    // Nobody reads stderr: the pipe (64 KiB) fills after a few hundred lines, as when a log
    // shipper stalls. Every request still answers; the lines that do not fit are counted.
    let server = Server::start_with_paused_logs(
        &["--log-buffer-lines", "64", "--rate-limit", "100000/s"],
        &[],
    );
    let mut conn = support::Conn::open(server.api).unwrap();
    let started = Instant::now();
    for i in 0..3_000 {
        let reply = conn
            .round_trip(b"GET /api/hello HTTP/1.1\r\nHost: covet\r\n\r\n")
            .unwrap_or_else(|e| panic!("request {i} got no answer while stderr stalls: {e}"));
        assert_eq!(reply.status, 200, "request {i}");
    }
    let took = started.elapsed();
    assert_eq!(get(server.admin, "/health/live").status, 200);
    let metrics = get(server.admin, "/metrics");
    assert_eq!(metrics.status, 200);
    let dropped = sample(&metrics.body, "log_lines_dropped_total", &[]).unwrap_or(0.0);
    assert!(
        dropped >= 1_000.0,
        "3,000 request lines into a 64-line queue and a full pipe: {dropped} dropped ({took:?})"
    );

    // The reader comes back: the queued lines arrive, as JSON.
    server.resume_logs();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .logs()
        .iter()
        .any(|line| line.contains("covet-server listening"))
    {
        assert!(
            Instant::now() < deadline,
            "no log line after the reader resumed"
        );
        thread::sleep(Duration::from_millis(50));
    }
    for line in server.logs() {
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|e| panic!("a broken log line ({e}): {line}"));
    }
}
