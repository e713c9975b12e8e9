//! The metric handles one [`MetricsLayer`](super::MetricsLayer) shares with its services: the
//! families, the bounded cache of per-label-set handles, and the paths left out.

use std::{
    borrow::Cow,
    collections::HashSet,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex, PoisonError, RwLock},
};

use http::StatusCode;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge};

use super::labels::{METHODS, ROUTE_OVERFLOW, ROUTE_UNKNOWN, UserAgentClass};

/// A path left out of the HTTP metrics.
#[derive(Clone, Debug)]
pub(crate) enum PathMatch {
    /// Exactly this path.
    Exact(Cow<'static, str>),
    /// This path and everything below it, by whole segments (`/health` covers
    /// `/health/ready`, not `/healthz`).
    Prefix(Cow<'static, str>),
}

#[derive(Debug)]
pub(crate) struct Families {
    pub(crate) requests: IntCounterVec,
    pub(crate) duration: HistogramVec,
    pub(crate) request_size: HistogramVec,
    pub(crate) response_size: HistogramVec,
}

/// The cached handles of one `(method, route, status)` label set.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) requests: IntCounter,
    pub(crate) duration: Histogram,
    pub(crate) request_size: Histogram,
    pub(crate) response_size: Histogram,
}

#[derive(Debug, PartialEq, Eq)]
struct SeriesKey {
    method: u8,
    status: u16,
    route: Box<str>,
}

/// The borrowed form of [`SeriesKey`], looked up without allocating.
struct SeriesKeyRef<'a> {
    method: u8,
    status: u16,
    route: &'a str,
}

fn hash_key<H: Hasher>(method: u8, status: u16, route: &str, state: &mut H) {
    state.write_u8(method);
    state.write_u16(status);
    route.hash(state);
}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_key(self.method, self.status, &self.route, state);
    }
}

impl Hash for SeriesKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_key(self.method, self.status, self.route, state);
    }
}

impl hashbrown::Equivalent<SeriesKey> for SeriesKeyRef<'_> {
    fn equivalent(&self, key: &SeriesKey) -> bool {
        self.method == key.method && self.status == key.status && self.route == &*key.route
    }
}

/// The label sets seen so far.
#[derive(Debug, Default)]
pub(crate) struct SeriesCache {
    map: hashbrown::HashMap<SeriesKey, Arc<Series>>,
    /// Distinct label sets created under a real route (the `OVERFLOW` ones are not counted).
    label_sets: usize,
}

/// Everything the services made by one layer share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) families: Families,
    pub(crate) cache: RwLock<SeriesCache>,
    pub(crate) max_label_sets: usize,
    pub(crate) dropped: IntCounter,
    pub(crate) active: [IntGauge; METHODS.len()],
    pub(crate) user_agents: Option<[IntCounter; UserAgentClass::ALL.len()]>,
    pub(crate) exceptions: IntCounterVec,
    pub(crate) exception_sets: Mutex<HashSet<(usize, String, &'static str)>>,
    pub(crate) excluded: Box<[PathMatch]>,
}

impl Shared {
    #[inline]
    pub(crate) fn is_excluded(&self, path: &str) -> bool {
        self.excluded.iter().any(|m| match m {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => crate::path::is_under(path, p),
        })
    }

    /// The handles of a label set, created on first use, bounded by the cap.
    pub(crate) fn series(&self, method: usize, status: StatusCode, route: &str) -> Arc<Series> {
        let key = SeriesKeyRef {
            method: method as u8,
            status: status.as_u16(),
            route,
        };
        if let Some(series) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .get(&key)
        {
            return series.clone();
        }
        self.create_series(key, status)
    }

    #[cold]
    fn create_series(&self, key: SeriesKeyRef<'_>, status: StatusCode) -> Arc<Series> {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = cache.map.get(&key) {
            return series.clone();
        }
        let mut key = key;
        if cache.label_sets >= self.max_label_sets {
            self.dropped.inc();
            key.route = ROUTE_OVERFLOW;
            if let Some(series) = cache.map.get(&key) {
                return series.clone();
            }
        } else {
            cache.label_sets += 1;
        }
        let labels = [METHODS[key.method as usize], key.route, status.as_str()];
        let f = &self.families;
        let series = Arc::new(Series {
            requests: f.requests.with_label_values(&labels),
            duration: f.duration.with_label_values(&labels),
            request_size: f.request_size.with_label_values(&labels),
            response_size: f.response_size.with_label_values(&labels),
        });
        cache.map.insert(
            SeriesKey {
                method: key.method,
                status: key.status,
                route: key.route.into(),
            },
            series.clone(),
        );
        series
    }

    /// Counts a request whose service failed or panicked.
    #[cold]
    pub(crate) fn exception(&self, method: usize, route: Option<&str>, kind: &'static str) {
        let mut route = route.unwrap_or(ROUTE_UNKNOWN);
        {
            let mut sets = self
                .exception_sets
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let key = (method, route.to_owned(), kind);
            if !sets.contains(&key) {
                if sets.len() >= self.max_label_sets {
                    self.dropped.inc();
                    route = ROUTE_OVERFLOW;
                } else {
                    sets.insert(key);
                }
            }
        }
        self.exceptions
            .with_label_values(&[METHODS[method], route, kind])
            .inc();
    }
}
