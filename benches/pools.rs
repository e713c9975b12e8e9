//! Added cost of covet-pools' instrumentation per PostgreSQL query and per checkout, against a
//! bare bb8-postgres pool in the same run.
//!
//! Both pools have one plain-TCP connection (`sslmode=disable`: the bare pool has no TLS, and
//! covet's would otherwise negotiate it, libpq's `prefer`) to the real PostgreSQL at
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and run the same
//! prepared statement, so each query is one round trip either way; the difference is metrics, span, statement-cache lookup
//! and checkout bookkeeping. No tracing subscriber is installed (spans are created, not
//! recorded), as in a service whose request is not sampled.
//!
//! `baseline` is the bare bb8-postgres pool, `covet` the `PgPool`. `pools_checkout` isolates the
//! pool part without the network: get a connection and return it.

use std::hint::black_box;

use bb8_postgres::PostgresConnectionManager;
use covet::pools::PgPool;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio_postgres::NoTls;

const SQL: &str = "SELECT $1::int";

fn database_url() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let join = if url.contains('?') { '&' } else { '?' };
    format!("{url}{join}sslmode=disable")
}

fn pools(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (bare, covet) = runtime.block_on(async {
        let manager = PostgresConnectionManager::new_from_stringlike(database_url(), NoTls)
            .expect("DATABASE_URL parses");
        let bare = bb8::Pool::builder()
            .max_size(1)
            .build(manager)
            .await
            .expect("PostgreSQL must run at DATABASE_URL");
        let registry = prometheus::Registry::new();
        let covet = PgPool::builder(database_url())
            .max_size(1)
            .build(&registry)
            .await
            .expect("PostgreSQL must run at DATABASE_URL");
        (bare, covet)
    });
    // The bare pool's one connection, with the statement prepared once (as covet's cache does).
    let statement =
        runtime.block_on(async { bare.get().await.unwrap().prepare(SQL).await.unwrap() });

    let mut group = c.benchmark_group("pools_query");
    group.bench_function("baseline", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let conn = bare.get().await.unwrap();
                let row = conn
                    .query_one(&statement, &[&black_box(7_i32)])
                    .await
                    .unwrap();
                black_box(row.get::<_, i32>(0))
            })
        })
    });
    group.bench_function("covet", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let row = covet.query_one(SQL, &[&black_box(7_i32)]).await.unwrap();
                black_box(row.get::<_, i32>(0))
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("pools_checkout");
    group.bench_function("baseline", |b| {
        b.iter(|| runtime.block_on(async { drop(black_box(bare.get().await.unwrap())) }))
    });
    group.bench_function("covet", |b| {
        b.iter(|| runtime.block_on(async { drop(black_box(covet.get().await.unwrap())) }))
    });
    group.finish();
}

criterion_group!(benches, pools);
criterion_main!(benches);
