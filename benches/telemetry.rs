//! The full stacks as production runs them: covet under `covet::telemetry`'s `init` (JSON lines
//! through its log queue, the SDK sampling every request, export off), the peer under the usual
//! hand-made equivalent (tracing-subscriber's JSON formatter through tracing-appender's
//! non-blocking writer, `tracing-opentelemetry` over the SDK with the same sampler), its
//! `TraceLayer` at INFO. Both write into `io::sink` from their writer threads.
//!
//! `init` installs covet's subscriber process-wide; the peer's is installed for its own
//! measurement only (`set_default`), which costs it one thread-local lookup per dispatch.
//! Each iteration builds `GET /users/42` from a peer address, calls the service and drains the
//! response body; the futures are ready at once and polled without a runtime.

mod common;

use common::{bench_baseline_and_covet, bench_stack, peer_stack};
use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::{filter::LevelFilter, layer::SubscriberExt};

fn full_stack_telemetry(c: &mut Criterion) {
    let telemetry = covet::telemetry::Telemetry::builder()
        .filter("info")
        .output(std::io::sink())
        .sampler(Sampler::AlwaysOn)
        .export(false)
        .service_name("bench")
        .init()
        .expect("telemetry");

    let mut group = c.benchmark_group("full_stack_telemetry");
    bench_baseline_and_covet(&mut group);

    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .build();
    let (writer, log_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(std::io::sink());
    let peer_dropped = writer.error_counter();
    let subscriber = tracing_subscriber::registry()
        .with(LevelFilter::INFO)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")))
        .with(tracing_subscriber::fmt::layer().json().with_writer(writer));
    {
        let _guard = tracing::subscriber::set_default(subscriber);
        bench_stack(&mut group, "peer", &mut peer_stack(Level::INFO));
    }
    group.finish();
    drop(log_guard);
    let _ = provider.shutdown();
    assert_eq!(
        telemetry.dropped_log_lines(),
        0,
        "covet's log queue dropped lines: the numbers do not count"
    );
    assert_eq!(
        peer_dropped.dropped_lines(),
        0,
        "the peer's log queue dropped lines: the numbers do not count"
    );
    let _ = telemetry.shutdown_blocking();
}

criterion_group!(benches, full_stack_telemetry);
criterion_main!(benches);
