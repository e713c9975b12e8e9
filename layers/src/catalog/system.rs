//! Host, process and async-runtime metrics, read when Prometheus scrapes.
//!
//! [`SystemMetrics::register`] adds three groups of metrics to a caller-supplied
//! [`Registry`]:
//!
//! | metric | type | labels | source |
//! |---|---|---|---|
//! | `system_cpu_usage_ratio` | gauge | | all CPUs busy since the previous refresh, 0–1 |
//! | `system_memory_used_bytes` / `system_memory_total_bytes` | gauge | | RAM |
//! | `system_disk_used_bytes` / `system_disk_total_bytes` | gauge | `mount` | real mounted disks (at most [`MAX_DISKS`]) |
//! | `system_network_received_bytes_total` / `system_network_transmitted_bytes_total` | counter | `interface` | the OS's own counters (at most [`MAX_INTERFACES`]) |
//! | `system_load1` / `system_load5` / `system_load15` | gauge | | load average (0 where the OS has none) |
//! | `process_cpu_seconds_total`, `process_open_fds`, `process_max_fds`, `process_virtual_memory_bytes`, `process_resident_memory_bytes`, `process_start_time_seconds`, `process_threads` | | | prometheus's `ProcessCollector` (Linux only) |
//! | `tokio_runtime_workers`, `tokio_runtime_alive_tasks`, `tokio_runtime_global_queue_depth` | gauge | | the tokio runtime |
//!
//! The host readings come from [`sysinfo`] and are refreshed **at most once per
//! [`MIN_REFRESH_INTERVAL`]**, however often (or however many Prometheus servers) scrape: a scrape
//! inside the interval is answered from the cached readings. The tokio readings are a few atomic
//! loads and are read fresh on every scrape, from the runtime that was current when the metrics
//! were registered (or, failing that, the runtime of the scraping thread), so a scrape served by a
//! thread outside the runtime still sees them. With no runtime at all the `tokio_runtime_*`
//! families are left out.
//!
//! Rust has no garbage collector, so there is no `garbage_collection_duration_seconds`: the
//! runtime pressure that metric stands for in a GC'd language shows here as a deep global queue
//! and many alive tasks.
//!
//! # Example
//!
//! ```
//! use covet_layers::catalog::system::SystemMetrics;
//! use prometheus::{Encoder, Registry, TextEncoder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), covet_layers::metrics::MetricsError> {
//! let registry = Registry::new();
//! SystemMetrics::register(&registry)?;
//!
//! let mut text = Vec::new();
//! TextEncoder::new().encode(&registry.gather(), &mut text).unwrap();
//! let text = String::from_utf8(text).unwrap();
//! assert!(text.contains("\nsystem_memory_total_bytes "));
//! assert!(text.contains("\ntokio_runtime_workers 1\n"));
//! # #[cfg(target_os = "linux")]
//! assert!(text.contains("\nprocess_resident_memory_bytes "));
//! # Ok(())
//! # }
//! ```

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus::{
    Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    core::{Collector, Desc},
    proto::MetricFamily,
};
use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, System};
use tokio::runtime::Handle;

use super::register_collector;
use crate::metrics::MetricsError;

/// The shortest time between two refreshes of the host readings: scrapes closer together than
/// this are answered from the cached readings.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The most disks (distinct devices) reported in `system_disk_*_bytes`; the rest are left out.
///
/// Only real file systems are listed (no `proc`, `sysfs`, `tmpfs`, `cgroup`, network mounts …),
/// each device once, under its shortest mount point, so the bind mounts a container runtime adds
/// (`/etc/hosts`, `/etc/resolv.conf`, …) do not multiply the series.
pub const MAX_DISKS: usize = 32;

/// The most network interfaces reported in `system_network_*_bytes_total` (in name order); the
/// rest are left out.
pub const MAX_INTERFACES: usize = 32;

/// Host, process and tokio runtime metrics for one [`Registry`].
///
/// A `SystemMetrics` is a [`Collector`]: [`SystemMetrics::register`] registers it (and, on Linux,
/// prometheus's [`ProcessCollector`](prometheus::process_collector::ProcessCollector)); clones
/// share the same cached readings.
#[derive(Clone)]
pub struct SystemMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    interval: Duration,
    state: Mutex<State>,
    /// How many times the host readings were refreshed (tests count it).
    refreshes: AtomicU64,
    /// The runtime current at construction, if any.
    runtime: Option<Handle>,
    descs: Vec<Desc>,

    cpu_usage: Gauge,
    memory_used: IntGauge,
    memory_total: IntGauge,
    disk_used: IntGaugeVec,
    disk_total: IntGaugeVec,
    network_received: IntCounterVec,
    network_transmitted: IntCounterVec,
    load1: Gauge,
    load5: Gauge,
    load15: Gauge,

    runtime_workers: IntGauge,
    runtime_alive_tasks: IntGauge,
    runtime_global_queue_depth: IntGauge,
}

struct State {
    system: System,
    disks: Disks,
    networks: Networks,
    /// When the readings were last refreshed; `None` before the first scrape.
    refreshed_at: Option<Instant>,
    /// The `mount` label values currently exported.
    mounts: Vec<String>,
    /// The `interface` label values currently exported.
    interfaces: Vec<String>,
}

impl SystemMetrics {
    /// Creates the host and runtime metrics without registering them; register the result with
    /// [`Registry::register`] (as a boxed clone) or use [`SystemMetrics::register`].
    ///
    /// Captures the current tokio runtime, if there is one, and takes a first CPU reading so the
    /// first scrape reports the CPU usage since this call.
    pub fn new() -> Result<Self, MetricsError> {
        Self::with_interval(MIN_REFRESH_INTERVAL)
    }

    /// Creates the metrics and registers them into `registry`, with prometheus's process
    /// collector on Linux (`process_*`).
    ///
    /// Fails with [`MetricsError::Register`] if the registry already has any of these families
    /// (for instance when called twice on one registry); nothing is left registered then.
    pub fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let metrics = Self::new()?;
        register_collector(registry, Box::new(metrics.clone()), &metrics.inner.descs)?;

        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            let descs: Vec<Desc> = process.desc().into_iter().cloned().collect();
            if let Err(error) = register_collector(registry, Box::new(process), &descs) {
                // Leave the registry as it was.
                let _ = registry.unregister(Box::new(metrics.clone()));
                return Err(error);
            }
        }

        Ok(metrics)
    }

    fn with_interval(interval: Duration) -> Result<Self, MetricsError> {
        let gauge = |name: &str, help: &str| {
            Gauge::with_opts(Opts::new(name, help)).map_err(|e| MetricsError::create(name, e))
        };
        let int_gauge = |name: &str, help: &str| {
            IntGauge::with_opts(Opts::new(name, help)).map_err(|e| MetricsError::create(name, e))
        };
        let int_gauge_vec = |name: &str, help: &str, label: &str| {
            IntGaugeVec::new(Opts::new(name, help), &[label])
                .map_err(|e| MetricsError::create(name, e))
        };
        let int_counter_vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label])
                .map_err(|e| MetricsError::create(name, e))
        };

        let cpu_usage = gauge(
            "system_cpu_usage_ratio",
            "Share of all CPUs' time spent busy since the previous refresh (0-1).",
        )?;
        let memory_used = int_gauge("system_memory_used_bytes", "Host memory in use, in bytes.")?;
        let memory_total = int_gauge(
            "system_memory_total_bytes",
            "Host memory installed, in bytes.",
        )?;
        let disk_used = int_gauge_vec(
            "system_disk_used_bytes",
            "Disk space in use (total minus available to unprivileged users), in bytes, by mount point.",
            "mount",
        )?;
        let disk_total = int_gauge_vec(
            "system_disk_total_bytes",
            "Disk size, in bytes, by mount point.",
            "mount",
        )?;
        let network_received = int_counter_vec(
            "system_network_received_bytes_total",
            "Bytes received by the host, by network interface.",
            "interface",
        )?;
        let network_transmitted = int_counter_vec(
            "system_network_transmitted_bytes_total",
            "Bytes transmitted by the host, by network interface.",
            "interface",
        )?;
        let load1 = gauge("system_load1", "Host load average over 1 minute.")?;
        let load5 = gauge("system_load5", "Host load average over 5 minutes.")?;
        let load15 = gauge("system_load15", "Host load average over 15 minutes.")?;
        let runtime_workers = int_gauge(
            "tokio_runtime_workers",
            "Worker threads of the tokio runtime.",
        )?;
        let runtime_alive_tasks = int_gauge(
            "tokio_runtime_alive_tasks",
            "Tasks alive (spawned and not yet finished) in the tokio runtime.",
        )?;
        let runtime_global_queue_depth = int_gauge(
            "tokio_runtime_global_queue_depth",
            "Tasks waiting in the tokio runtime's global (injection) queue.",
        )?;

        let collectors: [&dyn Collector; 13] = [
            &cpu_usage,
            &memory_used,
            &memory_total,
            &disk_used,
            &disk_total,
            &network_received,
            &network_transmitted,
            &load1,
            &load5,
            &load15,
            &runtime_workers,
            &runtime_alive_tasks,
            &runtime_global_queue_depth,
        ];
        let descs = collectors
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();

        let mut system = System::new();
        // The CPU usage is a difference between two readings: take the first one now.
        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());

        Ok(Self {
            inner: Arc::new(Inner {
                interval,
                state: Mutex::new(State {
                    system,
                    disks: Disks::new(),
                    networks: Networks::new(),
                    refreshed_at: None,
                    mounts: Vec::new(),
                    interfaces: Vec::new(),
                }),
                refreshes: AtomicU64::new(0),
                runtime: Handle::try_current().ok(),
                descs,
                cpu_usage,
                memory_used,
                memory_total,
                disk_used,
                disk_total,
                network_received,
                network_transmitted,
                load1,
                load5,
                load15,
                runtime_workers,
                runtime_alive_tasks,
                runtime_global_queue_depth,
            }),
        })
    }
}

impl fmt::Debug for SystemMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemMetrics")
            .field("interval", &self.inner.interval)
            .field("runtime", &self.inner.runtime.is_some())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Refreshes the host readings unless they are younger than the interval.
    fn refresh_if_stale(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state
            .refreshed_at
            .is_some_and(|at| at.elapsed() < self.interval)
        {
            return;
        }
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let State {
            system,
            disks,
            networks,
            refreshed_at,
            mounts,
            interfaces,
        } = &mut *state;

        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        self.cpu_usage
            .set((f64::from(system.global_cpu_usage()) / 100.0).clamp(0.0, 1.0));
        self.memory_used.set(saturating_i64(system.used_memory()));
        self.memory_total.set(saturating_i64(system.total_memory()));

        let load = System::load_average();
        self.load1.set(load.one);
        self.load5.set(load.five);
        self.load15.set(load.fifteen);

        disks.refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        // One entry per device, under its shortest mount point.
        let mut by_device: HashMap<&std::ffi::OsStr, &sysinfo::Disk> = HashMap::new();
        for disk in disks.list().iter().filter(|d| d.total_space() > 0) {
            by_device
                .entry(disk.name())
                .and_modify(|kept| {
                    if disk.mount_point().as_os_str().len() < kept.mount_point().as_os_str().len() {
                        *kept = disk;
                    }
                })
                .or_insert(disk);
        }
        let mut listed: Vec<(String, u64, u64)> = by_device
            .values()
            .map(|d| {
                let total = d.total_space();
                let used = total.saturating_sub(d.available_space());
                (d.mount_point().to_string_lossy().into_owned(), used, total)
            })
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        listed.dedup_by(|a, b| a.0 == b.0);
        listed.truncate(MAX_DISKS);
        let current: Vec<String> = listed.iter().map(|(m, ..)| m.clone()).collect();
        for gone in mounts.iter().filter(|m| !current.contains(m)) {
            let _ = self.disk_used.remove_label_values(&[gone]);
            let _ = self.disk_total.remove_label_values(&[gone]);
        }
        for (mount, used, total) in &listed {
            self.disk_used
                .with_label_values(&[mount])
                .set(saturating_i64(*used));
            self.disk_total
                .with_label_values(&[mount])
                .set(saturating_i64(*total));
        }
        *mounts = current;

        networks.refresh(true);
        let mut names: Vec<&String> = networks.list().keys().collect();
        names.sort();
        names.truncate(MAX_INTERFACES);
        let current: Vec<String> = names.iter().map(|n| (*n).clone()).collect();
        for gone in interfaces.iter().filter(|i| !current.contains(i)) {
            let _ = self.network_received.remove_label_values(&[gone]);
            let _ = self.network_transmitted.remove_label_values(&[gone]);
        }
        for (name, data) in networks.list() {
            if current.contains(name) {
                set_counter(&self.network_received, name, data.total_received());
                set_counter(&self.network_transmitted, name, data.total_transmitted());
            }
        }
        *interfaces = current;

        *refreshed_at = Some(Instant::now());
    }

    /// Reads the tokio runtime; `false` if there is none to read.
    fn read_runtime(&self) -> bool {
        let current;
        let handle = match &self.runtime {
            Some(handle) => handle,
            None => match Handle::try_current() {
                Ok(handle) => {
                    current = handle;
                    &current
                }
                Err(_) => return false,
            },
        };
        let metrics = handle.metrics();
        self.runtime_workers
            .set(saturating_i64(metrics.num_workers() as u64));
        self.runtime_alive_tasks
            .set(saturating_i64(metrics.num_alive_tasks() as u64));
        self.runtime_global_queue_depth
            .set(saturating_i64(metrics.global_queue_depth() as u64));
        true
    }
}

/// Moves the counter for `label` to the OS's `value`; a value below the exported one means the
/// OS counter was reset (interface re-created), which is exported as a counter reset too.
fn set_counter(counters: &IntCounterVec, label: &str, value: u64) {
    let counter = counters.with_label_values(&[label]);
    let exported = counter.get();
    if value >= exported {
        counter.inc_by(value - exported);
    } else {
        let _ = counters.remove_label_values(&[label]);
        counters.with_label_values(&[label]).inc_by(value);
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for SystemMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let inner = &*self.inner;
        inner.refresh_if_stale();

        let mut families = Vec::with_capacity(13);
        let host: [&dyn Collector; 10] = [
            &inner.cpu_usage,
            &inner.memory_used,
            &inner.memory_total,
            &inner.disk_used,
            &inner.disk_total,
            &inner.network_received,
            &inner.network_transmitted,
            &inner.load1,
            &inner.load5,
            &inner.load15,
        ];
        for collector in host {
            families.extend(collector.collect());
        }
        if inner.read_runtime() {
            families.extend(inner.runtime_workers.collect());
            families.extend(inner.runtime_alive_tasks.collect());
            families.extend(inner.runtime_global_queue_depth.collect());
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_promtool_clean, encode, sample};

    #[tokio::test]
    async fn scrape_shows_host_readings() {
        let registry = Registry::new();
        SystemMetrics::register(&registry).unwrap();
        let text = encode(&registry);

        let total = sample(&text, "system_memory_total_bytes").expect("memory total");
        let used = sample(&text, "system_memory_used_bytes").expect("memory used");
        assert!(total > 0.0, "{text}");
        assert!(used > 0.0 && used <= total, "{text}");

        let cpu = sample(&text, "system_cpu_usage_ratio").expect("cpu ratio");
        assert!((0.0..=1.0).contains(&cpu), "{text}");

        for name in ["system_load1", "system_load5", "system_load15"] {
            assert!(sample(&text, name).expect(name) >= 0.0, "{text}");
        }
        #[cfg(target_os = "linux")]
        {
            // Linux always has a root file system and a loopback interface.
            assert!(
                text.lines()
                    .any(|l| l.starts_with("system_disk_total_bytes{mount=")),
                "{text}"
            );
            assert!(
                sample(
                    &text,
                    "system_network_received_bytes_total{interface=\"lo\"}"
                )
                .is_some(),
                "{text}"
            );
            assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 0.0);
            assert!(sample(&text, "process_threads").unwrap() >= 1.0);
            assert!(sample(&text, "process_open_fds").unwrap() >= 1.0);
        }
    }

    #[tokio::test]
    async fn disk_used_never_exceeds_total() {
        let registry = Registry::new();
        SystemMetrics::register(&registry).unwrap();
        let text = encode(&registry);
        let mut seen = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("system_disk_total_bytes{") {
                let (labels, total) = rest.split_once("} ").unwrap();
                let used = sample(&text, &format!("system_disk_used_bytes{{{labels}}}"))
                    .expect("a used sample for every total sample");
                assert!(used <= total.parse::<f64>().unwrap(), "{line}");
                seen += 1;
            }
        }
        assert!(seen <= MAX_DISKS);
    }

    #[test]
    fn scrapes_within_the_interval_refresh_once() {
        let metrics = SystemMetrics::new().unwrap();
        metrics.collect();
        metrics.collect();
        metrics.collect();
        assert_eq!(metrics.inner.refreshes.load(Ordering::Relaxed), 1);

        // A clone shares the cache.
        metrics.clone().collect();
        assert_eq!(metrics.inner.refreshes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn scrapes_after_the_interval_refresh_again() {
        let metrics = SystemMetrics::with_interval(Duration::from_millis(20)).unwrap();
        metrics.collect();
        std::thread::sleep(Duration::from_millis(30));
        metrics.collect();
        assert_eq!(metrics.inner.refreshes.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn runtime_is_read_from_other_threads() {
        let registry = Registry::new();
        SystemMetrics::register(&registry).unwrap();
        let _task = tokio::spawn(std::future::pending::<()>());

        // Scrape from a thread with no runtime: the handle captured at registration is used.
        let text = std::thread::spawn(move || encode(&registry))
            .join()
            .unwrap();
        assert_eq!(sample(&text, "tokio_runtime_workers"), Some(1.0), "{text}");
        assert!(sample(&text, "tokio_runtime_alive_tasks").unwrap() >= 1.0);
        assert!(sample(&text, "tokio_runtime_global_queue_depth").is_some());
    }

    #[test]
    fn no_runtime_no_runtime_families() {
        let registry = Registry::new();
        SystemMetrics::register(&registry).unwrap();
        let text = encode(&registry);
        assert!(!text.contains("tokio_runtime_"), "{text}");
        assert!(sample(&text, "system_memory_total_bytes").is_some());
    }

    #[test]
    fn counters_follow_the_os_and_its_resets() {
        let counters = IntCounterVec::new(Opts::new("c_total", "c"), &["interface"]).unwrap();
        set_counter(&counters, "eth0", 100);
        set_counter(&counters, "eth0", 250);
        assert_eq!(counters.with_label_values(&["eth0"]).get(), 250);
        set_counter(&counters, "eth0", 7);
        assert_eq!(counters.with_label_values(&["eth0"]).get(), 7);
    }

    #[test]
    fn registering_twice_is_a_typed_error_and_leaves_one_set() {
        let registry = Registry::new();
        SystemMetrics::register(&registry).unwrap();
        let error = SystemMetrics::register(&registry).unwrap_err();
        match error {
            MetricsError::Register { name, .. } => {
                assert!(name.contains("system_"), "{name}")
            }
            other => panic!("unexpected error {other:?}"),
        }
        let text = encode(&registry);
        assert_eq!(text.matches("# TYPE system_memory_total_bytes").count(), 1);
    }

    #[test]
    fn two_registries_in_one_process() {
        let (a, b) = (Registry::new(), Registry::new());
        SystemMetrics::register(&a).unwrap();
        SystemMetrics::register(&b).unwrap();
        assert!(sample(&encode(&b), "system_memory_total_bytes").is_some());
    }

    #[tokio::test]
    async fn exposition_passes_promtool() {
        let registry = Registry::new();
        SystemMetrics::register(&registry).unwrap();
        assert_promtool_clean(&encode(&registry));
    }
}
