//! Request rate limits (OWASP API4): per API token, and failed authentications per client address.
//! Each replica keeps its own buckets: a limit is protection against floods, not an accounting
//! record, so it needs no shared state.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::ids::TokenId;
/// A request over its budget: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests; retry in {retry_after_secs} s")]
pub struct Limited {
    pub retry_after_secs: u64,
}

/// Token buckets keyed by API token.
pub struct RateLimits {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl RateLimits {
    /// `per_minute` sustained requests per token with bursts of up to `burst`; `per_minute = 0`
    /// turns limiting off.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Spends one request of `token`'s budget, or says when to retry.
    pub fn check(&self, token: &TokenId) -> Result<(), Limited> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        match limiter.check_key(&token.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(Limited {
                    retry_after_secs: wait.as_secs().max(1),
                })
            }
        }
    }

    /// Forgets buckets that are full again (bounded memory with many tokens).
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
    }
}

/// Addresses locked out at once at most; beyond this the oldest lockouts are dropped first.
const MAX_LOCKED_OUT: usize = 100_000;

/// Failed authentications per client address: an address that fails too often is locked out —
/// every request from it that carries a token is answered 429 without looking the token up —
/// until its budget refills.
pub struct FailedAuthLimits {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    locked_out: Mutex<HashMap<IpAddr, Instant>>,
}

impl std::fmt::Debug for FailedAuthLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailedAuthLimits")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl FailedAuthLimits {
    /// `per_minute` failures per address with bursts of `burst`; 0 turns the lockout off.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
            locked_out: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses `address` while it is locked out.
    pub fn check(&self, address: Option<IpAddr>) -> Result<(), Limited> {
        let Some(address) = address else { return Ok(()) };
        let Ok(locked) = self.locked_out.lock() else {
            return Ok(());
        };
        match locked.get(&address) {
            Some(until) if *until > Instant::now() => Err(Self::refusal(*until - Instant::now())),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `address`; the error when this one locks it out.
    pub fn failed(&self, address: Option<IpAddr>) -> Result<(), Limited> {
        let (Some(limiter), Some(address)) = (&self.limiter, address) else {
            return Ok(());
        };
        match limiter.check_key(&address) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now()).max(Duration::from_secs(1));
                if let Ok(mut locked) = self.locked_out.lock() {
                    if locked.len() >= MAX_LOCKED_OUT {
                        let now = Instant::now();
                        locked.retain(|_, until| *until > now);
                        if locked.len() >= MAX_LOCKED_OUT {
                            locked.clear();
                        }
                    }
                    locked.insert(address, Instant::now() + wait);
                }
                tracing::warn!(%address, retry_after_secs = wait.as_secs(), "too many failed authentications; address locked out");
                Err(Self::refusal(wait))
            }
        }
    }

    fn refusal(wait: Duration) -> Limited {
        Limited {
            retry_after_secs: wait.as_secs().max(1),
        }
    }

    /// Forgets lockouts that ended and buckets that are full again.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
        if let Ok(mut locked) = self.locked_out.lock() {
            let now = Instant::now();
            locked.retain(|_, until| *until > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_failing_too_often_is_locked_out() {
        let limits = FailedAuthLimits::new(60, 3);
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            limits.failed(Some(address)).unwrap();
            limits.check(Some(address)).unwrap();
        }
        assert!(matches!(limits.failed(Some(address)), Err(Limited { .. })));
        assert!(matches!(limits.check(Some(address)), Err(Limited { .. })));
        // Other addresses are not affected; unknown addresses are never locked out.
        limits.check(Some("192.0.2.8".parse().unwrap())).unwrap();
        limits.failed(None).unwrap();
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_retry_time() {
        let limits = RateLimits::new(60, 3);
        let token = TokenId::generate();
        for _ in 0..3 {
            limits.check(&token).unwrap();
        }
        match limits.check(&token) {
            Err(Limited { retry_after_secs }) => assert!((1..=2).contains(&retry_after_secs)),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Other tokens have their own buckets.
        limits.check(&TokenId::generate()).unwrap();
        // Zero turns limiting off.
        let off = RateLimits::new(0, 0);
        for _ in 0..1000 {
            off.check(&token).unwrap();
        }
    }
}
