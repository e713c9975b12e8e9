//! `promtool check metrics` judges the exposition of the health metrics.
//!
//! Needs Prometheus's `promtool` on `PATH` (or in `PROMTOOL`); fails, never skips, without it.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use covet_health::{HealthRegistry, Probe, Status};
use prometheus::{Encoder, TextEncoder};

#[tokio::test]
async fn promtool_accepts_the_health_metrics() {
    let metrics = prometheus::Registry::new();
    let registry = HealthRegistry::builder()
        .readiness("db", || async { Status::Up })
        .readiness("cache", || async { Status::Down })
        .liveness("loop", || async { Status::Up })
        .metrics(&metrics)
        .build()
        .unwrap();
    registry.report(Probe::Readiness).await;
    registry.report(Probe::Liveness).await;

    let mut exposition = Vec::new();
    TextEncoder::new()
        .encode(&metrics.gather(), &mut exposition)
        .unwrap();
    let text = String::from_utf8(exposition.clone()).unwrap();
    assert!(
        text.contains("health_check_status{check=\"loop\"} 1"),
        "{text}"
    );

    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {promtool:?} ({e}): install Prometheus's promtool or set PROMTOOL")
        });
    child.stdin.take().unwrap().write_all(&exposition).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool rejected the exposition:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // promtool prints lint problems (and still exits 0 for some); there must be none.
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool lint: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
