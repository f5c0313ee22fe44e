//! A budget for what is known only after the answer (tokens, USD): GCRA
//! with the charge taken after the fact. Admission asks whether less than
//! the limit is still outstanding; a finished exchange then adds what it
//! used, even past the limit, and the debt frees at the limit's rate.
//!
//! governor's limiters refuse a charge they cannot cover (`check_n`), which
//! would lose a usage that already happened; this keeps the same GCRA
//! arithmetic (one "theoretical arrival time") but always takes the charge.

use std::time::Duration;

/// Nanoseconds on the store's clock (since the store was made).
pub(super) type Nanos = u64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct UsageAccount {
    /// How long one unit (a token, a dollar) takes to free: period / limit.
    nanos_per_unit: f64,
    /// The window: at most the limit is outstanding over it.
    period: Nanos,
    /// When everything charged so far will have freed.
    paid_off_at: Nanos,
}

impl UsageAccount {
    pub fn new(limit: f64, period: Duration) -> UsageAccount {
        let period = saturating_nanos(period);
        UsageAccount {
            nanos_per_unit: period as f64 / limit,
            period,
            paid_off_at: 0,
        }
    }

    /// `None` while less than the limit is outstanding; else how long until
    /// it is.
    pub fn wait(&self, now: Nanos) -> Option<Duration> {
        let outstanding = self.paid_off_at.saturating_sub(now);
        (outstanding >= self.period).then(|| Duration::from_nanos(outstanding - self.period + 1))
    }

    /// Takes what a finished exchange used, whatever the balance.
    pub fn charge(&mut self, amount: f64, now: Nanos) {
        if amount.is_finite() && amount > 0.0 {
            // `as` saturates: an absurd amount blocks until the end of time,
            // it does not wrap around.
            let cost = (amount * self.nanos_per_unit) as Nanos;
            self.paid_off_at = self.paid_off_at.max(now).saturating_add(cost);
        }
    }

    /// The same spending under a new limit: what is outstanding stays
    /// outstanding, and frees at the new rate.
    pub fn relimited(&self, limit: f64, period: Duration, now: Nanos) -> UsageAccount {
        let mut account = UsageAccount::new(limit, period);
        let outstanding = self.paid_off_at.saturating_sub(now) as f64 / self.nanos_per_unit;
        account.charge(outstanding, now);
        account
    }
}

fn saturating_nanos(duration: Duration) -> Nanos {
    Nanos::try_from(duration.as_nanos()).unwrap_or(Nanos::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const SECOND: Nanos = 1_000_000_000;

    #[test]
    fn admits_until_the_limit_is_spent_then_frees_at_the_limit_rate() {
        // 60 tokens a minute: one token frees every second.
        let mut account = UsageAccount::new(60.0, MINUTE);
        assert_eq!(account.wait(0), None);
        account.charge(59.0, 0);
        assert_eq!(account.wait(0), None, "59 of 60 spent still admits");
        account.charge(1.0, 0);
        assert_eq!(account.wait(0), Some(Duration::from_nanos(1)));
        assert_eq!(account.wait(SECOND), None, "one token freed after a second");
    }

    #[test]
    fn a_charge_past_the_limit_is_kept_and_waits_for_all_of_it() {
        // The overshoot: a request admitted with 1 token left used 120.
        let mut account = UsageAccount::new(60.0, MINUTE);
        account.charge(59.0, 0);
        account.charge(120.0, 0);
        // 179 outstanding: 120 must free before fewer than 60 are.
        assert_eq!(
            account.wait(0),
            Some(Duration::from_nanos(119 * SECOND + 1))
        );
        assert_eq!(account.wait(119 * SECOND), Some(Duration::from_nanos(1)));
        assert_eq!(account.wait(119 * SECOND + 1), None);
    }

    #[test]
    fn an_idle_account_does_not_bank_unused_time() {
        let mut account = UsageAccount::new(60.0, MINUTE);
        // Ten idle minutes earn no credit beyond one window.
        account.charge(60.0, 600 * SECOND);
        assert!(account.wait(600 * SECOND).is_some());
    }

    #[test]
    fn a_new_limit_keeps_what_is_outstanding() {
        let mut account = UsageAccount::new(100.0, MINUTE);
        account.charge(50.0, 0);
        assert_eq!(account.relimited(100.0, MINUTE, 0), account);
        // 50 outstanding is the whole of a limit of 50…
        assert!(account.relimited(50.0, MINUTE, 0).wait(0).is_some());
        // …and half of a limit of 200.
        assert_eq!(account.relimited(200.0, MINUTE, 0).wait(0), None);
    }

    #[test]
    fn nonsense_amounts_charge_nothing_and_huge_ones_saturate() {
        let mut account = UsageAccount::new(1.0, MINUTE);
        for amount in [f64::NAN, f64::NEG_INFINITY, -5.0, 0.0] {
            account.charge(amount, 0);
        }
        assert_eq!(account.wait(0), None);
        account.charge(1e300, 0);
        account.charge(1e300, 0);
        // Still refused a century later; the sum did not wrap to the past.
        let century = 100 * 365 * 86_400 * SECOND;
        assert!(account.wait(century).is_some());
    }
}
