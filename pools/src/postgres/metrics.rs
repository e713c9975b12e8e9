//! The PostgreSQL pool's query metrics, with handles resolved once per operation.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use tokio_postgres::Error;

use super::sql::OPERATIONS;
use crate::{
    PoolError,
    common::{
        OPERATION_DURATION_BUCKETS, create_error, operation_duration, pool_counter, pool_histogram,
        register,
    },
};

/// Buckets of `db_rows_affected`: 0 … 100 000 rows.
pub const ROWS_BUCKETS: &[f64] = &[
    0.0, 1.0, 5.0, 10.0, 50.0, 100.0, 1000.0, 10_000.0, 100_000.0,
];
/// Buckets of `db_transaction_duration_seconds`: 1 ms … 60 s.
pub const TRANSACTION_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
];

/// The handles of one `operation`, resolved at build time.
#[derive(Debug)]
struct Operation {
    queries: IntCounter,
    duration: Histogram,
    rows: Histogram,
    otel_ok: Histogram,
}

#[derive(Debug)]
pub(crate) struct PgMetrics {
    operations: Vec<Operation>,
    otel: HistogramVec,
    query_errors: IntCounterVec,
    deadlocks: IntCounter,
    pub(crate) slow_queries: IntCounter,
    commits: IntCounter,
    rollbacks: IntCounter,
    transaction_duration: Histogram,
    pub(crate) cache_hits: IntCounter,
    pub(crate) cache_misses: IntCounter,
    pub(crate) connection_errors: IntCounter,
}

impl PgMetrics {
    pub(crate) fn new(registry: &Registry, pool_name: &str) -> Result<Self, PoolError> {
        let fail = |name| move |e| create_error(pool_name, name, e);
        let queries = register(
            registry,
            pool_name,
            "db_queries_total",
            IntCounterVec::new(
                Opts::new("db_queries_total", "Statements run, by SQL verb.")
                    .const_label("pool_name", pool_name),
                &["operation"],
            )
            .map_err(fail("db_queries_total"))?,
        )?;
        let duration = register(
            registry,
            pool_name,
            "db_query_duration_seconds",
            HistogramVec::new(
                HistogramOpts::new(
                    "db_query_duration_seconds",
                    "Statement duration, by SQL verb.",
                )
                .const_label("pool_name", pool_name)
                .buckets(OPERATION_DURATION_BUCKETS.to_vec()),
                &["operation"],
            )
            .map_err(fail("db_query_duration_seconds"))?,
        )?;
        let rows = register(
            registry,
            pool_name,
            "db_rows_affected",
            HistogramVec::new(
                HistogramOpts::new(
                    "db_rows_affected",
                    "Rows affected per data-changing statement, by SQL verb.",
                )
                .const_label("pool_name", pool_name)
                .buckets(ROWS_BUCKETS.to_vec()),
                &["operation"],
            )
            .map_err(fail("db_rows_affected"))?,
        )?;
        let otel = operation_duration(registry, pool_name)?;
        let operations = OPERATIONS
            .iter()
            .map(|op| Operation {
                queries: queries.with_label_values(&[op]),
                duration: duration.with_label_values(&[op]),
                rows: rows.with_label_values(&[op]),
                otel_ok: otel.with_label_values(&["postgresql", op, ""]),
            })
            .collect();
        let transactions = register(
            registry,
            pool_name,
            "db_transactions_total",
            IntCounterVec::new(
                Opts::new(
                    "db_transactions_total",
                    "Transactions finished, by outcome (commit or rollback).",
                )
                .const_label("pool_name", pool_name),
                &["outcome"],
            )
            .map_err(fail("db_transactions_total"))?,
        )?;
        Ok(Self {
            operations,
            query_errors: register(
                registry,
                pool_name,
                "db_query_errors_total",
                IntCounterVec::new(
                    Opts::new(
                        "db_query_errors_total",
                        "Statements that failed, by SQLSTATE class.",
                    )
                    .const_label("pool_name", pool_name),
                    &["sqlstate_class"],
                )
                .map_err(fail("db_query_errors_total"))?,
            )?,
            otel,
            deadlocks: pool_counter(
                registry,
                pool_name,
                "db_deadlocks_total",
                "Statements aborted by a deadlock (SQLSTATE 40P01).",
            )?,
            slow_queries: pool_counter(
                registry,
                pool_name,
                "db_slow_queries_total",
                "Statements slower than the pool's slow-query threshold.",
            )?,
            commits: transactions.with_label_values(&["commit"]),
            rollbacks: transactions.with_label_values(&["rollback"]),
            transaction_duration: pool_histogram(
                registry,
                pool_name,
                "db_transaction_duration_seconds",
                "Transaction duration, begin to commit or rollback.",
                TRANSACTION_DURATION_BUCKETS,
            )?,
            cache_hits: pool_counter(
                registry,
                pool_name,
                "db_statement_cache_hits_total",
                "Prepared-statement cache hits.",
            )?,
            cache_misses: pool_counter(
                registry,
                pool_name,
                "db_statement_cache_misses_total",
                "Prepared-statement cache misses.",
            )?,
            connection_errors: pool_counter(
                registry,
                pool_name,
                "db_connection_errors_total",
                "Failed connection attempts and connections lost during a statement.",
            )?,
        })
    }

    /// Records a statement that succeeded.
    pub(crate) fn ok(&self, operation: usize, elapsed: Duration, rows: Option<u64>) {
        let handles = &self.operations[operation];
        let seconds = elapsed.as_secs_f64();
        handles.queries.inc();
        handles.duration.observe(seconds);
        handles.otel_ok.observe(seconds);
        if let Some(rows) = rows {
            handles.rows.observe(rows as f64);
        }
    }

    /// Records a statement that failed; returns the `error.type` it was given.
    pub(crate) fn failed(
        &self,
        operation: usize,
        elapsed: Duration,
        error: &Error,
    ) -> &'static str {
        let handles = &self.operations[operation];
        let seconds = elapsed.as_secs_f64();
        handles.queries.inc();
        handles.duration.observe(seconds);
        let (class, error_type): (&str, &'static str) = match error.code() {
            Some(code) => {
                if *code == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED {
                    self.deadlocks.inc();
                }
                let text = code.code();
                (text.get(..2).unwrap_or(text), sqlstate_name(text))
            }
            None if error.is_closed() => {
                self.connection_errors.inc();
                ("08", "connection_closed")
            }
            None => ("_OTHER", "_OTHER"),
        };
        self.query_errors.with_label_values(&[class]).inc();
        self.otel
            .with_label_values(&["postgresql", OPERATIONS[operation], error_type])
            .observe(seconds);
        error_type
    }

    pub(crate) fn transaction(&self, committed: bool, elapsed: Duration) {
        if committed {
            &self.commits
        } else {
            &self.rollbacks
        }
        .inc();
        self.transaction_duration.observe(elapsed.as_secs_f64());
    }
}

/// The SQLSTATE as a `'static` label value: the well-known codes by name, other codes by class.
fn sqlstate_name(code: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "40P01", "40001", "23505", "23503", "23502", "23514", "42P01", "42601", "42703", "42501",
        "57014", "53300", "08006", "08001", "08003", "25P02", "22P02", "22001", "22003", "55P03",
    ];
    if let Some(known) = KNOWN.iter().find(|k| **k == code) {
        return known;
    }
    const CLASSES: &[&str] = &[
        "08", "0A", "21", "22", "23", "25", "28", "40", "42", "53", "54", "55", "57", "58", "XX",
    ];
    CLASSES
        .iter()
        .find(|class| code.starts_with(**class))
        .copied()
        .unwrap_or("_OTHER")
}
