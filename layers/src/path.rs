//! Path matching for the layers that leave some paths out (probes, scrapes).

/// `path` is `prefix` or below it, matching whole segments: `/health` covers `/health` and
/// `/health/ready` but not `/healthz` or `/healthy`. A prefix ending in `/` covers everything
/// that starts with it.
#[allow(dead_code)] // used by the metrics and trace features only
pub(crate) fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'))
}

#[cfg(test)]
mod tests {
    use super::is_under;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(is_under("/health", "/health"));
        assert!(is_under("/health/ready", "/health"));
        assert!(!is_under("/healthz", "/health"));
        assert!(!is_under("/healthz-7", "/health"));
        assert!(!is_under("/api/health", "/health"));
        assert!(is_under("/static/app.js", "/static/"));
        assert!(!is_under("/static", "/static/"));
    }
}
