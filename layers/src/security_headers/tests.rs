//! The presets and the builder, as a response shows them.

use std::convert::Infallible;

use http::{Request, Response};
use tower::{ServiceExt, service_fn};
use tower_layer::Layer as _;

use super::{nonce::NoncePolicy, *};

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
async fn api_preset_sets_the_owasp_rest_values_and_nothing_else() {
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
        ("cache-control", "no-store"),
    ];
    for (name, value) in expected {
        assert_eq!(header(&res, name), value, "{name}");
    }
    assert_eq!(res.headers().len(), expected.len(), "{:?}", res.headers());
    let bytes: usize = res
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    assert!(bytes < 250, "the API preset sends {bytes} header bytes");
}

#[tokio::test]
async fn web_preset_matches_helmet() {
    let res = run(SecurityHeadersLayer::web(), plain()).await;
    let expected = [
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "SAMEORIGIN"),
        (
            "content-security-policy",
            "default-src 'self'; base-uri 'self'; font-src 'self' https: data:; \
             form-action 'self'; frame-ancestors 'self'; img-src 'self' data:; \
             object-src 'none'; script-src 'self'; script-src-attr 'none'; \
             style-src 'self' https: 'unsafe-inline'; upgrade-insecure-requests",
        ),
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
    for (name, value) in expected {
        assert_eq!(header(&res, name), value, "{name}");
    }
    assert_eq!(res.headers().len(), expected.len());
    assert!(res.headers().get("cache-control").is_none());
    for feature in ["camera=()", "microphone=()", "geolocation=()"] {
        assert!(PERMISSIONS_POLICY_DENY_ALL.contains(feature), "{feature}");
    }
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
        let layer = SecurityHeadersLayer::builder(Preset::Api)
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
        assert_eq!(res.headers().len(), 5 + 3, "{mode:?}: {:?}", res.headers());
    }
}

#[tokio::test]
async fn keep_and_remove_response_headers_are_configurable() {
    let layer = SecurityHeadersLayer::builder(Preset::Api)
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

    let layer = SecurityHeadersLayer::builder(Preset::Api)
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
    let layer = SecurityHeadersLayer::builder(Preset::Api)
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
    let err = SecurityHeadersLayer::builder(Preset::Api)
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

    let err = SecurityHeadersLayer::builder(Preset::Api)
        .header("bad header", "x")
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        SecurityHeadersError::InvalidName {
            name: "bad header".into()
        }
    );

    let err = SecurityHeadersLayer::builder(Preset::Api)
        .without("content-security-policy")
        .csp_nonce(true)
        .build()
        .unwrap_err();
    assert_eq!(err, SecurityHeadersError::NonceWithoutPolicy);
}

#[tokio::test]
async fn csp_nonce_is_fresh_per_request_and_matches_the_header() {
    let layer = SecurityHeadersLayer::builder(Preset::Web)
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
    let layer = SecurityHeadersLayer::builder(Preset::Api)
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
