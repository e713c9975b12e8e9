//! Added cost per request of the rate-limit layer with the memory store, next to tower_governor
//! in the same run, and the Redis store's decision latency on loopback (p50 and p99 printed).
//!
//! Every request is allowed (the quotas are huge), keyed by peer IP from axum's
//! `ConnectInfo<SocketAddr>` across 1,024 addresses, so both limiters do the per-key lookup.
//! The Redis part needs Redis on `REDIS_URL` (default `redis://127.0.0.1:6379`).
//! Besides criterion's results, it writes the Redis decision percentiles and the memory store's
//! size with 1,000,000 keys to `target/criterion/*.json` for `benches/report.py`.

use std::{
    convert::Infallible,
    hint::black_box,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::ConnectInfo};
use covet::layers::rate_limit::{
    GlobalKey, MemoryStore, Policy, Quota, RateLimitLayer, RedisStore,
};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use prometheus::Registry;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_governor::{
    GovernorLayer,
    governor::GovernorConfigBuilder,
    key_extractor::{GlobalKeyExtractor, PeerIpKeyExtractor},
};

fn handler(_req: Request<Body>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
    std::future::ready(Ok(Response::new(Body::empty())))
}

fn requests() -> Vec<Request<Body>> {
    (0..1024u32)
        .map(|n| {
            let mut req = Request::get("/users/42").body(Body::empty()).unwrap();
            let ip = IpAddr::from((0x0a00_0000 | n).to_be_bytes());
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
            req
        })
        .collect()
}

fn clone_request(template: &Request<Body>) -> Request<Body> {
    let mut req = Request::get("/users/42").body(Body::empty()).unwrap();
    let info = *template
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .unwrap();
    req.extensions_mut().insert(info);
    req
}

/// Calls the service once; every future here is ready on first poll.
fn run<S, B>(service: &mut S, req: Request<Body>)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let response = service.call(req).now_or_never().expect("ready").unwrap();
    black_box(response);
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The memory store's size with 1,000,000 live keys (one request from each of 1,000,000
/// addresses through the layer), by resident memory growth and by the store's own estimate.
fn memory_million_keys() {
    let store = MemoryStore::builder().max_keys(1_200_000).build();
    let mut svc = RateLimitLayer::builder(Policy::new("bench", Quota::per_second(10)))
        .store(store.clone())
        .headers(false)
        .build(&Registry::new())
        .unwrap()
        .layer(service_fn(handler));
    let before = rss_bytes();
    for n in 0..1_000_000u32 {
        let mut req = Request::get("/users/42").body(Body::empty()).unwrap();
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(
            IpAddr::from(n.to_be_bytes()),
            40000,
        )));
        let response = svc.call(req).now_or_never().expect("ready").unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(store.len(), 1_000_000);
    let grown = rss_bytes().saturating_sub(before);
    let mb = |bytes: usize| format!("{:.1} MB", bytes as f64 / 1e6);
    println!(
        "rate_limit memory store, 1,000,000 keys: RSS +{}",
        mb(grown)
    );
    write_side_file(
        "rate_limit_memory_1m_keys.json",
        &serde_json::json!({
            "title": "Memory rate limiter with 1,000,000 keys",
            "note": "One allowed request from each of 1,000,000 peer addresses through the layer \
                     (memory store, per-IP key); resident memory growth of the bench process and \
                     the store's own estimate of its tables. Goal: ≤ 100 MB.",
            "rows": [
                { "name": "keys", "value": store.len().to_string() },
                { "name": "RSS growth", "value": mb(grown) },
                { "name": "store tables (estimate)", "value": mb(store.approx_memory_bytes()) },
            ],
        }),
    );
}

fn huge() -> Quota {
    Quota::per_second(1_000_000_000).burst(1_000_000_000)
}

fn memory(c: &mut Criterion) {
    // Skippable when profiling one benchmark (the 1,000,000 requests would dominate a profile).
    if std::env::var_os("COVET_BENCH_SKIP_1M_KEYS").is_none() {
        memory_million_keys();
    }
    let reqs = requests();
    let mut group = c.benchmark_group("rate_limit_memory");
    let mut i = 0usize;
    let mut next = move || {
        i = (i + 1) & 1023;
        i
    };

    let mut bare = service_fn(handler);
    group.bench_function("baseline", |b| {
        b.iter(|| run(&mut bare, clone_request(&reqs[next()])))
    });

    let mut covet = RateLimitLayer::builder(Policy::new("bench", huge()))
        .build(&Registry::new())
        .unwrap()
        .layer(service_fn(handler));
    group.bench_function("covet_per_ip", |b| {
        b.iter(|| run(&mut covet, clone_request(&reqs[next()])))
    });

    let mut covet_quiet = RateLimitLayer::builder(Policy::new("bench", huge()))
        .headers(false)
        .build(&Registry::new())
        .unwrap()
        .layer(service_fn(handler));
    group.bench_function("covet_per_ip_no_headers", |b| {
        b.iter(|| run(&mut covet_quiet, clone_request(&reqs[next()])))
    });

    let mut covet_global = RateLimitLayer::builder(Policy::new("bench", huge()))
        .key(GlobalKey)
        .headers(false)
        .build(&Registry::new())
        .unwrap()
        .layer(service_fn(handler));
    group.bench_function("covet_global_no_headers", |b| {
        b.iter(|| run(&mut covet_global, clone_request(&reqs[next()])))
    });

    let config = GovernorConfigBuilder::default()
        .key_extractor(PeerIpKeyExtractor)
        .period(Duration::from_nanos(1))
        .burst_size(1_000_000_000)
        .finish()
        .unwrap();
    let mut governor = GovernorLayer::new(config).layer(service_fn(handler));
    group.bench_function("tower_governor_per_ip", |b| {
        b.iter(|| run(&mut governor, clone_request(&reqs[next()])))
    });

    let config = GovernorConfigBuilder::default()
        .key_extractor(GlobalKeyExtractor)
        .period(Duration::from_nanos(1))
        .burst_size(1_000_000_000)
        .finish()
        .unwrap();
    let mut governor_global = GovernorLayer::new(config).layer(service_fn(handler));
    group.bench_function("tower_governor_global", |b| {
        b.iter(|| run(&mut governor_global, clone_request(&reqs[next()])))
    });
    group.finish();
}

fn redis(c: &mut Criterion) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _runtime = rt.enter();
    let store = RedisStore::builder(url.as_str())
        .prefix(format!("covet:bench:{}:", std::process::id()))
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let registry = Registry::new();
    let svc = RateLimitLayer::builder(Policy::new("bench", huge()))
        .store(store)
        .build(&registry)
        .unwrap()
        .layer(service_fn(handler));
    let reqs = requests();

    // p50 / p99 of one decision + call, over 20,000 requests after a warm-up.
    let mut samples = Vec::with_capacity(20_000);
    rt.block_on(async {
        for n in 0..21_000usize {
            let req = clone_request(&reqs[n & 1023]);
            let start = Instant::now();
            let response = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(response.status(), 200, "Redis at {url} must be reachable");
            if n >= 1_000 {
                samples.push(start.elapsed());
            }
        }
    });
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "rate_limit_redis decision on loopback: p50 {:?}, p99 {:?} ({} samples)",
        pct(0.50),
        pct(0.99),
        samples.len()
    );
    write_side_file(
        "rate_limit_redis_percentiles.json",
        &serde_json::json!({
            "title": "Redis rate-limit decision latency (loopback)",
            "note": "One decision (pool checkout with bb8's PING test, then EVALSHA of the GCRA \
                     script) plus the handler, awaited one at a time on a current-thread runtime \
                     against the real Redis on 127.0.0.1, after 1,000 warm-up requests.",
            "rows": [
                { "name": "samples", "value": samples.len().to_string() },
                { "name": "p50", "value": format!("{:.1} µs", micros(pct(0.50))) },
                { "name": "p90", "value": format!("{:.1} µs", micros(pct(0.90))) },
                { "name": "p99", "value": format!("{:.1} µs", micros(pct(0.99))) },
                { "name": "max", "value": format!("{:.1} µs", micros(samples[samples.len() - 1])) },
            ],
        }),
    );

    let mut group = c.benchmark_group("rate_limit_redis");
    let mut i = 0usize;
    group.bench_function("covet_redis_decision", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            let req = clone_request(&reqs[i]);
            rt.block_on(svc.clone().oneshot(req)).unwrap()
        })
    });
    group.finish();
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Writes a result criterion does not record (percentiles) beside criterion's own, in
/// `$CARGO_TARGET_DIR/criterion` (`target/criterion` by default), where `benches/report.py`
/// renders every `*.json` file into BENCHMARKS.md.
fn write_side_file(name: &str, value: &serde_json::Value) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("criterion");
    std::fs::create_dir_all(&dir).expect("create the criterion directory");
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!("wrote {}", path.display());
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
