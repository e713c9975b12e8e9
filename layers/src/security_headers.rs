//! Security response headers with OWASP and helmet-grade defaults, precomputed once.
//!
//! Two presets:
//!
//! | header | [`api()`](SecurityHeadersLayer::api) (OWASP REST) | [`web()`](SecurityHeadersLayer::web) (helmet 8) |
//! |---|---|---|
//! | `strict-transport-security` | `max-age=63072000; includeSubDomains` | `max-age=31536000; includeSubDomains` |
//! | `x-content-type-options` | `nosniff` | `nosniff` |
//! | `x-frame-options` | `DENY` | `SAMEORIGIN` |
//! | `content-security-policy` | `default-src 'none'; frame-ancestors 'none'` | helmet's default policy |
//! | `referrer-policy` | `no-referrer` | `no-referrer` |
//! | `cache-control` | `no-store` | — |
//! | `cross-origin-opener-policy` | `same-origin` | `same-origin` |
//! | `cross-origin-resource-policy` | `same-origin` | `same-origin` |
//! | `permissions-policy` | every powerful feature denied | same |
//! | `x-xss-protection` | `0` (the legacy filter is harmful) | `0` |
//! | `x-dns-prefetch-control` | `off` | `off` |
//! | `x-permitted-cross-domain-policies` | `none` | `none` |
//! | `origin-agent-cluster` | `?1` | `?1` |
//! | `x-download-options` | — | `noopen` |
//!
//! Both remove fingerprinting headers from responses: `server`, `x-powered-by`,
//! `x-aspnet-version`, `x-aspnetmvc-version`, `x-generator`.
//!
//! Every header can be changed or turned off through [`SecurityHeadersBuilder`]; names and values
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
//! use covet_layers::security_headers::{HeaderMode, SecurityHeadersLayer};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let headers = SecurityHeadersLayer::builder_api()
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

use std::{
    borrow::Cow,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response,
    header::{CONTENT_SECURITY_POLICY, Entry},
};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// The `permissions-policy` value of both presets: every powerful feature denied.
pub const PERMISSIONS_POLICY_DENY_ALL: &str = "accelerometer=(), autoplay=(), camera=(), \
     display-capture=(), encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), \
     hid=(), idle-detection=(), magnetometer=(), microphone=(), midi=(), payment=(), \
     picture-in-picture=(), publickey-credentials-get=(), screen-wake-lock=(), serial=(), \
     sync-xhr=(), usb=(), xr-spatial-tracking=()";

/// The `content-security-policy` of the [`web`](SecurityHeadersLayer::web) preset (helmet 8's
/// default).
pub const WEB_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'self'; \
     font-src 'self' https: data:; form-action 'self'; frame-ancestors 'self'; \
     img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; \
     style-src 'self' https: 'unsafe-inline'; upgrade-insecure-requests";

/// The `content-security-policy` of the [`api`](SecurityHeadersLayer::api) preset.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Response headers both presets remove, because they fingerprint the server.
pub const FINGERPRINT_HEADERS: [&str; 5] = [
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-generator",
];

const COMMON: [(&str, &str); 10] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", PERMISSIONS_POLICY_DENY_ALL),
    ("x-xss-protection", "0"),
    ("x-dns-prefetch-control", "off"),
    ("x-permitted-cross-domain-policies", "none"),
    ("origin-agent-cluster", "?1"),
    ("content-security-policy", ""),
];

/// How configured headers treat a header the handler already set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderMode {
    /// Set a header only when the response does not have it yet.
    #[default]
    IfMissing,
    /// Always set the header, replacing the handler's value.
    Override,
}

/// A configuration error found by [`SecurityHeadersBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityHeadersError {
    /// A header name is not a valid HTTP header name.
    #[error("security headers: `{name}` is not a valid HTTP header name")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// A header value is not a valid HTTP header value (control characters, non-visible bytes).
    #[error("security headers: the value of `{name}` is not a valid HTTP header value")]
    InvalidValue {
        /// The header whose value was rejected.
        name: String,
    },
    /// [`csp_nonce`](SecurityHeadersBuilder::csp_nonce) is on but `content-security-policy` is off.
    #[error("security headers: csp_nonce needs a content-security-policy, which is turned off")]
    NonceWithoutPolicy,
}

/// A per-request random nonce for `content-security-policy`, found in the request extensions
/// when [`SecurityHeadersBuilder::csp_nonce`] is on.
///
/// It is 128 random bits, base64-encoded (24 characters); put it in `<script nonce="…">`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CspNonce([u8; NONCE_LEN]);

const NONCE_LEN: usize = 24;

impl CspNonce {
    fn generate() -> Self {
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

/// Builds a [`SecurityHeadersLayer`] from a preset. See the [module docs](self).
///
/// Setters replace the preset's value of one header; [`without`](Self::without) turns a header
/// off. Nothing is validated until [`build`](Self::build).
#[derive(Clone, Debug)]
pub struct SecurityHeadersBuilder {
    headers: Vec<(Cow<'static, str>, Option<Cow<'static, str>>)>,
    remove: Vec<Cow<'static, str>>,
    mode: HeaderMode,
    csp_nonce: bool,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $fn:ident => $name:literal;)*) => {$(
        $(#[$doc])*
        pub fn $fn(self, value: impl Into<Cow<'static, str>>) -> Self {
            self.header($name, value)
        }
    )*};
}

impl SecurityHeadersBuilder {
    /// Starts from the OWASP REST API preset.
    pub fn api() -> Self {
        Self::preset(
            API_CONTENT_SECURITY_POLICY,
            "max-age=63072000; includeSubDomains",
            "DENY",
        )
        .header("cache-control", "no-store")
    }

    /// Starts from the helmet 8 web preset.
    pub fn web() -> Self {
        Self::preset(
            WEB_CONTENT_SECURITY_POLICY,
            "max-age=31536000; includeSubDomains",
            "SAMEORIGIN",
        )
        .header("x-download-options", "noopen")
    }

    fn preset(csp: &'static str, hsts: &'static str, frame: &'static str) -> Self {
        let mut headers: Vec<_> = COMMON
            .iter()
            .map(|&(name, value)| (Cow::Borrowed(name), Some(Cow::Borrowed(value))))
            .collect();
        headers.push(("strict-transport-security".into(), Some(hsts.into())));
        headers.push(("x-frame-options".into(), Some(frame.into())));
        let builder = Self {
            headers,
            remove: FINGERPRINT_HEADERS
                .iter()
                .map(|&h| Cow::Borrowed(h))
                .collect(),
            mode: HeaderMode::IfMissing,
            csp_nonce: false,
        };
        builder.content_security_policy(csp)
    }

    /// Sets any response header (a new one, or a preset's); replaces an earlier value.
    pub fn header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.set(name.into(), Some(value.into()));
        self
    }

    /// Turns a header off: the layer will not set it.
    pub fn without(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.set(name.into(), None);
        self
    }

    fn set(&mut self, name: Cow<'static, str>, value: Option<Cow<'static, str>>) {
        match self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some(slot) => slot.1 = value,
            None => self.headers.push((name, value)),
        }
    }

    setters! {
        /// Sets `strict-transport-security`.
        strict_transport_security => "strict-transport-security";
        /// Sets `content-security-policy`.
        content_security_policy => "content-security-policy";
        /// Sets `x-frame-options`.
        x_frame_options => "x-frame-options";
        /// Sets `x-content-type-options`.
        x_content_type_options => "x-content-type-options";
        /// Sets `referrer-policy`.
        referrer_policy => "referrer-policy";
        /// Sets `cache-control`.
        cache_control => "cache-control";
        /// Sets `cross-origin-opener-policy`.
        cross_origin_opener_policy => "cross-origin-opener-policy";
        /// Sets `cross-origin-resource-policy`.
        cross_origin_resource_policy => "cross-origin-resource-policy";
        /// Sets `permissions-policy`.
        permissions_policy => "permissions-policy";
    }

    /// Also removes this header from responses (fingerprinting headers are removed by default).
    pub fn remove_response_header(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        if !self.remove.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            self.remove.push(name);
        }
        self
    }

    /// Keeps this header in responses instead of removing it (e.g. `server`).
    pub fn keep_response_header(mut self, name: &str) -> Self {
        self.remove.retain(|n| !n.eq_ignore_ascii_case(name));
        self
    }

    /// Whether a header the handler set is kept or replaced.
    ///
    /// Defaults to [`HeaderMode::IfMissing`].
    pub fn mode(mut self, mode: HeaderMode) -> Self {
        self.mode = mode;
        self
    }

    /// Adds a fresh nonce per request to the `script-src` and `style-src` directives (creating
    /// `script-src` from `default-src` when missing) and exposes it as a [`CspNonce`] extension.
    ///
    /// Defaults to off.
    pub fn csp_nonce(mut self, enabled: bool) -> Self {
        self.csp_nonce = enabled;
        self
    }

    /// Validates every name and value and precomputes the header values.
    pub fn build(self) -> Result<SecurityHeadersLayer, SecurityHeadersError> {
        let mut headers = Vec::with_capacity(self.headers.len());
        let mut nonce_policy = None;
        for (name, value) in &self.headers {
            let Some(value) = value else { continue };
            let header_name = parse_name(name)?;
            let invalid = || SecurityHeadersError::InvalidValue {
                name: name.to_string(),
            };
            let header_value = HeaderValue::from_str(value).map_err(|_| invalid())?;
            if self.csp_nonce && header_name == CONTENT_SECURITY_POLICY {
                nonce_policy = Some(NoncePolicy::new(value));
                continue;
            }
            headers.push((header_name, header_value));
        }
        if self.csp_nonce && nonce_policy.is_none() {
            return Err(SecurityHeadersError::NonceWithoutPolicy);
        }
        let remove = self
            .remove
            .iter()
            .map(|name| parse_name(name))
            .collect::<Result<_, _>>()?;
        Ok(SecurityHeadersLayer {
            config: Arc::new(Config {
                template: headers.into_iter().collect(),
                remove,
                mode: self.mode,
                nonce_policy,
            }),
        })
    }
}

fn parse_name(name: &str) -> Result<HeaderName, SecurityHeadersError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| SecurityHeadersError::InvalidName {
        name: name.to_owned(),
    })
}

/// A content-security-policy split around the places the nonce goes.
#[derive(Debug)]
struct NoncePolicy {
    /// Literal text; the nonce goes between consecutive pieces.
    pieces: Vec<String>,
}

impl NoncePolicy {
    fn new(policy: &str) -> Self {
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

    fn render(&self, nonce: &CspNonce) -> Option<HeaderValue> {
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

#[derive(Debug)]
struct Config {
    /// Every configured header, ready to be cloned as the start of a response's header map.
    template: HeaderMap,
    remove: Box<[HeaderName]>,
    mode: HeaderMode,
    nonce_policy: Option<NoncePolicy>,
}

impl Config {
    /// Adds the configured headers to a response's headers and strips the removed ones.
    ///
    /// Rather than inserting each configured header into the response's map (a hash and maybe a
    /// re-allocation per header), the response starts from a clone of the prebuilt template —
    /// two allocations and reference-count bumps — and its own few headers are moved in.
    fn apply(&self, headers: &mut HeaderMap, nonce: Option<&CspNonce>) {
        let original = std::mem::replace(headers, self.template.clone());
        let override_mode = self.mode == HeaderMode::Override;
        // `HeaderMap::into_iter` yields a name only for the first value of each header.
        let mut current: Option<(HeaderName, bool)> = None;
        for (name, value) in original {
            match name {
                Some(name) => {
                    let removed = self.remove.contains(&name);
                    let overridden = override_mode && self.template.contains_key(&name);
                    let keep = !(removed || overridden);
                    if keep {
                        // The handler's value replaces the template's (set-if-missing).
                        headers.insert(name.clone(), value);
                    }
                    current = Some((name, keep));
                }
                None => {
                    if let Some((name, true)) = &current {
                        headers.append(name.clone(), value);
                    }
                }
            }
        }
        if let Some(value) = nonce
            .zip(self.nonce_policy.as_ref())
            .and_then(|(nonce, policy)| policy.render(nonce))
        {
            match self.mode {
                HeaderMode::IfMissing => {
                    if let Entry::Vacant(entry) = headers.entry(CONTENT_SECURITY_POLICY) {
                        entry.insert(value);
                    }
                }
                HeaderMode::Override => {
                    headers.insert(CONTENT_SECURITY_POLICY, value);
                }
            }
        }
    }
}

/// Adds security headers to responses. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct SecurityHeadersLayer {
    config: Arc<Config>,
}

impl SecurityHeadersLayer {
    /// The OWASP REST API preset, ready to use.
    pub fn api() -> Self {
        SecurityHeadersBuilder::api()
            .build()
            .expect("the api preset is valid")
    }

    /// The helmet 8 web preset, ready to use.
    pub fn web() -> Self {
        SecurityHeadersBuilder::web()
            .build()
            .expect("the web preset is valid")
    }

    /// A builder starting from the API preset.
    pub fn builder_api() -> SecurityHeadersBuilder {
        SecurityHeadersBuilder::api()
    }

    /// A builder starting from the web preset.
    pub fn builder_web() -> SecurityHeadersBuilder {
        SecurityHeadersBuilder::web()
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`SecurityHeadersLayer`].
#[derive(Clone, Debug)]
pub struct SecurityHeaders<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> SecurityHeaders<S> {
    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let nonce = self.config.nonce_policy.as_ref().map(|_| {
            let nonce = CspNonce::generate();
            req.extensions_mut().insert(nonce);
            nonce
        });
        ResponseFuture {
            inner: self.inner.call(req),
            config: self.config.clone(),
            nonce,
        }
    }
}

pin_project! {
    /// The response future of [`SecurityHeaders`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        config: Arc<Config>,
        nonce: Option<CspNonce>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        this.config
            .apply(response.headers_mut(), this.nonce.as_ref());
        Poll::Ready(Ok(response))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use tower::{ServiceExt, service_fn};

    use super::*;

    async fn run(layer: SecurityHeadersLayer, res: Response<()>) -> Response<()> {
        let res = std::sync::Mutex::new(Some(res));
        let svc = layer.layer(service_fn(move |_req: Request<()>| {
            let res = res.lock().unwrap().take().unwrap();
            async move { Ok::<_, Infallible>(res) }
        }));
        svc.oneshot(Request::new(())).await.unwrap()
    }

    fn plain() -> Response<()> {
        Response::new(())
    }

    fn header<'a>(res: &'a Response<()>, name: &str) -> &'a str {
        res.headers()
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn api_preset_sets_the_owasp_rest_values() {
        let res = run(SecurityHeadersLayer::api(), plain()).await;
        let expected = [
            (
                "strict-transport-security",
                "max-age=63072000; includeSubDomains",
            ),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            (
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'",
            ),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
            ("cross-origin-opener-policy", "same-origin"),
            ("cross-origin-resource-policy", "same-origin"),
            ("permissions-policy", PERMISSIONS_POLICY_DENY_ALL),
            ("x-xss-protection", "0"),
            ("x-dns-prefetch-control", "off"),
            ("x-permitted-cross-domain-policies", "none"),
            ("origin-agent-cluster", "?1"),
        ];
        for (name, value) in expected {
            assert_eq!(header(&res, name), value, "{name}");
        }
        assert_eq!(res.headers().len(), expected.len());
        assert!(PERMISSIONS_POLICY_DENY_ALL.contains("camera=()"));
        assert!(PERMISSIONS_POLICY_DENY_ALL.contains("microphone=()"));
        assert!(PERMISSIONS_POLICY_DENY_ALL.contains("geolocation=()"));
    }

    #[tokio::test]
    async fn web_preset_matches_helmet() {
        let res = run(SecurityHeadersLayer::web(), plain()).await;
        assert_eq!(
            header(&res, "strict-transport-security"),
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(header(&res, "x-frame-options"), "SAMEORIGIN");
        assert_eq!(
            header(&res, "content-security-policy"),
            "default-src 'self'; base-uri 'self'; font-src 'self' https: data:; \
             form-action 'self'; frame-ancestors 'self'; img-src 'self' data:; \
             object-src 'none'; script-src 'self'; script-src-attr 'none'; \
             style-src 'self' https: 'unsafe-inline'; upgrade-insecure-requests"
        );
        assert_eq!(header(&res, "x-download-options"), "noopen");
        assert_eq!(header(&res, "x-xss-protection"), "0");
        assert_eq!(header(&res, "origin-agent-cluster"), "?1");
        assert!(res.headers().get("cache-control").is_none());
    }

    #[tokio::test]
    async fn fingerprinting_headers_are_removed() {
        let res = Response::builder()
            .header("server", "nginx/1.2")
            .header("x-powered-by", "Express")
            .header("x-aspnet-version", "4.0")
            .header("x-generator", "Drupal")
            .body(())
            .unwrap();
        let res = run(SecurityHeadersLayer::api(), res).await;
        for name in FINGERPRINT_HEADERS {
            assert!(res.headers().get(name).is_none(), "{name} kept");
        }
    }

    #[tokio::test]
    async fn multi_valued_handler_headers_survive_in_both_modes() {
        for mode in [HeaderMode::IfMissing, HeaderMode::Override] {
            let layer = SecurityHeadersLayer::builder_api()
                .mode(mode)
                .build()
                .unwrap();
            let res = Response::builder()
                .header("set-cookie", "a=1")
                .header("server", "nginx")
                .header("set-cookie", "b=2")
                .header("content-type", "application/json")
                .body(())
                .unwrap();
            let res = run(layer, res).await;
            let cookies: Vec<_> = res.headers().get_all("set-cookie").iter().collect();
            assert_eq!(cookies, ["a=1", "b=2"], "{mode:?}");
            assert_eq!(header(&res, "content-type"), "application/json");
            assert!(res.headers().get("server").is_none());
            assert_eq!(res.headers().len(), 13 + 3, "{mode:?}: {:?}", res.headers());
        }
    }

    #[tokio::test]
    async fn keep_and_remove_response_headers_are_configurable() {
        let layer = SecurityHeadersLayer::builder_api()
            .keep_response_header("server")
            .remove_response_header("x-internal-host")
            .build()
            .unwrap();
        let res = Response::builder()
            .header("server", "covet")
            .header("x-internal-host", "db-7")
            .body(())
            .unwrap();
        let res = run(layer, res).await;
        assert_eq!(header(&res, "server"), "covet");
        assert!(res.headers().get("x-internal-host").is_none());
    }

    #[tokio::test]
    async fn handler_values_are_kept_by_default_and_replaced_in_override_mode() {
        let handler_response = || {
            Response::builder()
                .header("cache-control", "public, max-age=60")
                .header("x-frame-options", "SAMEORIGIN")
                .body(())
                .unwrap()
        };
        let res = run(SecurityHeadersLayer::api(), handler_response()).await;
        assert_eq!(header(&res, "cache-control"), "public, max-age=60");
        assert_eq!(header(&res, "x-frame-options"), "SAMEORIGIN");
        assert_eq!(res.headers().get_all("cache-control").iter().count(), 1);

        let layer = SecurityHeadersLayer::builder_api()
            .mode(HeaderMode::Override)
            .build()
            .unwrap();
        let res = run(layer, handler_response()).await;
        assert_eq!(header(&res, "cache-control"), "no-store");
        assert_eq!(header(&res, "x-frame-options"), "DENY");
        assert_eq!(res.headers().get_all("x-frame-options").iter().count(), 1);
    }

    #[tokio::test]
    async fn every_header_can_be_changed_or_turned_off() {
        let layer = SecurityHeadersLayer::builder_api()
            .strict_transport_security("max-age=300")
            .content_security_policy("default-src 'self'")
            .x_frame_options("SAMEORIGIN")
            .x_content_type_options("nosniff")
            .referrer_policy("strict-origin")
            .cache_control("private")
            .cross_origin_opener_policy("unsafe-none")
            .cross_origin_resource_policy("cross-origin")
            .permissions_policy("camera=(self)")
            .header("X-Custom-Policy", "on")
            .without("X-XSS-Protection")
            .without("origin-agent-cluster")
            .build()
            .unwrap();
        let res = run(layer, plain()).await;
        assert_eq!(header(&res, "strict-transport-security"), "max-age=300");
        assert_eq!(
            header(&res, "content-security-policy"),
            "default-src 'self'"
        );
        assert_eq!(header(&res, "x-frame-options"), "SAMEORIGIN");
        assert_eq!(header(&res, "referrer-policy"), "strict-origin");
        assert_eq!(header(&res, "cache-control"), "private");
        assert_eq!(header(&res, "cross-origin-opener-policy"), "unsafe-none");
        assert_eq!(header(&res, "cross-origin-resource-policy"), "cross-origin");
        assert_eq!(header(&res, "permissions-policy"), "camera=(self)");
        assert_eq!(header(&res, "x-custom-policy"), "on");
        assert!(res.headers().get("x-xss-protection").is_none());
        assert!(res.headers().get("origin-agent-cluster").is_none());
    }

    #[test]
    fn bad_names_and_values_are_typed_errors_naming_the_header() {
        let err = SecurityHeadersLayer::builder_api()
            .content_security_policy("default-src 'none'\n; evil")
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            SecurityHeadersError::InvalidValue {
                name: "content-security-policy".into()
            }
        );
        assert!(err.to_string().contains("content-security-policy"));

        let err = SecurityHeadersLayer::builder_api()
            .header("bad header", "x")
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            SecurityHeadersError::InvalidName {
                name: "bad header".into()
            }
        );

        let err = SecurityHeadersLayer::builder_api()
            .without("content-security-policy")
            .csp_nonce(true)
            .build()
            .unwrap_err();
        assert_eq!(err, SecurityHeadersError::NonceWithoutPolicy);
    }

    #[tokio::test]
    async fn csp_nonce_is_fresh_per_request_and_matches_the_header() {
        let layer = SecurityHeadersLayer::builder_web()
            .csp_nonce(true)
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(|req: Request<()>| async move {
            let nonce = *req.extensions().get::<CspNonce>().expect("nonce extension");
            Ok::<_, Infallible>(Response::new(nonce.to_string()))
        }));
        let mut seen = Vec::new();
        for _ in 0..3 {
            let res = svc.clone().oneshot(Request::new(())).await.unwrap();
            let nonce = res.body().clone();
            assert_eq!(nonce.len(), 24);
            let csp = res.headers()["content-security-policy"].to_str().unwrap();
            assert!(
                csp.contains(&format!("script-src 'self' 'nonce-{nonce}';")),
                "{csp}"
            );
            assert!(
                csp.contains(&format!(
                    "style-src 'self' https: 'unsafe-inline' 'nonce-{nonce}';"
                )),
                "{csp}"
            );
            assert!(csp.contains("script-src-attr 'none';"), "{csp}");
            assert!(csp.ends_with("upgrade-insecure-requests"), "{csp}");
            seen.push(nonce);
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3, "nonces repeat");
    }

    #[tokio::test]
    async fn csp_nonce_adds_script_src_from_default_src_when_missing() {
        let layer = SecurityHeadersLayer::builder_api()
            .csp_nonce(true)
            .build()
            .unwrap();
        let res = run(layer, plain()).await;
        let csp = header(&res, "content-security-policy");
        let nonce = csp
            .strip_prefix("default-src 'none'; frame-ancestors 'none'; script-src 'nonce-")
            .and_then(|rest| rest.strip_suffix('\''))
            .unwrap_or_else(|| panic!("{csp}"));
        assert_eq!(nonce.len(), 24);

        let policy = NoncePolicy::new("default-src 'self' https:");
        let rendered = policy
            .render(&CspNonce(*b"AAAAAAAAAAAAAAAAAAAAAA=="))
            .unwrap();
        assert_eq!(
            rendered,
            "default-src 'self' https:; script-src 'self' https: 'nonce-AAAAAAAAAAAAAAAAAAAAAA=='"
        );
    }
}
