//! [`CheckRegistration`]: one check with its name, probes and options.

use std::{fmt, sync::Arc, time::Duration};

use crate::{
    Probe,
    check::{DynHealthCheck, HealthCheck},
};

/// One check with its name and options, for [`HealthRegistryBuilder::register`](crate::HealthRegistryBuilder::register).
///
/// ```
/// use std::time::Duration;
/// use covet_health::{CheckRegistration, HealthRegistry, Status};
///
/// let registry = HealthRegistry::builder()
///     .register(
///         CheckRegistration::new("search", || async { Status::Up })
///             .readiness()
///             .startup()
///             .non_critical()
///             .timeout(Duration::from_millis(500))
///             .cache_ttl(Duration::from_secs(5)),
///     )
///     .build()?;
/// # Ok::<(), covet_health::BuildError>(())
/// ```
pub struct CheckRegistration {
    pub(crate) name: String,
    pub(crate) check: Arc<dyn DynHealthCheck>,
    pub(crate) probes: u8,
    pub(crate) critical: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) cache_ttl: Option<Duration>,
}

impl CheckRegistration {
    /// A check named `name`, in no probe yet (it is still served by `/health` and
    /// `/health/{name}`), critical, with the registry's timeout and cache TTL.
    pub fn new(name: impl Into<String>, check: impl HealthCheck) -> Self {
        Self {
            name: name.into(),
            check: Arc::new(check),
            probes: 0,
            critical: true,
            timeout: None,
            cache_ttl: None,
        }
    }

    /// Adds the check to `probe`.
    pub fn probe(mut self, probe: Probe) -> Self {
        self.probes |= probe.bit();
        self
    }

    /// Adds the check to the liveness probe.
    pub fn liveness(self) -> Self {
        self.probe(Probe::Liveness)
    }

    /// Adds the check to the readiness probe.
    pub fn readiness(self) -> Self {
        self.probe(Probe::Readiness)
    }

    /// Adds the check to the startup probe.
    pub fn startup(self) -> Self {
        self.probe(Probe::Startup)
    }

    /// Reports the check without letting it fail the aggregate status.
    ///
    /// Defaults to critical.
    pub fn non_critical(mut self) -> Self {
        self.critical = false;
        self
    }

    /// The time the check may take before it counts as `DOWN`.
    ///
    /// Defaults to the registry's [`HealthRegistryBuilder::timeout`](crate::HealthRegistryBuilder::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long a result is reused before the check runs again.
    ///
    /// Defaults to the registry's [`HealthRegistryBuilder::cache_ttl`](crate::HealthRegistryBuilder::cache_ttl).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl);
        self
    }
}

impl fmt::Debug for CheckRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckRegistration")
            .field("name", &self.name)
            .field("probes", &self.probes)
            .field("critical", &self.critical)
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}
