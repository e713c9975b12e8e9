//! The Redis rate-limit store against the real Redis on 127.0.0.1:6379 (`REDIS_URL`): replicas
//! sharing one limit, and what happens when Redis goes away and comes back (through a TCP proxy
//! this test stops and restarts; the shared Redis server itself is never stopped).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use covet::layers::rate_limit::{GlobalKey, Policy, Quota, RateLimitLayer, RedisStore, StoreError};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    task::JoinHandle,
};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn redis_addr() -> String {
    let url = redis_url();
    let rest = url.trim_start_matches("redis://");
    let host = rest.rsplit('@').next().unwrap();
    host.split('/').next().unwrap().to_owned()
}

/// A key prefix no other test run uses.
fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("covet:test:{test}:{}:{nanos}:", std::process::id())
}

async fn assert_redis_reachable() {
    let addr = redis_addr();
    TcpStream::connect(&addr).await.unwrap_or_else(|e| {
        panic!("Redis is not reachable at {addr} ({e}); start it (scripts/services.sh) or set REDIS_URL")
    });
}

async fn ok(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn request(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

fn sample(registry: &Registry, series: &str) -> f64 {
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_together_allow_exactly_the_quota() {
    assert_redis_reachable().await;
    let prefix = unique_prefix("replicas");
    let replica = || {
        let store = RedisStore::builder(redis_url())
            .prefix(prefix.clone())
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let registry = Registry::new();
        let layer = RateLimitLayer::builder(Policy::new("shared", Quota::per_hour(60)))
            .key(GlobalKey)
            .store(store)
            .build(&registry)
            .unwrap();
        (
            ServiceBuilder::new().layer(layer).service(service_fn(ok)),
            registry,
        )
    };
    let (a, registry_a) = replica();
    let (b, registry_b) = replica();
    let tasks: Vec<JoinHandle<(u32, u32)>> = [a, b]
        .into_iter()
        .flat_map(|svc| std::iter::repeat_n(svc, 4))
        .map(|mut svc| {
            tokio::spawn(async move {
                let (mut allowed, mut limited) = (0, 0);
                for _ in 0..40 {
                    let response = svc.ready().await.unwrap().call(request("/")).await.unwrap();
                    match response.status() {
                        StatusCode::OK => allowed += 1,
                        StatusCode::TOO_MANY_REQUESTS => limited += 1,
                        other => panic!("unexpected {other}"),
                    }
                }
                (allowed, limited)
            })
        })
        .collect();
    let (mut allowed, mut limited) = (0, 0);
    for task in tasks {
        let (a, l) = task.await.unwrap();
        allowed += a;
        limited += l;
    }
    assert_eq!(allowed, 60, "8 tasks x 40 requests over two replicas");
    assert_eq!(limited, 260);
    let series = r#"rate_limit_decisions_total{outcome="allowed",policy="shared"}"#;
    assert_eq!(
        sample(&registry_a, series) + sample(&registry_b, series),
        60.0
    );
    // Every decision came from Redis: no store error, no fallback.
    assert_eq!(
        sample(
            &registry_a,
            r#"rate_limit_store_errors_total{store="redis"}"#
        ),
        0.0
    );
    assert_eq!(
        sample(
            &registry_b,
            r#"rate_limit_store_errors_total{store="redis"}"#
        ),
        0.0
    );
}

/// A TCP proxy to Redis that can be stopped (closing every connection) and started again on the
/// same port.
struct Proxy {
    addr: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy {
            addr,
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = self.tasks.clone();
        let upstream = redis_addr();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    async fn restart(&self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        let mut tries = 0;
        let listener = loop {
            match socket.bind(self.addr) {
                Ok(()) => break socket.listen(128).unwrap(),
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind the proxy on {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open_or_closed_per_policy_and_comes_back() {
    assert_redis_reachable().await;
    let proxy = Proxy::start().await;
    // The circuit breaker stays out of this test (it has its own below).
    let store = RedisStore::builder(proxy.url())
        .prefix(unique_prefix("outage"))
        .timeout(Duration::from_millis(100))
        .circuit_breaker(1_000, Duration::from_secs(1))
        .build()
        .unwrap();
    let registry = Registry::new();
    let layer = RateLimitLayer::builder(Policy::new("open", Quota::per_hour(1000)))
        .route(
            "/login",
            Policy::new("login", Quota::per_hour(1000)).fail_closed(),
        )
        .key(GlobalKey)
        .store(store)
        .build(&registry)
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    let allowed = r#"rate_limit_decisions_total{outcome="allowed",policy="open"}"#;
    let fail_open = r#"rate_limit_decisions_total{outcome="fail_open",policy="open"}"#;
    let fail_closed = r#"rate_limit_decisions_total{outcome="fail_closed",policy="login"}"#;
    let errors = r#"rate_limit_store_errors_total{store="redis"}"#;

    // Redis up: decided by Redis (r counts down from the quota shared in Redis).
    let response = svc.clone().oneshot(request("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["ratelimit"], r#""open";r=999;t=4"#);
    assert_eq!(sample(&registry, allowed), 1.0);

    // Redis gone: the fail-open policy answers from the local fallback, never a 5xx.
    proxy.stop();
    for _ in 0..5 {
        let response = svc.clone().oneshot(request("/")).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(sample(&registry, fail_open), 5.0);
    assert_eq!(sample(&registry, allowed), 1.0);
    // The fail-closed policy answers 503 with Retry-After.
    let response = svc.clone().oneshot(request("/login")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(sample(&registry, fail_closed), 1.0);
    assert_eq!(sample(&registry, errors), 6.0);

    // Redis back: decisions return to Redis by themselves (the pool replaces the dead
    // connection); Redis remembers the first request, so r continues from 998.
    proxy.restart().await;
    let mut back = None;
    for _ in 0..50 {
        let response = svc.clone().oneshot(request("/")).await.unwrap();
        assert_eq!(response.status(), 200);
        if sample(&registry, allowed) == 2.0 {
            back = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = back.expect("decisions did not go back to Redis within 2.5 s");
    let rate = response.headers()["ratelimit"].to_str().unwrap();
    assert!(rate.starts_with(r#""open";r=998;t="#), "{rate}");
    let login = svc.clone().oneshot(request("/login")).await.unwrap();
    assert_eq!(login.status(), 200);
    proxy.stop();
}

/// Log lines written while a test runs on this thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_open_circuit_decides_at_once_until_a_probe_finds_redis_again() {
    assert_redis_reachable().await;
    let logs = Logs::default();
    let writer = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish(),
    );
    // A "Redis" that accepts connections and never answers: every decision waits the timeout.
    let hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let black_hole = tokio::spawn(async move {
        while let Ok((stream, _)) = hole.accept().await {
            keep.lock().unwrap().push(stream);
        }
    });
    let proxy = Proxy {
        addr: hole_addr,
        tasks: Arc::default(),
    };
    let timeout = Duration::from_millis(600);
    let store = RedisStore::builder(proxy.url())
        .prefix(unique_prefix("breaker"))
        .timeout(timeout)
        .circuit_breaker(3, Duration::from_millis(800))
        .build()
        .unwrap();
    let registry = Registry::new();
    let layer = RateLimitLayer::builder(Policy::new("open", Quota::per_hour(1000)))
        .key(GlobalKey)
        .store(store)
        .build(&registry)
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    let fail_open = r#"rate_limit_decisions_total{outcome="fail_open",policy="open"}"#;
    let allowed = r#"rate_limit_decisions_total{outcome="allowed",policy="open"}"#;
    let errors = r#"rate_limit_store_errors_total{store="redis"}"#;

    // Three decisions ask Redis, get no answer, and fail open.
    for _ in 0..3 {
        let response = svc.clone().oneshot(request("/")).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(sample(&registry, errors), 3.0);
    assert!(
        logs.text().contains("rate-limit store keeps failing"),
        "{}",
        logs.text()
    );
    // The circuit is open: the next ones are decided locally without asking Redis (so
    // without waiting for its timeout).
    for _ in 0..20 {
        let response = svc.clone().oneshot(request("/")).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(sample(&registry, errors), 3.0, "Redis was not asked");
    assert_eq!(sample(&registry, fail_open), 23.0);

    // Redis comes back at the same address; after the cool-down a probe finds it.
    black_hole.abort();
    held.lock().unwrap().clear();
    drop(black_hole.await);
    proxy.restart().await;
    let mut back = false;
    for _ in 0..60 {
        svc.clone().oneshot(request("/")).await.unwrap();
        if sample(&registry, allowed) >= 1.0 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "decisions did not go back to Redis");
    assert!(
        logs.text().contains("rate-limit store answers again"),
        "{}",
        logs.text()
    );
    proxy.stop();
}

/// A `redis://` URL on a local port nothing listens on (a listener bound, then dropped).
async fn closed_port_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("redis://127.0.0.1:{port}")
}

#[tokio::test]
async fn a_closed_port_fails_open_without_a_5xx() {
    let store = RedisStore::builder(closed_port_url().await)
        .build()
        .unwrap();
    let registry = Registry::new();
    // The fallback applies the policy's own quota locally: 2 per hour.
    let layer = RateLimitLayer::builder(Policy::new("open", Quota::per_hour(2)))
        .key(GlobalKey)
        .store(store)
        .build(&registry)
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            svc.clone()
                .oneshot(request("/"))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(
        sample(
            &registry,
            r#"rate_limit_decisions_total{outcome="fail_open",policy="open"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(&registry, r#"rate_limit_store_errors_total{store="redis"}"#),
        3.0
    );
}

#[tokio::test]
async fn connect_waits_for_redis_and_says_when_it_cannot_reach_it() {
    assert_redis_reachable().await;
    let store = RedisStore::builder(redis_url())
        .prefix(unique_prefix("connect"))
        .build()
        .unwrap();
    store.connect(Duration::from_secs(5)).await.unwrap();

    let store = RedisStore::builder(closed_port_url().await)
        .build()
        .unwrap();
    let wait = Duration::from_millis(300);
    let err = store.connect(wait).await.unwrap_err();
    assert!(matches!(err, StoreError::Timeout(w) if w == wait), "{err}");
}
