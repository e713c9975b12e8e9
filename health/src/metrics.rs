//! The health metrics: each check's last status and duration.

use std::time::Duration;

use prometheus::{GaugeVec, Opts};

use crate::Status;

/// `health_check_status{check}` and `health_check_duration_seconds{check}`.
#[derive(Clone)]
pub(crate) struct Metrics {
    status: GaugeVec,
    duration: GaugeVec,
}

impl Metrics {
    pub(crate) fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let status = GaugeVec::new(
            Opts::new(
                "health_check_status",
                "Whether the last run of the health check was UP (1) or not (0).",
            ),
            &["check"],
        )?;
        let duration = GaugeVec::new(
            Opts::new(
                "health_check_duration_seconds",
                "How long the last run of the health check took, in seconds.",
            ),
            &["check"],
        )?;
        registry.register(Box::new(status.clone()))?;
        if let Err(e) = registry.register(Box::new(duration.clone())) {
            let _ = registry.unregister(Box::new(status.clone()));
            return Err(e);
        }
        Ok(Self { status, duration })
    }

    pub(crate) fn record(&self, check: &str, status: Status, duration: Duration) {
        let up = if status == Status::Up { 1.0 } else { 0.0 };
        self.status.with_label_values(&[check]).set(up);
        self.duration
            .with_label_values(&[check])
            .set(duration.as_secs_f64());
    }
}
