//! Log lines per connection across calls: token buckets, so a plugin called often cannot flood the
//! host's logs either.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Token buckets of log lines, keyed by connection (or plugin, outside a connection).
pub struct LogRate {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for LogRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogRate")
    }
}

impl LogRate {
    /// `per_second` lines per key sustained, bursts of `burst`.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// Spends one line of `key`'s budget; `false` when it is used up.
    pub fn allow(&self, key: &str) -> bool {
        self.limiter.check_key(&key.to_owned()).is_ok()
    }

    /// Forgets full buckets (bounded memory with many connections).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_burst_are_refused_per_key() {
        let rate = LogRate::new(1, 3);
        assert!((0..3).all(|_| rate.allow("conn_a")));
        assert!(!rate.allow("conn_a"));
        assert!(rate.allow("conn_b"), "each connection has its own bucket");
    }
}
