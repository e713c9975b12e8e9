//! Hostile input against the real `covet-server` process (issue 13): random paths and methods,
//! a hundred thousand client keys behind a trusted proxy, oversized and malformed headers,
//! slow clients, and floods of the health and metrics endpoints. Real sockets on 127.0.0.1.

mod support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use support::{Conn, Server, fd_count, get, rss_kib, sample, samples};

/// A small deterministic generator (xorshift64*), so a failure replays the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn metrics(server: &Server) -> String {
    let reply = get(server.admin, "/metrics");
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

/// The server answers and has not panicked.
fn assert_healthy(server: &Server) {
    assert_eq!(get(server.admin, "/health/live").status, 200);
    assert_eq!(get(server.api, "/api/hello").status, 200);
    let logs = server.logs().join("\n");
    assert!(!logs.contains("panicked"), "{logs}");
}

/// Reads replies on `conn` until one arrives, for up to 30 s; `None` when the server closed
/// the connection instead of answering.
fn reply_or_close(conn: &mut Conn) -> Option<support::Reply> {
    conn.read_reply().ok()
}

fn random_path(rng: &mut Rng) -> String {
    const PREFIXES: &[&str] = &[
        "/",
        "/api/",
        "/api/notes/",
        "/api/hello/",
        "/health/",
        "/metrics/",
        "/%2e%2e/",
        "/wp-admin/",
        "/.env/",
    ];
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._~%2F";
    let mut path = rng.pick(PREFIXES).to_owned();
    for _ in 0..rng.below(4) {
        for _ in 0..1 + rng.below(12) {
            path.push(ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char);
        }
        path.push('/');
    }
    if rng.below(3) == 0 {
        path.push_str(&format!("?q={}", rng.next()));
    }
    path
}

fn random_method(rng: &mut Rng) -> String {
    const KNOWN: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
    ];
    if rng.below(2) == 0 {
        return rng.pick(KNOWN).to_owned();
    }
    (0..1 + rng.below(10))
        .map(|_| (b'A' + rng.below(26) as u8) as char)
        .collect()
}

/// 10,000 requests with random methods to random paths: the `http_requests_total` series stay
/// few (route templates, `_OTHER` for unknown methods, a sentinel for unmatched paths) and
/// resident memory barely moves.
#[test]
fn ten_thousand_random_paths_and_methods_keep_series_and_memory_bounded() {
    let server = Server::start(&["--rate-limit", "1000000/s"], &[("RUST_LOG", "warn")]);
    let pid = server.child.id();
    let api = server.api;
    let run = move |seed: u64, count: usize| {
        let mut rng = Rng(seed);
        let mut conn = Conn::open(api).unwrap();
        let mut statuses = Vec::with_capacity(count);
        let mut excluded = 0;
        for _ in 0..count {
            let (method, path) = (random_method(&mut rng), random_path(&mut rng));
            // The metrics layer leaves `/metrics` and `/health*` out by default.
            excluded += usize::from(path.starts_with("/health"));
            let raw = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
            let reply = conn
                .round_trip(raw.as_bytes())
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            if reply.header("connection") == Some("close") {
                conn = Conn::open(api).unwrap();
            }
            statuses.push(reply.status);
        }
        (statuses, excluded)
    };
    // Warm up (every route, allocator pools, connection buffers), then measure.
    let (_, mut excluded) = run(1, 1_000);
    let before = rss_kib(pid);
    let clients: Vec<_> = (0..4u64)
        .map(|i| thread::spawn(move || run(0x9e37_79b9_7f4a_7c15 ^ (i + 2), 2_500)))
        .collect();
    let mut statuses = Vec::new();
    for client in clients {
        let (s, e) = client.join().unwrap();
        statuses.extend(s);
        excluded += e;
    }
    assert_eq!(statuses.len(), 10_000);
    let server_errors = statuses.iter().filter(|s| **s >= 500).count();
    assert_eq!(server_errors, 0, "5xx answers to random requests");
    let after = rss_kib(pid);

    let text = metrics(&server);
    let series = samples(&text, "http_requests_total");
    assert!(
        series.len() < 30,
        "{} http_requests_total series: {series:?}",
        series.len()
    );
    let total: f64 = series.iter().map(|(_, v)| v).sum();
    assert_eq!(total as usize, 11_000 - excluded, "every request counted");
    // Bound: 8 MiB over the warmed-up size, for 10,000 requests that should leave nothing.
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    eprintln!(
        "random requests: RSS {before} -> {after} KiB, {} series",
        series.len()
    );
    assert_healthy(&server);
}

/// 100,000 distinct clients behind a trusted proxy (one `X-Forwarded-For` address each): the
/// limiter holds at most `--rate-limit-max-keys` keys, memory stays bounded, and the keys go
/// away once their buckets refill.
#[test]
fn a_hundred_thousand_client_keys_stay_under_the_cap_and_expire() {
    const CAP: f64 = 6_400.0; // 100 per shard of the 64: an exact cap
    let server = Server::start(
        &[
            "--trusted-proxies",
            "127.0.0.1/32",
            "--rate-limit",
            "1/s",
            "--rate-limit-max-keys",
            "6400",
        ],
        // No request log: 100,000 lines would cost more than the requests.
        &[("RUST_LOG", "warn")],
    );
    let pid = server.child.id();
    let api = server.api;
    let flood = move |first: u32, count: u32| {
        let mut conn = Conn::open(api).unwrap();
        let (mut allowed, mut limited) = (0u32, 0u32);
        let batch = 50;
        let mut n = first;
        while n < first + count {
            let end = (n + batch).min(first + count);
            let mut raw = Vec::new();
            for i in n..end {
                let [_, a, b, c] = i.to_be_bytes();
                write!(
                    raw,
                    "GET /api/hello HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.{a}.{b}.{c}\r\n\r\n"
                )
                .unwrap();
            }
            conn.send(&raw).unwrap();
            for _ in n..end {
                match conn.read_reply().unwrap().status {
                    200 => allowed += 1,
                    429 => limited += 1,
                    other => panic!("status {other}"),
                }
            }
            n = end;
        }
        (allowed, limited)
    };
    flood(0, 2_000); // warm-up: tables, buffers
    let before = rss_kib(pid);
    let started = Instant::now();
    let clients: Vec<_> = (0..4u32)
        .map(|i| thread::spawn(move || flood(2_000 + i * 25_000, 25_000)))
        .collect();
    let (mut allowed, mut limited) = (0, 0);
    for client in clients {
        let (a, l) = client.join().unwrap();
        allowed += a;
        limited += l;
    }
    let after = rss_kib(pid);
    let keys = sample(&metrics(&server), "rate_limit_memory_keys", &[]).unwrap();
    eprintln!(
        "100,000 keys in {:?}: {allowed} allowed, {limited} limited, {keys} held, RSS {before} -> {after} KiB",
        started.elapsed()
    );
    assert_eq!(allowed + limited, 100_000);
    // Every shard admits new clients up to its share of the cap, whatever the pace.
    assert!(
        f64::from(allowed) >= CAP,
        "only {allowed} new clients passed"
    );
    assert!(keys <= CAP, "{keys} keys held, over the cap {CAP}");
    assert!(keys > 0.0);
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );

    // Every bucket refills within a second; the sweep (every 10 s, run by a request) drops them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let held = loop {
        thread::sleep(Duration::from_millis(500));
        // A request (from a client of its own) runs the sweep once it is due.
        let poll = support::request(
            server.api,
            "GET",
            "/api/hello",
            &[("x-forwarded-for", "192.0.2.1")],
            "",
        )
        .unwrap();
        assert!(matches!(poll.status, 200 | 429), "{poll:?}");
        let held = sample(&metrics(&server), "rate_limit_memory_keys", &[]).unwrap();
        if held <= 3.0 || Instant::now() > deadline {
            break held;
        }
    };
    assert!(held <= 3.0, "{held} keys still held 20 s after the flood");
    assert_healthy(&server);
}

/// Sends raw bytes on a fresh connection and reads until the server closes it (or 10 s).
fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may answer (431) and close before reading everything: a write error is fine.
    let _ = stream.write_all(raw);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply
}

fn status_of(reply: &[u8]) -> Option<u16> {
    std::str::from_utf8(reply.get(9..12)?).ok()?.parse().ok()
}

/// Oversized and malformed headers: never a 5xx, never a crash, nothing hostile echoed.
#[test]
fn oversized_and_malformed_headers_get_no_5xx_and_no_echo() {
    let server = Server::start(&[], &[]);
    let head = |extra: &[u8]| {
        let mut raw = b"GET /api/hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".to_vec();
        raw.extend_from_slice(extra);
        raw.extend_from_slice(b"\r\n");
        raw
    };
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tracestate: String = (0..33)
        .map(|i| format!("hostile{i}=HOSTILE{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a 64 KB header value",
            head(format!("x-junk: HOSTILE{}\r\n", "a".repeat(64 * 1024)).as_bytes()),
        ),
        (
            "5,000 headers",
            head(
                (0..5_000)
                    .map(|i| format!("x-h{i}: HOSTILE\r\n"))
                    .collect::<String>()
                    .as_bytes(),
            ),
        ),
        (
            "invalid UTF-8 in header values",
            head(
                b"x-request-id: HOSTILE\xff\xfe\r\nuser-agent: HOSTILE\xc3\x28\r\n\
                  x-forwarded-for: \xff\xff\r\nforwarded: for=\"\xff\"\r\n\
                  accept: HOSTILE\xe2\x82\r\n",
            ),
        ),
        (
            "duplicate x-request-id",
            head(b"x-request-id: dup-1\r\nx-request-id: <HOSTILE>\r\n"),
        ),
        (
            "33 tracestate members",
            head(
                format!(
                    "traceparent: 00-{TRACE_ID}-00f067aa0ba902b7-01\r\ntracestate: {tracestate}\r\n"
                )
                .as_bytes(),
            ),
        ),
        (
            "traceparent version ff",
            head(
                format!(
                    "traceparent: ff-{TRACE_ID}-00f067aa0ba902b7-01\r\ntracestate: HOSTILE=1\r\n\
                     baggage: HOSTILE=1\r\n"
                )
                .as_bytes(),
            ),
        ),
    ];
    for (name, raw) in &cases {
        let reply = raw_exchange(server.api, raw);
        // hyper may refuse an oversized head (431) or close the connection: both are fine.
        if let Some(status) = status_of(&reply) {
            assert!(status < 500, "{name}: status {status}");
            assert!(
                !String::from_utf8_lossy(&reply).contains("HOSTILE"),
                "{name}: echoed {:?}",
                String::from_utf8_lossy(&reply)
            );
            assert!(!reply.contains(&0xff), "{name}: echoed raw bytes");
        }
        if *name == "traceparent version ff" || *name == "duplicate x-request-id" {
            let reply = support::parse(&reply).unwrap_or_else(|| panic!("{name}: no reply"));
            assert_eq!(reply.status, 200, "{name}");
            let trace_id = reply.header("x-trace-id").unwrap();
            assert_ne!(
                trace_id, TRACE_ID,
                "{name}: a version ff parent was continued"
            );
            let ids: Vec<_> = reply
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
                .collect();
            assert_eq!(ids.len(), 1, "{name}: {ids:?}");
        }
        assert_healthy(&server);
    }
}

/// A client that sends its request head one byte per second is cut off by the header-read
/// timeout.
#[test]
fn a_one_byte_per_second_client_is_closed_by_the_header_read_timeout() {
    let server = Server::start(&["--header-read-timeout", "2s"], &[]);
    let mut stream = TcpStream::connect(server.api).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(900)))
        .unwrap();
    let started = Instant::now();
    let head = b"GET /api/hello HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_after = None;
    for byte in head.iter() {
        if stream.write_all(&[*byte]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // Waits about a second per byte, noticing the close meanwhile.
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(n) => {
                // hyper may answer 408 before closing; anything but a 2xx for a half head.
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(!text.starts_with("HTTP/1.1 2"), "{text}");
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed_after = Some(started.elapsed());
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let closed_after = closed_after.expect("the slow connection was never closed");
    assert!(
        closed_after >= Duration::from_millis(1_500) && closed_after < Duration::from_secs(6),
        "closed after {closed_after:?} with a 2 s header-read timeout"
    );
    assert_healthy(&server);
}

/// A slow client does not hold shutdown past the drain deadline.
#[test]
fn a_slow_client_does_not_block_shutdown_past_its_deadline() {
    // A long header-read timeout, so only the drain deadline can end the slow connection.
    let mut server = Server::start(
        &[
            "--header-read-timeout",
            "60s",
            "--pre-stop-delay",
            "0s",
            "--drain-timeout",
            "2s",
        ],
        &[],
    );
    let api = server.api;
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut stream = TcpStream::connect(api).unwrap();
            for byte in b"GET /api/hello HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
                if stop.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_secs(1));
            }
        })
    };
    thread::sleep(Duration::from_millis(2_500));
    let signalled = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(8))
        .expect("the server exits despite the slow client");
    let took = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?} with a 2 s drain deadline"
    );
    let _ = trickle.join();
}

/// Opens `n` connections, sends `raw` on each at once, then reads every reply.
fn concurrent(addr: SocketAddr, n: usize, raw: &'static [u8]) -> Vec<Option<support::Reply>> {
    let mut conns: Vec<Conn> = (0..n).map(|_| Conn::open(addr).expect("connect")).collect();
    for conn in &mut conns {
        conn.send(raw).unwrap();
    }
    conns.iter_mut().map(reply_or_close).collect()
}

/// Counts the `PING`s Redis receives on database `db`, through `MONITOR`.
fn monitor_pings(redis: &str, db: u32) -> Arc<AtomicUsize> {
    let mut stream = TcpStream::connect(redis).unwrap_or_else(|e| {
        panic!("Redis is not reachable at {redis} ({e}); start it with scripts/services.sh")
    });
    stream.write_all(b"MONITOR\r\n").unwrap();
    let pings = Arc::new(AtomicUsize::new(0));
    let count = pings.clone();
    thread::spawn(move || {
        use std::io::BufRead;
        let marker = format!("[{db} ");
        for line in std::io::BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if line.contains(&marker) && line.to_ascii_uppercase().contains("\"PING\"") {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    pings
}

/// 1,000 concurrent probes of `/health/ready` run the Redis check at most once per cache
/// interval (1 s), counted as the `PING`s Redis itself sees; 1,000 concurrent scrapes of
/// `/metrics` all get an answer — 200, or 503 with `Retry-After` past the in-flight cap — and
/// every one is accounted for in the endpoint's own counters.
#[test]
fn floods_of_health_and_metrics_are_answered_without_rerunning_checks() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let host = url
        .trim_start_matches("redis://")
        .split(['/', '?'])
        .next()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    // A database of its own, so the PINGs counted are this server's.
    const DB: u32 = 13;
    let pings = monitor_pings(&host, DB);
    // Room for the whole flood on the admin port (its default cap is 128 connections).
    let server = Server::start(
        &["--admin-max-connections", "2500"],
        &[("REDIS_URL", &format!("redis://{host}/{DB}"))],
    );
    let ready = get(server.admin, "/health/ready");
    assert_eq!(ready.status, 200, "{ready:?}");
    assert!(ready.body.contains("redis"), "{ready:?}");
    thread::sleep(Duration::from_millis(200));

    let before = pings.load(Ordering::SeqCst);
    let started = Instant::now();
    let replies = concurrent(
        server.admin,
        1_000,
        b"GET /health/ready HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let took = started.elapsed();
    thread::sleep(Duration::from_millis(200));
    let during = pings.load(Ordering::SeqCst) - before;
    let answered = replies.iter().flatten().filter(|r| r.status == 200).count();
    assert_eq!(answered, 1_000, "every probe answered 200");
    // Each run of the check is at most two PINGs (pool check-out validation and the check);
    // one run per started second of the flood, plus one at each edge.
    let runs_allowed = took.as_secs() as usize + 2;
    eprintln!("health flood: {took:?}, {during} PINGs");
    assert!(
        during <= 2 * runs_allowed,
        "{during} PINGs for 1,000 probes in {took:?}: the check ran per request"
    );

    let text = metrics(&server);
    let scrapes = sample(&text, "metrics_scrapes_total", &[]).unwrap();
    let overloaded = sample(
        &text,
        "metrics_scrape_errors_total",
        &["reason=\"overloaded\""],
    )
    .unwrap();
    let started = Instant::now();
    let replies = concurrent(
        server.admin,
        1_000,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let took = started.elapsed();
    let (mut ok, mut busy) = (0, 0);
    for reply in replies.iter() {
        let reply = reply.as_ref().expect("every scrape is answered");
        match reply.status {
            200 => ok += 1,
            503 => {
                assert_eq!(reply.header("retry-after"), Some("1"));
                busy += 1;
            }
            other => panic!("scrape answered {other}"),
        }
    }
    let text = metrics(&server);
    let scrapes_after = sample(&text, "metrics_scrapes_total", &[]).unwrap();
    let overloaded_after = sample(
        &text,
        "metrics_scrape_errors_total",
        &["reason=\"overloaded\""],
    )
    .unwrap();
    eprintln!("metrics flood: {took:?}, {ok} answered 200, {busy} answered 503");
    assert_eq!(ok + busy, 1_000);
    // The scrape before the flood is counted too.
    assert_eq!(scrapes_after - scrapes, f64::from(ok) + 1.0);
    assert_eq!(overloaded_after - overloaded, f64::from(busy));
    // The 2,000 flood connections are closed by now; the server holds none of them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fd_count(server.child.id()) > 100 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let fds = fd_count(server.child.id());
    assert!(fds <= 100, "{fds} descriptors open after the floods");
    assert_healthy(&server);
}
