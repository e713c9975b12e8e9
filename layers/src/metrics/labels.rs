//! Bounded label values: methods, route sentinels and user-agent classes.

use std::borrow::Cow;

use http::{Method, StatusCode, request::Parts};

/// The `method` label values: the standard methods, then `_OTHER` for anything else.
pub(crate) const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER",
];

/// The index of a method's label in [`METHODS`].
#[inline]
pub(crate) fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::CONNECT => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        Method::PATCH => 8,
        _ => 9,
    }
}

/// The `route` label of a request no route matched and that got a 404.
pub const ROUTE_NOT_FOUND: &str = "NOT_FOUND";
/// The `route` label of an unmatched request answered with a redirection (3xx).
pub const ROUTE_REDIRECTION: &str = "REDIRECTION";
/// The `route` label of any other unmatched request.
pub const ROUTE_UNKNOWN: &str = "UNKNOWN";
/// The `route` label used once the label-set cap is reached.
pub const ROUTE_OVERFLOW: &str = "OVERFLOW";

/// The sentinel `route` label of a request that matched no route.
#[inline]
pub(crate) fn unmatched_route(status: StatusCode) -> &'static str {
    if status == StatusCode::NOT_FOUND {
        ROUTE_NOT_FOUND
    } else if status.is_redirection() {
        ROUTE_REDIRECTION
    } else {
        ROUTE_UNKNOWN
    }
}

/// Finds the route template of a request, for the `route` label.
///
/// Return a **template** (`/users/{id}`), never the raw path: the label-set cap protects the
/// registry, but raw paths would fill it with one-off series. Return `None` when the request
/// matched no route; the layer then uses a sentinel (`NOT_FOUND`, `REDIRECTION`, `UNKNOWN`).
///
/// axum's `MatchedPath` is read first when the `axum` feature is on; a classifier is consulted
/// only for requests without one. Implemented for closures:
///
/// ```
/// use std::borrow::Cow;
/// use covet_layers::metrics::MetricsLayer;
///
/// let registry = prometheus::Registry::new();
/// let layer = MetricsLayer::builder()
///     .classify_route(|parts: &http::request::Parts| -> Option<Cow<'static, str>> {
///         let path = parts.uri.path();
///         if path.starts_with("/users/") {
///             Some("/users/{id}".into())
///         } else if path == "/" {
///             Some("/".into())
///         } else {
///             None
///         }
///     })
///     .build(&registry)
///     .unwrap();
/// # let _ = layer;
/// ```
pub trait ClassifyRoute {
    /// The route template of this request, or `None` if it matched no route.
    fn classify(&self, parts: &Parts) -> Option<Cow<'static, str>>;
}

impl<F> ClassifyRoute for F
where
    F: Fn(&Parts) -> Option<Cow<'static, str>>,
{
    fn classify(&self, parts: &Parts) -> Option<Cow<'static, str>> {
        self(parts)
    }
}

/// The default classifier: no route beyond what axum's `MatchedPath` provides.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoClassifier;

impl ClassifyRoute for NoClassifier {
    fn classify(&self, _parts: &Parts) -> Option<Cow<'static, str>> {
        None
    }
}

/// A small, bounded classification of the `user-agent` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserAgentClass {
    /// A web browser (`Mozilla/…` without a crawler marker).
    Browser,
    /// A crawler, spider or monitoring bot.
    Bot,
    /// A command-line client (curl, wget, HTTPie, …).
    Cli,
    /// A programmatic HTTP library (python-requests, Go, okhttp, axios, reqwest, gRPC, …).
    Sdk,
    /// Anything else, including no `user-agent` at all.
    Other,
}

impl UserAgentClass {
    /// Every class, in label order.
    pub const ALL: [UserAgentClass; 5] = [
        UserAgentClass::Browser,
        UserAgentClass::Bot,
        UserAgentClass::Cli,
        UserAgentClass::Sdk,
        UserAgentClass::Other,
    ];

    /// The `class` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UserAgentClass::Browser => "browser",
            UserAgentClass::Bot => "bot",
            UserAgentClass::Cli => "cli",
            UserAgentClass::Sdk => "sdk",
            UserAgentClass::Other => "other",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Classifies a `user-agent` value. Allocation-free; looks only at fixed markers.
    ///
    /// ```
    /// use covet_layers::metrics::UserAgentClass;
    ///
    /// let chrome = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36";
    /// assert_eq!(UserAgentClass::classify(chrome), UserAgentClass::Browser);
    /// let google = b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    /// assert_eq!(UserAgentClass::classify(google), UserAgentClass::Bot);
    /// assert_eq!(UserAgentClass::classify(b"curl/8.5.0"), UserAgentClass::Cli);
    /// assert_eq!(UserAgentClass::classify(b"python-requests/2.32"), UserAgentClass::Sdk);
    /// assert_eq!(UserAgentClass::classify(b""), UserAgentClass::Other);
    /// ```
    pub fn classify(user_agent: &[u8]) -> Self {
        const BOT: [&[u8]; 6] = [
            b"bot",
            b"crawl",
            b"spider",
            b"slurp",
            b"facebookexternalhit",
            b"headless",
        ];
        const CLI: [&[u8]; 7] = [
            b"curl/",
            b"wget/",
            b"httpie/",
            b"xh/",
            b"hurl/",
            b"powershell/",
            b"aria2/",
        ];
        const SDK: [&[u8]; 18] = [
            b"python-",
            b"aiohttp/",
            b"httpx/",
            b"go-http-client/",
            b"okhttp/",
            b"axios/",
            b"node-fetch",
            b"node",
            b"undici",
            b"java/",
            b"apache-httpclient/",
            b"reqwest/",
            b"hyper/",
            b"ruby",
            b"grpc-",
            b"dart:io",
            b"libcurl",
            b"guzzlehttp/",
        ];
        if user_agent.is_empty() {
            return UserAgentClass::Other;
        }
        // One pass over the value: only bytes that start a marker (case-insensitively) are
        // compared further.
        const STARTS_MARKER: [bool; 256] = {
            let mut table = [false; 256];
            let mut i = 0;
            while i < BOT.len() {
                table[BOT[i][0] as usize] = true;
                table[BOT[i][0].to_ascii_uppercase() as usize] = true;
                i += 1;
            }
            table
        };
        let is_bot = user_agent.iter().enumerate().any(|(i, &b)| {
            STARTS_MARKER[b as usize]
                && BOT
                    .iter()
                    .any(|marker| starts_with_ignore_case(&user_agent[i..], marker))
        });
        if is_bot {
            return UserAgentClass::Bot;
        }
        if starts_with_ignore_case(user_agent, b"mozilla/") {
            return UserAgentClass::Browser;
        }
        if CLI.iter().any(|m| starts_with_ignore_case(user_agent, m)) {
            return UserAgentClass::Cli;
        }
        if SDK.iter().any(|m| starts_with_ignore_case(user_agent, m)) {
            return UserAgentClass::Sdk;
        }
        UserAgentClass::Other
    }
}

#[inline]
fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The route label of a request, found before it is handled.
pub(crate) enum MatchedRoute {
    #[cfg(feature = "axum")]
    Matched(axum::extract::MatchedPath),
    Classified(Cow<'static, str>),
}

impl MatchedRoute {
    pub(crate) fn find<C: ClassifyRoute>(parts: &Parts, classifier: &C) -> Option<Self> {
        #[cfg(feature = "axum")]
        if let Some(matched) = parts.extensions.get::<axum::extract::MatchedPath>() {
            return Some(MatchedRoute::Matched(matched.clone()));
        }
        classifier.classify(parts).map(MatchedRoute::Classified)
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            #[cfg(feature = "axum")]
            MatchedRoute::Matched(matched) => matched.as_str(),
            MatchedRoute::Classified(route) => route,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_bounded_labels() {
        assert_eq!(METHODS[method_index(&Method::GET)], "GET");
        assert_eq!(METHODS[method_index(&Method::PATCH)], "PATCH");
        let custom = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(METHODS[method_index(&custom)], "_OTHER");
        let lower = Method::from_bytes(b"get").unwrap();
        assert_eq!(METHODS[method_index(&lower)], "_OTHER");
    }

    #[test]
    fn unmatched_routes_get_spring_sentinels() {
        assert_eq!(unmatched_route(StatusCode::NOT_FOUND), "NOT_FOUND");
        assert_eq!(
            unmatched_route(StatusCode::MOVED_PERMANENTLY),
            "REDIRECTION"
        );
        assert_eq!(unmatched_route(StatusCode::METHOD_NOT_ALLOWED), "UNKNOWN");
        assert_eq!(unmatched_route(StatusCode::OK), "UNKNOWN");
    }

    #[test]
    fn user_agents_fall_in_five_classes() {
        let table: [(&[u8], UserAgentClass); 12] = [
            (
                b"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
                UserAgentClass::Browser,
            ),
            (
                b"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
                UserAgentClass::Bot,
            ),
            (b"Mozilla/5.0 HeadlessChrome/120.0", UserAgentClass::Bot),
            (b"Slackbot-LinkExpanding 1.0", UserAgentClass::Bot),
            (b"Wget/1.21.4", UserAgentClass::Cli),
            (b"HTTPie/3.2.2", UserAgentClass::Cli),
            (b"Go-http-client/1.1", UserAgentClass::Sdk),
            (b"okhttp/4.12.0", UserAgentClass::Sdk),
            (b"grpc-go/1.64.0", UserAgentClass::Sdk),
            (b"reqwest/0.12", UserAgentClass::Sdk),
            (b"\xff\xfe garbage", UserAgentClass::Other),
            (b"x", UserAgentClass::Other),
        ];
        for (ua, class) in table {
            assert_eq!(
                UserAgentClass::classify(ua),
                class,
                "{}",
                String::from_utf8_lossy(ua)
            );
        }
        let labels: Vec<_> = UserAgentClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels, ["browser", "bot", "cli", "sdk", "other"]);
        for (i, class) in UserAgentClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i);
        }
    }
}
