//! What a request asks for: the `health+json` format, and details by bearer token.

use http::{HeaderMap, header::ACCEPT};

use super::render::{APPLICATION_JSON, HEALTH_JSON};

pub(super) fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `Accept` prefers `application/health+json` (ties go to it).
///
/// Public only for the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
pub fn wants_health_json(headers: &HeaderMap) -> bool {
    let mut health: Option<f32> = None;
    let mut json: f32 = 0.0;
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or_default().trim();
            let q = params
                .find_map(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))
                })
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if media.eq_ignore_ascii_case(HEALTH_JSON) {
                health = Some(health.map_or(q, |h| h.max(q)));
            } else if media.eq_ignore_ascii_case(APPLICATION_JSON)
                || media.eq_ignore_ascii_case("application/*")
                || media == "*/*"
            {
                json = json.max(q);
            }
        }
    }
    health.is_some_and(|h| h > 0.0 && h >= json)
}
