//! Unit tests of the rate-limit layer with the memory store.

use std::{
    convert::Infallible,
    io::Write,
    net::{IpAddr, SocketAddr},
    process::{Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderName, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use prometheus::{Encoder, Registry, TextEncoder};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use super::*;

type Body = Full<Bytes>;

async fn ok(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn request(path: &str) -> Request<Body> {
    Request::get(path).body(Full::default()).unwrap()
}

fn from(peer: &str, path: &str) -> Request<Body> {
    let mut req = request(path);
    let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(addr);
    req
}

fn header<'a>(response: &'a Response<RateLimitBody<Body>>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

fn sample(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sorted = labels.to_vec();
    sorted.sort();
    let labels: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let series = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{}}} ", labels.join(","))
    };
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    String::from_utf8(text)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no sample {series}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn gcra_burst_steady_rate_and_recovery_through_the_layer() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    // 10 per second, bursts of 3: one request every 100 ms.
    let layer = RateLimitLayer::builder(Policy::new("api", Quota::per_second(10).burst(3)))
        .store(MemoryStore::builder().clock(clock.clone()).build())
        .build(&registry)
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    let mut call = async |peer: &str| {
        svc.ready()
            .await
            .unwrap()
            .call(from(peer, "/"))
            .await
            .unwrap()
    };

    // Burst: three go through with r = 2, 1, 0.
    for remaining in [2, 1, 0] {
        let response = call("192.0.2.1").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-policy"), r#""api";q=10;w=1"#);
        assert_eq!(
            header(&response, "ratelimit"),
            format!(r#""api";r={remaining};t=1"#)
        );
    }
    // The fourth is limited; the wait is 100 ms, sent as 1 second, never 0.
    let limited = call("192.0.2.1").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "1");
    assert_eq!(header(&limited, "ratelimit"), r#""api";r=0;t=1"#);
    assert_eq!(header(&limited, "content-type"), "application/problem+json");
    let body = limited.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], 429);
    assert_eq!(json["title"], "Too Many Requests");
    // Another client is not affected.
    assert_eq!(call("192.0.2.2").await.status(), StatusCode::OK);

    // Steady rate: one every 100 ms, not one more.
    for _ in 0..20 {
        clock.advance(Duration::from_millis(99));
        assert_eq!(
            call("192.0.2.1").await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(call("192.0.2.1").await.status(), StatusCode::OK);
    }
    // Recovery: after idling, exactly the burst again.
    clock.advance(Duration::from_secs(5));
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(call("192.0.2.1").await.status().as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 200, 200, 429]);

    assert_eq!(
        sample(
            &registry,
            "rate_limit_decisions_total",
            &[("policy", "api"), ("outcome", "allowed")]
        ),
        3.0 + 1.0 + 20.0 + 3.0
    );
    assert_eq!(
        sample(
            &registry,
            "rate_limit_decisions_total",
            &[("policy", "api"), ("outcome", "limited")]
        ),
        1.0 + 20.0 + 1.0
    );
    assert_eq!(
        sample(
            &registry,
            "app_rate_limit_exceeded_total",
            &[("policy", "api")]
        ),
        22.0
    );
}

#[tokio::test]
async fn retry_after_rounds_up_whole_seconds() {
    let clock = ManualClock::new();
    // One per 90 seconds: a wait of 90 s, then 89.5 s after half a second.
    let layer =
        RateLimitLayer::builder(Policy::new("slow", Quota::per(1, Duration::from_secs(90))))
            .key(GlobalKey)
            .store(MemoryStore::builder().clock(clock.clone()).build())
            .build(&Registry::new())
            .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    assert_eq!(
        svc.clone().oneshot(request("/")).await.unwrap().status(),
        200
    );
    let limited = svc.clone().oneshot(request("/")).await.unwrap();
    assert_eq!(header(&limited, "retry-after"), "90");
    clock.advance(Duration::from_millis(500));
    let limited = svc.clone().oneshot(request("/")).await.unwrap();
    assert_eq!(header(&limited, "retry-after"), "90");
    clock.advance(Duration::from_millis(89_499));
    let limited = svc.clone().oneshot(request("/")).await.unwrap();
    assert_eq!(header(&limited, "retry-after"), "1");
    clock.advance(Duration::from_millis(1));
    assert_eq!(svc.oneshot(request("/")).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_of_a_thousand_requests_on_one_key_allow_exactly_the_quota() {
    let registry = Registry::new();
    let layer = RateLimitLayer::builder(Policy::new("hot", Quota::per_hour(500)))
        .key(GlobalKey)
        .build(&registry)
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                let mut allowed = 0;
                for _ in 0..1000 {
                    let response = svc.ready().await.unwrap().call(request("/")).await.unwrap();
                    allowed += usize::from(response.status() == StatusCode::OK);
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += task.await.unwrap();
    }
    assert_eq!(allowed, 500);
    assert_eq!(
        sample(
            &registry,
            "rate_limit_decisions_total",
            &[("policy", "hot"), ("outcome", "limited")]
        ),
        7500.0
    );
}

#[tokio::test]
async fn policies_by_route_prefix_and_method_have_their_own_names_and_buckets() {
    let registry = Registry::new();
    let layer = RateLimitLayer::builder(Policy::new("default", Quota::per_minute(100)))
        .method_route(
            Method::POST,
            "/login",
            Policy::new("login", Quota::per_minute(1)),
        )
        .path_prefix("/admin/", Policy::new("admin", Quota::per_minute(2)))
        .method(Method::DELETE, Policy::new("delete", Quota::per_hour(3)))
        .key(GlobalKey)
        .legacy_headers(true)
        .build(&registry)
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    let call = |method: Method, path: &str| {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::default())
            .unwrap();
        svc.clone().oneshot(req)
    };
    let login = call(Method::POST, "/login").await.unwrap();
    assert_eq!(header(&login, "ratelimit-policy"), r#""login";q=1;w=60"#);
    assert_eq!(header(&login, "x-ratelimit-limit"), "1");
    assert_eq!(header(&login, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&login, "x-ratelimit-reset"), "60");
    assert_eq!(call(Method::POST, "/login").await.unwrap().status(), 429);
    // GET /login is not the login rule; the default bucket is separate.
    let get = call(Method::GET, "/login").await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(header(&get, "ratelimit"), r#""default";r=99;t=1"#);
    let admin = call(Method::GET, "/admin/users").await.unwrap();
    assert_eq!(header(&admin, "ratelimit-policy"), r#""admin";q=2;w=60"#);
    let delete = call(Method::DELETE, "/things/1").await.unwrap();
    assert_eq!(
        header(&delete, "ratelimit-policy"),
        r#""delete";q=3;w=3600"#
    );
    assert_eq!(
        sample(
            &registry,
            "app_rate_limit_exceeded_total",
            &[("policy", "login")]
        ),
        1.0
    );
}

#[tokio::test]
async fn missing_keys_are_never_a_500() {
    let build = |missing: MissingKey| {
        let layer = RateLimitLayer::builder(Policy::new("default", Quota::per_minute(1)))
            .key(HeaderKey::new(HeaderName::from_static("x-api-key")))
            .missing_key(missing)
            .build(&Registry::new())
            .unwrap();
        ServiceBuilder::new().layer(layer).service(service_fn(ok))
    };
    // Shared (default): keyless requests share one bucket.
    let shared = build(MissingKey::default());
    assert_eq!(
        shared.clone().oneshot(request("/")).await.unwrap().status(),
        200
    );
    assert_eq!(
        shared.clone().oneshot(request("/")).await.unwrap().status(),
        429
    );
    let mut keyed = request("/");
    keyed
        .headers_mut()
        .insert("x-api-key", "k1".parse().unwrap());
    assert_eq!(shared.oneshot(keyed).await.unwrap().status(), 200);
    // Allow: through, unlimited, without headers.
    let allow = build(MissingKey::Allow);
    for _ in 0..3 {
        let response = allow.clone().oneshot(request("/")).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("ratelimit").is_none());
    }
    // Reject: the chosen 4xx with a problem body.
    let reject = build(MissingKey::Reject(StatusCode::UNAUTHORIZED));
    let response = reject.oneshot(request("/")).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    // The default PeerIp extractor with no peer address: the shared bucket, not a 500.
    let layer = RateLimitLayer::builder(Policy::new("default", Quota::per_minute(5)))
        .build(&Registry::new())
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    assert_eq!(svc.oneshot(request("/")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_change_the_key() {
    let layer = RateLimitLayer::builder(Policy::new("ip", Quota::per_minute(1)))
        .key(ClientIp::new(["10.0.0.0/8".parse().unwrap()]))
        .build(&Registry::new())
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    let spoofed = |fake: &str| {
        let mut req = from("203.0.113.5", "/");
        req.headers_mut()
            .insert("x-forwarded-for", fake.parse().unwrap());
        req
    };
    assert_eq!(
        svc.clone()
            .oneshot(spoofed("1.1.1.1"))
            .await
            .unwrap()
            .status(),
        200
    );
    // A new fake address each time does not buy a new bucket.
    assert_eq!(
        svc.clone()
            .oneshot(spoofed("2.2.2.2"))
            .await
            .unwrap()
            .status(),
        429
    );
    // Behind the trusted proxy, the client it saw is the key, whatever the client prepended.
    let proxied = |client: &str| {
        let mut req = from("10.0.0.7", "/");
        req.headers_mut().insert(
            "x-forwarded-for",
            format!("9.9.9.9, {client}").parse().unwrap(),
        );
        req
    };
    assert_eq!(
        svc.clone()
            .oneshot(proxied("198.51.100.1"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        svc.clone()
            .oneshot(proxied("198.51.100.1"))
            .await
            .unwrap()
            .status(),
        429
    );
    assert_eq!(
        svc.clone()
            .oneshot(proxied("198.51.100.2"))
            .await
            .unwrap()
            .status(),
        200
    );
    // The proxied client 203.0.113.5 is the same client as the direct one above.
    assert_eq!(
        svc.oneshot(proxied("203.0.113.5")).await.unwrap().status(),
        429
    );
}

#[tokio::test]
async fn headers_can_be_turned_off() {
    let layer = RateLimitLayer::builder(Policy::new("quiet", Quota::per_minute(1)))
        .key(GlobalKey)
        .headers(false)
        .build(&Registry::new())
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    let response = svc.clone().oneshot(request("/")).await.unwrap();
    assert!(response.headers().get("ratelimit").is_none());
    assert!(response.headers().get("ratelimit-policy").is_none());
    let limited = svc.oneshot(request("/")).await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after"), "60");
}

#[test]
fn configuration_errors_are_typed_and_name_the_setting() {
    let err =
        |builder: RateLimitLayerBuilder| builder.build(&Registry::new()).unwrap_err().to_string();
    assert_eq!(
        err(RateLimitLayer::builder(Policy::new(
            "x",
            Quota::per_second(0)
        ))),
        "rate limit: the quota of policy `x` has a count of 0"
    );
    assert_eq!(
        err(RateLimitLayer::builder(Policy::new(
            "x",
            Quota::per_second(1).burst(0)
        ))),
        "rate limit: the quota of policy `x` has a burst of 0"
    );
    assert!(
        err(RateLimitLayer::builder(Policy::new(
            "a\"b",
            Quota::per_second(1)
        )))
        .contains("policy name")
    );
    assert!(
        err(
            RateLimitLayer::builder(Policy::new("x", Quota::per_second(1)))
                .route("/a", Policy::new("x", Quota::per_second(2)))
        )
        .contains("two policies are named `x`")
    );
    assert!(
        err(
            RateLimitLayer::builder(Policy::new("x", Quota::per_second(1)))
                .missing_key(MissingKey::Reject(StatusCode::INTERNAL_SERVER_ERROR))
        )
        .contains("`missing_key`")
    );
    // A second layer on the same registry: a typed error, not a panic.
    let registry = Registry::new();
    RateLimitLayer::builder(Policy::new("x", Quota::per_second(1)))
        .build(&registry)
        .unwrap();
    assert!(matches!(
        RateLimitLayer::builder(Policy::new("x", Quota::per_second(1))).build(&registry),
        Err(RateLimitError::Register { .. })
    ));
}

#[test]
fn memory_store_is_bounded_and_refuses_new_keys_not_old_ones() {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .max_keys(4)
        .shards(1)
        .clock(clock.clone())
        .build();
    let per_minute = Quota::per_minute(1);
    let (interval, burst) = (per_minute.interval_nanos(), 1);
    let ip = |n: u8| Key::ip(IpAddr::from([192, 0, 2, n]));
    for n in 0..4 {
        assert!(store.check(1, &ip(n), interval, burst).allowed);
    }
    assert_eq!(store.len(), 4);
    // A fifth client is refused while the four are live, and told when a slot frees.
    let refused = store.check(1, &ip(9), interval, burst);
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, Duration::from_secs(60));
    assert_eq!(store.len(), 4);
    // Once their buckets are full again they are evicted to make room.
    clock.advance(Duration::from_secs(60));
    assert!(store.check(1, &ip(9), interval, burst).allowed);
    assert_eq!(store.len(), 1);
    assert_eq!(store.keys_gauge().get(), 1);
}

#[test]
fn a_million_keys_stay_under_the_documented_bound_and_are_reclaimed_when_idle() {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .max_keys(1_200_000)
        .sweep_interval(Duration::from_secs(10))
        .clock(clock.clone())
        .build();
    let quota = Quota::per_second(10);
    for n in 0..1_000_000_u32 {
        let key = Key::ip(IpAddr::from(n.to_be_bytes()));
        assert!(store.check(7, &key, quota.interval_nanos(), 10).allowed);
    }
    assert_eq!(store.len(), 1_000_000);
    let bytes = store.approx_memory_bytes();
    assert!(
        bytes <= 40 * 1024 * 1024,
        "{bytes} bytes for 1,000,000 keys"
    );
    // Idle for longer than the sweep interval (and the 1 s refill): the next request sweeps.
    clock.advance(Duration::from_secs(11));
    assert!(
        store
            .check(7, &Key::global(), quota.interval_nanos(), 10)
            .allowed
    );
    assert_eq!(store.len(), 1);
    assert_eq!(store.keys_gauge().get(), 1);
    assert!(
        store.approx_memory_bytes() < 64 * 1024,
        "{} bytes after the sweep",
        store.approx_memory_bytes()
    );
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let registry = Registry::new();
    let layer = RateLimitLayer::builder(Policy::new("default", Quota::per_minute(1)))
        .key(GlobalKey)
        .build(&registry)
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    svc.clone().oneshot(request("/")).await.unwrap();
    svc.oneshot(request("/")).await.unwrap();
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("rate_limit_decisions_total{outcome=\"limited\",policy=\"default\"} 1"));
    assert!(text.contains("app_rate_limit_exceeded_total{policy=\"default\"} 1"));
    assert!(text.contains("rate_limit_memory_keys 1"));
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(feature = "rate-limit-redis")]
#[test]
fn a_redis_store_outside_a_runtime_is_a_typed_error() {
    assert!(matches!(
        RedisStore::builder("redis://127.0.0.1:6379").build(),
        Err(StoreError::NoRuntime)
    ));
}

#[cfg(feature = "rate-limit-redis")]
#[tokio::test]
async fn a_bad_redis_url_is_a_typed_error() {
    assert!(matches!(
        RedisStore::builder("not a url").build(),
        Err(StoreError::Redis(_))
    ));
}

#[cfg(feature = "rate-limit-redis")]
#[tokio::test]
async fn a_zero_redis_timeout_builds_instead_of_panicking() {
    let store = RedisStore::builder("redis://127.0.0.1:6379")
        .timeout(Duration::ZERO)
        .build()
        .unwrap();
    assert!(matches!(
        store.connect(Duration::ZERO).await,
        Err(StoreError::Timeout(_))
    ));
}
