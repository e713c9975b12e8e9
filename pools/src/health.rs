//! Pool-backed checks for covet-health: `SELECT 1` / `PING` on a connection from the pool.
//!
//! A check borrows a pooled connection for each run, so it also proves the pool can hand one
//! out; its wait and use land in the pool's metrics.

#[cfg(feature = "postgres")]
impl crate::PgPool {
    /// A covet-health [`PostgresCheck`](covet_health::checks::PostgresCheck) that runs
    /// `SELECT 1` on a connection from this pool, with `target` set to the pool's `host:port`.
    pub fn health_check(&self) -> covet_health::checks::PostgresCheck {
        let pool = self.clone();
        covet_health::checks::PostgresCheck::new(move || {
            let pool = pool.clone();
            async move { pool.get().await }
        })
        .target(self.target())
    }
}

#[cfg(feature = "redis")]
impl crate::RedisPool {
    /// A covet-health [`RedisCheck`](covet_health::checks::RedisCheck) that sends `PING` on a
    /// connection from this pool.
    pub fn health_check(&self) -> covet_health::checks::RedisCheck {
        let pool = self.clone();
        covet_health::checks::RedisCheck::new(move || {
            let pool = pool.clone();
            async move { pool.connection().await }
        })
        .target(self.target())
    }
}
