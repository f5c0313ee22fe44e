//! Where limit state lives. `LimitStore` is what the request path calls;
//! `LocalStore` keeps the state in this process, so every limit is per
//! replica. A store shared by replicas (say, Redis) would implement the same
//! trait without touching its callers.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::usage::{Nanos, UsageAccount};
use promptgate_core::config::limits::ClientLimits;
use promptgate_core::error::LimitName;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// A request refused by one of its client's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitExceeded {
    pub limit: LimitName,
    /// Until the limiter would admit the client again.
    pub retry_after: Duration,
}

/// What a finished exchange used, charged to its client.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    pub tokens: u64,
    pub usd: f64,
}

pub trait LimitStore: Send + Sync + 'static {
    /// Admits one request of `client` under `limits` (the config in force),
    /// or names the limit that refuses it. A refusal takes nothing.
    fn admit(&self, client: &str, limits: &ClientLimits) -> Result<(), LimitExceeded>;

    /// Charges what an admitted request used once its exchange finished.
    fn charge(&self, client: &str, usage: Usage);
}

type RequestLimiter<C> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// What the store needs of its clock: governor's, shareable across threads.
pub trait StoreClock: Clock + Clone + Send + Sync + 'static {}
impl<C: Clock + Clone + Send + Sync + 'static> StoreClock for C {}

/// One client's state and the limits it was built for.
struct ClientState<C: StoreClock> {
    limits: ClientLimits,
    requests: Option<RequestLimiter<C>>,
    tokens: Option<UsageAccount>,
    usd: Option<UsageAccount>,
}

/// Limits kept in this process (per replica). The state outlives config
/// reloads: it is looked up by client id, and only the parts whose setting
/// changed are rebuilt.
pub struct LocalStore<C: StoreClock = DefaultClock> {
    clock: C,
    origin: C::Instant,
    clients: Mutex<HashMap<Box<str>, ClientState<C>>>,
}

impl Default for LocalStore {
    fn default() -> LocalStore {
        LocalStore::with_clock(DefaultClock::default())
    }
}

impl<C: StoreClock> LocalStore<C> {
    pub fn with_clock(clock: C) -> LocalStore<C> {
        LocalStore {
            origin: clock.now(),
            clock,
            clients: Mutex::default(),
        }
    }

    fn now(&self) -> Nanos {
        self.clock.now().duration_since(self.origin).as_u64()
    }

    fn request_limiter(&self, per_minute: NonZeroU32) -> RequestLimiter<C> {
        RateLimiter::direct_with_clock(Quota::per_minute(per_minute), self.clock.clone())
    }
}

impl<C: StoreClock> ClientState<C> {
    /// The state for `limits`: what this one kept where the setting is the
    /// same; a new request window where `requests_per_minute` changed (GCRA
    /// state cannot be carried to another rate); the spending carried over
    /// where a token or USD limit changed.
    fn updated(mut self, limits: &ClientLimits, store: &LocalStore<C>, now: Nanos) -> Self {
        if self.limits.requests_per_minute != limits.requests_per_minute {
            self.requests = limits
                .requests_per_minute
                .map(|per_minute| store.request_limiter(per_minute));
        }
        let tokens = limits.tokens_per_minute.map(|n| n.get() as f64);
        self.tokens = account(self.tokens, tokens, MINUTE, now);
        self.usd = account(self.usd, limits.usd_per_day, DAY, now);
        self.limits = *limits;
        self
    }

    fn empty() -> Self {
        ClientState {
            limits: ClientLimits::default(),
            requests: None,
            tokens: None,
            usd: None,
        }
    }

    fn admit(&self, now: Nanos, clock: &C) -> Result<(), LimitExceeded> {
        // Spent budgets first: a refusal must not take a request from the window.
        for (account, limit) in [
            (&self.tokens, LimitName::TokensPerMinute),
            (&self.usd, LimitName::UsdPerDay),
        ] {
            if let Some(retry_after) = account.as_ref().and_then(|a| a.wait(now)) {
                return Err(LimitExceeded { limit, retry_after });
            }
        }
        if let Some(requests) = &self.requests {
            requests.check().map_err(|not_until| LimitExceeded {
                limit: LimitName::RequestsPerMinute,
                retry_after: not_until.wait_time_from(clock.now()),
            })?;
        }
        Ok(())
    }
}

fn account(
    kept: Option<UsageAccount>,
    limit: Option<f64>,
    period: Duration,
    now: Nanos,
) -> Option<UsageAccount> {
    let limit = limit?;
    Some(match kept {
        Some(kept) => kept.relimited(limit, period, now),
        None => UsageAccount::new(limit, period),
    })
}

impl<C: StoreClock> LimitStore for LocalStore<C> {
    fn admit(&self, client: &str, limits: &ClientLimits) -> Result<(), LimitExceeded> {
        let now = self.now();
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let state = match clients.get_mut(client) {
            Some(state) if state.limits == *limits => state,
            _ => {
                let kept = clients.remove(client).unwrap_or_else(ClientState::empty);
                clients
                    .entry(client.into())
                    .or_insert(kept.updated(limits, self, now))
            }
        };
        state.admit(now, &self.clock)
    }

    fn charge(&self, client: &str, usage: Usage) {
        let now = self.now();
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = clients.get_mut(client) {
            if let Some(tokens) = &mut state.tokens {
                tokens.charge(usage.tokens as f64, now);
            }
            if let Some(usd) = &mut state.usd {
                usd.charge(usage.usd, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limits(rpm: Option<u32>, tpm: Option<u64>, usd: Option<f64>) -> ClientLimits {
        ClientLimits {
            requests_per_minute: rpm.and_then(NonZeroU32::new),
            tokens_per_minute: tpm.and_then(NonZeroU64::new),
            usd_per_day: usd,
        }
    }

    fn store() -> (LocalStore<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (LocalStore::with_clock(clock.clone()), clock)
    }

    #[test]
    fn requests_per_minute_admits_a_burst_then_one_per_interval() {
        let (store, clock) = store();
        let sixty = limits(Some(60), None, None);
        for n in 0..60 {
            assert_eq!(store.admit("a", &sixty), Ok(()), "request {n} of the burst");
        }
        let refused = store.admit("a", &sixty).unwrap_err();
        assert_eq!(refused.limit, LimitName::RequestsPerMinute);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        clock.advance(Duration::from_millis(999));
        assert!(store.admit("a", &sixty).is_err());
        clock.advance(Duration::from_millis(1));
        assert_eq!(store.admit("a", &sixty), Ok(()));
        // Another client has its own window.
        assert_eq!(store.admit("b", &sixty), Ok(()));
    }

    #[test]
    fn tokens_refuse_once_spent_without_taking_a_request() {
        let (store, clock) = store();
        let both = limits(Some(2), Some(100), None);
        store.admit("a", &both).unwrap();
        store.charge(
            "a",
            Usage {
                tokens: 150,
                usd: 0.0,
            },
        );
        let refused = store.admit("a", &both).unwrap_err();
        assert_eq!(refused.limit, LimitName::TokensPerMinute);
        // 150 outstanding at 100/min: 50 must free, 30 s.
        assert_eq!(refused.retry_after, Duration::from_nanos(30_000_000_001));
        clock.advance(Duration::from_secs(31));
        // The refused request took none of the two requests a minute.
        assert_eq!(store.admit("a", &both), Ok(()));
    }

    #[test]
    fn usd_per_day_frees_at_the_daily_rate() {
        let (store, clock) = store();
        let dollar = limits(None, None, Some(1.0));
        store.admit("a", &dollar).unwrap();
        store.charge(
            "a",
            Usage {
                tokens: 10,
                usd: 1.0,
            },
        );
        let refused = store.admit("a", &dollar).unwrap_err();
        assert_eq!(refused.limit, LimitName::UsdPerDay);
        clock.advance(Duration::from_secs(1));
        assert_eq!(store.admit("a", &dollar), Ok(()));
    }

    #[test]
    fn an_unchanged_limit_keeps_its_window_and_a_changed_one_takes_effect() {
        let (store, _clock) = store();
        let two = limits(Some(2), Some(1_000), None);
        store.admit("a", &two).unwrap();
        store.admit("a", &two).unwrap();
        store.charge(
            "a",
            Usage {
                tokens: 600,
                usd: 0.0,
            },
        );
        // A reload with the same limits (a fresh, equal value).
        assert!(
            store
                .admit("a", &limits(Some(2), Some(1_000), None))
                .is_err()
        );
        // Raising requests_per_minute starts a new request window at once;
        // the tokens spent stay spent.
        let raised = limits(Some(3), Some(1_000), None);
        assert_eq!(store.admit("a", &raised), Ok(()));
        let lowered_tokens = limits(Some(3), Some(500), None);
        let refused = store.admit("a", &lowered_tokens).unwrap_err();
        assert_eq!(refused.limit, LimitName::TokensPerMinute);
    }

    #[test]
    fn a_charge_for_a_client_without_state_is_ignored() {
        let (store, _clock) = store();
        store.charge(
            "nobody",
            Usage {
                tokens: 5,
                usd: 1.0,
            },
        );
        assert!(store.clients.lock().unwrap().is_empty());
    }
}
