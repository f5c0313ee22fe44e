//! Waiting for something that happens on another task, thread or process:
//! poll a condition until it holds, and fail the test with what was awaited
//! when it does not within the time given. Never a bare sleep.

use std::time::{Duration, Instant};

/// How often a condition is polled: short against every timeout used here.
const POLL: Duration = Duration::from_millis(20);

/// Polls `condition` until it returns `Some`, and returns that value; panics
/// after `timeout` with `what` (what the test was waiting for).
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    condition: impl AsyncFnMut() -> Option<T>,
) -> T {
    within(timeout, condition)
        .await
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `condition` until it returns `Some` or `timeout` has passed: for
/// what a test reports but does not assert.
pub async fn within<T>(
    timeout: Duration,
    mut condition: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `eventually` for a plain boolean condition.
pub async fn until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    eventually(what, timeout, async || condition().then_some(())).await
}

/// `eventually` for code on a plain thread (no runtime).
pub fn eventually_blocking<T>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}
