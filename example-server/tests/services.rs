//! The `covet-server` binary with the real PostgreSQL and Redis on 127.0.0.1 (`DATABASE_URL`,
//! `REDIS_URL`), and with PostgreSQL pointed at a closed port. These tests fail, never skip,
//! when the services are unreachable.

mod support;

use std::{
    net::TcpStream,
    thread,
    time::{Duration, Instant},
};

use support::{Server, get, request};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The `host:port` of a service URL; panics with a clear message when nothing answers there.
fn require(name: &str, url: &str, port: u16) -> String {
    let host = url
        .rsplit('@')
        .next()
        .and_then(|rest| {
            rest.trim_start_matches("redis://")
                .trim_start_matches("postgres://")
                .split(['/', '?'])
                .next()
        })
        .unwrap_or("127.0.0.1");
    let addr = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    if TcpStream::connect(&addr).is_err() {
        panic!(
            "{name} is not reachable at {addr}: start it (scripts/services.sh) or set the URL variable. These tests never skip."
        );
    }
    addr
}

/// Polls `path` on the admin port until it answers `status`.
fn wait_for(server: &Server, path: &str, status: u16) -> support::Reply {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = get(server.admin, path);
        if reply.status == status {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status}: {reply:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn notes_live_in_postgres_and_reads_are_cached_in_redis() {
    let (db, cache) = (database_url(), redis_url());
    require("PostgreSQL", &db, 5432);
    require("Redis", &cache, 6379);
    let server = Server::start(&["--database-url", &db, "--redis-url", &cache], &[]);
    wait_for(&server, "/health/startup", 200);
    let ready = wait_for(&server, "/health/ready", 200);
    assert_eq!(ready.json()["status"], "UP");
    assert_eq!(
        ready.json()["components"]["db"]["status"],
        "UP",
        "{ready:?}"
    );
    assert_eq!(
        ready.json()["components"]["redis"]["status"],
        "UP",
        "{ready:?}"
    );

    let json = [("content-type", "application/json")];
    let title = format!("pg-{}", std::process::id());
    let created = request(
        server.api,
        "POST",
        "/api/notes",
        &json,
        &format!(r#"{{"title":"{title}","body":"stored"}}"#),
    )
    .unwrap();
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_i64().unwrap();

    let before = get(server.admin, "/metrics").body;
    let first = get(server.api, &format!("/api/notes/{id}"));
    let second = get(server.api, &format!("/api/notes/{id}"));
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["title"], title.as_str());
    assert_eq!(second.body, first.body);
    let after = get(server.admin, "/metrics").body;
    assert_eq!(
        metric(&after, "cache_misses_total") - metric(&before, "cache_misses_total"),
        1.0,
        "{after}"
    );
    assert_eq!(
        metric(&after, "cache_hits_total") - metric(&before, "cache_hits_total"),
        1.0,
        "{after}"
    );
    assert!(
        metric(
            &after,
            r#"db_queries_total{operation="INSERT",pool_name="notes"}"#
        ) >= 1.0,
        "{after}"
    );

    // The row is really in PostgreSQL: a second server process sees it.
    let other = Server::start(&["--database-url", &db], &[]);
    wait_for(&other, "/health/startup", 200);
    assert_eq!(
        get(other.api, &format!("/api/notes/{id}")).json()["title"],
        title.as_str()
    );

    // Delete invalidates the cache: the next read is a 404, not the cached copy.
    let deleted = request(server.api, "DELETE", &format!("/api/notes/{id}"), &[], "").unwrap();
    assert_eq!(deleted.status, 204);
    assert_eq!(get(server.api, &format!("/api/notes/{id}")).status, 404);
}

#[test]
fn with_postgres_down_the_server_starts_not_ready_but_alive() {
    let closed = support::free_addr();
    let url = format!(
        "postgres://postgres:secret-pw@127.0.0.1:{}/postgres",
        closed.port()
    );
    let server = Server::start(&["--database-url", &url], &[]);
    let ready = wait_for(&server, "/health/ready", 503);
    assert_eq!(ready.json()["status"], "DOWN");
    assert!(
        ready.body.contains("\"db\""),
        "the failing component is named: {ready:?}"
    );
    assert!(!ready.body.contains("secret-pw"));
    assert_eq!(get(server.admin, "/health/live").status, 200);
    // Start-up does not wait for the database: a pod started during an outage is not
    // restarted by its startup probe; readiness keeps it out of the load balancer.
    assert_eq!(get(server.admin, "/health/startup").status, 200);
    assert!(ready.body.contains("\"notes\""), "{ready:?}");
    let notes = get(server.api, "/api/notes");
    assert_eq!(notes.status, 503, "{notes:?}");
    assert_eq!(
        notes.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        get(server.api, "/api/hello").status,
        200,
        "the rest of the API still works"
    );
}

#[test]
fn clients_over_the_rate_limit_get_429_with_standard_headers() {
    let server = Server::start(&["--rate-limit", "5/min", "--rate-limit-burst", "3"], &[]);
    let statuses: Vec<u16> = (0..5)
        .map(|_| get(server.api, "/api/hello").status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let limited = get(server.api, "/api/hello");
    assert_eq!(limited.status, 429);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "{limited:?}");
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some(r#""default";q=5;w=60"#)
    );
    assert_eq!(
        limited.header("content-type"),
        Some("application/problem+json")
    );
    let text = get(server.admin, "/metrics").body;
    assert_eq!(
        metric(&text, r#"app_rate_limit_exceeded_total{policy="default"}"#),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"http_requests_total{method="GET",route="/api/hello",status="429"}"#
        ),
        3.0,
        "{text}"
    );
}

#[test]
fn two_replicas_share_one_rate_limit_through_redis() {
    let cache = redis_url();
    require("Redis", &cache, 6379);
    let args = [
        "--redis-url",
        cache.as_str(),
        "--rate-limit-store",
        "redis",
        "--rate-limit",
        "4/min",
        "--rate-limit-burst",
        "4",
        "--trusted-proxies",
        "127.0.0.1/32",
    ];
    let a = Server::start(&args, &[]);
    let b = Server::start(&args, &[]);
    // A client address of this run's own, forwarded by the trusted local proxy (the test).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let client = format!(
        "10.{}.{}.{}",
        std::process::id() % 250,
        nanos % 250,
        (nanos / 250) % 250
    );
    let forwarded = [("x-forwarded-for", client.as_str())];
    let statuses: Vec<u16> = (0..10)
        .map(|i| {
            let server = if i % 2 == 0 { &a } else { &b };
            request(server.api, "GET", "/api/hello", &forwarded, "")
                .unwrap()
                .status
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "two replicas together allow exactly the quota: {statuses:?}"
    );
    assert!(statuses[4..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another client has a bucket of its own.
    let other = format!("10.251.{}.{}", nanos % 250, (nanos / 250) % 250);
    let reply = request(
        a.api,
        "GET",
        "/api/hello",
        &[("x-forwarded-for", &other)],
        "",
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// Forwards every connection accepted on `listener` to `upstream`, on threads, until the test
/// process ends.
fn forward(listener: std::net::TcpListener, upstream: String) {
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
}

#[test]
fn readiness_recovers_when_postgres_appears() {
    let db = database_url();
    let upstream = require("PostgreSQL", &db, 5432);
    // The server is pointed at a port where PostgreSQL is not yet reachable.
    let gate = support::free_addr();
    let through_gate = format!("postgres://postgres@{gate}/postgres");
    let server = Server::start(&["--database-url", &through_gate], &[]);
    wait_for(&server, "/health/ready", 503);
    assert_eq!(get(server.admin, "/health/startup").status, 200);
    assert_eq!(get(server.api, "/api/notes").status, 503);

    // PostgreSQL "appears": the port starts forwarding to the real server.
    let listener = std::net::TcpListener::bind(gate).expect("the reserved port is still free");
    forward(listener, upstream);
    let ready = wait_for(&server, "/health/ready", 200);
    assert_eq!(ready.json()["status"], "UP");
    assert_eq!(get(server.api, "/api/notes").status, 200);
}
