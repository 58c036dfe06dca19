//! What happens after an attempt: the delivery policy as one pure function (anchors: Standard
//! Webhooks guidance, Svix). Only 2xx succeeds; a 3xx is a failure (redirects are never followed);
//! `410 Gone` stops the endpoint; `429`/`503` wait as long as `Retry-After` says; anything else
//! retries on the schedule (with jitter) until it runs out.

use std::time::Duration;

use crate::domain::time::Timestamp;

/// What one attempt produced.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    /// The HTTP status, when the receiver answered.
    pub status_code: Option<u16>,
    pub latency: Duration,
    /// The start of the response body.
    pub response_body: Option<String>,
    /// Why it failed (transport error, or a non-2xx status).
    pub error: Option<String>,
    /// How long the receiver asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// Set when the target was refused before connecting (a private or internal address).
    pub refused: Option<String>,
}

impl AttemptResult {
    /// Only 2xx counts as delivered.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The longest `Retry-After` honoured; longer asks wait this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// The next step for a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum NextStep {
    /// The receiver took it.
    Delivered,
    /// Try again at this time.
    RetryAt(Timestamp),
    /// Give up: no attempts left, or retrying cannot help (a refused target).
    Fail,
    /// The receiver said the endpoint is gone (410): stop sending to it.
    DisableEndpoint,
}

/// Decides the next step after attempt number `attempt_in_schedule` (1 for the first attempt of
/// the current schedule). `jitter` (e.g. 0.9–1.1) scales scheduled waits, not `Retry-After`.
pub fn next_step(
    result: &AttemptResult,
    attempt_in_schedule: i64,
    schedule: &[Duration],
    now: Timestamp,
    jitter: f64,
) -> NextStep {
    if result.succeeded() {
        return NextStep::Delivered;
    }
    if result.refused.is_some() {
        return NextStep::Fail;
    }
    if result.status_code == Some(410) {
        return NextStep::DisableEndpoint;
    }
    let index = usize::try_from(attempt_in_schedule - 1).unwrap_or(0);
    let Some(scheduled) = schedule.get(index) else {
        return NextStep::Fail;
    };
    let wait = match (result.status_code, result.retry_after) {
        (Some(429 | 503), Some(asked)) => asked.min(MAX_RETRY_AFTER),
        _ => scheduled.mul_f64(jitter),
    };
    NextStep::RetryAt(now.plus_millis(wait.as_millis() as i64))
}

/// Parses a `Retry-After` value: delay seconds, or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = at.timestamp_millis() - now.millis();
    Some(Duration::from_millis(ms.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    fn schedule() -> Vec<Duration> {
        crate::config::parse_schedule("5s,5m,30m,2h,5h,10h,10h").unwrap()
    }

    fn answered(status: u16) -> AttemptResult {
        AttemptResult {
            status_code: Some(status),
            latency: Duration::from_millis(3),
            response_body: Some(String::new()),
            error: (!(200..300).contains(&status)).then(|| format!("HTTP {status}")),
            retry_after: None,
            refused: None,
        }
    }

    fn failed(error: &str) -> AttemptResult {
        AttemptResult {
            status_code: None,
            latency: Duration::ZERO,
            response_body: None,
            error: Some(error.into()),
            retry_after: None,
            refused: None,
        }
    }

    #[test]
    fn only_2xx_is_delivered() {
        assert_eq!(next_step(&answered(200), 1, &schedule(), NOW, 1.0), NextStep::Delivered);
        assert_eq!(next_step(&answered(202), 1, &schedule(), NOW, 1.0), NextStep::Delivered);
        for status in [301, 302, 400, 401, 404, 500, 502] {
            assert_eq!(
                next_step(&answered(status), 1, &schedule(), NOW, 1.0),
                NextStep::RetryAt(NOW.plus_millis(5_000)),
                "{status}"
            );
        }
    }

    #[test]
    fn the_schedule_spans_about_a_day_with_jitter_then_gives_up() {
        let waits: Vec<i64> = (1..=7)
            .map(|n| match next_step(&failed("refused"), n, &schedule(), NOW, 1.0) {
                NextStep::RetryAt(at) => at.millis() - NOW.millis(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            waits,
            [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]
        );
        assert!(
            waits.iter().sum::<i64>() > 24 * 3_600_000,
            "8 attempts over more than a day"
        );
        assert_eq!(next_step(&failed("refused"), 8, &schedule(), NOW, 1.0), NextStep::Fail);
        assert_eq!(
            next_step(&failed("x"), 2, &schedule(), NOW, 1.1),
            NextStep::RetryAt(NOW.plus_millis(330_000))
        );
    }

    #[test]
    fn gone_disables_and_refused_targets_fail_at_once() {
        assert_eq!(
            next_step(&answered(410), 1, &schedule(), NOW, 1.0),
            NextStep::DisableEndpoint
        );
        let refused = AttemptResult {
            refused: Some("refused to connect to 127.0.0.1".into()),
            ..failed("refused")
        };
        assert_eq!(next_step(&refused, 1, &schedule(), NOW, 1.0), NextStep::Fail);
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        for status in [429, 503] {
            let result = AttemptResult {
                retry_after: Some(Duration::from_secs(120)),
                ..answered(status)
            };
            assert_eq!(
                next_step(&result, 1, &schedule(), NOW, 1.0),
                NextStep::RetryAt(NOW.plus_millis(120_000))
            );
        }
        let ignored = AttemptResult {
            retry_after: Some(Duration::from_secs(120)),
            ..answered(500)
        };
        assert_eq!(
            next_step(&ignored, 1, &schedule(), NOW, 1.0),
            NextStep::RetryAt(NOW.plus_millis(5_000))
        );
        let huge = AttemptResult {
            retry_after: Some(Duration::from_secs(10 * 86_400)),
            ..answered(429)
        };
        assert_eq!(
            next_step(&huge, 1, &schedule(), NOW, 1.0),
            NextStep::RetryAt(NOW.plus_millis(86_400_000))
        );
        let last = AttemptResult {
            retry_after: Some(Duration::from_secs(1)),
            ..answered(503)
        };
        assert_eq!(next_step(&last, 8, &schedule(), NOW, 1.0), NextStep::Fail);
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("120", NOW), Some(Duration::from_secs(120)));
        let now = Timestamp::parse_iso("2026-05-23T12:00:00Z").unwrap();
        assert_eq!(
            parse_retry_after("Sat, 23 May 2026 12:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sat, 23 May 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
