//! The exposition formats: content negotiation and encoding.

use prometheus::{Encoder, TextEncoder, proto::MetricFamily};

/// `Content-Type` of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition format chosen for a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text (ends with `# EOF`).
    OpenMetrics,
}

impl Format {
    /// Picks the format an `Accept` header asks for: OpenMetrics when it is listed with a
    /// quality at least that of any text/plain or wildcard range, the text format otherwise
    /// (including for a missing or unparsable header).
    ///
    /// ```
    /// use covet_layers::metrics::Format;
    ///
    /// let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    /// assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
    /// assert_eq!(Format::negotiate(None), Format::Text);
    /// ```
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',').take(32) {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim();
            let q = quality(params);
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                openmetrics = openmetrics.max(q);
            } else if media.eq_ignore_ascii_case("text/plain")
                || media.eq_ignore_ascii_case("text/*")
                || media == "*/*"
            {
                text = text.max(q);
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// The `q` parameter of a media range or coding (1 when absent, 0 when malformed).
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> f32 {
    for param in params {
        if let Some((name, value)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("q")
        {
            return match value.trim().parse::<f32>() {
                Ok(q) if (0.0..=1.0).contains(&q) => q,
                _ => 0.0,
            };
        }
    }
    1.0
}

pub(crate) fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|value| {
        value.split(',').take(32).any(|coding| {
            let mut params = coding.split(';');
            let name = params.next().unwrap_or("").trim();
            (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip"))
                && quality(params) > 0.0
        })
    })
}

/// Encodes metric families in `format`.
///
/// Both formats start from prometheus's own text encoder, whose model accessors are the same
/// whether or not prometheus's `protobuf` feature is on; OpenMetrics is a rewrite
/// of that text, so covet compiles beside any feature set of prometheus.
pub fn encode(families: &[MetricFamily], format: Format) -> Result<Vec<u8>, prometheus::Error> {
    let mut text = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(families, &mut text)?;
    match format {
        Format::Text => Ok(text),
        Format::OpenMetrics => {
            // The text encoder writes UTF-8 (names, label values and help are `str`).
            let text = String::from_utf8(text)
                .map_err(|e| prometheus::Error::Msg(format!("exposition is not UTF-8: {e}")))?;
            Ok(super::openmetrics::from_text(&text).into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation_follows_quality() {
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=1, application/openmetrics-text;q=0.5")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=banana")),
            Format::Text
        );
        assert_eq!(Format::negotiate(Some(",,;;=,")), Format::Text);
        assert!(accepts_gzip(Some("deflate, gzip;q=0.8")));
        assert!(!accepts_gzip(Some("gzip;q=0, br")));
        assert!(!accepts_gzip(None));
    }
}
