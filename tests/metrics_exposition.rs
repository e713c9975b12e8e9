//! A real scrape of a registry holding every covet metric family, judged by Prometheus's own
//! `promtool check metrics` (text format) and by the Prometheus Python client's strict
//! OpenMetrics parser (OpenMetrics format). Both tools must be installed: `scripts/test` installs
//! them; this test fails, naming the tool, when one is missing.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use axum::{Router, body::Body, routing::get};
use covet::layers::{
    catalog::{app::AppMetrics, system::SystemMetrics, websocket::WebSocketMetrics},
    metrics::{MetricsLayer, MetricsService},
};
use http::Request;
use http_body_util::BodyExt;
use prometheus::Registry;
use tower::{ServiceBuilder, ServiceExt};

/// Runs `program args` with `input` on stdin; returns (success, stdout + stderr).
fn run_with_stdin(program: &str, args: &[&str], input: &[u8]) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{program}` ({e}); run scripts/test, which installs it")
        });
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

async fn scrape(metrics: &MetricsService, accept: &str) -> String {
    let request = Request::get("/metrics")
        .header("accept", accept)
        .body(())
        .unwrap();
    let response = metrics.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// A registry with every family covet-layers produces, each with at least one sample.
async fn populated_registry() -> (Registry, MetricsService) {
    let registry = Registry::new();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .layer(ServiceBuilder::new().layer(MetricsLayer::new(&registry).unwrap()));
    for uri in ["/users/1", "/users/2", "/nope"] {
        let request = Request::get(uri)
            .header("user-agent", "curl/8.5.0")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    SystemMetrics::register(&registry).unwrap();
    let app_metrics = AppMetrics::builder()
        .version("1.2.3")
        .commit("abc123")
        .build(&registry)
        .unwrap();
    app_metrics.auth_succeeded();
    app_metrics.auth_failed("bad_token");
    let _: Result<(), ()> = app_metrics.track("reindex", async { Ok(()) }).await;
    let websockets = WebSocketMetrics::register(&registry).unwrap();
    let connection = websockets.connection_opened();
    connection.message_sent();
    connection.message_received();
    let metrics = MetricsService::new(&registry).unwrap();
    // One scrape first, so the endpoint's own families have samples too.
    scrape(&metrics, "text/plain").await;
    (registry, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_wrong_with_the_text_exposition() {
    let (_registry, metrics) = populated_registry().await;
    let text = scrape(&metrics, "text/plain;version=0.0.4").await;
    for family in [
        "http_requests_total",
        "http_server_request_duration_seconds",
        "http_server_active_requests",
        "http_requests_by_user_agent_total",
        "process_resident_memory_bytes",
        "system_memory_total_bytes",
        "app_info",
        "websocket_messages_sent_total",
        "metrics_scrapes_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing from the scrape"
        );
    }
    let (ok, findings) = run_with_stdin("promtool", &["check", "metrics"], text.as_bytes());
    assert!(
        ok && findings.trim().is_empty(),
        "promtool findings:\n{findings}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openmetrics_exposition_parses_strictly() {
    let (_registry, metrics) = populated_registry().await;
    let text = scrape(&metrics, "application/openmetrics-text; version=1.0.0").await;
    assert!(text.ends_with("# EOF\n"));
    let parser = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
        families = list(parse(sys.stdin.read()))\n\
        print(len(families), sum(len(f.samples) for f in families))\n";
    let (ok, output) = run_with_stdin("python3", &["-c", parser], text.as_bytes());
    assert!(
        ok,
        "the OpenMetrics parser rejected the scrape:\n{output}\n---\n{text}"
    );
    let families: usize = output.split_whitespace().next().unwrap().parse().unwrap();
    assert!(families >= 20, "only {families} families parsed: {output}");
}
