//! covet-pools against the real PostgreSQL and Redis on 127.0.0.1.
//!
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and `REDIS_URL`
//! (default `redis://127.0.0.1:6379`) must be reachable: these tests fail, never skip.

use std::{
    io::Write,
    net::SocketAddr,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use covet_pools::{PgPool, PoolError, RedisPool, postgres::tokio_postgres::error::SqlState};
use prometheus::{Encoder, Registry, TextEncoder, proto::MetricFamily};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A name unique to this process and call, for tables and keys.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn pg(registry: &Registry, name: &str) -> PgPool {
    PgPool::builder(database_url())
        .pool_name(name)
        .build(registry)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL must run at DATABASE_URL ({}): {e}",
                database_url()
            )
        })
}

async fn redis(registry: &Registry, url: &str) -> RedisPool {
    RedisPool::builder(url)
        .pool_name("cache")
        .build(registry)
        .await
        .unwrap_or_else(|e| panic!("Redis must run at REDIS_URL ({url}): {e}"))
}

fn family(registry: &Registry, name: &str) -> Option<MetricFamily> {
    registry.gather().into_iter().find(|f| f.name() == name)
}

/// One sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// The samples of the registry's text exposition. Read from the text so
/// the tests hold whether or not prometheus's `protobuf` feature is on.
fn samples(registry: &Registry) -> Vec<Sample> {
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            // Label values written by the pools are plain (no quotes, commas or escapes).
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().expect("a number"))
        })
        .collect()
}

/// The value of the first sample of `name` whose labels include all of `labels`.
fn sample(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(registry)
        .into_iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, value)| value)
}

fn counter(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(registry, name, labels).unwrap_or(0.0)
}

fn gauge(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(registry, name, labels).unwrap_or(f64::NAN)
}

/// (count, sum) of a histogram.
fn histogram(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> (u64, f64) {
    (
        sample(registry, &format!("{name}_count"), labels).unwrap_or(0.0) as u64,
        sample(registry, &format!("{name}_sum"), labels).unwrap_or(0.0),
    )
}

#[tokio::test]
async fn postgres_samples_equal_what_happened() {
    let registry = Registry::new();
    let pool = PgPool::builder(database_url())
        .pool_name("main")
        .max_size(1)
        .build(&registry)
        .await
        .expect("PostgreSQL must run at DATABASE_URL");
    let table = unique("covet_pools_rows");
    pool.execute(
        &format!("CREATE TABLE {table} (id int PRIMARY KEY, v text)"),
        &[],
    )
    .await
    .unwrap();

    let main = [("pool_name", "main"), ("operation", "SELECT")];
    let before = counter(&registry, "db_queries_total", &main);
    let hits_before = counter(
        &registry,
        "db_statement_cache_hits_total",
        &[("pool_name", "main")],
    );
    for i in 0..10_i32 {
        let row = pool.query_one("SELECT $1::int + 1", &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
    }
    assert_eq!(counter(&registry, "db_queries_total", &main) - before, 10.0);
    // One connection: the statement was prepared once, then found in the cache 9 times.
    assert_eq!(
        counter(
            &registry,
            "db_statement_cache_hits_total",
            &[("pool_name", "main")]
        ) - hits_before,
        9.0
    );
    let (count, _) = histogram(
        &registry,
        "db_client_operation_duration_seconds",
        &[
            ("pool_name", "main"),
            ("db_system_name", "postgresql"),
            ("db_operation_name", "SELECT"),
            ("error_type", ""),
        ],
    );
    assert!(count >= 10, "{count}");

    let inserted = pool
        .execute(
            &format!("INSERT INTO {table} VALUES (1, 'a'), (2, 'b'), (3, 'c')"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 3);
    let updated = pool
        .query(
            &format!("UPDATE {table} SET v = 'z' WHERE id <= 2 RETURNING id"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(updated.len(), 2);
    assert_eq!(
        histogram(
            &registry,
            "db_rows_affected",
            &[("pool_name", "main"), ("operation", "INSERT")]
        ),
        (1, 3.0)
    );
    assert_eq!(
        histogram(
            &registry,
            "db_rows_affected",
            &[("pool_name", "main"), ("operation", "UPDATE")]
        ),
        (1, 2.0)
    );
    assert!(
        pool.query_opt(&format!("SELECT v FROM {table} WHERE id = 99"), &[])
            .await
            .unwrap()
            .is_none()
    );

    // A unique violation: class 23, and the error reaches the caller with its SQLSTATE.
    let err = pool
        .execute(&format!("INSERT INTO {table} VALUES (1, 'dup')"), &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));
    assert_eq!(
        counter(
            &registry,
            "db_query_errors_total",
            &[("pool_name", "main"), ("sqlstate_class", "23")]
        ),
        1.0
    );
    assert_eq!(
        histogram(
            &registry,
            "db_client_operation_duration_seconds",
            &[("db_operation_name", "INSERT"), ("error_type", "23505")]
        )
        .0,
        1
    );

    // Transactions: a commit, an explicit rollback, and one dropped (rolled back).
    let mut conn = pool.get().await.unwrap();
    let mut tx = conn.transaction().await.unwrap();
    tx.execute(&format!("INSERT INTO {table} VALUES (10, 'tx')"), &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = conn.transaction().await.unwrap();
    tx.execute(&format!("INSERT INTO {table} VALUES (11, 'tx')"), &[])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    {
        let mut tx = conn.transaction().await.unwrap();
        tx.execute(&format!("INSERT INTO {table} VALUES (12, 'tx')"), &[])
            .await
            .unwrap();
    }
    let ids: Vec<i32> = conn
        .query(
            &format!("SELECT id FROM {table} WHERE id >= 10 ORDER BY id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [10]);
    drop(conn);
    assert_eq!(
        counter(
            &registry,
            "db_transactions_total",
            &[("pool_name", "main"), ("outcome", "commit")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            &registry,
            "db_transactions_total",
            &[("pool_name", "main"), ("outcome", "rollback")]
        ),
        2.0
    );
    assert_eq!(
        histogram(
            &registry,
            "db_transaction_duration_seconds",
            &[("pool_name", "main")]
        )
        .0,
        3
    );

    // Pool gauges read from bb8 on scrape.
    assert_eq!(
        gauge(
            &registry,
            "db_connection_pool_size",
            &[("pool_name", "main")]
        ),
        1.0
    );
    assert_eq!(
        gauge(
            &registry,
            "db_client_connection_max",
            &[("pool_name", "main")]
        ),
        1.0
    );
    assert_eq!(
        gauge(&registry, "db_connections_idle", &[("pool_name", "main")]),
        1.0
    );
    let held = pool.get().await.unwrap();
    assert_eq!(
        gauge(&registry, "db_connections_active", &[("pool_name", "main")]),
        1.0
    );
    assert_eq!(
        gauge(
            &registry,
            "db_client_connections",
            &[("pool_name", "main"), ("state", "used")]
        ),
        1.0
    );
    drop(held);
    assert_eq!(
        counter(
            &registry,
            "db_client_connections_created_total",
            &[("pool_name", "main")]
        ),
        1.0
    );

    pool.execute(&format!("DROP TABLE {table}"), &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn exhausted_pool_times_out_and_counts() {
    let registry = Registry::new();
    let pool = PgPool::builder(database_url())
        .pool_name("tiny")
        .max_size(1)
        .connection_timeout(Duration::from_millis(200))
        .build(&registry)
        .await
        .expect("PostgreSQL must run at DATABASE_URL");
    let (waits_before, _) = histogram(
        &registry,
        "db_client_connection_wait_time_seconds",
        &[("pool_name", "tiny")],
    );

    let first = pool.get().await.unwrap();
    let second = pool.get().await.unwrap_err();
    assert!(second.is_timeout(), "{second}");
    assert!(second.to_string().contains("pool `tiny`"), "{second}");
    assert_eq!(
        counter(
            &registry,
            "db_client_connection_timeouts_total",
            &[("pool_name", "tiny")]
        ),
        1.0
    );

    // A waiter that gets the connection once the holder lets go.
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        gauge(
            &registry,
            "db_client_connection_pending_requests",
            &[("pool_name", "tiny")]
        ),
        1.0
    );
    drop(first);
    waiter.await.unwrap().unwrap();

    let (waits, sum) = histogram(
        &registry,
        "db_client_connection_wait_time_seconds",
        &[("pool_name", "tiny")],
    );
    assert_eq!(waits - waits_before, 3);
    assert!(
        sum >= 0.2 + 0.05,
        "the timed-out and the queued waits are recorded: {sum}"
    );
    assert!(
        histogram(
            &registry,
            "db_client_connection_use_time_seconds",
            &[("pool_name", "tiny")]
        )
        .1 >= 0.2
    );
}

#[tokio::test]
async fn deadlock_is_counted_and_reaches_the_caller() {
    let registry = Registry::new();
    let pool = pg(&registry, "deadlock").await;
    let table = unique("covet_pools_deadlock");
    pool.execute(
        &format!("CREATE TABLE {table} (id int PRIMARY KEY, v int)"),
        &[],
    )
    .await
    .unwrap();
    pool.execute(&format!("INSERT INTO {table} VALUES (1, 0), (2, 0)"), &[])
        .await
        .unwrap();

    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let run = |first: i32, second: i32| {
        let (pool, table, barrier) = (pool.clone(), table.clone(), Arc::clone(&barrier));
        tokio::spawn(async move {
            let mut conn = pool.get().await?;
            let mut tx = conn.transaction().await?;
            let update = format!("UPDATE {table} SET v = v + 1 WHERE id = $1");
            tx.execute(&update, &[&first]).await?;
            barrier.wait().await;
            tx.execute(&update, &[&second]).await?;
            tx.commit().await
        })
    };
    let (a, b) = tokio::join!(run(1, 2), run(2, 1));
    let results = [a.unwrap(), b.unwrap()];
    let errors: Vec<&PoolError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one transaction is the deadlock victim: {results:?}"
    );
    assert_eq!(errors[0].code(), Some(&SqlState::T_R_DEADLOCK_DETECTED));
    assert_eq!(
        counter(
            &registry,
            "db_deadlocks_total",
            &[("pool_name", "deadlock")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            &registry,
            "db_query_errors_total",
            &[("pool_name", "deadlock"), ("sqlstate_class", "40")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            &registry,
            "db_transactions_total",
            &[("pool_name", "deadlock"), ("outcome", "commit")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            &registry,
            "db_transactions_total",
            &[("pool_name", "deadlock"), ("outcome", "rollback")]
        ),
        1.0
    );
    pool.execute(&format!("DROP TABLE {table}"), &[])
        .await
        .unwrap();
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn slow_query_is_counted_and_logged_without_parameters() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let registry = Registry::new();
    let pool = PgPool::builder(database_url())
        .pool_name("slow")
        .slow_query_threshold(Duration::from_millis(100))
        .build(&registry)
        .await
        .expect("PostgreSQL must run at DATABASE_URL");
    pool.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(
        counter(&registry, "db_slow_queries_total", &[("pool_name", "slow")]),
        0.0
    );

    let secret = "s3cret-parameter-value";
    pool.query_one("SELECT pg_sleep(0.2)::text, $1::text", &[&secret])
        .await
        .unwrap();
    assert_eq!(
        counter(&registry, "db_slow_queries_total", &[("pool_name", "slow")]),
        1.0
    );

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("slow query")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("WARN"), "{text}");
    assert!(lines[0].contains("statement=SELECT"), "{text}");
    assert!(
        lines[0].contains("pool_name=\"slow\"") || lines[0].contains("pool_name=slow"),
        "{text}"
    );
    assert!(!text.contains(secret), "parameters never logged: {text}");
    assert!(
        !text.contains("pg_sleep"),
        "the statement text is not logged, only its summary: {text}"
    );
}

/// A TCP proxy to `upstream` on `addr` that can be stopped (dropping every connection) and
/// started again on the same address.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut proxy = Self {
            addr,
            upstream,
            task: None,
        };
        proxy.task = Some(tokio::spawn(Self::serve(listener, upstream)));
        proxy
    }

    async fn serve(listener: TcpListener, upstream: SocketAddr) {
        let mut pipes = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            pipes.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
        // Dropping the task drops the JoinSet, which aborts every pipe.
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.task = Some(tokio::spawn(Self::serve(listener, self.upstream)));
    }
}

async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn wrong_port_is_a_clear_counted_error() {
    let registry = Registry::new();
    let port = closed_port().await;
    let err = PgPool::builder(format!(
        "postgres://postgres:pa55word@127.0.0.1:{port}/postgres"
    ))
    .pool_name("nowhere")
    .build(&registry)
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PoolError::Connect { .. }), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("pa55word"), "{text}");
    assert_eq!(
        counter(
            &registry,
            "db_connection_errors_total",
            &[("pool_name", "nowhere")]
        ),
        1.0
    );

    let registry = Registry::new();
    let err = RedisPool::builder(format!("redis://:pa55word@127.0.0.1:{port}"))
        .build(&registry)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PoolError::Connect { .. }), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && !text.contains("pa55word"),
        "{text}"
    );
    assert_eq!(
        counter(&registry, "cache_connection_errors_total", &[]),
        1.0
    );
}

#[tokio::test]
async fn a_lazy_pool_builds_while_the_server_is_down_and_reports_each_call() {
    let port = closed_port().await;
    let registry = Registry::new();
    let pool = PgPool::builder(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .pool_name("lazy")
        .connect_at_build(false)
        .connection_timeout(std::time::Duration::from_millis(300))
        .build(&registry)
        .await
        .expect("a lazy pool builds without the server");
    let err = pool.query("SELECT 1", &[]).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let registry = Registry::new();
    let cache = RedisPool::builder(format!("redis://127.0.0.1:{port}"))
        .connect_at_build(false)
        .connection_timeout(std::time::Duration::from_millis(300))
        .build(&registry)
        .await
        .expect("a lazy Redis pool builds without the server");
    assert!(cache.get::<_, String>("k").await.is_err());
}

#[tokio::test]
async fn pool_recovers_when_the_server_is_back() {
    let upstream: covet_pools::postgres::tokio_postgres::Config = database_url().parse().unwrap();
    let host = match &upstream.get_hosts()[0] {
        covet_pools::postgres::tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("DATABASE_URL must name a TCP host"),
    };
    let port = upstream.get_ports().first().copied().unwrap_or(5432);
    let upstream: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let mut proxy = Proxy::start(upstream).await;

    let mut config = upstream_url_via(&database_url(), proxy.addr);
    config.push_str("");
    let registry = Registry::new();
    let pool = PgPool::builder(config)
        .pool_name("flaky")
        .max_size(2)
        .connection_timeout(Duration::from_millis(500))
        .build(&registry)
        .await
        .expect("PostgreSQL must run at DATABASE_URL");
    pool.query_one("SELECT 1", &[]).await.unwrap();
    let errors = |r: &Registry| counter(r, "db_connection_errors_total", &[("pool_name", "flaky")]);
    assert_eq!(errors(&registry), 0.0);

    proxy.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = pool.query_one("SELECT 1", &[]).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("last connection error"),
        "the cause is named: {text}"
    );
    assert!(errors(&registry) >= 1.0);

    proxy.restart().await;
    let row = pool
        .query_one("SELECT 41 + 1", &[])
        .await
        .expect("the pool recovers");
    assert_eq!(row.get::<_, i32>(0), 42);
    proxy.stop();
}

/// A proxy whose existing connections can be made silently dead: they stop forwarding in
/// both directions but stay open (no FIN, no RST), as when a server or a network path vanishes.
/// New connections are forwarded normally.
struct StallingProxy {
    addr: SocketAddr,
    generation: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

impl StallingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let generation = Arc::new(AtomicU32::new(0));
        let current = generation.clone();
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let born = current.load(Ordering::SeqCst);
                let current = current.clone();
                pipes.spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (a_read, a_write) = inbound.into_split();
                    let (b_read, b_write) = outbound.into_split();
                    let pipe = |mut from: tokio::net::tcp::OwnedReadHalf,
                                mut to: tokio::net::tcp::OwnedWriteHalf,
                                current: Arc<AtomicU32>| async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = [0u8; 8192];
                        loop {
                            let n = match from.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if current.load(Ordering::SeqCst) != born {
                                // Stalled: hold both sockets open and never forward again.
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::join!(
                        pipe(a_read, b_write, current.clone()),
                        pipe(b_read, a_write, current)
                    );
                });
            }
        });
        Self {
            addr,
            generation,
            task,
        }
    }

    /// Makes every connection opened so far silently dead.
    fn stall_existing(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pooled connection whose server vanished without a reset is found dead by the bounded
/// validity check at checkout and replaced: the checkout succeeds on a new connection well
/// within the connection timeout instead of timing out on the dead one forever.
#[tokio::test]
async fn a_silently_dead_connection_is_replaced_at_checkout() {
    let upstream: covet_pools::postgres::tokio_postgres::Config = database_url().parse().unwrap();
    let host = match &upstream.get_hosts()[0] {
        covet_pools::postgres::tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("DATABASE_URL must name a TCP host"),
    };
    let port = upstream.get_ports().first().copied().unwrap_or(5432);
    let upstream: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = StallingProxy::start(upstream).await;
    let registry = Registry::new();
    let pool = PgPool::builder(upstream_url_via(&database_url(), proxy.addr))
        .pool_name("stalled")
        .max_size(1)
        .connection_timeout(Duration::from_secs(5))
        .validation_timeout(Duration::from_millis(300))
        .build(&registry)
        .await
        .expect("PostgreSQL must run at DATABASE_URL");
    let row = pool.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);

    proxy.stall_existing();
    let started = std::time::Instant::now();
    let row = pool
        .query_one("SELECT 2", &[])
        .await
        .expect("the dead connection is replaced, not waited on");
    assert_eq!(row.get::<_, i32>(0), 2);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "recovered after {took:?}, within the connection timeout"
    );
    // The pool holds a working connection again.
    for _ in 0..3 {
        pool.query_one("SELECT 3", &[]).await.unwrap();
    }
}

/// `url` with its host and port replaced by `addr`.
fn upstream_url_via(url: &str, addr: SocketAddr) -> String {
    let config: covet_pools::postgres::tokio_postgres::Config = url.parse().unwrap();
    let mut parts = vec![
        format!("host={}", addr.ip()),
        format!("port={}", addr.port()),
    ];
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={db}"));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!("password={}", String::from_utf8_lossy(password)));
    }
    parts.join(" ")
}

#[tokio::test]
async fn redis_samples_equal_what_happened() {
    let registry = Registry::new();
    let pool = redis(&registry, &redis_url()).await;
    let key = unique("covet_pools:test");

    assert_eq!(pool.get::<_, String>(&key).await.unwrap(), None);
    pool.set_ex(&key, "v", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        pool.get::<_, String>(&key).await.unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(counter(&registry, "cache_misses_total", &[]), 1.0);
    assert_eq!(counter(&registry, "cache_hits_total", &[]), 1.0);

    let other = format!("{key}:other");
    let values: Vec<Option<String>> = pool.mget(&[key.as_str(), other.as_str()]).await.unwrap();
    assert_eq!(values, [Some("v".to_owned()), None]);
    assert_eq!(counter(&registry, "cache_hits_total", &[]), 2.0);
    assert_eq!(counter(&registry, "cache_misses_total", &[]), 2.0);

    let n = format!("{key}:n");
    assert_eq!(pool.incr(&n, 5).await.unwrap(), 5);
    assert!(pool.expire(&n, Duration::from_secs(30)).await.unwrap());
    assert_eq!(histogram(&registry, "cache_ttl_seconds", &[]), (2, 90.0));
    let (a, b): (i64, i64) = pool
        .pipeline(redis::pipe().cmd("INCR").arg(&n).cmd("INCR").arg(&n))
        .await
        .unwrap();
    assert_eq!((a, b), (6, 7));
    let ttl: i64 = pool.cmd(redis::cmd("TTL").arg(&n)).await.unwrap();
    assert!(ttl > 0);
    assert_eq!(pool.del(&[&key, &n]).await.unwrap(), 2);

    for (command, count) in [
        ("GET", 2),
        ("SET", 1),
        ("MGET", 1),
        ("INCRBY", 1),
        ("EXPIRE", 1),
        ("PIPELINE", 1),
        ("TTL", 1),
        ("DEL", 1),
    ] {
        assert_eq!(
            histogram(
                &registry,
                "cache_operation_duration_seconds",
                &[("command", command)]
            )
            .0,
            count,
            "{command}"
        );
        assert_eq!(
            histogram(
                &registry,
                "db_client_operation_duration_seconds",
                &[
                    ("pool_name", "cache"),
                    ("db_system_name", "redis"),
                    ("db_operation_name", command)
                ]
            )
            .0,
            count,
            "{command}"
        );
    }

    // A server error: recorded with its error type, returned intact.
    let err = pool
        .cmd::<i64>(redis::cmd("INCR").arg(&other).arg("extra"))
        .await
        .unwrap_err();
    assert!(matches!(err, PoolError::Redis(_)), "{err}");
    assert_eq!(
        histogram(
            &registry,
            "db_client_operation_duration_seconds",
            &[("db_system_name", "redis"), ("error_type", "ERR")]
        )
        .0,
        1
    );
}

#[tokio::test]
async fn redis_server_figures_are_read_at_most_once_per_interval() {
    // A database of its own, so the key count moves only with this test.
    let url = format!("{}/11", redis_url().trim_end_matches('/'));
    let registry = Registry::new();
    let pool = RedisPool::builder(&url)
        .server_stats_interval(Duration::from_millis(400))
        .build(&registry)
        .await
        .unwrap_or_else(|e| panic!("Redis must run at REDIS_URL: {e}"));
    let prefix = unique("covet_pools:stats");
    let keys_at_build = gauge(&registry, "cache_keys", &[]);
    assert!(gauge(&registry, "cache_memory_used_bytes", &[]) > 0.0);
    assert!(family(&registry, "cache_evictions_total").is_some());

    let keys: Vec<String> = (0..5).map(|i| format!("{prefix}:{i}")).collect();
    for key in &keys {
        pool.set_ex(key, 1, Duration::from_secs(30)).await.unwrap();
    }
    // Within the interval: the figures read at build time, not re-read.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(gauge(&registry, "cache_keys", &[]), keys_at_build);
    assert_eq!(gauge(&registry, "cache_keys", &[]), keys_at_build);

    // Past the interval: a scrape starts one read; the next scrape sees it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = registry.gather();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(gauge(&registry, "cache_keys", &[]) >= keys_at_build + 5.0);
    pool.del(&keys).await.unwrap();
}

#[tokio::test]
async fn promtool_accepts_every_family() {
    let registry = Registry::new();
    let pool = PgPool::builder(database_url())
        .pool_name("primary")
        .max_size(1)
        .connection_timeout(Duration::from_millis(100))
        .slow_query_threshold(Duration::from_millis(1))
        .build(&registry)
        .await
        .expect("PostgreSQL must run at DATABASE_URL");
    let cache = redis(&registry, &redis_url()).await;
    let key = unique("covet_pools:promtool");

    // Every family gets samples: queries, rows, an error, a deadlock-free transaction, a slow
    // query, a timeout; cache hits, misses, TTLs; server figures.
    pool.query("SELECT pg_sleep(0.01)", &[]).await.unwrap();
    let _ = pool
        .execute("SELECT * FROM covet_pools_no_such_table", &[])
        .await
        .unwrap_err();
    {
        let mut conn = pool.get().await.unwrap();
        assert!(pool.get().await.unwrap_err().is_timeout());
        let mut tx = conn.transaction().await.unwrap();
        tx.execute("CREATE TEMP TABLE t (a int)", &[])
            .await
            .unwrap();
        tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
        tx.commit().await.unwrap();
    }
    cache.get::<_, String>(&key).await.unwrap();
    cache
        .set_ex(&key, "v", Duration::from_secs(5))
        .await
        .unwrap();
    cache.get::<_, String>(&key).await.unwrap();
    cache.del(&key).await.unwrap();

    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    for name in [
        "db_queries_total",
        "db_query_duration_seconds",
        "db_connections_active",
        "db_connections_idle",
        "db_connection_pool_size",
        "db_client_connection_pending_requests",
        "db_transaction_duration_seconds",
        "db_transactions_total",
        "db_deadlocks_total",
        "db_rows_affected",
        "db_statement_cache_hits_total",
        "db_statement_cache_misses_total",
        "db_connection_errors_total",
        "db_query_errors_total",
        "db_slow_queries_total",
        "db_client_connections",
        "db_client_connection_max",
        "db_client_connection_timeouts_total",
        "db_client_connection_create_time_seconds",
        "db_client_connection_wait_time_seconds",
        "db_client_connection_use_time_seconds",
        "db_client_connections_created_total",
        "db_client_connections_closed_total",
        "db_client_operation_duration_seconds",
        "cache_hits_total",
        "cache_misses_total",
        "cache_evictions_total",
        "cache_memory_used_bytes",
        "cache_keys",
        "cache_operation_duration_seconds",
        "cache_connection_errors_total",
        "cache_ttl_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian package `prometheus`)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}\n{text}"
    );
}

#[cfg(feature = "health")]
#[tokio::test]
async fn health_checks_use_the_pools() {
    use covet_health::{HealthCheck, Status};
    let registry = Registry::new();
    let pool = pg(&registry, "health").await;
    let cache = redis(&registry, &redis_url()).await;
    let pg_health = pool.health_check().check().await;
    assert_eq!(pg_health.status(), Status::Up, "{:?}", pg_health.details());
    assert_eq!(pg_health.details()["target"], "127.0.0.1:5432");
    let redis_health = cache.health_check().check().await;
    assert_eq!(
        redis_health.status(),
        Status::Up,
        "{:?}",
        redis_health.details()
    );
    // The checks borrowed pooled connections: their use was recorded.
    assert!(
        histogram(
            &registry,
            "db_client_connection_use_time_seconds",
            &[("pool_name", "health")]
        )
        .0 >= 1
    );
}
