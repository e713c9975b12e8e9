//! [`CspNonce`]: a fresh nonce per request, and the policy text it is written into.

use std::fmt;

use http::HeaderValue;

/// A per-request random nonce for `content-security-policy`, found in the request extensions
/// when [`SecurityHeadersBuilder::csp_nonce`](super::SecurityHeadersBuilder::csp_nonce) is on.
///
/// It is 128 random bits, base64-encoded (24 characters); put it in `<script nonce="…">`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CspNonce(pub(crate) [u8; NONCE_LEN]);

pub(crate) const NONCE_LEN: usize = 24;

impl CspNonce {
    pub(crate) fn generate() -> Self {
        use base64::Engine as _;
        use rand::Rng as _;

        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let mut out = [0u8; NONCE_LEN];
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(raw, &mut out)
            .expect("16 bytes encode to 24 base64 characters");
        debug_assert_eq!(written, NONCE_LEN);
        Self(out)
    }

    /// The nonce, as it appears in the header (`'nonce-<this>'`).
    pub fn as_str(&self) -> &str {
        // Base64 output is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for CspNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CspNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CspNonce").field(&self.as_str()).finish()
    }
}

/// A content-security-policy split around the places the nonce goes.
#[derive(Debug)]
pub(crate) struct NoncePolicy {
    /// Literal text; the nonce goes between consecutive pieces.
    pieces: Vec<String>,
}

impl NoncePolicy {
    pub(crate) fn new(policy: &str) -> Self {
        let directives: Vec<&str> = policy
            .split(';')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .collect();
        let directive_name = |d: &str| d.split_ascii_whitespace().next().unwrap_or("").to_owned();
        let mut pieces = vec![String::new()];
        let mut push_directive = |text: &str, with_nonce: bool, first: bool| {
            let current = pieces.last_mut().expect("pieces is never empty");
            if !first {
                current.push_str("; ");
            }
            current.push_str(text);
            if with_nonce {
                current.push_str(" 'nonce-");
                pieces.push("'".to_owned());
            }
        };
        let has_script_src = directives
            .iter()
            .any(|d| directive_name(d).eq_ignore_ascii_case("script-src"));
        for (i, d) in directives.iter().enumerate() {
            let name = directive_name(d);
            let nonced =
                name.eq_ignore_ascii_case("script-src") || name.eq_ignore_ascii_case("style-src");
            push_directive(d, nonced, i == 0);
        }
        if !has_script_src {
            // `script-src` replaces `default-src` for scripts, so start from its sources.
            let inherited = directives
                .iter()
                .find(|d| directive_name(d).eq_ignore_ascii_case("default-src"))
                .map(|d| {
                    d.split_ascii_whitespace()
                        .skip(1)
                        .filter(|s| !s.eq_ignore_ascii_case("'none'"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let directive = if inherited.is_empty() {
                "script-src".to_owned()
            } else {
                format!("script-src {inherited}")
            };
            push_directive(&directive, true, directives.is_empty());
        }
        Self { pieces }
    }

    pub(crate) fn render(&self, nonce: &CspNonce) -> Option<HeaderValue> {
        let len: usize = self.pieces.iter().map(String::len).sum::<usize>()
            + (self.pieces.len() - 1) * NONCE_LEN;
        let mut out = String::with_capacity(len);
        for (i, piece) in self.pieces.iter().enumerate() {
            if i > 0 {
                out.push_str(nonce.as_str());
            }
            out.push_str(piece);
        }
        HeaderValue::try_from(out).ok()
    }
}
