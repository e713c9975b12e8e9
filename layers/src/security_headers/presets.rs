//! The presets' header values.

/// The `permissions-policy` value of the [`web`](super::SecurityHeadersLayer::web) preset: every
/// powerful feature denied.
pub const PERMISSIONS_POLICY_DENY_ALL: &str = "accelerometer=(), autoplay=(), camera=(), \
     display-capture=(), encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), \
     hid=(), idle-detection=(), magnetometer=(), microphone=(), midi=(), payment=(), \
     picture-in-picture=(), publickey-credentials-get=(), screen-wake-lock=(), serial=(), \
     sync-xhr=(), usb=(), xr-spatial-tracking=()";

/// The `content-security-policy` of the [`web`](super::SecurityHeadersLayer::web) preset (helmet 8's
/// default).
pub const WEB_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'self'; \
     font-src 'self' https: data:; form-action 'self'; frame-ancestors 'self'; \
     img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; \
     style-src 'self' https: 'unsafe-inline'; upgrade-insecure-requests";

/// The `content-security-policy` of the [`api`](super::SecurityHeadersLayer::api) preset.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Response headers both presets remove, because they fingerprint the server.
pub const FINGERPRINT_HEADERS: [&str; 5] = [
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-generator",
];

/// The headers of the [`api`](super::SecurityHeadersLayer::api) preset: the OWASP REST Security
/// Cheat Sheet's set for JSON responses.
pub(crate) const API: [(&str, &str); 5] = [
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", API_CONTENT_SECURITY_POLICY),
    ("cache-control", "no-store"),
];

/// The headers of the [`web`](super::SecurityHeadersLayer::web) preset: helmet 8's.
pub(crate) const WEB: [(&str, &str); 13] = [
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("content-security-policy", WEB_CONTENT_SECURITY_POLICY),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", PERMISSIONS_POLICY_DENY_ALL),
    ("x-xss-protection", "0"),
    ("x-dns-prefetch-control", "off"),
    ("x-permitted-cross-domain-policies", "none"),
    ("origin-agent-cluster", "?1"),
    ("x-download-options", "noopen"),
];
