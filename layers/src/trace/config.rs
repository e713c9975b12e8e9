//! The trace layer's settings, shared by the layer, its service and its future.

use std::{borrow::Cow, net::IpAddr};

use http::HeaderName;
use ipnet::IpNet;

use crate::peer::ForwardedHeader;

/// The paths left out of the request log by default: `/health` and everything under it, and
/// `/metrics` (probes and scrapes would drown the log).
pub const DEFAULT_LOG_EXCLUDED: [&str; 2] = ["/health", "/metrics"];

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) trace_id_header: Option<HeaderName>,
    pub(crate) request_id_header: Option<HeaderName>,
    pub(crate) untrusted_edge: bool,
    pub(crate) context_sources: Vec<IpNet>,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) forwarded_header: ForwardedHeader,
    pub(crate) request_log: bool,
    pub(crate) log_excluded: Vec<Cow<'static, str>>,
}

impl Config {
    /// Whether a request from `peer` may continue its caller's trace.
    #[inline]
    pub(crate) fn continues_context(&self, peer: Option<IpAddr>) -> bool {
        !self.untrusted_edge
            || peer.is_some_and(|peer| {
                let peer = peer.to_canonical();
                self.context_sources.iter().any(|net| net.contains(&peer))
            })
    }

    /// Whether a request to `path` gets a request log line.
    #[inline]
    pub(crate) fn logs(&self, path: &str) -> bool {
        self.request_log
            && !self
                .log_excluded
                .iter()
                .any(|p| crate::path::is_under(path, p))
    }
}
