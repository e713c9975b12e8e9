//! The `covet-server` binary with the real PostgreSQL and Redis on 127.0.0.1 (`DATABASE_URL`,
//! `REDIS_URL`), with PostgreSQL pointed at a closed port, and over TLS to the TLS-only services
//! of `scripts/tls-services.sh`. These tests fail, never skip,
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

/// Readiness is 200 with both datastores `UP`.
fn wait_until_both_datastores_are_up(server: &Server) {
    let ready = wait_for(server, "/health/ready", 200);
    for component in ["db", "redis"] {
        assert_eq!(
            ready.json()["components"][component]["status"],
            "UP",
            "{ready:?}"
        );
    }
}

/// Creates a note through the API; returns its id.
fn create_note(server: &Server, title: &str, body: &str) -> i64 {
    let created = request(
        server.api,
        "POST",
        "/api/notes",
        &[("content-type", "application/json")],
        &format!(r#"{{"title":"{title}","body":"{body}"}}"#),
    )
    .unwrap();
    assert_eq!(created.status, 201, "{created:?}");
    created.json()["id"].as_i64().unwrap()
}

#[test]
fn notes_live_in_postgres_and_reads_are_cached_in_redis() {
    let (db, cache) = (database_url(), redis_url());
    require("PostgreSQL", &db, 5432);
    require("Redis", &cache, 6379);
    let server = Server::start(&["--database-url", &db, "--redis-url", &cache], &[]);
    wait_for(&server, "/health/startup", 200);
    assert_eq!(
        wait_for(&server, "/health/ready", 200).json()["status"],
        "UP"
    );
    wait_until_both_datastores_are_up(&server);

    let title = format!("pg-{}", std::process::id());
    let id = create_note(&server, &title, "stored");

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
    // Started is not connected: the server starts without its database and answers 503
    // until its pool has a connection, which readiness reports.
    wait_for(&other, "/health/ready", 200);
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

/// The TLS-only PostgreSQL and Redis of `scripts/tls-services.sh`, and its CA.
fn tls_services() -> (String, String, String) {
    let ca = std::env::var("COVET_TLS_CA_FILE").unwrap_or_else(|_| "/tmp/covet-tls/ca.crt".into());
    assert!(
        std::path::Path::new(&ca).is_file(),
        "the test CA {ca} is missing: run scripts/tls-services.sh (scripts/test does). These tests never skip."
    );
    let db = std::env::var("COVET_TLS_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@localhost:55432/postgres".into());
    let cache = std::env::var("COVET_TLS_REDIS_URL")
        .unwrap_or_else(|_| "rediss://:covet-tls-test@localhost:6390".into());
    (db, cache, ca)
}

#[test]
fn tls_to_both_datastores_with_a_ca_file_as_terraform_configures_it() {
    let (db, cache, ca) = tls_services();
    let db = format!("{db}?sslmode=verify-full");
    let server = Server::start(
        &["--rate-limit-store", "redis"],
        &[
            ("DATABASE_URL", &db),
            ("COVET_DATABASE_CA_FILE", &ca),
            ("REDIS_URL", &cache),
            ("COVET_REDIS_CA_FILE", &ca),
        ],
    );
    wait_until_both_datastores_are_up(&server);
    // The rate-limit store connected at start-up, so even the first request is decided in Redis.
    assert!(
        server
            .logs()
            .iter()
            .any(|line| line.contains("the rate-limit store is connected to Redis")),
        "{:?}",
        server.logs()
    );

    let title = format!("tls-{}", std::process::id());
    let id = create_note(&server, &title, "encrypted");
    let first = get(server.api, &format!("/api/notes/{id}"));
    assert_eq!(first.json()["title"], title.as_str());
    // The rate limiter decided in the TLS Redis: its headers are on the answer and no decision
    // fell back to the local store.
    assert!(first.header("ratelimit").is_some(), "{first:?}");
    let metrics = get(server.admin, "/metrics").body;
    let decided = |outcome: &str| {
        metric(
            &metrics,
            &format!(r#"rate_limit_decisions_total{{outcome="{outcome}",policy="default"}}"#),
        )
    };
    assert!(decided("allowed") >= 2.0, "{metrics}");
    assert_eq!(decided("fail_open"), 0.0, "{metrics}");
    assert!(metric(&metrics, "cache_misses_total") >= 1.0, "{metrics}");
}

#[test]
fn a_certificate_the_server_cannot_check_is_logged_and_a_bad_ca_file_exits_2() {
    let (db, _cache, _ca) = tls_services();
    // Without the CA the system's roots cannot check the certificate: the server starts (start-up
    // does not depend on the database), is not ready, and logs why.
    let verify = format!("{db}?sslmode=verify-full");
    let server = Server::start(&[], &[("DATABASE_URL", &verify)]);
    let ready = wait_for(&server, "/health/ready", 503);
    assert_eq!(
        ready.json()["components"]["db"]["status"],
        "DOWN",
        "{ready:?}"
    );
    let notes = get(server.api, "/api/notes");
    assert_eq!(notes.status, 503, "{notes:?}");
    // The log says why, naming the certificate check.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server
        .logs()
        .iter()
        .any(|line| line.contains("\"WARN\"") && line.contains("invalid peer certificate"))
    {
        assert!(Instant::now() < deadline, "{:#?}", server.logs());
        thread::sleep(Duration::from_millis(100));
    }

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_covet-server"))
        .env_remove("REDIS_URL")
        .env("DATABASE_URL", &verify)
        .env("COVET_DATABASE_CA_FILE", "/nonexistent/ca.pem")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--database-ca-file (COVET_DATABASE_CA_FILE)")
            && stderr.contains("/nonexistent/ca.pem"),
        "{stderr}"
    );
}

/// A string literal of an HCL file: the text between the quotes that follow `key`, with
/// `${...}` interpolations kept whole (they may hold quotes of their own).
fn hcl_string_after(text: &str, key: &str) -> String {
    let start = text
        .find(key)
        .unwrap_or_else(|| panic!("{key} is in the file"))
        + key.len();
    let rest = &text[start..];
    let open = rest.find('"').unwrap() + 1;
    let (mut depth, mut out) = (0, String::new());
    let mut chars = rest[open..].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek() == Some(&'{') => {
                depth += 1;
                out.push(c);
                out.push(chars.next().unwrap());
                continue;
            }
            '}' if depth > 0 => depth -= 1,
            '"' if depth == 0 => return out,
            _ => {}
        }
        out.push(c);
    }
    panic!("unterminated string after {key}")
}

/// Renders an HCL template: `${cond ? "a" : "b"}` takes `a` (TLS on), other `${name}`s come
/// from `values`.
fn render_hcl(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').unwrap();
        let expr = &rest[start + 2..end];
        match expr.split_once('?') {
            Some((_, branches)) => {
                let first = branches.split(':').next().unwrap().trim();
                out.push_str(first.trim_matches('"'));
            }
            None => {
                let value = values
                    .iter()
                    .find(|(name, _)| *name == expr)
                    .unwrap_or_else(|| panic!("no test value for ${{{expr}}}"));
                out.push_str(value.1);
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_server_starts_and_is_ready_on_the_urls_terraform_writes() {
    let (db, cache, ca) = tls_services();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
    let secrets =
        std::fs::read_to_string(format!("{root}/terraform/aws/modules/secrets/main.tf")).unwrap();
    let main = std::fs::read_to_string(format!("{root}/terraform/aws/main.tf")).unwrap();
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();

    // The URLs as Terraform writes them with tls_to_datastores = true, pointed at the TLS-only
    // services (their host, port and password stand in for RDS's and ElastiCache's).
    let db_endpoint = db.split('@').nth(1).unwrap().split('/').next().unwrap();
    let redis_host = cache.rsplit('@').next().unwrap();
    let (redis_address, redis_port) = redis_host.split_once(':').unwrap();
    let redis_password = cache
        .split("://:")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap();
    let database_url = render_hcl(
        &hcl_string_after(&secrets, "\"database-url\""),
        &[
            ("var.db_username", "postgres"),
            ("random_password.db.result", "unused-with-trust-auth"),
            ("var.db_endpoint", db_endpoint),
            ("var.db_name", "postgres"),
        ],
    );
    let redis_url = render_hcl(
        &hcl_string_after(&secrets, "\"redis-url\""),
        &[
            ("random_password.redis.result", redis_password),
            ("var.redis_address", redis_address),
        ],
    )
    .replacen(":6379/", &format!(":{redis_port}/"), 1);
    assert!(
        database_url.contains("sslmode=verify-full"),
        "{database_url}"
    );
    assert!(redis_url.starts_with("rediss://"), "{redis_url}");

    // The CA file the ECS task names is the one the image carries.
    let ca_in_image = hcl_string_after(&main, "COVET_DATABASE_CA_FILE =");
    assert!(
        dockerfile
            .lines()
            .any(|line| line.starts_with("ADD ") && line.ends_with(&format!(" {ca_in_image}"))),
        "deploy/Dockerfile must put the CA bundle at {ca_in_image}"
    );

    // The test CA stands in for the RDS bundle; and since the TLS Redis's certificate is not
    // from a public root, its CA is given the way an operator with a private CA would
    // (ElastiCache's certificates chain to the system roots and need none).
    let server = Server::start(
        &["--rate-limit-store", "redis"],
        &[
            ("DATABASE_URL", &database_url),
            ("COVET_DATABASE_CA_FILE", &ca),
            ("REDIS_URL", &redis_url),
            ("COVET_REDIS_CA_FILE", &ca),
        ],
    );
    wait_until_both_datastores_are_up(&server);
    assert!(
        !server
            .logs()
            .iter()
            .any(|line| line.contains(redis_password)),
        "the password never reaches the logs"
    );
}
