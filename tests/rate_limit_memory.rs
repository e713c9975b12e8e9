//! The memory store with 1,000,000 distinct keys, measured by the process's resident memory
//! (`/proc/self/statm`), then reclaimed once the keys go idle. Alone in its own test binary so
//! nothing else moves the RSS; `#[ignore]`d in the quick suite because it wants a release build:
//!
//! ```text
//! cargo test --release --test rate_limit_memory -- --ignored
//! ```

use std::{convert::Infallible, net::IpAddr, time::Duration};

use covet::layers::rate_limit::{ManualClock, MemoryStore, Policy, Quota, RateLimitLayer};
use futures_util::FutureExt;
use http::{Request, Response};
use prometheus::Registry;
use tower::{Layer, Service, service_fn};

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
#[ignore = "slow in debug builds; run with --release -- --ignored (CI does)"]
fn a_million_keys_stay_under_100_mb_and_are_reclaimed_when_idle() {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .max_keys(1_200_000)
        .sweep_interval(Duration::from_secs(10))
        .clock(clock.clone())
        .build();
    let layer = RateLimitLayer::builder(Policy::new("per-ip", Quota::per_second(10)))
        .store(store.clone())
        .build(&Registry::new())
        .unwrap();
    let mut svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    }));
    let before = rss_bytes();
    for n in 0..1_000_000_u32 {
        let mut req = Request::new(());
        req.extensions_mut().insert(IpAddr::from(n.to_be_bytes()));
        let response = svc.call(req).now_or_never().unwrap().unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(store.len(), 1_000_000);
    let grown = rss_bytes().saturating_sub(before);
    println!(
        "1,000,000 keys: RSS +{} MB, tables {} MB",
        grown / 1_000_000,
        store.approx_memory_bytes() / 1_000_000
    );
    assert!(grown <= 100_000_000, "RSS grew by {grown} bytes");

    // Idle past the refill and the sweep interval: the next request sweeps every shard.
    clock.advance(Duration::from_secs(11));
    let mut req = Request::new(());
    req.extensions_mut().insert(IpAddr::from([10, 0, 0, 1]));
    svc.call(req).now_or_never().unwrap().unwrap();
    assert_eq!(store.len(), 1);
    let after = rss_bytes().saturating_sub(before);
    println!("after the sweep: RSS +{} MB", after / 1_000_000);
    assert!(
        after * 4 < grown.max(1),
        "RSS still +{after} bytes after reclaiming"
    );
}
