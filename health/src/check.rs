//! The [`HealthCheck`] trait: one async question about one dependency or resource.

use std::{future::Future, pin::Pin};

use crate::Health;

/// A boxed, sendable future, as the registry stores check runs.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One health check: an async function answering a [`Health`].
///
/// Implement it for a type, or pass a closure: any `Fn() -> impl Future` whose output converts
/// into [`Health`] is a check — `Health`, [`Status`](crate::Status), `Result<(), E>`,
/// `Result<Health, E>` or `Result<Status, E>` with `E: Display` (an `Err` is `DOWN` with an
/// `error` detail).
///
/// A check does not need its own timeout, caching or panic handling: the
/// [`HealthRegistry`](crate::HealthRegistry) runs it under a timeout (a timeout is `DOWN` with a
/// `timeout` detail), at most once per cache interval, on its own Tokio task, and turns a panic
/// into `DOWN`.
///
/// ```
/// use covet_health::{Health, HealthCheck, Status};
///
/// struct QueueDepth;
///
/// impl HealthCheck for QueueDepth {
///     async fn check(&self) -> Health {
///         let depth = 3; // ask the queue
///         let status = if depth < 1_000 { Status::Up } else { Status::Down };
///         Health::new(status).with_detail("depth", depth)
///     }
/// }
///
/// // A closure is a check too.
/// let always_up = || async { Status::Up };
/// # fn is_check(_: impl HealthCheck) {}
/// # is_check(QueueDepth);
/// # is_check(always_up);
/// ```
pub trait HealthCheck: Send + Sync + 'static {
    /// Runs the check once.
    fn check(&self) -> impl Future<Output = Health> + Send;
}

impl<F, Fut> HealthCheck for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future + Send,
    Fut::Output: Into<Health>,
{
    fn check(&self) -> impl Future<Output = Health> + Send {
        let fut = self();
        async move { fut.await.into() }
    }
}

/// The object-safe face of [`HealthCheck`], for the registry's list of checks.
pub(crate) trait DynHealthCheck: Send + Sync + 'static {
    fn check_boxed(&self) -> BoxFuture<'_, Health>;
}

impl<T: HealthCheck> DynHealthCheck for T {
    fn check_boxed(&self) -> BoxFuture<'_, Health> {
        Box::pin(self.check())
    }
}
