//! Instrumented bb8 connection pools for PostgreSQL and Redis.
//!
//! This crate is being built: `PgPool`, `RedisPool` and their metrics land with the pools work.
//! Until then it exports nothing.
