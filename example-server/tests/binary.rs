//! The built `covet-server` binary in its embedded mode (no PostgreSQL, Redis or collector),
//! driven over real sockets as a user would.

mod support;

use std::process::Command;

use support::{Server, get, request};

#[test]
fn hello_carries_ids_and_security_headers() {
    let server = Server::start(&[], &[]);
    let reply = request(
        server.api,
        "GET",
        "/api/hello",
        &[("x-request-id", "e2e-1")],
        "",
    )
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id"), Some("e2e-1"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        reply.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(reply.header("server"), None);
    assert_eq!(reply.json()["message"], "hello from covet");
    assert_eq!(reply.json()["request_id"], "e2e-1");

    let reply = request(
        server.api,
        "GET",
        "/api/hello",
        &[("x-request-id", "<script>")],
        "",
    )
    .unwrap();
    let id = reply.header("x-request-id").unwrap();
    assert_eq!(id.len(), 36, "a UUIDv7 replaced the hostile id");
    assert!(!format!("{reply:?}").contains("<script>"));
}

#[test]
fn notes_round_trip_in_memory_with_validation() {
    let server = Server::start(&[], &[]);
    let json = [("content-type", "application/json")];
    let created = request(
        server.api,
        "POST",
        "/api/notes",
        &json,
        r#"{"title":"t1","body":"b1"}"#,
    )
    .unwrap();
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_i64().unwrap();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/notes/{id}").as_str())
    );

    let fetched = get(server.api, &format!("/api/notes/{id}"));
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json()["title"], "t1");
    let listed = get(server.api, "/api/notes");
    assert_eq!(listed.json().as_array().unwrap().len(), 1);

    for (body, detail) in [
        ("{", "not valid JSON"),
        (r#"{"title":""}"#, "`title`"),
        (r#"{"title":"x","admin":true}"#, "not a note"),
    ] {
        let bad = request(server.api, "POST", "/api/notes", &json, body).unwrap();
        assert_eq!(bad.status, 400, "{body}");
        assert_eq!(bad.header("content-type"), Some("application/problem+json"));
        assert!(
            bad.json()["detail"].as_str().unwrap().contains(detail),
            "{bad:?}"
        );
    }
    let wrong_type = request(
        server.api,
        "POST",
        "/api/notes",
        &[("content-type", "text/plain")],
        "{}",
    )
    .unwrap();
    assert_eq!(wrong_type.status, 415);
    assert_eq!(get(server.api, "/api/notes/abc").status, 400);
    assert_eq!(get(server.api, "/api/notes/999999").status, 404);

    let deleted = request(server.api, "DELETE", &format!("/api/notes/{id}"), &[], "").unwrap();
    assert_eq!(deleted.status, 204);
    assert_eq!(get(server.api, &format!("/api/notes/{id}")).status, 404);
}

#[test]
fn write_endpoints_need_the_token_when_configured_and_failures_are_counted() {
    let server = Server::start(&["--api-token", "s3cret"], &[]);
    let note = r#"{"title":"x"}"#;
    let json = ("content-type", "application/json");
    let none = request(server.api, "POST", "/api/notes", &[json], note).unwrap();
    assert_eq!(none.status, 401);
    assert!(
        none.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    let wrong = request(
        server.api,
        "POST",
        "/api/notes",
        &[json, ("authorization", "Bearer nope")],
        note,
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    let right = request(
        server.api,
        "POST",
        "/api/notes",
        &[json, ("authorization", "Bearer s3cret")],
        note,
    )
    .unwrap();
    assert_eq!(right.status, 201);
    // Reads stay open.
    assert_eq!(get(server.api, "/api/notes").status, 200);

    let metrics = get(server.admin, "/metrics").body;
    assert!(
        metrics.contains(r#"app_auth_attempts_total{outcome="failure"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"app_auth_attempts_total{outcome="success"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"app_auth_failures_total{reason="missing_credentials"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"app_auth_failures_total{reason="invalid_credentials"} 1"#),
        "{metrics}"
    );
}

#[test]
fn the_admin_port_serves_metrics_and_health() {
    let server = Server::start(&[], &[]);
    get(server.api, "/api/hello");
    get(server.api, "/api/notes/7");
    get(server.api, "/wp-login.php");
    let slow = get(server.api, "/api/slow?ms=20");
    assert_eq!(slow.json()["slept_ms"], 20);
    assert_eq!(get(server.api, "/api/slow?ms=60001").status, 400);
    assert_eq!(get(server.api, "/api/slow?ms=abc").status, 400);

    let metrics = get(server.admin, "/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.body;
    for sample in [
        r#"http_requests_total{method="GET",route="/api/hello",status="200"} 1"#,
        r#"http_requests_total{method="GET",route="/api/notes/{id}",status="404"} 1"#,
        r#"http_requests_total{method="GET",route="NOT_FOUND",status="404"} 1"#,
        r#"http_requests_total{method="GET",route="/api/slow",status="400"} 2"#,
        r#"shutdown_phase{phase="running"} 1"#,
        r#"app_info{commit="#,
        "process_resident_memory_bytes",
        "system_memory_total_bytes",
    ] {
        assert!(text.contains(sample), "missing {sample}:\n{text}");
    }
    assert!(!text.contains("wp-login"), "a raw path became a label");

    for probe in [
        "/health",
        "/health/live",
        "/health/ready",
        "/health/startup",
    ] {
        let reply = get(server.admin, probe);
        assert_eq!(reply.status, 200, "{probe}: {reply:?}");
        assert_eq!(reply.json()["status"], "UP", "{probe}");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
    assert_eq!(get(server.admin, "/health/nope").status, 404);
}

#[test]
fn the_healthcheck_subcommand_reports_liveness() {
    let server = Server::start(&[], &[]);
    let status = Command::new(env!("CARGO_BIN_EXE_covet-server"))
        .args(["--admin-listen", &server.admin.to_string(), "healthcheck"])
        .status()
        .unwrap();
    assert!(status.success());
    drop(server);
    let free = support::free_addr();
    let output = Command::new(env!("CARGO_BIN_EXE_covet-server"))
        .args([
            "--admin-listen",
            &free.to_string(),
            "healthcheck",
            "--timeout",
            "500ms",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("healthcheck"));
}

#[test]
fn bad_configuration_exits_2_naming_the_setting() {
    let cases: [(&[&str], &str); 5] = [
        (&["--listen", "not-an-address"], "--listen"),
        (&["--pre-stop-delay", "soon"], "--pre-stop-delay"),
        (&["--rate-limit-store", "disk"], "--rate-limit-store"),
        (&["--rate-limit-store", "redis"], "--redis-url"),
        (&["--log-format", "xml"], "--log-format"),
    ];
    for (args, setting) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_covet-server"))
            .args(args)
            .env_remove("REDIS_URL")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(setting), "{args:?}: {stderr}");
    }
    // A port already taken is named by its flag too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_covet-server"))
        .args(["--listen", &taken.local_addr().unwrap().to_string()])
        .args(["--admin-listen", &support::free_addr().to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--listen"));
}

#[test]
fn log_lines_carry_the_request_trace_and_span_ids() {
    let server = Server::start(&[], &[]);
    let reply = request(
        server.api,
        "GET",
        "/api/hello",
        &[("x-request-id", "log-ids-1")],
        "",
    )
    .unwrap();
    let trace_id = reply
        .header("x-trace-id")
        .expect("x-trace-id header")
        .to_owned();
    assert_eq!(trace_id.len(), 32);
    let line = wait_for_line(&server, |l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|l| l["request_id"] == "log-ids-1")
    });
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16), "{line}");
}

/// The first log line that `matches`, waiting up to 5 s for it (the log queue writes lines
/// within 10 ms).
fn wait_for_line(server: &Server, matches: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(line) = server.logs().into_iter().find(|l| matches(l)) {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such log line: {:?}",
            server.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Readable logs into a pipe, as a log collector or `docker logs` reads them: no colour escapes,
/// and the request line names its request id once (in the request span's fields).
#[test]
fn readable_logs_into_a_pipe_are_plain_text() {
    let server = Server::start(&["--log-format", "pretty"], &[]);
    let reply = request(
        server.api,
        "GET",
        "/api/hello",
        &[("x-request-id", "pretty-1")],
        "",
    )
    .unwrap();
    assert_eq!(reply.status, 200);
    let line = wait_for_line(&server, |l| {
        l.contains("request completed") && l.contains("pretty-1")
    });
    assert!(
        server.logs().iter().all(|l| !l.contains('\u{1b}')),
        "{:?}",
        server.logs()
    );
    assert!(line.contains("request{request_id=pretty-1}"), "{line}");
    assert_eq!(line.matches("pretty-1").count(), 1, "{line}");
    assert!(line.contains("status=200"), "{line}");
}

/// What a new user runs (the README's `cargo run -p covet-server`): no flags, no services.
#[test]
fn runs_on_its_embedded_default_ports() {
    use std::{
        net::TcpStream,
        process::Stdio,
        thread,
        time::{Duration, Instant},
    };
    for port in [8080, 9090] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "127.0.0.1:{port} is taken by another process; stop it to run this test"
        );
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_covet-server"))
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let api: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let admin: std::net::SocketAddr = "127.0.0.1:9090".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(api).is_err() || TcpStream::connect(admin).is_err() {
        assert!(
            Instant::now() < deadline,
            "the default ports never answered"
        );
        thread::sleep(Duration::from_millis(25));
    }
    let hello = get(api, "/api/hello");
    let live = get(admin, "/health/live");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(hello.status, 200);
    assert_eq!(hello.json()["message"], "hello from covet");
    assert_eq!(live.status, 200);
}
