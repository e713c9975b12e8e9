//! Spans of pool calls nest under the request span (tracing-opentelemetry over the SDK's
//! in-memory exporter). A test binary of its own: a scoped subscriber installed by a test
//! running in parallel could otherwise change tracing's global level filter under this one.
//!
//! Needs PostgreSQL at `DATABASE_URL` and Redis at `REDIS_URL` (127.0.0.1 defaults); fails,
//! never skips, when they are unreachable.

use covet_pools::{PgPool, RedisPool};
use prometheus::Registry;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", std::process::id())
}

async fn pg(registry: &Registry, name: &str) -> PgPool {
    PgPool::builder(database_url())
        .pool_name(name)
        .build(registry)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must run at DATABASE_URL: {e}"))
}

async fn redis(registry: &Registry, url: &str) -> RedisPool {
    RedisPool::builder(url)
        .pool_name("cache")
        .build(registry)
        .await
        .unwrap_or_else(|e| panic!("Redis must run at REDIS_URL ({url}): {e}"))
}

#[tokio::test(flavor = "current_thread")]
async fn query_spans_are_children_of_the_request_span() {
    use opentelemetry::trace::{SpanKind, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("covet-pools-test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let registry = Registry::new();
    let pool = pg(&registry, "traced").await;
    let cache = redis(&registry, &redis_url()).await;
    let key = unique("covet_pools:span");
    async {
        pool.query("SELECT 1 AS one FROM pg_class LIMIT 1", &[])
            .await
            .unwrap();
        cache.get::<_, String>(&key).await.unwrap();
    }
    .instrument(tracing::info_span!("GET /users/{id}"))
    .await;
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let request = spans
        .iter()
        .find(|s| s.name == "GET /users/{id}")
        .expect("request span");
    let query = spans
        .iter()
        .find(|s| s.name == "SELECT pg_class")
        .unwrap_or_else(|| {
            panic!(
                "query span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    let command = spans.iter().find(|s| s.name == "GET").expect("redis span");
    for child in [query, command] {
        assert_eq!(child.parent_span_id, request.span_context.span_id());
        assert_eq!(
            child.span_context.trace_id(),
            request.span_context.trace_id()
        );
        assert_eq!(child.span_kind, SpanKind::Client);
    }
    let attribute = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(
        attribute(query, "db.system.name").as_deref(),
        Some("postgresql")
    );
    assert_eq!(
        attribute(query, "db.operation.name").as_deref(),
        Some("SELECT")
    );
    assert_eq!(
        attribute(query, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        attribute(command, "db.system.name").as_deref(),
        Some("redis")
    );
    assert_eq!(
        attribute(command, "db.operation.name").as_deref(),
        Some("GET")
    );
}
