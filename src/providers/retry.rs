//! When to try again, kept apart from how requests are sent. Retries happen
//! only before anything reached the caller: the forwarder decides on the
//! response head, never after the first body byte.

use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, StatusCode};
use rand::RngExt;

use promptgate_core::config::RetryPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusVerdict {
    /// Hand the response to the caller (success, or the caller's own mistake).
    Deliver,
    /// Overloaded or failing: retry, then fall back to the next provider.
    Retry,
    /// The provider refused the gateway's key: no retry, next provider.
    CredentialsRejected,
}

pub fn classify(status: StatusCode) -> StatusVerdict {
    match status.as_u16() {
        401 | 403 => StatusVerdict::CredentialsRejected,
        // 408 request timeout, 409 is OpenAI's "try again" on conflicts, 429 rate limit;
        // 5xx includes Anthropic's 529 "overloaded".
        408 | 409 | 429 | 500..=599 => StatusVerdict::Retry,
        _ => StatusVerdict::Deliver,
    }
}

/// What follows a failed attempt at one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Try the same provider again after this pause.
    RetryAfter(Duration),
    /// Give up on this provider: the route's next one, if any.
    NextProvider,
    /// Neither a retry nor the next provider: either could run the request
    /// a second time.
    Stop,
}

/// How a failed attempt ended, as far as the retry policy cares.
#[derive(Debug, Clone, Copy)]
pub enum AttemptFailure<'a> {
    /// A retryable status (429, 5xx); its headers may ask for a pause.
    Status(&'a HeaderMap),
    /// The provider refused the gateway's key: every attempt would be refused.
    CredentialsRejected,
    /// No response head. `dropped_after_send`: the connection broke after the
    /// request was written, so the provider may have run (and billed) it.
    NoAnswer { dropped_after_send: bool },
}

/// One provider's retry policy for one request: what follows each failed
/// attempt. The forwarder only carries the decision out.
pub struct Attempts<'a> {
    policy: &'a RetryPolicy,
    /// The end of the provider's total timeout, counted from the request's start.
    deadline: Instant,
}

impl<'a> Attempts<'a> {
    pub fn new(policy: &'a RetryPolicy, deadline: Instant) -> Attempts<'a> {
        Attempts { policy, deadline }
    }

    /// What follows failed attempt `attempt` (from 0) at this provider.
    pub fn after(&self, attempt: u32, failure: AttemptFailure<'_>) -> NextStep {
        let headers = match failure {
            AttemptFailure::CredentialsRejected => return NextStep::NextProvider,
            AttemptFailure::NoAnswer {
                dropped_after_send: true,
            } if !self.policy.retry_on_dropped_after_send => return NextStep::Stop,
            AttemptFailure::NoAnswer { .. } => None,
            AttemptFailure::Status(headers) => Some(headers),
        };
        // A wait past the provider's total timeout could only end in a later
        // timeout: move on instead.
        let budget_left = self.deadline.saturating_duration_since(Instant::now());
        after_failed_attempt(self.policy, attempt, headers, budget_left)
    }
}

/// The retry policy after failed attempt `attempt` (from 0): retry while
/// attempts are left and the pause fits in `budget_left` (what remains of
/// the provider's total timeout: a wait past it could only end in a timeout).
pub fn after_failed_attempt(
    policy: &RetryPolicy,
    attempt: u32,
    headers: Option<&HeaderMap>,
    budget_left: Duration,
) -> NextStep {
    if attempt >= policy.max_retries {
        return NextStep::NextProvider;
    }
    match delay_before_retry(policy, attempt, headers).filter(|delay| *delay < budget_left) {
        Some(delay) => NextStep::RetryAfter(delay),
        None => NextStep::NextProvider,
    }
}

/// How long to wait before attempt `attempt + 1` (attempt counts from 0), or
/// `None` when the provider asks for a longer pause than the policy allows
/// (`retry_max_ms`, the cap on every wait): then falling back to the next
/// provider beats waiting.
pub fn delay_before_retry(
    policy: &RetryPolicy,
    attempt: u32,
    headers: Option<&HeaderMap>,
) -> Option<Duration> {
    let exponential = policy
        .base_delay
        .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .min(policy.max_delay);
    // "Equal jitter": half fixed, half random, so replicas do not retry in step.
    let half = exponential / 2;
    let jittered = half + rand::rng().random_range(Duration::ZERO..=half);
    match headers.map(retry_after) {
        Some(Some(RetryAfter::Beyond)) => None,
        Some(Some(RetryAfter::Wait(asked))) if asked > policy.max_delay => None,
        Some(Some(RetryAfter::Wait(asked))) => Some(asked.max(jittered)),
        Some(None) | None => Some(jittered),
    }
}

/// The pause a provider asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Wait(Duration),
    /// Longer than a `Duration` can hold (`retry-after-ms: 1e300`): longer
    /// than any policy allows.
    Beyond,
}

/// `retry-after-ms` (OpenAI) or `retry-after` in seconds or as an HTTP date.
/// Values that are not a wait (negative, NaN, text) are ignored, as if absent.
pub fn retry_after(headers: &HeaderMap) -> Option<RetryAfter> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| !ms.is_nan() && *ms >= 0.0)
    {
        // `from_secs_f64` panics on overflow (infinity included).
        return Some(
            Duration::try_from_secs_f64(ms / 1000.0).map_or(RetryAfter::Beyond, RetryAfter::Wait),
        );
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(RetryAfter::Wait(Duration::from_secs(seconds)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(RetryAfter::Wait(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            retry_on_dropped_after_send: true,
        }
    }

    #[test]
    fn a_failed_attempt_is_retried_while_attempts_and_the_timeout_budget_last() {
        let plenty = Duration::from_secs(60);
        match after_failed_attempt(&policy(), 0, None, plenty) {
            NextStep::RetryAfter(delay) => assert!(
                (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&delay),
                "{delay:?}"
            ),
            other => panic!("the first failure is retried, not {other:?}"),
        }
        // The last attempt failed: the route's next provider.
        assert_eq!(
            after_failed_attempt(&policy(), 3, None, plenty),
            NextStep::NextProvider
        );
        // The pause would outlast the provider's total timeout: move on now.
        assert_eq!(
            after_failed_attempt(&policy(), 0, None, Duration::from_millis(10)),
            NextStep::NextProvider
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(classify(StatusCode::OK), StatusVerdict::Deliver);
        assert_eq!(classify(StatusCode::BAD_REQUEST), StatusVerdict::Deliver);
        assert_eq!(classify(StatusCode::NOT_FOUND), StatusVerdict::Deliver);
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS),
            StatusVerdict::Retry
        );
        assert_eq!(
            classify(StatusCode::from_u16(529).unwrap()),
            StatusVerdict::Retry
        );
        assert_eq!(classify(StatusCode::BAD_GATEWAY), StatusVerdict::Retry);
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED),
            StatusVerdict::CredentialsRejected
        );
    }

    #[test]
    fn exponential_with_jitter_and_cap() {
        let p = policy();
        for attempt in 0..10 {
            let full = Duration::from_millis(100 * (1 << attempt.min(5))).min(p.max_delay);
            let d = delay_before_retry(&p, attempt, None).unwrap();
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} vs {full:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_or_skipped_when_too_long() {
        let p = policy();
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("1"));
        assert_eq!(
            delay_before_retry(&p, 0, Some(&headers)),
            Some(Duration::from_secs(1))
        );
        headers.insert("retry-after", HeaderValue::from_static("30"));
        assert_eq!(delay_before_retry(&p, 0, Some(&headers)), None);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(
            retry_after(&headers),
            Some(RetryAfter::Wait(Duration::from_millis(1500)))
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&headers),
            Some(RetryAfter::Wait(Duration::ZERO))
        );
    }

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn waits_too_long_for_a_duration_move_on_instead_of_panicking() {
        let p = policy();
        for value in ["1e300", "inf", "+Infinity", "1.9e22"] {
            let headers = with("retry-after-ms", value);
            assert_eq!(retry_after(&headers), Some(RetryAfter::Beyond), "{value}");
            assert_eq!(delay_before_retry(&p, 0, Some(&headers)), None, "{value}");
        }
        let headers = with("retry-after", "99999999999");
        assert_eq!(delay_before_retry(&p, 0, Some(&headers)), None);
        let headers = with("retry-after", "18446744073709551615");
        assert_eq!(delay_before_retry(&p, 0, Some(&headers)), None);
    }

    #[test]
    fn waits_that_are_not_waits_are_ignored() {
        let p = policy();
        let full = p.base_delay;
        for (name, value) in [
            ("retry-after-ms", "-5"),
            ("retry-after-ms", "NaN"),
            ("retry-after-ms", "-inf"),
            ("retry-after-ms", "soon"),
            ("retry-after", "-1"),
            ("retry-after", "1.5"),
            ("retry-after", "tomorrow"),
        ] {
            let headers = with(name, value);
            assert_eq!(retry_after(&headers), None, "{name}: {value}");
            let delay = delay_before_retry(&p, 0, Some(&headers));
            assert!(
                delay.is_some_and(|d| d >= full / 2 && d <= full),
                "{name}: {value} gave {delay:?}"
            );
        }
    }

    #[test]
    fn a_rejected_key_moves_on_and_a_dropped_request_stops_unless_allowed() {
        let deadline = Instant::now() + Duration::from_secs(60);
        let allowed = policy();
        let attempts = Attempts::new(&allowed, deadline);
        assert_eq!(
            attempts.after(0, AttemptFailure::CredentialsRejected),
            NextStep::NextProvider
        );
        let dropped = AttemptFailure::NoAnswer {
            dropped_after_send: true,
        };
        assert!(matches!(
            attempts.after(0, dropped),
            NextStep::RetryAfter(_)
        ));
        let forbidden = RetryPolicy {
            retry_on_dropped_after_send: false,
            ..policy()
        };
        let attempts = Attempts::new(&forbidden, deadline);
        assert_eq!(attempts.after(0, dropped), NextStep::Stop);
        let refused = AttemptFailure::NoAnswer {
            dropped_after_send: false,
        };
        assert!(matches!(
            attempts.after(0, refused),
            NextStep::RetryAfter(_)
        ));
        // Past the deadline no pause fits: the next provider at once.
        let spent = Attempts::new(&forbidden, Instant::now());
        assert_eq!(spent.after(0, refused), NextStep::NextProvider);
    }
}
