//! Health statuses, check results and their aggregation.

use std::fmt;

use http::StatusCode;
use serde_json::{Map, Value};

/// The status of one check or of a whole probe, as Spring Boot Actuator names them.
///
/// The order of severity is `DOWN` > `OUT_OF_SERVICE` > `UP` > `UNKNOWN`, and the derived [`Ord`]
/// follows it, so the worst of several statuses is their maximum (see [`Status::aggregate`]).
///
/// ```
/// use covet_health::Status;
///
/// assert_eq!(Status::aggregate([Status::Up, Status::Down, Status::OutOfService]), Status::Down);
/// assert_eq!(Status::aggregate([Status::Up, Status::Unknown]), Status::Up);
/// assert_eq!(Status::OutOfService.http_status(), 503);
/// assert_eq!(Status::Unknown.http_status(), 200);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Status {
    /// `UNKNOWN`: the state cannot be told. Answers 200.
    Unknown,
    /// `UP`: working. Answers 200.
    Up,
    /// `OUT_OF_SERVICE`: working but taken out of service on purpose (for example while the app
    /// shuts down). Answers 503.
    OutOfService,
    /// `DOWN`: failing. Answers 503.
    Down,
}

impl Status {
    /// The Actuator name: `UP`, `DOWN`, `OUT_OF_SERVICE` or `UNKNOWN`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Up => "UP",
            Self::OutOfService => "OUT_OF_SERVICE",
            Self::Down => "DOWN",
        }
    }

    /// The HTTP status a probe with this aggregate status answers: 503 for `DOWN` and
    /// `OUT_OF_SERVICE`, 200 otherwise.
    pub const fn http_status(self) -> StatusCode {
        match self {
            Self::Down | Self::OutOfService => StatusCode::SERVICE_UNAVAILABLE,
            Self::Up | Self::Unknown => StatusCode::OK,
        }
    }

    /// Whether a probe with this status passes (answers 200).
    pub const fn is_passing(self) -> bool {
        matches!(self, Self::Up | Self::Unknown)
    }

    /// The worst of `statuses`; `UP` when there are none.
    pub fn aggregate(statuses: impl IntoIterator<Item = Status>) -> Status {
        statuses.into_iter().max().unwrap_or(Status::Up)
    }

    /// The `application/health+json` status: `pass`, `warn` (for `UNKNOWN`) or `fail`.
    pub const fn health_json_status(self) -> &'static str {
        match self {
            Self::Up => "pass",
            Self::Unknown => "warn",
            Self::OutOfService | Self::Down => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one run of a check found: a [`Status`] and optional JSON details.
///
/// Details are shown to clients only when the [`HealthService`](crate::HealthService) is told
/// to show them; never put secrets in them.
///
/// ```
/// use covet_health::{Health, Status};
///
/// let health = Health::up().with_detail("connections", 12);
/// assert_eq!(health.status(), Status::Up);
/// assert_eq!(health.details()["connections"], 12);
///
/// // A `Result` converts too: `Err` is DOWN with an `error` detail.
/// let health = Health::from(Err::<(), _>("connection refused"));
/// assert_eq!(health.status(), Status::Down);
/// assert_eq!(health.details()["error"], "connection refused");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    status: Status,
    details: Map<String, Value>,
}

impl Health {
    /// A result with `status` and no details.
    pub fn new(status: Status) -> Self {
        Self {
            status,
            details: Map::new(),
        }
    }

    /// `UP`, no details.
    pub fn up() -> Self {
        Self::new(Status::Up)
    }

    /// `DOWN`, no details.
    pub fn down() -> Self {
        Self::new(Status::Down)
    }

    /// `OUT_OF_SERVICE`, no details.
    pub fn out_of_service() -> Self {
        Self::new(Status::OutOfService)
    }

    /// `UNKNOWN`, no details.
    pub fn unknown() -> Self {
        Self::new(Status::Unknown)
    }

    /// `DOWN` with the error's message as the `error` detail.
    pub fn from_error(error: impl fmt::Display) -> Self {
        Self::down().with_detail("error", error.to_string())
    }

    /// Adds (or replaces) one detail.
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    /// Replaces the status.
    pub fn with_status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The details (empty when there are none).
    pub fn details(&self) -> &Map<String, Value> {
        &self.details
    }

    /// The details, mutably.
    pub fn details_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.details
    }
}

impl From<Status> for Health {
    fn from(status: Status) -> Self {
        Self::new(status)
    }
}

impl<E: fmt::Display> From<Result<(), E>> for Health {
    /// `Ok(())` is `UP`; `Err(e)` is `DOWN` with an `error` detail.
    fn from(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Self::up(),
            Err(e) => Self::from_error(e),
        }
    }
}

impl<E: fmt::Display> From<Result<Health, E>> for Health {
    /// `Ok(health)` is `health`; `Err(e)` is `DOWN` with an `error` detail.
    fn from(result: Result<Health, E>) -> Self {
        result.unwrap_or_else(Self::from_error)
    }
}

impl<E: fmt::Display> From<Result<Status, E>> for Health {
    /// `Ok(status)` is that status; `Err(e)` is `DOWN` with an `error` detail.
    fn from(result: Result<Status, E>) -> Self {
        result.map_or_else(Self::from_error, Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_order_is_actuators() {
        assert!(Status::Down > Status::OutOfService);
        assert!(Status::OutOfService > Status::Up);
        assert!(Status::Up > Status::Unknown);
        assert_eq!(Status::aggregate([]), Status::Up);
        assert_eq!(Status::aggregate([Status::Unknown]), Status::Unknown);
        assert_eq!(
            Status::aggregate([Status::OutOfService, Status::Up]),
            Status::OutOfService
        );
    }

    #[test]
    fn http_status_and_names() {
        assert_eq!(Status::Down.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Status::Up.http_status(), StatusCode::OK);
        assert_eq!(Status::OutOfService.to_string(), "OUT_OF_SERVICE");
        assert_eq!(Status::Down.health_json_status(), "fail");
        assert_eq!(Status::Up.health_json_status(), "pass");
    }

    #[test]
    fn results_convert() {
        assert_eq!(Health::from(Ok::<(), String>(())).status(), Status::Up);
        assert_eq!(
            Health::from(Ok::<_, String>(Status::OutOfService)).status(),
            Status::OutOfService
        );
        let h = Health::from(Err::<Health, _>("boom"));
        assert_eq!(h.status(), Status::Down);
        assert_eq!(h.details()["error"], "boom");
    }
}
