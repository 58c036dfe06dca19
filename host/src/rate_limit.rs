//! Per-token request rate limits (OWASP API4). Each replica keeps its own buckets: a limit is
//! protection against floods, not an accounting record, so it needs no shared state.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::ids::TokenId;
use crate::error::AppError;

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
    pub fn check(&self, token: &TokenId) -> Result<(), AppError> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        match limiter.check_key(&token.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(AppError::RateLimited {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_retry_time() {
        let limits = RateLimits::new(60, 3);
        let token = TokenId::generate();
        for _ in 0..3 {
            limits.check(&token).unwrap();
        }
        match limits.check(&token) {
            Err(AppError::RateLimited { retry_after_secs }) => assert!((1..=2).contains(&retry_after_secs)),
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
