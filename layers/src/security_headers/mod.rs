//! Security response headers with OWASP and helmet-grade defaults, precomputed once.
//!
//! Two presets:
//!
//! | header | [`api()`](SecurityHeadersLayer::api) (OWASP REST Security) | [`web()`](SecurityHeadersLayer::web) (helmet 8) |
//! |---|---|---|
//! | `strict-transport-security` | `max-age=63072000; includeSubDomains` | `max-age=31536000; includeSubDomains` |
//! | `x-content-type-options` | `nosniff` | `nosniff` |
//! | `x-frame-options` | `DENY` | `SAMEORIGIN` |
//! | `content-security-policy` | `default-src 'none'; frame-ancestors 'none'` | helmet's default policy |
//! | `cache-control` | `no-store` | — |
//! | `referrer-policy` | — | `no-referrer` |
//! | `cross-origin-opener-policy` | — | `same-origin` |
//! | `cross-origin-resource-policy` | — | `same-origin` |
//! | `permissions-policy` | — | every powerful feature denied |
//! | `x-xss-protection` | — | `0` (the legacy filter is harmful) |
//! | `x-dns-prefetch-control` | — | `off` |
//! | `x-permitted-cross-domain-policies` | — | `none` |
//! | `origin-agent-cluster` | — | `?1` |
//! | `x-download-options` | — | `noopen` |
//!
//! Why two sets. A JSON API's responses are read by programs, not rendered by browsers: the
//! OWASP REST Security Cheat Sheet asks such responses for `Cache-Control: no-store` (no cache
//! keeps personal data), `Strict-Transport-Security`, `X-Content-Type-Options: nosniff` (a
//! response is never sniffed into HTML or script), and `X-Frame-Options: DENY` with
//! `frame-ancestors 'none'` (no framing, for the case an API response is opened in a browser);
//! `default-src 'none'` also stops anything a mistakenly rendered response would load. The
//! other headers (`permissions-policy`, the cross-origin policies, `referrer-policy`, …)
//! govern what a *rendered document* may do; a JSON body has nothing they apply to, and
//! sending them costs about 700 bytes per response. The `web()` preset is for pages and keeps
//! helmet's full set.
//!
//! Both remove fingerprinting headers from responses: `server`, `x-powered-by`,
//! `x-aspnet-version`, `x-aspnetmvc-version`, `x-generator`.
//!
//! Every header can be changed or turned off through [`SecurityHeadersBuilder`]
//! ([`SecurityHeadersLayer::builder`]); names and values
//! are validated by [`SecurityHeadersBuilder::build`] (a typed [`SecurityHeadersError`], never a
//! panic) and turned into `HeaderValue`s once, so a request costs no allocation.
//!
//! By default a header is set only when the handler did not set it ([`HeaderMode::IfMissing`]);
//! [`HeaderMode::Override`] replaces whatever the handler set.
//!
//! With [`SecurityHeadersBuilder::csp_nonce`] each request gets a fresh random nonce, available to
//! handlers as a [`CspNonce`] request extension and written into the `script-src` and `style-src`
//! directives of the `content-security-policy` response header.
//!
//! # Example
//!
//! ```
//! use covet_layers::security_headers::{HeaderMode, Preset, SecurityHeadersLayer};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let headers = SecurityHeadersLayer::builder(Preset::Api)
//!     .strict_transport_security("max-age=31536000")
//!     .without("x-dns-prefetch-control")
//!     .mode(HeaderMode::IfMissing)
//!     .build()?;
//!
//! let service = ServiceBuilder::new().layer(headers).service(service_fn(|_req: Request<()>| async {
//!     let response = Response::builder()
//!         .header("server", "hyper/1.0")
//!         .header("cache-control", "max-age=60")
//!         .body(())?;
//!     Ok::<_, http::Error>(response)
//! }));
//!
//! let response = service.oneshot(Request::new(())).await?;
//! let headers = response.headers();
//! assert_eq!(headers["strict-transport-security"], "max-age=31536000");
//! assert_eq!(headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
//! assert_eq!(headers["cache-control"], "max-age=60"); // the handler's value is kept
//! assert!(headers.get("x-dns-prefetch-control").is_none()); // turned off
//! assert!(headers.get("server").is_none()); // fingerprint removed
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod future;
mod layer;
mod nonce;
mod presets;
mod service;

pub use error::SecurityHeadersError;
pub use future::ResponseFuture;
pub use layer::{HeaderMode, Preset, SecurityHeadersBuilder, SecurityHeadersLayer};
pub use nonce::CspNonce;
pub use presets::{
    API_CONTENT_SECURITY_POLICY, FINGERPRINT_HEADERS, PERMISSIONS_POLICY_DENY_ALL,
    WEB_CONTENT_SECURITY_POLICY,
};
pub use service::SecurityHeaders;

#[cfg(test)]
mod tests;
