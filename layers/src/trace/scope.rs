//! The request id of the request being handled on this thread, for [`PropagateLayer`].
//!
//! [`TraceLayer`](super::TraceLayer) sets it around each poll of the inner service's future, so
//! a client call made (or a client future polled) inside a handler sees it; nothing is copied
//! per request beyond a reference-counted header value.
//!
//! [`PropagateLayer`]: super::PropagateLayer

use std::cell::RefCell;

use http::HeaderValue;

thread_local! {
    static CURRENT: RefCell<Option<HeaderValue>> = const { RefCell::new(None) };
}

/// Restores the previous value when dropped.
pub(crate) struct ScopeGuard {
    previous: Option<Option<HeaderValue>>,
}

/// Makes `id` the current request id until the guard is dropped; `None` leaves it untouched.
pub(crate) fn enter(id: Option<&HeaderValue>) -> ScopeGuard {
    let previous = id.map(|id| CURRENT.with(|c| c.replace(Some(id.clone()))));
    ScopeGuard { previous }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
}

/// The request id of the request being handled on this thread, if any.
pub fn current_request_id() -> Option<HeaderValue> {
    CURRENT.with(|c| c.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        assert!(current_request_id().is_none());
        let outer = HeaderValue::from_static("outer");
        let inner = HeaderValue::from_static("inner");
        {
            let _a = enter(Some(&outer));
            assert_eq!(current_request_id().unwrap(), "outer");
            {
                let _b = enter(Some(&inner));
                assert_eq!(current_request_id().unwrap(), "inner");
                let _c = enter(None);
                assert_eq!(current_request_id().unwrap(), "inner");
            }
            assert_eq!(current_request_id().unwrap(), "outer");
        }
        assert!(current_request_id().is_none());
    }
}
