//! WebSocket connection and message metrics, for any WebSocket library.
//!
//! [`WebSocketMetrics::register`] adds four families to a caller-supplied [`Registry`]:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `websocket_connections_total` | counter | connections opened |
//! | `websocket_connections_active` | gauge | connections open now |
//! | `websocket_messages_sent_total` | counter | messages sent to clients |
//! | `websocket_messages_received_total` | counter | messages received from clients |
//!
//! Call [`WebSocketMetrics::connection_opened`] when a connection is upgraded. It returns a
//! [`WebSocketConnection`] guard: keep it for the life of the connection, call
//! [`message_sent`](WebSocketConnection::message_sent) /
//! [`message_received`](WebSocketConnection::message_received) on it, and the active gauge goes
//! down when it is dropped — on a clean close, an error, a panic or a cancelled task alike.
//!
//! The metrics carry no labels, so they cannot grow with traffic. The upgrade request itself is
//! counted by the HTTP `MetricsLayer` (as a `101` on its route).
//!
//! # Example
//!
//! A handler loop, written against a stand-in for a socket so it runs anywhere:
//!
//! ```
//! use covet_layers::catalog::websocket::WebSocketMetrics;
//! use prometheus::{Encoder, Registry, TextEncoder};
//!
//! /// Echoes every message until the client goes away.
//! async fn echo(metrics: WebSocketMetrics, incoming: Vec<String>) -> Vec<String> {
//!     let conn = metrics.connection_opened(); // active + 1, total + 1
//!     let mut outgoing = Vec::new();
//!     for message in incoming {
//!         conn.message_received();
//!         outgoing.push(message);
//!         conn.message_sent();
//!     }
//!     outgoing
//! } // `conn` dropped: active - 1
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new();
//! let metrics = WebSocketMetrics::register(&registry)?;
//! echo(metrics.clone(), vec!["hi".into(), "bye".into()]).await;
//!
//! let mut text = Vec::new();
//! TextEncoder::new().encode(&registry.gather(), &mut text)?;
//! let text = String::from_utf8(text)?;
//! assert!(text.contains("websocket_connections_total 1\n"));
//! assert!(text.contains("websocket_connections_active 0\n"));
//! assert!(text.contains("websocket_messages_received_total 2\n"));
//! assert!(text.contains("websocket_messages_sent_total 2\n"));
//! # Ok(())
//! # }
//! ```
//!
//! With axum (feature `ws`), the same calls go in the upgrade callback:
//!
//! ```ignore
//! async fn ws_handler(ws: WebSocketUpgrade, State(metrics): State<WebSocketMetrics>) -> Response {
//!     ws.on_upgrade(move |mut socket| async move {
//!         let conn = metrics.connection_opened();
//!         while let Some(Ok(message)) = socket.recv().await {
//!             conn.message_received();
//!             if socket.send(message).await.is_err() {
//!                 break;
//!             }
//!             conn.message_sent();
//!         }
//!     })
//! }
//! ```

use std::{fmt, sync::Arc};

use prometheus::{
    IntCounter, IntGauge, Opts, Registry,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::register_collector;
use crate::metrics::MetricsError;

/// WebSocket metrics for one [`Registry`]; clones share the same series.
///
/// It is also the [`Collector`] that [`WebSocketMetrics::register`] registers.
#[derive(Clone)]
pub struct WebSocketMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    descs: Vec<Desc>,
    opened: IntCounter,
    active: IntGauge,
    sent: IntCounter,
    received: IntCounter,
}

impl WebSocketMetrics {
    /// Creates the metrics without registering them; register a boxed clone with
    /// [`Registry::register`], or use [`WebSocketMetrics::register`].
    pub fn new() -> Result<Self, MetricsError> {
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help)).map_err(|e| MetricsError::create(name, e))
        };
        let opened = counter(
            "websocket_connections_total",
            "WebSocket connections opened.",
        )?;
        let active = IntGauge::with_opts(Opts::new(
            "websocket_connections_active",
            "WebSocket connections open now.",
        ))
        .map_err(|e| MetricsError::create("websocket_connections_active", e))?;
        let sent = counter(
            "websocket_messages_sent_total",
            "WebSocket messages sent to clients.",
        )?;
        let received = counter(
            "websocket_messages_received_total",
            "WebSocket messages received from clients.",
        )?;
        let collectors: [&dyn Collector; 4] = [&opened, &active, &sent, &received];
        let descs = collectors
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                descs,
                opened,
                active,
                sent,
                received,
            }),
        })
    }

    /// Creates the metrics and registers them into `registry`.
    ///
    /// Fails with [`MetricsError::Register`] if the registry already has one of these families;
    /// nothing is registered then.
    pub fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let metrics = Self::new()?;
        register_collector(registry, Box::new(metrics.clone()), &metrics.inner.descs)?;
        Ok(metrics)
    }

    /// Counts a new connection (`websocket_connections_total` and `websocket_connections_active`
    /// go up by one) and returns its guard; dropping the guard takes the active gauge back down.
    pub fn connection_opened(&self) -> WebSocketConnection {
        self.inner.opened.inc();
        self.inner.active.inc();
        WebSocketConnection {
            inner: Arc::clone(&self.inner),
        }
    }

    /// The connections open now (the value of `websocket_connections_active`).
    pub fn active_connections(&self) -> i64 {
        self.inner.active.get()
    }
}

impl fmt::Debug for WebSocketMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketMetrics")
            .field("active", &self.inner.active.get())
            .finish_non_exhaustive()
    }
}

impl Collector for WebSocketMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let inner = &*self.inner;
        let collectors: [&dyn Collector; 4] =
            [&inner.opened, &inner.active, &inner.sent, &inner.received];
        collectors.iter().flat_map(|c| c.collect()).collect()
    }
}

/// One open WebSocket connection, from [`WebSocketMetrics::connection_opened`].
///
/// Dropping it counts the connection as closed. It is `Send` and `Sync`, so it can live in the
/// task that owns the socket or be shared by the reader and writer halves (behind an `Arc`).
#[must_use = "dropping the guard counts the connection as closed"]
pub struct WebSocketConnection {
    inner: Arc<Inner>,
}

impl WebSocketConnection {
    /// Counts one message sent to the client.
    pub fn message_sent(&self) {
        self.inner.sent.inc();
    }

    /// Counts one message received from the client.
    pub fn message_received(&self) {
        self.inner.received.inc();
    }

    /// Counts `n` messages sent to the client.
    pub fn messages_sent(&self, n: u64) {
        self.inner.sent.inc_by(n);
    }

    /// Counts `n` messages received from the client.
    pub fn messages_received(&self, n: u64) {
        self.inner.received.inc_by(n);
    }
}

impl fmt::Debug for WebSocketConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketConnection")
            .finish_non_exhaustive()
    }
}

impl Drop for WebSocketConnection {
    fn drop(&mut self) {
        self.inner.active.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_promtool_clean, encode, sample};

    #[tokio::test]
    async fn connections_and_messages_are_counted() {
        let registry = Registry::new();
        let metrics = WebSocketMetrics::register(&registry).unwrap();

        let first = metrics.connection_opened();
        let second = metrics.clone().connection_opened();
        first.message_received();
        first.message_sent();
        second.messages_sent(3);
        second.messages_received(2);

        let text = encode(&registry);
        assert_eq!(sample(&text, "websocket_connections_total"), Some(2.0));
        assert_eq!(sample(&text, "websocket_connections_active"), Some(2.0));
        assert_eq!(sample(&text, "websocket_messages_sent_total"), Some(4.0));
        assert_eq!(
            sample(&text, "websocket_messages_received_total"),
            Some(3.0)
        );

        drop(first);
        let text = encode(&registry);
        assert_eq!(sample(&text, "websocket_connections_active"), Some(1.0));
        assert_eq!(sample(&text, "websocket_connections_total"), Some(2.0));
        assert_eq!(metrics.active_connections(), 1);
        drop(second);
        assert_eq!(metrics.active_connections(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_connection_task_closes_its_connection() {
        let registry = Registry::new();
        let metrics = WebSocketMetrics::register(&registry).unwrap();
        let task = tokio::spawn({
            let metrics = metrics.clone();
            async move {
                let _conn = metrics.connection_opened();
                std::future::pending::<()>().await;
            }
        });
        tokio::task::yield_now().await;
        assert_eq!(metrics.active_connections(), 1);
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(
            sample(&encode(&registry), "websocket_connections_active"),
            Some(0.0)
        );
    }

    #[test]
    fn registering_twice_is_a_register_error() {
        let registry = Registry::new();
        WebSocketMetrics::register(&registry).unwrap();
        let error = WebSocketMetrics::register(&registry).unwrap_err();
        assert!(
            matches!(&error, MetricsError::Register { name, .. } if name.contains("websocket_")),
            "{error:?}"
        );
    }

    #[test]
    fn exposition_passes_promtool() {
        let registry = Registry::new();
        let metrics = WebSocketMetrics::register(&registry).unwrap();
        metrics.connection_opened().message_sent();
        assert_promtool_clean(&encode(&registry));
    }
}
