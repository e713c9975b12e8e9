//! The covet reference server as a library, so tests and benchmarks run exactly what the binary
//! runs.
//!
//! [`Server::build`] wires every covet piece together from a [`Config`]:
//!
//! - the API router, with the covet layers in **one** `ServiceBuilder`, outermost first:
//!   security headers → drain → request id → trace → metrics → rate limit → routes. The
//!   headers layer is outermost so the drain layer's 503 and the rate limiter's 429 carry the
//!   security headers too;
//! - the admin router: `/metrics` and `/health*`;
//! - the health registry, whose readiness the shutdown coordinator flips when draining starts;
//! - the shutdown coordinator, followed by both listeners.

pub mod config;
pub mod notes;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use covet_health::{CheckRegistration, HealthRegistry, checks::DiskSpaceCheck};
use covet_layers::{
    catalog::{app::AppMetrics, system::SystemMetrics},
    metrics::{MetricsLayer, MetricsService},
    rate_limit::{ClientIp, MemoryStore, Policy, Quota, RateLimitLayer, RedisStore, StoreError},
    request_id::{RequestId, RequestIdLayer},
    security_headers::SecurityHeadersLayer,
    serve::{ServeOptions, serve_until, serve_with},
    shutdown::{DrainLayer, Shutdown, ShutdownReport},
    trace::TraceLayer,
};
use prometheus::Registry;
use serde::Serialize;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

pub use config::Config;
use covet_pools::{PgPool, RedisPool};
use notes::{NewNote, Notes, NotesError};

/// The longest `GET /api/slow` wait accepted, in milliseconds.
pub const MAX_SLOW_MS: u64 = 60_000;

/// How often the health checks run in the background, so `health_check_status` and
/// `health_check_duration_seconds` exist (and stay fresh) without any probe asking.
pub const HEALTH_REFRESH: Duration = Duration::from_secs(10);

/// The largest `POST /api/notes` body read: a note at its size limits fits several times over.
pub const MAX_NOTE_REQUEST_BYTES: usize = 64 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listener could not bind; names the flag.
    #[error("cannot listen on {addr} ({flag}): {source}")]
    Bind {
        /// The flag naming the address.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A setting is invalid; the message names it.
    #[error("{0}")]
    Config(String),
    /// The server stopped with an I/O error.
    #[error("serving failed: {0}")]
    Serve(#[source] io::Error),
}

/// The shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    notes: Notes,
    app_metrics: AppMetrics,
    api_token: Option<Arc<str>>,
}

/// A built server: listeners bound, every component wired, not yet serving.
pub struct Server {
    api: TcpListener,
    admin: TcpListener,
    api_router: Router,
    admin_router: Router,
    shutdown: Shutdown,
    health: HealthRegistry,
    registry: Registry,
    notes: Notes,
    api_options: ServeOptions,
    admin_options: ServeOptions,
    admin_linger: Duration,
}

impl Server {
    /// Binds both listeners and wires every component.
    pub async fn build(config: &Config) -> Result<Self, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        let registry = Registry::new();
        let metrics_err =
            |e: covet_layers::metrics::MetricsError| ServerError::Config(e.to_string());

        let shutdown = Shutdown::builder()
            .pre_stop_delay(config.pre_stop_delay)
            .drain_timeout(config.drain_timeout)
            .metrics(&registry)
            .build()
            .map_err(|e| ServerError::Config(e.to_string()))?;

        // Name the flag behind the pool setting at fault: the URL, or the CA file.
        let pool_err = |url_flag: &'static str, ca_flag: &'static str| {
            move |e: covet_pools::PoolError| {
                let flag = match &e {
                    covet_pools::PoolError::Setting { setting, .. } if *setting == "ca_file" => {
                        ca_flag
                    }
                    _ => url_flag,
                };
                ServerError::Config(format!("{flag}: {e}"))
            }
        };
        // Built without connecting: the server starts (and readiness reports the outage) while a
        // database is still down, and recovers when it appears.
        let db = match config.database_url() {
            Some(url) => {
                let mut builder = PgPool::builder(url)
                    .pool_name("notes")
                    .connection_timeout(Duration::from_secs(2))
                    .connect_at_build(false);
                if let Some(ca_file) = config.database_ca_file() {
                    builder = builder.ca_file(ca_file);
                }
                Some(builder.build(&registry).await.map_err(pool_err(
                    "--database-url (DATABASE_URL)",
                    "--database-ca-file (COVET_DATABASE_CA_FILE)",
                ))?)
            }
            None => None,
        };
        let cache = match config.redis_url() {
            Some(url) => {
                let mut builder = RedisPool::builder(url)
                    .pool_name("cache")
                    .connection_timeout(Duration::from_secs(1))
                    .connect_at_build(false);
                if let Some(ca_file) = config.redis_ca_file() {
                    builder = builder.ca_file(ca_file);
                }
                Some(builder.build(&registry).await.map_err(pool_err(
                    "--redis-url (REDIS_URL)",
                    "--redis-ca-file (COVET_REDIS_CA_FILE)",
                ))?)
            }
            None => None,
        };

        let mut notes = match &db {
            Some(db) => Notes::postgres(db.clone()),
            None => Notes::memory(),
        };
        if let Some(cache) = &cache {
            notes = notes.with_cache(cache.clone());
        }
        let mut health = HealthRegistry::builder().metrics(&registry).register(
            CheckRegistration::new("disk", DiskSpaceCheck::new("."))
                .readiness()
                .non_critical(),
        );
        if let Some(db) = &db {
            health = health.readiness("db", db.health_check());
            // The database answering is not enough: notes need their tables.
            let schema = notes.clone();
            health = health.readiness("notes", move || {
                let ready = schema.is_ready();
                async move {
                    if ready {
                        covet_health::Health::up()
                    } else {
                        covet_health::Health::down()
                            .with_detail("error", "the notes schema is not created yet")
                    }
                }
            });
        }
        if let Some(cache) = &cache {
            // Redis is a cache (and, with --rate-limit-store redis, a fail-open limiter): losing
            // it slows requests but breaks none, so it is reported, not a reason to take every
            // replica out of the load balancer at once.
            health = health.register(
                CheckRegistration::new("redis", cache.health_check())
                    .readiness()
                    .non_critical(),
            );
        }
        let health = health
            .build()
            .map_err(|e| ServerError::Config(e.to_string()))?;
        let readiness = health.readiness();
        shutdown.on_draining(move || readiness.set_out_of_service());

        SystemMetrics::register(&registry).map_err(metrics_err)?;
        let app_metrics = AppMetrics::builder()
            .version(env!("CARGO_PKG_VERSION"))
            .commit(option_env!("COVET_GIT_COMMIT").unwrap_or("unknown"))
            .build(&registry)
            .map_err(metrics_err)?;
        let metrics_layer = MetricsLayer::new(&registry).map_err(metrics_err)?;
        let (rate_limit, rate_limit_store) = rate_limit_layer(config, &registry)?;
        if let Some(store) = rate_limit_store {
            // Connected before the first request, so that one is not spent on the connection
            // (a TLS handshake) within the store's 50 ms and decided by the local fallback.
            // Bounded like the cache's connection: a Redis that is down delays nothing further.
            match store.connect(Duration::from_secs(1)).await {
                Ok(()) => tracing::info!("the rate-limit store is connected to Redis"),
                Err(err) => tracing::warn!(
                    error = %err,
                    "the rate-limit store cannot reach Redis yet; decisions fall open until it answers"
                ),
            }
        }
        let metrics_service = MetricsService::new(&registry).map_err(metrics_err)?;

        let state = AppState {
            notes: notes.clone(),
            app_metrics,
            api_token: config.api_token.as_deref().map(Arc::from),
        };
        let trusted_proxies = cidrs(
            "--trusted-proxies (COVET_TRUSTED_PROXIES)",
            &config.trusted_proxies,
        )?;
        let trace_sources = cidrs(
            "--trusted-trace-sources (COVET_TRUSTED_TRACE_SOURCES)",
            &config.trusted_trace_sources,
        )?;
        // The API port is an untrusted edge: a client's trace context becomes a link, unless
        // it comes from a configured trace source; client.address is the resolved client.
        let trace = TraceLayer::new()
            .untrusted_edge(true)
            .trusted_context_sources(trace_sources)
            .trusted_proxies(trusted_proxies);
        let api_router = api_router(state).layer(
            ServiceBuilder::new()
                .layer(SecurityHeadersLayer::api())
                .layer(DrainLayer::new(&shutdown))
                .layer(RequestIdLayer::new())
                .layer(trace)
                .layer(metrics_layer)
                .layer(rate_limit),
        );
        let health_service = health.service();
        let admin_router = Router::new()
            .route_service("/metrics", metrics_service)
            .route_service("/health", health_service.clone())
            .route_service("/health/{*rest}", health_service);

        let api = bind("--listen", config.listen)?;
        let admin = bind("--admin-listen", config.admin_listen)?;
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let options = |max_connections: usize, max_header_bytes: usize| {
            ServeOptions::builder()
                .header_read_timeout(config.header_read_timeout)
                .idle_timeout(config.idle_timeout)
                .body_read_timeout(config.body_read_timeout)
                .max_connections(max_connections)
                .max_header_bytes(max_header_bytes)
                .build()
                .map_err(|e| ServerError::Config(e.to_string()))
        };
        let api_options = options(
            config
                .max_connections
                .resolve(nofile, config.admin_max_connections),
            config.max_header_bytes,
        )?;
        let admin_options = options(
            config.admin_max_connections,
            covet_layers::serve::DEFAULT_MAX_HEADER_BYTES,
        )?;
        Ok(Self {
            api,
            admin,
            api_router,
            admin_router,
            shutdown,
            health,
            registry,
            notes,
            api_options,
            admin_options,
            admin_linger: config.admin_linger,
        })
    }

    /// The address the API listens on.
    pub fn api_addr(&self) -> io::Result<SocketAddr> {
        self.api.local_addr()
    }

    /// The address the admin endpoints listen on.
    pub fn admin_addr(&self) -> io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// The shutdown coordinator (to trigger it programmatically or add hooks).
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// The metrics registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The API router with every covet layer, as the API port serves it.
    pub fn api_router(&self) -> Router {
        self.api_router.clone()
    }

    /// The API port's connection cap.
    pub fn max_connections(&self) -> usize {
        self.api_options.max_connections()
    }

    /// Serves both ports until the shutdown coordinator stops them, then runs the hooks.
    ///
    /// The admin port keeps answering (`/health/ready` with 503, `/metrics` for a last scrape)
    /// until the API port has drained and `--admin-linger` has passed, then stops too.
    pub async fn run(self) -> Result<ShutdownReport, ServerError> {
        // Start-up is complete once the server listens: it does not wait for the database, so
        // a pod started during an outage is not restarted by its startup probe. Until the
        // database answers, readiness reports the outage and the schema is retried every second.
        self.health.startup_complete();
        let _refresh = self.health.spawn_refresh(HEALTH_REFRESH);
        let notes = self.notes.clone();
        tokio::spawn(async move {
            let mut logged = false;
            loop {
                match notes.create_schema().await {
                    Ok(()) => {
                        tracing::info!("the notes schema is ready");
                        break;
                    }
                    Err(err) if !logged => {
                        tracing::warn!(error = %err, "cannot create the notes schema yet; retrying");
                        logged = true;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        tracing::info!(
            api = %self.api.local_addr().map_err(ServerError::Serve)?,
            admin = %self.admin.local_addr().map_err(ServerError::Serve)?,
            max_connections = self.api_options.max_connections(),
            "covet-server listening"
        );
        let (api_drained, drained) = tokio::sync::oneshot::channel::<()>();
        let api = async {
            let report =
                serve_with(self.api, self.api_router, &self.shutdown, self.api_options).await;
            let _ = api_drained.send(());
            report
        };
        // The admin port outlives the API's drain by `--admin-linger`, so the last scrape holds
        // the final shutdown metrics.
        let linger = self.admin_linger;
        let admin = serve_until(
            self.admin,
            self.admin_router,
            &self.shutdown,
            self.admin_options,
            async move {
                let _ = drained.await;
                if !linger.is_zero() {
                    tracing::info!(
                        linger_ms = linger.as_millis() as u64,
                        "API drained; the admin port answers a while longer"
                    );
                    tokio::time::sleep(linger).await;
                }
            },
        );
        tokio::try_join!(api, admin).map_err(ServerError::Serve)?;
        Ok(self.shutdown.finish().await)
    }
}

/// The rate limiter from `--rate-limit`, `--rate-limit-burst`, `--rate-limit-store`,
/// `--rate-limit-max-keys` and `--trusted-proxies`: one bucket per client IP (the rightmost
/// untrusted forwarding entry behind trusted proxies, else the peer address).
///
/// Also returns the Redis store, when there is one, for [`Server::build`] to connect.
fn rate_limit_layer(
    config: &Config,
    registry: &Registry,
) -> Result<(RateLimitLayer<ClientIp>, Option<RedisStore>), ServerError> {
    let mut quota: Quota = config
        .rate_limit
        .parse()
        .map_err(|e| ServerError::Config(format!("--rate-limit (COVET_RATE_LIMIT): {e}")))?;
    if let Some(burst) = config.rate_limit_burst {
        if burst == 0 {
            return Err(ServerError::Config(
                "--rate-limit-burst (COVET_RATE_LIMIT_BURST) must be at least 1".into(),
            ));
        }
        quota = quota.burst(burst);
    }
    let trusted = cidrs(
        "--trusted-proxies (COVET_TRUSTED_PROXIES)",
        &config.trusted_proxies,
    )?;
    let builder =
        RateLimitLayer::builder(Policy::new("default", quota)).key(ClientIp::new(trusted));
    let mut redis_store = None;
    let builder = match (config.rate_limit_store, config.redis_url()) {
        (config::RateLimitStore::Redis, Some(url)) => {
            let mut store = RedisStore::builder(url).prefix("covet:ratelimit:");
            if let Some(ca_file) = config.redis_ca_file() {
                store = store.ca_file(ca_file);
            }
            let store = store.build().map_err(|e| {
                let flag = match &e {
                    StoreError::Tls { setting, .. } if *setting == "ca_file" => {
                        "--redis-ca-file (COVET_REDIS_CA_FILE)"
                    }
                    _ => "--redis-url (REDIS_URL)",
                };
                ServerError::Config(format!("{flag}: {e}"))
            })?;
            redis_store = Some(store.clone());
            builder.store(store)
        }
        _ => builder.store(
            MemoryStore::builder()
                .max_keys(config.rate_limit_max_keys)
                .build(),
        ),
    };
    let layer = builder
        .build(registry)
        .map_err(|e| ServerError::Config(e.to_string()))?;
    Ok((layer, redis_store))
}

/// Parses a list of CIDRs (or single addresses) from the flag `flag`.
fn cidrs(flag: &str, list: &[String]) -> Result<Vec<ipnet::IpNet>, ServerError> {
    list.iter()
        .filter(|cidr| !cidr.trim().is_empty())
        .map(|cidr| {
            let cidr = cidr.trim();
            cidr.parse::<ipnet::IpNet>()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ServerError::Config(format!(
                        "{flag}: `{cidr}` is not a CIDR such as 10.0.0.0/8"
                    ))
                })
        })
        .collect()
}

/// How many finished handshakes each listener's kernel queue holds before the server accepts
/// them: 1,024 (Linux caps it at `net.core.somaxconn`, 4,096 by default). `TcpListener::bind`
/// asks for 128: a burst of new connections beyond that (a load balancer opening its pool
/// after a deploy, a client flood) has its SYNs dropped and retried a second or more later,
/// instead of being accepted, or shed at `--max-connections`, at once.
pub const LISTEN_BACKLOG: u32 = 1024;

fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let listen = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restarted server can bind while old connections of
        // the previous one are in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|source| ServerError::Bind { flag, addr, source })
}

/// The API routes, without the covet layers.
pub fn api_router(state: AppState) -> Router {
    let writes = Router::new()
        .route("/api/notes", axum::routing::post(create_note))
        .route("/api/notes/{id}", axum::routing::delete(delete_note))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_NOTE_REQUEST_BYTES));
    Router::new()
        .route("/api/hello", get(hello))
        .route("/api/slow", get(slow))
        .route("/api/notes", get(list_notes))
        .route("/api/notes/{id}", get(get_note))
        .merge(writes)
        .with_state(state)
}

/// The body of `GET /api/hello`.
#[derive(Debug, Serialize)]
pub struct Hello {
    /// A greeting.
    pub message: &'static str,
    /// The request id of the request that got this answer.
    pub request_id: String,
}

async fn hello(request_id: Option<axum::Extension<RequestId>>) -> Json<Hello> {
    Json(Hello {
        message: "hello from covet",
        request_id: request_id.map(|id| id.0.to_string()).unwrap_or_default(),
    })
}

/// An RFC 9457 `application/problem+json` response.
pub fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

async fn slow(RawQuery(query): RawQuery) -> Response {
    let ms = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .map(str::parse::<u64>);
    match ms {
        Some(Ok(ms)) if ms <= MAX_SLOW_MS => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Json(serde_json::json!({ "slept_ms": ms })).into_response()
        }
        _ => problem(
            StatusCode::BAD_REQUEST,
            format!("`ms` must be a whole number of milliseconds from 0 to {MAX_SLOW_MS}"),
        ),
    }
}

/// A store failure as a problem response: 507 when the in-memory store is full, else 503 with
/// `Retry-After` (never 500), so clients and probes retry.
fn unavailable(err: NotesError) -> Response {
    if matches!(err, NotesError::Full) {
        return problem(StatusCode::INSUFFICIENT_STORAGE, err.to_string());
    }
    tracing::warn!(error = %err, "notes store unavailable");
    let mut response = problem(StatusCode::SERVICE_UNAVAILABLE, err.to_string());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn list_notes(State(state): State<AppState>) -> Response {
    match state.notes.list().await {
        Ok(notes) => Json(notes).into_response(),
        Err(err) => unavailable(err),
    }
}

/// A note id from the path: a positive integer.
fn parse_id(id: &str) -> Option<i64> {
    id.parse::<i64>().ok().filter(|id| *id > 0)
}

fn bad_id() -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "the note id must be a positive integer",
    )
}

async fn get_note(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id();
    };
    match state.notes.get_json(id).await {
        Ok(Some(json)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, format!("no note {id}")),
        Err(err) => unavailable(err),
    }
}

async fn create_note(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the note as `content-type: application/json`",
        );
    }
    match NewNote::parse(&body) {
        Ok(new) => {
            let note = match state.notes.create(new).await {
                Ok(note) => note,
                Err(err) => return unavailable(err),
            };
            let location = HeaderValue::try_from(format!("/api/notes/{}", note.id))
                .expect("digits are a valid header value");
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(note),
            )
                .into_response()
        }
        Err(detail) => problem(StatusCode::BAD_REQUEST, detail),
    }
}

async fn delete_note(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id();
    };
    match state.notes.delete(id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => problem(StatusCode::NOT_FOUND, format!("no note {id}")),
        Err(err) => unavailable(err),
    }
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.api_token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let reason = match presented {
        None => "missing_credentials",
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
            state.app_metrics.auth_succeeded();
            return next.run(request).await;
        }
        Some(_) => "invalid_credentials",
    };
    state.app_metrics.auth_failed(reason);
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "this endpoint needs `authorization: Bearer <token>`",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"covet\""),
    );
    response
}
