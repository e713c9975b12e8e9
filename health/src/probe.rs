//! [`Probe`]: the Kubernetes probes a check belongs to, and the names reserved by them.

/// The name of the pseudo-component that reports the [`Readiness`](crate::Readiness) state.
pub const READINESS_STATE: &str = "readinessState";

/// The name of the pseudo-component that reports whether start-up is complete.
pub const STARTUP_STATE: &str = "startupState";

/// Names a check may not take: the probe paths and the state pseudo-components.
pub(crate) const RESERVED_NAMES: [&str; 5] =
    ["live", "ready", "startup", READINESS_STATE, STARTUP_STATE];

/// The longest check name accepted, in bytes.
pub const MAX_CHECK_NAME_LEN: usize = 64;

/// A Kubernetes probe a check can be registered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Probe {
    /// `/health/live`: is the process itself working? Register only checks of the process
    /// itself here (memory, a deadlock detector), never dependencies: a failing liveness probe
    /// restarts the pod, and restarting does not fix a database.
    Liveness,
    /// `/health/ready`: can it serve traffic now? Dependencies belong here. Also reports the
    /// [`Readiness`](crate::Readiness) handle's state.
    Readiness,
    /// `/health/startup`: has start-up finished? `DOWN` until
    /// [`HealthRegistry::startup_complete`](crate::HealthRegistry::startup_complete), then the aggregate of its checks.
    Startup,
}

impl Probe {
    pub(crate) const fn bit(self) -> u8 {
        match self {
            Self::Liveness => 1,
            Self::Readiness => 2,
            Self::Startup => 4,
        }
    }

    /// The probe's lowercase name: `liveness`, `readiness` or `startup`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Liveness => "liveness",
            Self::Readiness => "readiness",
            Self::Startup => "startup",
        }
    }
}
