//! TLS to PostgreSQL and Redis, against real servers that speak only TLS: the pools, the URL
//! health checks and the Redis rate-limit store, with libpq's `sslmode` and `rediss://`.
//!
//! `scripts/tls-services.sh` (run by `scripts/test`) makes a CA, a certificate for `localhost`
//! only, a TLS-only PostgreSQL cluster and a TLS-only Redis, and prints the variables read here:
//! `COVET_TLS_CA_FILE` (default `/tmp/covet-tls/ca.crt`), `COVET_TLS_DATABASE_URL` (default
//! `postgres://postgres@localhost:55432/postgres`) and `COVET_TLS_REDIS_URL` (default
//! `rediss://:covet-tls-test@localhost:6390`). When they are not running these tests fail, naming the script.

use std::{
    convert::Infallible,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use covet::{
    health::{
        HealthCheck, Status,
        checks::{CheckConfigError, PostgresCheck, RedisCheck},
    },
    layers::rate_limit::{GlobalKey, Policy, Quota, RateLimitLayer, RedisStore, StoreError},
    pools::{PgPool, PoolError, RedisPool},
};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use prometheus::Registry;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn ca_file() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("COVET_TLS_CA_FILE").unwrap_or_else(|_| "/tmp/covet-tls/ca.crt".into()),
    );
    assert!(
        path.is_file(),
        "the test CA {} is missing: run scripts/tls-services.sh (scripts/test does)",
        path.display()
    );
    path
}

/// The TLS-only PostgreSQL, by the host name its certificate names (`localhost`).
fn database_url() -> String {
    std::env::var("COVET_TLS_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@localhost:55432/postgres".into())
}

/// The same server by address, which its certificate does not name.
fn database_url_by_ip() -> String {
    database_url().replacen("localhost", "127.0.0.1", 1)
}

fn redis_url() -> String {
    std::env::var("COVET_TLS_REDIS_URL")
        .unwrap_or_else(|_| "rediss://:covet-tls-test@localhost:6390".into())
}

fn with_param(url: &str, param: &str) -> String {
    let join = if url.contains('?') { '&' } else { '?' };
    format!("{url}{join}{param}")
}

/// A pool that connects at build, so a refused certificate surfaces from `build`.
async fn pg(url: &str, ca: Option<PathBuf>) -> Result<PgPool, PoolError> {
    let mut builder = PgPool::builder(url)
        .pool_name("tls")
        .connection_timeout(Duration::from_secs(5));
    if let Some(ca) = ca {
        builder = builder.ca_file(ca);
    }
    builder.build(&Registry::new()).await
}

/// Whether the pool's connection is encrypted, as the server sees it.
async fn encrypted(pool: &PgPool) -> bool {
    pool.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .expect("pg_stat_ssl answers")
    .get(0)
}

/// Fails with the script's name when the TLS PostgreSQL is not up at all.
async fn assert_tls_postgres_up() {
    let url = with_param(&database_url(), "sslmode=require");
    if let Err(e) = pg(&url, None).await {
        panic!(
            "the TLS PostgreSQL at {} does not answer ({e}): run scripts/tls-services.sh",
            database_url()
        );
    }
}

#[tokio::test]
async fn verify_full_with_the_ca_connects_encrypted() {
    let url = with_param(&database_url(), "sslmode=verify-full");
    let pool = pg(&url, Some(ca_file()))
        .await
        .unwrap_or_else(|e| panic!("verify-full with the test CA must connect: {e}"));
    assert!(encrypted(&pool).await);
    let row = pool.query_one("SELECT 40 + 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
}

#[tokio::test]
async fn sslrootcert_in_the_url_names_the_ca() {
    let url = with_param(
        &database_url(),
        &format!("sslmode=verify-full&sslrootcert={}", ca_file().display()),
    );
    let pool = pg(&url, None).await.expect("the URL's CA is used");
    assert!(encrypted(&pool).await);
}

#[tokio::test]
async fn verify_full_without_the_ca_refuses_the_server() {
    assert_tls_postgres_up().await;
    // The system's roots do not hold the test CA.
    let url = with_param(&database_url(), "sslmode=verify-full");
    let err = pg(&url, None)
        .await
        .expect_err("an unknown issuer is refused");
    assert!(matches!(err, PoolError::Connect { .. }), "{err}");
    let text = err.to_string();
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    assert_tls_postgres_up().await;
    let full = with_param(&database_url_by_ip(), "sslmode=verify-full");
    let err = pg(&full, Some(ca_file()))
        .await
        .expect_err("127.0.0.1 is not the certificate's name");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    let ca = with_param(&database_url_by_ip(), "sslmode=verify-ca");
    let pool = pg(&ca, Some(ca_file()))
        .await
        .unwrap_or_else(|e| panic!("verify-ca checks the chain only: {e}"));
    assert!(encrypted(&pool).await);
}

#[tokio::test]
async fn require_and_prefer_encrypt_without_a_ca() {
    for mode in ["require", "prefer"] {
        let url = with_param(&database_url_by_ip(), &format!("sslmode={mode}"));
        let pool = pg(&url, None)
            .await
            .unwrap_or_else(|e| panic!("sslmode={mode} must connect to a TLS-only server: {e}"));
        assert!(encrypted(&pool).await, "sslmode={mode}");
    }
}

#[tokio::test]
async fn require_with_a_ca_checks_the_chain() {
    assert_tls_postgres_up().await;
    // libpq: `require` plus a root certificate verifies like `verify-ca`. A CA that did not sign
    // the server's certificate (here: the server's own leaf, not a CA) must be refused.
    let url = with_param(&database_url(), "sslmode=require");
    let wrong_ca = ca_file().with_file_name("server.crt");
    let err = pg(&url, Some(wrong_ca))
        .await
        .expect_err("the wrong CA is refused");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    pg(&url, Some(ca_file()))
        .await
        .expect("the right CA is accepted");
}

#[tokio::test]
async fn disable_cannot_reach_a_tls_only_server() {
    assert_tls_postgres_up().await;
    let url = with_param(&database_url(), "sslmode=disable");
    let err = pg(&url, None)
        .await
        .expect_err("pg_hba.conf admits only hostssl");
    assert!(matches!(err, PoolError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn an_unreadable_ca_file_is_a_setting_error() {
    let url = with_param(&database_url(), "sslmode=verify-full");
    let err = pg(&url, Some("/nonexistent/ca.pem".into()))
        .await
        .expect_err("a missing CA file fails the build");
    assert!(
        matches!(
            err,
            PoolError::Setting {
                setting: "ca_file",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
async fn rediss_with_the_ca_round_trips() {
    let pool = RedisPool::builder(redis_url())
        .pool_name("tls")
        .ca_file(ca_file())
        .build(&Registry::new())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the TLS Redis at {} must answer with the test CA ({e}); run scripts/tls-services.sh",
                redis_url()
            )
        });
    let key = format!("covet:test:tls:{}", std::process::id());
    pool.set_ex(&key, "over tls", Duration::from_secs(30))
        .await
        .unwrap();
    let value: Option<String> = pool.get(&key).await.unwrap();
    assert_eq!(value.as_deref(), Some("over tls"));
}

#[tokio::test]
async fn rediss_without_the_ca_refuses_the_server() {
    let err = RedisPool::builder(redis_url())
        .pool_name("tls")
        .connection_timeout(Duration::from_secs(3))
        .build(&Registry::new())
        .await
        .expect_err("the system's roots do not hold the test CA");
    assert!(matches!(err, PoolError::Connect { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn a_ca_file_with_a_plain_redis_url_is_refused() {
    let err = RedisPool::builder("redis://127.0.0.1:6379")
        .ca_file(ca_file())
        .build(&Registry::new())
        .await
        .expect_err("a CA file means TLS");
    assert!(
        matches!(
            err,
            PoolError::Setting {
                setting: "ca_file",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn the_url_health_checks_speak_tls() {
    let url = with_param(&database_url(), "sslmode=verify-full");
    let up = PostgresCheck::from_url_with_ca_file(&url, &ca_file()).unwrap();
    let health = up.check().await;
    assert_eq!(health.status(), Status::Up, "{:?}", health.details());

    // Without the CA the same URL is refused by the certificate check, and says so.
    let down = PostgresCheck::from_url(&url).unwrap().check().await;
    assert_eq!(down.status(), Status::Down);
    let error = down.details()["error"].as_str().unwrap().to_lowercase();
    assert!(error.contains("certificate"), "{error}");

    let up = RedisCheck::from_url_with_ca_file(&redis_url(), &ca_file()).unwrap();
    let health = up.check().await;
    assert_eq!(health.status(), Status::Up, "{:?}", health.details());
    let down = RedisCheck::from_url(&redis_url()).unwrap().check().await;
    assert_eq!(down.status(), Status::Down);

    let err =
        PostgresCheck::from_url_with_ca_file(&url, "/nonexistent/ca.pem".as_ref()).unwrap_err();
    assert!(
        matches!(
            err,
            CheckConfigError::Tls {
                setting: "ca_file",
                ..
            }
        ),
        "{err}"
    );
}

async fn ok(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// The statuses of `n` requests through a fail-closed limiter of `per_hour` requests kept in
/// `store`: a decision that did not come from Redis would be a 503, not a 429.
async fn fail_closed_statuses(store: RedisStore, per_hour: u32, n: usize) -> Vec<StatusCode> {
    let policy = Policy::new("tls", Quota::per_hour(per_hour)).fail_closed();
    let layer = RateLimitLayer::builder(policy)
        .key(GlobalKey)
        .store(store)
        .build(&Registry::new())
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service(service_fn(ok));
    let mut statuses = Vec::new();
    for _ in 0..n {
        let request = Request::get("/").body(Full::default()).unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        statuses.push(response.status());
    }
    statuses
}

#[tokio::test]
async fn the_rate_limit_store_decides_over_tls() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = |name: &str| format!("covet:test:{name}:{}:{nanos}:", std::process::id());
    // A timeout long enough for the first decision to open the connection itself.
    let store = RedisStore::builder(redis_url())
        .prefix(prefix("tls"))
        .ca_file(ca_file())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert_eq!(
        fail_closed_statuses(store, 2, 3).await,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );

    // With the connection made (TLS handshake and all) before the first request, the default
    // 50 ms is the decision's alone: the first one comes from Redis too.
    let store = RedisStore::builder(redis_url())
        .prefix(prefix("tls-warm"))
        .ca_file(ca_file())
        .build()
        .unwrap();
    store.connect(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        fail_closed_statuses(store, 1, 2).await,
        [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]
    );

    let err = RedisStore::builder("redis://127.0.0.1:6379")
        .ca_file(ca_file())
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Tls {
                setting: "ca_file",
                ..
            }
        ),
        "{err}"
    );
}
