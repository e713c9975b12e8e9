//! Process or host memory.

use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::{Health, HealthCheck, Status};

/// `UP` while the process's resident memory (RSS) stays under a ceiling, or while the host's
/// available memory stays over a floor.
///
/// Details: `rss` and `threshold` (process), or `available`, `total` and `threshold` (host), in
/// bytes. Runs on Tokio's blocking pool (it reads `/proc` through sysinfo).
///
/// A process-RSS check suits liveness (a leaking process is restarted); a host check suits
/// readiness.
///
/// ```
/// use covet_health::checks::MemoryCheck;
///
/// let rss = MemoryCheck::process_rss_below(1024 * 1024 * 1024); // 1 GiB
/// let host = MemoryCheck::host_available_above(256 * 1024 * 1024); // 256 MiB
/// # let _ = (rss, host);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MemoryCheck {
    kind: Kind,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    ProcessRss { max_bytes: u64 },
    HostAvailable { min_bytes: u64 },
}

impl MemoryCheck {
    /// `DOWN` when this process's resident set size is `max_bytes` or more.
    pub fn process_rss_below(max_bytes: u64) -> Self {
        Self {
            kind: Kind::ProcessRss { max_bytes },
        }
    }

    /// `DOWN` when the host has less than `min_bytes` of available memory.
    pub fn host_available_above(min_bytes: u64) -> Self {
        Self {
            kind: Kind::HostAvailable { min_bytes },
        }
    }

    fn check_blocking(self) -> Health {
        match self.kind {
            Kind::ProcessRss { max_bytes } => {
                let pid = Pid::from_u32(std::process::id());
                let mut system = System::new();
                system.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    false,
                    ProcessRefreshKind::nothing().with_memory(),
                );
                let Some(rss) = system.process(pid).map(|p| p.memory()) else {
                    return Health::unknown()
                        .with_detail("error", "process memory is not available");
                };
                let status = if rss < max_bytes {
                    Status::Up
                } else {
                    Status::Down
                };
                Health::new(status)
                    .with_detail("rss", rss)
                    .with_detail("threshold", max_bytes)
            }
            Kind::HostAvailable { min_bytes } => {
                let mut system = System::new();
                system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
                let (available, total) = (system.available_memory(), system.total_memory());
                if total == 0 {
                    return Health::unknown().with_detail("error", "host memory is not available");
                }
                let status = if available >= min_bytes {
                    Status::Up
                } else {
                    Status::Down
                };
                Health::new(status)
                    .with_detail("available", available)
                    .with_detail("total", total)
                    .with_detail("threshold", min_bytes)
            }
        }
    }
}

impl HealthCheck for MemoryCheck {
    async fn check(&self) -> Health {
        let this = *self;
        tokio::task::spawn_blocking(move || this.check_blocking())
            .await
            .unwrap_or_else(Health::from_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn process_rss_against_a_ceiling() {
        let health = MemoryCheck::process_rss_below(u64::MAX).check().await;
        assert_eq!(health.status(), Status::Up, "{health:?}");
        let rss = health.details()["rss"].as_u64().unwrap();
        assert!(
            rss > 1024 * 1024,
            "a test binary uses more than 1 MiB: {rss}"
        );

        let health = MemoryCheck::process_rss_below(1024).check().await;
        assert_eq!(health.status(), Status::Down);
    }

    #[tokio::test]
    async fn host_available_against_a_floor() {
        let health = MemoryCheck::host_available_above(1).check().await;
        assert_eq!(health.status(), Status::Up, "{health:?}");
        let health = MemoryCheck::host_available_above(u64::MAX).check().await;
        assert_eq!(health.status(), Status::Down);
        assert!(health.details()["total"].as_u64().unwrap() > 0);
    }
}
