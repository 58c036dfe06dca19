//! Log lines per connection across calls: token buckets, so a plugin called often cannot flood the
//! host's logs either. Lines the buckets refuse are counted, and reported as one line per interval
//! (see [`LogRate::report_dropped`]), never one per call.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Connections whose dropped lines are named in one report; the rest are summed.
const NAMED_IN_REPORT: usize = 5;
/// Keys with drops remembered between reports; beyond this, drops count only in the total (a
/// plugin cannot grow the map by making calls about ever new connections).
const KEYS_REMEMBERED: usize = 1_000;

/// Token buckets of log lines, keyed by connection (or plugin, outside a connection).
pub struct LogRate {
    limiter: DefaultKeyedRateLimiter<String>,
    dropped: Mutex<Dropped>,
}

/// Lines refused since the last report.
#[derive(Default)]
struct Dropped {
    by_key: HashMap<String, u64>,
    total: u64,
}

/// What [`LogRate::take_dropped`] hands over: the total and the keys that dropped most.
#[derive(Debug, PartialEq, Eq)]
pub struct DroppedLines {
    pub total: u64,
    /// `(key, lines)`, most first, at most [`NAMED_IN_REPORT`].
    pub top: Vec<(String, u64)>,
    /// Keys that dropped lines.
    pub keys: usize,
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
            dropped: Mutex::default(),
        }
    }

    /// Spends one line of `key`'s budget; `false` (and the line counted as dropped) when it is
    /// used up.
    pub fn allow(&self, key: &str) -> bool {
        if self.limiter.check_key(&key.to_owned()).is_ok() {
            return true;
        }
        let mut dropped = self.dropped.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        dropped.total += 1;
        let remembered = dropped.by_key.len();
        match dropped.by_key.get_mut(key) {
            Some(count) => *count += 1,
            None if remembered < KEYS_REMEMBERED => {
                dropped.by_key.insert(key.to_owned(), 1);
            }
            None => {}
        }
        false
    }

    /// The lines dropped since the last call, and forgets them.
    pub fn take_dropped(&self) -> Option<DroppedLines> {
        let taken = std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        if taken.total == 0 {
            return None;
        }
        let keys = taken.by_key.len();
        let mut top: Vec<(String, u64)> = taken.by_key.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(NAMED_IN_REPORT);
        Some(DroppedLines {
            total: taken.total,
            top,
            keys,
        })
    }

    /// Logs one warning for the lines dropped since the last report (none if nothing was).
    pub fn report_dropped(&self, interval: std::time::Duration) {
        if let Some(dropped) = self.take_dropped() {
            let top = dropped
                .top
                .iter()
                .map(|(key, lines)| format!("{key}={lines}"))
                .collect::<Vec<_>>()
                .join(",");
            tracing::warn!(
                target: "plugin",
                dropped = dropped.total,
                connections = dropped.keys,
                top = %top,
                "plugin log lines dropped by the per-connection rate limit in the last {} s",
                interval.as_secs()
            );
        }
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

    #[test]
    fn drops_are_counted_per_key_and_handed_over_once() {
        let rate = LogRate::new(1, 1);
        assert_eq!(rate.take_dropped(), None);
        for key in ["a", "b", "b", "c", "c", "c"] {
            rate.allow(key);
        }
        // Each key's first line passed; the others were dropped.
        assert_eq!(
            rate.take_dropped(),
            Some(DroppedLines {
                total: 3,
                top: vec![("c".into(), 2), ("b".into(), 1)],
                keys: 2,
            })
        );
        assert_eq!(rate.take_dropped(), None, "a report forgets what it reported");
    }

    #[test]
    fn the_drop_counts_stay_bounded_however_many_keys_drop() {
        let rate = LogRate::new(1, 1);
        for n in 0..(KEYS_REMEMBERED + 500) {
            let key = format!("con_{n}");
            rate.allow(&key);
            rate.allow(&key);
        }
        let dropped = rate.take_dropped().expect("drops");
        assert_eq!(dropped.total, (KEYS_REMEMBERED + 500) as u64);
        assert_eq!(dropped.keys, KEYS_REMEMBERED);
        assert_eq!(dropped.top.len(), NAMED_IN_REPORT);
    }
}
