//! [`SecurityHeadersLayer`] and its builder.

use std::{borrow::Cow, sync::Arc};

use http::{HeaderMap, HeaderName, HeaderValue, header::CONTENT_SECURITY_POLICY};
use tower_layer::Layer;

use super::{
    config::Config,
    error::SecurityHeadersError,
    nonce::NoncePolicy,
    presets::{API, FINGERPRINT_HEADERS, WEB},
    service::SecurityHeaders,
};

/// The header set a builder starts from. See the [module docs](super) for what each sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Preset {
    /// The OWASP REST Security Cheat Sheet's headers, for JSON APIs.
    Api,
    /// helmet 8's headers, for web pages.
    Web,
}

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

/// Builds a [`SecurityHeadersLayer`] from a [`Preset`]. Created by
/// [`SecurityHeadersLayer::builder`]. See the [module docs](super).
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
    fn preset(preset: Preset) -> Self {
        let headers = match preset {
            Preset::Api => &API[..],
            Preset::Web => &WEB[..],
        };
        Self {
            headers: headers
                .iter()
                .map(|&(name, value)| (Cow::Borrowed(name), Some(Cow::Borrowed(value))))
                .collect(),
            remove: FINGERPRINT_HEADERS
                .iter()
                .map(|&h| Cow::Borrowed(h))
                .collect(),
            mode: HeaderMode::IfMissing,
            csp_nonce: false,
        }
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
    /// `script-src` from `default-src` when missing) and exposes it as a [`CspNonce`](super::CspNonce) extension.
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
        // The template's index table has room for the handler's own headers and those the
        // outer layers add (request id, rate-limit fields, trace id…): a response's map is a
        // clone of it, and a clone keeps the table's size, so filling it never re-hashes.
        let mut template = HeaderMap::with_capacity(headers.len() + RESPONSE_HEADER_ROOM);
        template.extend(headers);
        Ok(SecurityHeadersLayer {
            config: Arc::new(Config {
                template,
                remove,
                mode: self.mode,
                nonce_policy,
            }),
        })
    }
}

/// Headers a response may carry besides the configured ones before its map re-hashes.
const RESPONSE_HEADER_ROOM: usize = 16;

fn parse_name(name: &str) -> Result<HeaderName, SecurityHeadersError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| SecurityHeadersError::InvalidName {
        name: name.to_owned(),
    })
}

/// Adds security headers to responses. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct SecurityHeadersLayer {
    config: Arc<Config>,
}

impl SecurityHeadersLayer {
    /// The OWASP REST Security preset for JSON APIs, ready to use.
    pub fn api() -> Self {
        Self::builder(Preset::Api)
            .build()
            .expect("the api preset is valid")
    }

    /// The helmet 8 preset for web pages, ready to use.
    pub fn web() -> Self {
        Self::builder(Preset::Web)
            .build()
            .expect("the web preset is valid")
    }

    /// A builder starting from `preset`.
    pub fn builder(preset: Preset) -> SecurityHeadersBuilder {
        SecurityHeadersBuilder::preset(preset)
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders::new(inner, self.config.clone())
    }
}
