//! `PgConnection` and `PgTransaction`: the instrumented calls.

use std::{collections::HashMap, ops::Deref, sync::Arc, time::Instant};

use tokio_postgres::{Client, Row, Statement, types::ToSql};
use tracing::{Instrument, field::Empty};

use super::{
    pool::{PgConn, PgManager, PgShared},
    sql::{self, OPERATIONS, Summary},
};
use crate::PoolError;

/// A connection checked out of a [`PgPool`](super::PgPool); returned to the pool on drop
/// (the time it was held goes to `db_client_connection_use_time_seconds`).
///
/// Dereferences to the [`tokio_postgres::Client`] for calls this type does not wrap (those are
/// not measured).
pub struct PgConnection {
    conn: bb8::PooledConnection<'static, PgManager>,
    shared: Arc<PgShared>,
    checked_out: Instant,
}

/// The statements and cache one call works with: a connection's, or a transaction's.
struct Exec<'a> {
    client: &'a Client,
    statements: &'a mut HashMap<String, Statement>,
    shared: &'a PgShared,
}

/// Rows a statement affected, for `db_rows_affected`: only data-changing verbs count.
fn changes(operation: usize) -> bool {
    matches!(
        OPERATIONS[operation],
        "INSERT" | "UPDATE" | "DELETE" | "MERGE"
    )
}

/// Runs `$call` (an expression using `$client` and `$statement`) measured and traced.
macro_rules! instrumented {
    ($exec:expr, $sql:expr, |$client:ident, $statement:ident| $call:expr, |$out:ident, $op:ident| $rows:expr) => {{
        let mut exec: Exec<'_> = $exec;
        let sql: &str = $sql;
        let operation = sql::operation(sql);
        let span = exec.span(sql, operation);
        let started = Instant::now();
        let result = async {
            let $statement = exec.prepare_cached(sql).await?;
            let $client = exec.client;
            $call.await
        }
        .instrument(span.clone())
        .await;
        let elapsed = started.elapsed();
        match &result {
            Ok($out) => {
                let $op = operation;
                exec.shared.metrics.ok(operation, elapsed, $rows);
            }
            Err(error) => {
                let error_type = exec.shared.metrics.failed(operation, elapsed, error);
                span.record("error.type", error_type);
                span.record("otel.status_code", "ERROR");
            }
        }
        exec.shared.slow(sql, operation, elapsed);
        result.map_err(PoolError::from)
    }};
}

impl<'a> Exec<'a> {
    fn span(&self, sql: &str, operation: usize) -> tracing::Span {
        let shared = self.shared;
        tracing::info_span!(
            target: "covet_pools",
            "db.query",
            otel.name = %Summary { operation, sql },
            otel.kind = "client",
            otel.status_code = Empty,
            db.system.name = "postgresql",
            db.namespace = shared.namespace.as_str(),
            db.operation.name = OPERATIONS[operation],
            db.query.summary = %Summary { operation, sql },
            server.address = shared.host.as_str(),
            server.port = shared.port,
            error.type = Empty,
        )
    }

    /// The cached statement for `sql`, or a new one (cached while there is room).
    async fn prepare_cached(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            self.shared.metrics.cache_hits.inc();
            return Ok(statement.clone());
        }
        self.shared.metrics.cache_misses.inc();
        let statement = self.client.prepare(sql).await?;
        if self.statements.len() < self.shared.statement_cache_capacity {
            self.statements.insert(sql.to_owned(), statement.clone());
        }
        Ok(statement)
    }
}

impl PgShared {
    /// Counts and logs (once, at WARN, by summary) a statement over the threshold.
    fn slow(&self, sql: &str, operation: usize, elapsed: std::time::Duration) {
        if elapsed > self.slow_query_threshold {
            self.metrics.slow_queries.inc();
            tracing::warn!(
                target: "covet_pools::slow_query",
                pool_name = self.settings.pool_name.as_str(),
                statement = %Summary { operation, sql },
                duration_ms = elapsed.as_millis() as u64,
                threshold_ms = self.slow_query_threshold.as_millis() as u64,
                "slow query"
            );
        }
    }
}

/// The instrumented calls, shared by connections and transactions.
macro_rules! calls {
    () => {
        /// Runs a statement and returns its rows.
        ///
        /// Records `db_queries_total`, `db_query_duration_seconds`,
        /// `db_client_operation_duration_seconds`, `db_rows_affected` (for `INSERT`, `UPDATE`,
        /// `DELETE`, `MERGE` … `RETURNING`), errors by SQLSTATE class, deadlocks and slow
        /// queries, inside a CLIENT span. The statement is prepared once per connection and
        /// cached.
        pub async fn query(
            &mut self,
            sql: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Vec<Row>, PoolError> {
            instrumented!(
                self.exec(),
                sql,
                |client, statement| client.query(&statement, params),
                |rows, op| changes(op).then_some(rows.len() as u64)
            )
        }

        /// Runs a statement that returns exactly one row (an error otherwise); measured as
        /// [`query`](Self::query).
        pub async fn query_one(
            &mut self,
            sql: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Row, PoolError> {
            instrumented!(
                self.exec(),
                sql,
                |client, statement| client.query_one(&statement, params),
                |_row, op| changes(op).then_some(1)
            )
        }

        /// Runs a statement that returns at most one row; measured as [`query`](Self::query).
        pub async fn query_opt(
            &mut self,
            sql: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Option<Row>, PoolError> {
            instrumented!(
                self.exec(),
                sql,
                |client, statement| client.query_opt(&statement, params),
                |row, op| changes(op).then_some(u64::from(row.is_some()))
            )
        }

        /// Runs a statement and returns the number of rows it affected (recorded in
        /// `db_rows_affected` whatever the verb); measured as [`query`](Self::query).
        pub async fn execute(
            &mut self,
            sql: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<u64, PoolError> {
            instrumented!(
                self.exec(),
                sql,
                |client, statement| client.execute(&statement, params),
                |rows, _op| Some(*rows)
            )
        }

        /// The prepared statement for `sql` from this connection's cache, preparing (and
        /// caching, while there is room) it on a miss. Counts
        /// `db_statement_cache_hits_total` / `db_statement_cache_misses_total`.
        pub async fn prepare_cached(&mut self, sql: &str) -> Result<Statement, PoolError> {
            Ok(self.exec().prepare_cached(sql).await?)
        }
    };
}

impl PgConnection {
    pub(crate) fn new(
        conn: bb8::PooledConnection<'static, PgManager>,
        shared: Arc<PgShared>,
    ) -> Self {
        Self {
            conn,
            shared,
            checked_out: Instant::now(),
        }
    }

    fn exec(&mut self) -> Exec<'_> {
        let PgConn { client, statements } = &mut *self.conn;
        Exec {
            client,
            statements,
            shared: &self.shared,
        }
    }

    calls!();

    /// Starts a transaction (`BEGIN`). Commit it with [`PgTransaction::commit`]; dropping it
    /// or calling [`PgTransaction::rollback`] rolls it back. Either way
    /// `db_transactions_total{outcome}` and `db_transaction_duration_seconds` are recorded.
    pub async fn transaction(&mut self) -> Result<PgTransaction<'_>, PoolError> {
        let started = Instant::now();
        let shared = &*self.shared;
        let PgConn { client, statements } = &mut *self.conn;
        let transaction = client.transaction().await?;
        Ok(PgTransaction {
            transaction: Some(transaction),
            statements,
            shared,
            started,
        })
    }
}

impl Deref for PgConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.conn.client
    }
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        self.shared
            .connect
            .use_time
            .observe(self.checked_out.elapsed().as_secs_f64());
    }
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnection")
            .field("pool_name", &self.shared.settings.pool_name)
            .field("cached_statements", &self.conn.statements.len())
            .finish_non_exhaustive()
    }
}

/// A transaction on a [`PgConnection`], with the same instrumented calls.
///
/// Dropped without [`commit`](Self::commit), it rolls back (tokio-postgres sends the
/// `ROLLBACK`) and is counted as `outcome="rollback"`.
pub struct PgTransaction<'a> {
    transaction: Option<tokio_postgres::Transaction<'a>>,
    statements: &'a mut HashMap<String, Statement>,
    shared: &'a PgShared,
    started: Instant,
}

impl PgTransaction<'_> {
    fn exec(&mut self) -> Exec<'_> {
        Exec {
            client: self
                .transaction
                .as_ref()
                .expect("a transaction is present until commit or rollback consumes it")
                .client(),
            statements: self.statements,
            shared: self.shared,
        }
    }

    calls!();

    /// Commits; records `db_transactions_total{outcome="commit"}` on success (a failed
    /// `COMMIT` is a rollback) and the duration either way.
    pub async fn commit(mut self) -> Result<(), PoolError> {
        let transaction = self.transaction.take().expect("present until consumed");
        let result = transaction.commit().await;
        self.shared
            .metrics
            .transaction(result.is_ok(), self.started.elapsed());
        result.map_err(PoolError::from)
    }

    /// Rolls back; records `db_transactions_total{outcome="rollback"}` and the duration.
    pub async fn rollback(mut self) -> Result<(), PoolError> {
        let transaction = self.transaction.take().expect("present until consumed");
        let result = transaction.rollback().await;
        self.shared
            .metrics
            .transaction(false, self.started.elapsed());
        result.map_err(PoolError::from)
    }
}

impl Deref for PgTransaction<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.transaction
            .as_ref()
            .expect("present until consumed")
            .client()
    }
}

impl Drop for PgTransaction<'_> {
    fn drop(&mut self) {
        if self.transaction.is_some() {
            self.shared
                .metrics
                .transaction(false, self.started.elapsed());
        }
    }
}

impl std::fmt::Debug for PgTransaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTransaction")
            .field("pool_name", &self.shared.settings.pool_name)
            .finish_non_exhaustive()
    }
}
