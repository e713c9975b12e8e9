//! Free disk space.

use std::path::{Path, PathBuf};

use sysinfo::Disks;

use crate::{Health, HealthCheck, Status};

/// `UP` when the file system holding a path has at least a number of bytes free and, if set,
/// at least a fraction of its size free (Actuator's `diskSpace`).
///
/// Details, as Actuator's: `total`, `free` (bytes available to this process), `threshold`,
/// `path`, `exists`, and `thresholdRatio` when set. Runs on Tokio's blocking pool (it reads the
/// mount table through sysinfo).
///
/// ```
/// use covet_health::checks::DiskSpaceCheck;
///
/// let check = DiskSpaceCheck::new("/var/lib/app")
///     .min_free_bytes(512 * 1024 * 1024)
///     .min_free_ratio(0.05);
/// # let _ = check;
/// ```
#[derive(Clone, Debug)]
pub struct DiskSpaceCheck {
    path: PathBuf,
    min_free_bytes: u64,
    min_free_ratio: Option<f64>,
}

impl DiskSpaceCheck {
    /// The default free-space threshold: 10 MiB (10,485,760 bytes), as Actuator's.
    pub const DEFAULT_MIN_FREE_BYTES: u64 = 10 * 1024 * 1024;

    /// Checks the file system holding `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            min_free_bytes: Self::DEFAULT_MIN_FREE_BYTES,
            min_free_ratio: None,
        }
    }

    /// `DOWN` below this many free bytes.
    ///
    /// Defaults to [`DEFAULT_MIN_FREE_BYTES`](Self::DEFAULT_MIN_FREE_BYTES).
    pub fn min_free_bytes(mut self, bytes: u64) -> Self {
        self.min_free_bytes = bytes;
        self
    }

    /// Also `DOWN` when free space is below this fraction of the file system (0.0–1.0).
    ///
    /// Defaults to none.
    pub fn min_free_ratio(mut self, ratio: f64) -> Self {
        self.min_free_ratio = Some(ratio.clamp(0.0, 1.0));
        self
    }

    fn check_blocking(&self) -> Health {
        let path_detail = self.path.display().to_string();
        let Ok(path) = self.path.canonicalize() else {
            return Health::down()
                .with_detail("path", path_detail)
                .with_detail("exists", false);
        };
        let disks = Disks::new_with_refreshed_list();
        let Some(disk) = longest_mount(&disks, &path) else {
            return Health::unknown()
                .with_detail("path", path_detail)
                .with_detail("exists", true)
                .with_detail("error", "no mounted file system found for the path");
        };
        let (total, free) = (disk.total_space(), disk.available_space());
        let ratio_ok = self
            .min_free_ratio
            .is_none_or(|r| total == 0 || free as f64 / total as f64 >= r);
        let status = if free >= self.min_free_bytes && ratio_ok {
            Status::Up
        } else {
            Status::Down
        };
        let mut health = Health::new(status)
            .with_detail("total", total)
            .with_detail("free", free)
            .with_detail("threshold", self.min_free_bytes)
            .with_detail("path", path_detail)
            .with_detail("exists", true);
        if let Some(ratio) = self.min_free_ratio {
            health = health.with_detail("thresholdRatio", ratio);
        }
        health
    }
}

fn longest_mount<'a>(disks: &'a Disks, path: &Path) -> Option<&'a sysinfo::Disk> {
    disks
        .list()
        .iter()
        .filter(|disk| path.starts_with(disk.mount_point()))
        .max_by_key(|disk| disk.mount_point().as_os_str().len())
}

impl HealthCheck for DiskSpaceCheck {
    async fn check(&self) -> Health {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.check_blocking())
            .await
            .unwrap_or_else(Health::from_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn root_has_more_than_one_byte_free_and_less_than_all_of_u64() {
        let health = DiskSpaceCheck::new("/").min_free_bytes(1).check().await;
        assert_eq!(health.status(), Status::Up, "{health:?}");
        assert!(health.details()["free"].as_u64().unwrap() > 1);
        assert_eq!(health.details()["threshold"], 1);

        let health = DiskSpaceCheck::new("/")
            .min_free_bytes(u64::MAX)
            .check()
            .await;
        assert_eq!(health.status(), Status::Down);

        let health = DiskSpaceCheck::new("/")
            .min_free_bytes(0)
            .min_free_ratio(1.0)
            .check()
            .await;
        assert_eq!(health.status(), Status::Down, "{health:?}");
    }

    #[tokio::test]
    async fn a_missing_path_is_down() {
        let health = DiskSpaceCheck::new("/definitely/not/here").check().await;
        assert_eq!(health.status(), Status::Down);
        assert_eq!(health.details()["exists"], false);
    }

    #[test]
    fn default_threshold_is_ten_mebibytes() {
        assert_eq!(DiskSpaceCheck::DEFAULT_MIN_FREE_BYTES, 10_485_760);
    }
}
