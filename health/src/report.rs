//! [`HealthReport`] and [`ComponentHealth`]: what a probe found.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{Health, Status};

/// The result of one probe: the aggregate status and each component.
#[derive(Clone, Debug)]
pub struct HealthReport {
    pub(crate) status: Status,
    pub(crate) components: Vec<(Arc<str>, Arc<ComponentHealth>)>,
}

impl HealthReport {
    /// The aggregate: the worst status of the critical components, `UP` when there are none.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The HTTP status of the aggregate (see [`Status::http_status`]).
    pub fn http_status(&self) -> http::StatusCode {
        self.status.http_status()
    }

    /// The components (checks and state pseudo-components) by name, in registration order.
    pub fn components(&self) -> impl ExactSizeIterator<Item = (&str, &ComponentHealth)> {
        self.components
            .iter()
            .map(|(name, health)| (&**name, &**health))
    }

    /// One component by name.
    pub fn component(&self, name: &str) -> Option<&ComponentHealth> {
        self.components()
            .find(|(n, _)| *n == name)
            .map(|(_, health)| health)
    }

    pub(crate) fn push_state(&mut self, name: &'static str, status: Status) {
        self.components.push((
            Arc::from(name),
            Arc::new(ComponentHealth {
                health: Health::new(status),
                critical: true,
                duration: Duration::ZERO,
                checked_at: SystemTime::now(),
            }),
        ));
    }

    pub(crate) fn finish(mut self) -> Self {
        self.status = Status::aggregate(
            self.components
                .iter()
                .filter(|(_, c)| c.critical)
                .map(|(_, c)| c.health.status()),
        );
        self
    }
}

/// The last result of one check.
#[derive(Clone, Debug)]
pub struct ComponentHealth {
    pub(crate) health: Health,
    pub(crate) critical: bool,
    pub(crate) duration: Duration,
    pub(crate) checked_at: SystemTime,
}

impl ComponentHealth {
    /// The status.
    pub fn status(&self) -> Status {
        self.health.status()
    }

    /// The details the check returned.
    pub fn details(&self) -> &serde_json::Map<String, serde_json::Value> {
        self.health.details()
    }

    /// The whole result.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Whether the component counts toward the aggregate.
    pub fn is_critical(&self) -> bool {
        self.critical
    }

    /// How long the run took (zero for the state pseudo-components).
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// When the run started.
    pub fn checked_at(&self) -> SystemTime {
        self.checked_at
    }
}
