//! The PostgreSQL and Redis checks against the real servers on 127.0.0.1.
//!
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and `REDIS_URL`
//! (default `redis://127.0.0.1:6379`) name them. These tests fail, never skip, when the servers
//! are unreachable.

use std::{sync::Arc, time::Duration};

use covet_health::{
    HealthRegistry, HealthService, ShowDetails, Status,
    checks::{PostgresCheck, RedisCheck},
};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tower::ServiceExt;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `host:port` of a URL, for the proxies.
fn host_port(url: &str, default_port: u16) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    }
}

/// `url` with its host and port replaced by `127.0.0.1:port`.
fn retarget(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let userinfo = authority
        .rsplit_once('@')
        .map_or(String::new(), |(u, _)| format!("{u}@"));
    format!("{scheme}://{userinfo}127.0.0.1:{port}{path}")
}

async fn require(name: &str, url: &str, default_port: u16) {
    let addr = host_port(url, default_port);
    if let Err(error) = TcpStream::connect(&addr).await {
        panic!(
            "{name} is not reachable at {addr} ({error}); start it or set the URL variable \
             (DATABASE_URL / REDIS_URL). These tests never skip."
        );
    }
}

/// A port nothing listens on: bound, then released.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

async fn get(service: &HealthService, path: &str) -> (StatusCode, Value, String) {
    let response = service
        .clone()
        .oneshot(Request::get(path).body(()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    (status, serde_json::from_str(&text).unwrap(), text)
}

#[tokio::test]
async fn readiness_is_up_against_the_real_servers() {
    require("PostgreSQL", &database_url(), 5432).await;
    require("Redis", &redis_url(), 6379).await;
    let registry = HealthRegistry::builder()
        .readiness("db", PostgresCheck::from_url(&database_url()).unwrap())
        .readiness("cache", RedisCheck::from_url(&redis_url()).unwrap())
        .build()
        .unwrap();
    let service = registry.service().show_details(ShowDetails::Always);

    let (status, body, text) = get(&service, "/health/ready").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(body["status"], "UP");
    assert_eq!(body["components"]["db"]["status"], "UP");
    assert_eq!(
        body["components"]["db"]["details"]["database"],
        "PostgreSQL"
    );
    assert_eq!(
        body["components"]["db"]["details"]["target"],
        host_port(&database_url(), 5432)
    );
    assert_eq!(body["components"]["cache"]["status"], "UP");
    assert_eq!(
        body["components"]["cache"]["details"]["target"],
        host_port(&redis_url(), 6379)
    );
}

#[tokio::test]
async fn a_closed_port_fails_readiness_naming_the_component_while_liveness_passes() {
    let port = closed_port().await;
    let registry = HealthRegistry::builder()
        .readiness(
            "db",
            PostgresCheck::from_url(&format!("postgres://app:s3cret-pw@127.0.0.1:{port}/app"))
                .unwrap(),
        )
        .readiness(
            "cache",
            RedisCheck::from_url(&format!("redis://:s3cret-pw@127.0.0.1:{port}")).unwrap(),
        )
        .liveness("loop", || async { Status::Up })
        .build()
        .unwrap();
    let service = registry.service().show_details(ShowDetails::Always);

    let (status, body, text) = get(&service, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(body["status"], "DOWN");
    assert_eq!(body["components"]["db"]["status"], "DOWN");
    assert_eq!(body["components"]["cache"]["status"], "DOWN");
    let target = format!("127.0.0.1:{port}");
    assert_eq!(
        body["components"]["db"]["details"]["target"],
        target.as_str()
    );
    assert!(body["components"]["db"]["details"]["error"].is_string());
    assert!(!text.contains("s3cret-pw"), "a password leaked: {text}");
    assert!(!text.contains("app:"), "a user leaked: {text}");

    let (status, body, _) = get(&service, "/health/live").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "UP");
}

/// A TCP proxy on a fixed port that can be stopped (closing every connection) and restarted.
struct Proxy {
    port: u16,
    upstream: String,
    tasks: Option<JoinSet<()>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let mut proxy = Self {
            port: closed_port().await,
            upstream,
            tasks: None,
        };
        proxy.resume().await;
        proxy
    }

    async fn resume(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let upstream = self.upstream.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.tasks = Some(tasks);
    }

    async fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            // Aborting the accept loop drops the listener and every proxied connection.
            tasks.shutdown().await;
        }
    }
}

#[tokio::test]
async fn readiness_recovers_when_the_targets_come_back() {
    require("PostgreSQL", &database_url(), 5432).await;
    require("Redis", &redis_url(), 6379).await;
    let mut pg = Proxy::start(host_port(&database_url(), 5432)).await;
    let mut redis = Proxy::start(host_port(&redis_url(), 6379)).await;
    let ttl = Duration::from_millis(100);
    let registry = HealthRegistry::builder()
        .readiness(
            "db",
            PostgresCheck::from_url(&retarget(&database_url(), pg.port)).unwrap(),
        )
        .readiness(
            "cache",
            RedisCheck::from_url(&retarget(&redis_url(), redis.port)).unwrap(),
        )
        .liveness("loop", || async { Status::Up })
        .cache_ttl(ttl)
        .build()
        .unwrap();
    let service = registry.service();

    let (status, _, text) = get(&service, "/health/ready").await;
    assert_eq!(status, StatusCode::OK, "through the proxies: {text}");

    pg.stop().await;
    tokio::time::sleep(ttl * 2).await;
    let (status, body, text) = get(&service, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(body["components"]["db"]["status"], "DOWN");
    assert_eq!(body["components"]["cache"]["status"], "UP");
    assert_eq!(get(&service, "/health/live").await.0, StatusCode::OK);

    redis.stop().await;
    tokio::time::sleep(ttl * 2).await;
    let (_, body, _) = get(&service, "/health/ready").await;
    assert_eq!(body["components"]["cache"]["status"], "DOWN");

    pg.resume().await;
    redis.resume().await;
    tokio::time::sleep(ttl * 2).await;
    let (status, body, text) = get(&service, "/health/ready").await;
    assert_eq!(status, StatusCode::OK, "after recovery: {text}");
    assert_eq!(body["components"]["db"]["status"], "UP");
    assert_eq!(body["components"]["cache"]["status"], "UP");
}

#[tokio::test]
async fn connection_factories_work_with_shared_connections() {
    require("PostgreSQL", &database_url(), 5432).await;
    require("Redis", &redis_url(), 6379).await;

    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to PostgreSQL");
    tokio::spawn(connection);
    let client = Arc::new(client);
    let pg_client = Arc::clone(&client);
    let pg = PostgresCheck::new(move || {
        let client = Arc::clone(&pg_client);
        async move { Ok::<_, std::convert::Infallible>(client) }
    });
    let bad_query = PostgresCheck::new(move || {
        let client = Arc::clone(&client);
        async move { Ok::<_, std::convert::Infallible>(client) }
    })
    .query("SELECT no_such_column");

    let connection = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connecting to Redis");
    let cache = RedisCheck::new(move || {
        let connection = connection.clone();
        async move { Ok::<_, std::convert::Infallible>(Box::new(connection)) }
    })
    .target("redis-primary");

    let registry = HealthRegistry::builder()
        .readiness("db", pg)
        .readiness("cache", cache)
        .readiness("db-bad-query", bad_query)
        .build()
        .unwrap();
    let service = registry.service().show_details(ShowDetails::Always);
    let (status, body, text) = get(&service, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(body["components"]["db"]["status"], "UP", "{text}");
    assert_eq!(body["components"]["cache"]["status"], "UP", "{text}");
    assert_eq!(
        body["components"]["cache"]["details"]["target"],
        "redis-primary"
    );
    assert_eq!(body["components"]["db-bad-query"]["status"], "DOWN");
    assert!(
        body["components"]["db-bad-query"]["details"]["error"]
            .as_str()
            .unwrap()
            .contains("no_such_column"),
        "{text}"
    );
}
