//! The metric catalogue beyond HTTP: application, WebSocket and host/process/runtime metrics,
//! each registered into a caller-supplied registry (see `METRICS.md` for every family).
//!
//! | module | what | feature |
//! |---|---|---|
//! | [`app`] | build info, uptime, sign-ins, business events, feature flags, … ([`AppMetrics`](app::AppMetrics)) | `metrics` |
//! | [`websocket`] | connections, messages, errors ([`WebSocketMetrics`](websocket::WebSocketMetrics)) | `metrics` |
//! | `system` | CPU, memory, disks, network, load, process and Tokio runtime (`SystemMetrics`) | `system-metrics` |

use prometheus::{
    Registry,
    core::{Collector, Desc},
};

use crate::metrics::MetricsError;

pub mod app;
#[cfg(feature = "system-metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "system-metrics")))]
pub mod system;
pub mod websocket;

/// Registers `collector`, naming the clashing family in the error where it can be found.
pub(crate) fn register_collector(
    registry: &Registry,
    collector: Box<dyn Collector>,
    descs: &[Desc],
) -> Result<(), MetricsError> {
    registry.register(collector).map_err(|source| {
        let existing: Vec<String> = registry
            .gather()
            .iter()
            .map(|family| family.name().to_owned())
            .collect();
        let name = descs
            .iter()
            .map(|d| d.fq_name.as_str())
            .find(|name| existing.iter().any(|e| e == name))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                descs
                    .iter()
                    .map(|d| d.fq_name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            });
        MetricsError::register(name, source)
    })
}
