//! What keeps shadow traffic bounded: a cap on calls in flight per experiment
//! and daily budgets (requests, tokens, USD). Both live outside the snapshot so
//! a reload neither resets a spent budget nor lets a second batch of calls
//! past the cap; both are per replica (divide a fleet-wide budget by the
//! replica count).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::exchange::SkipReason;
use crate::telemetry::ShadowMetrics;
use promptgate_core::experiments::model::{DailyBudget, ShadowPolicy};

/// One experiment's shadow calls in flight and what they spent today.
#[derive(Default)]
pub(super) struct ExperimentLimits {
    in_flight: AtomicUsize,
    spend: Mutex<DailySpend>,
    /// The experiment's shadow counters (`/metrics`, labelled `experiment`).
    pub metrics: Arc<ShadowMetrics>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct DailySpend {
    /// Days since 1970-01-01 (UTC) these counts belong to.
    day: u64,
    requests: u64,
    tokens: u64,
    usd: f64,
}

impl DailySpend {
    fn for_day(&mut self, day: u64) -> &mut DailySpend {
        if self.day != day {
            *self = DailySpend {
                day,
                ..DailySpend::default()
            };
        }
        self
    }

    fn within(&self, budget: &DailyBudget) -> bool {
        budget.requests.is_none_or(|max| self.requests < max)
            && budget.tokens.is_none_or(|max| self.tokens < max)
            && budget.usd.is_none_or(|max| self.usd < max)
    }
}

fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// A shadow call's place under the cap; given back when dropped.
pub(super) struct InFlight {
    limits: Arc<ExperimentLimits>,
    metrics: Arc<ShadowMetrics>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.limits.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl InFlight {
    /// Counts what a finished call spent against today's budget.
    pub fn spent(&self, tokens: u64, usd: f64) {
        let mut spend = self
            .limits
            .spend
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let spend = spend.for_day(today());
        spend.tokens += tokens;
        spend.usd += usd;
    }
}

impl ExperimentLimits {
    /// Takes a place under the cap and reserves one request of today's budget,
    /// or says why not. Tokens and USD are known only once a call ends, so a
    /// budget can be overrun by at most the calls in flight when it ran out.
    pub fn admit(
        self: &Arc<Self>,
        policy: &ShadowPolicy,
        metrics: &Arc<ShadowMetrics>,
    ) -> Result<InFlight, SkipReason> {
        // An atomic counter rather than a semaphore: the cap comes from the
        // snapshot, and a reload that lowers it must apply to calls already
        // running under the old one.
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < policy.max_concurrent).then_some(n + 1)
            })
            .map_err(|_| SkipReason::Concurrency)?;
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let place = InFlight {
            limits: self.clone(),
            metrics: metrics.clone(),
        };
        let mut spend = self.spend.lock().unwrap_or_else(PoisonError::into_inner);
        let spend = spend.for_day(today());
        if !spend.within(&policy.budget) {
            return Err(SkipReason::Budget);
        }
        spend.requests += 1;
        Ok(place)
    }
}

/// Shadow cost is summed in nano-USD so it fits an atomic integer.
pub(super) fn add_usd(total: &AtomicU64, usd: f64) {
    if usd.is_finite() && usd > 0.0 {
        total.fetch_add((usd * 1e9).round() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy(max_concurrent: usize, budget: DailyBudget) -> ShadowPolicy {
        ShadowPolicy {
            variants: vec![1],
            sample_percent: 100.0,
            sticky: true,
            max_concurrent,
            timeout: Duration::from_secs(1),
            budget,
        }
    }

    #[test]
    fn the_cap_admits_up_to_max_concurrent_and_frees_on_drop() {
        let limits = Arc::new(ExperimentLimits::default());
        let metrics = Arc::new(ShadowMetrics::default());
        let policy = policy(2, DailyBudget::default());
        let first = limits.admit(&policy, &metrics).unwrap();
        let _second = limits.admit(&policy, &metrics).unwrap();
        assert_eq!(
            limits.admit(&policy, &metrics).err(),
            Some(SkipReason::Concurrency)
        );
        assert_eq!(metrics.in_flight.load(Ordering::Relaxed), 2);
        drop(first);
        assert!(limits.admit(&policy, &metrics).is_ok());
    }

    #[test]
    fn a_lowered_cap_applies_to_calls_already_running() {
        let limits = Arc::new(ExperimentLimits::default());
        let metrics = Arc::new(ShadowMetrics::default());
        let _a = limits.admit(&policy(3, DailyBudget::default()), &metrics);
        let _b = limits.admit(&policy(3, DailyBudget::default()), &metrics);
        assert_eq!(
            limits
                .admit(&policy(2, DailyBudget::default()), &metrics)
                .err(),
            Some(SkipReason::Concurrency)
        );
    }

    #[test]
    fn budgets_stop_admission_once_spent() {
        let metrics = Arc::new(ShadowMetrics::default());
        let requests = policy(
            10,
            DailyBudget {
                requests: Some(2),
                ..DailyBudget::default()
            },
        );
        let limits = Arc::new(ExperimentLimits::default());
        drop(limits.admit(&requests, &metrics).unwrap());
        drop(limits.admit(&requests, &metrics).unwrap());
        assert_eq!(
            limits.admit(&requests, &metrics).err(),
            Some(SkipReason::Budget)
        );
        // A refused admission gives its place under the cap back.
        assert_eq!(metrics.in_flight.load(Ordering::Relaxed), 0);

        let tokens = policy(
            10,
            DailyBudget {
                tokens: Some(100),
                usd: Some(0.5),
                ..DailyBudget::default()
            },
        );
        let limits = Arc::new(ExperimentLimits::default());
        let call = limits.admit(&tokens, &metrics).unwrap();
        call.spent(99, 0.1);
        drop(call);
        let call = limits.admit(&tokens, &metrics).unwrap();
        call.spent(1, 0.1);
        drop(call);
        assert_eq!(
            limits.admit(&tokens, &metrics).err(),
            Some(SkipReason::Budget)
        );
        let usd = Arc::new(ExperimentLimits::default());
        usd.admit(&tokens, &metrics).unwrap().spent(0, 0.5);
        assert_eq!(usd.admit(&tokens, &metrics).err(), Some(SkipReason::Budget));
    }

    #[test]
    fn a_new_day_starts_with_an_unspent_budget() {
        let mut spend = DailySpend {
            day: 10,
            requests: 5,
            tokens: 7,
            usd: 1.0,
        };
        let budget = DailyBudget {
            requests: Some(5),
            ..DailyBudget::default()
        };
        assert!(!spend.for_day(10).within(&budget));
        assert!(spend.for_day(11).within(&budget));
        assert_eq!(spend.requests, 0);
    }
}
