//! `leadtime:agent-runtime/timers` (0.1.1): durable per-session timers. A timer becomes a job row
//! (the session worker's timer job) committed only when the call succeeds, so it survives restarts
//! and a failed call schedules nothing; the session worker delivers it through `on-event`.

use crate::domain::ids::JobId;
use crate::runtime::bindings::timers::Host;
use crate::runtime::bindings::types::HostError;
use crate::runtime::call::{CallData, QueuedTimer};
use crate::runtime::grants::Capability;

use crate::runtime::services::{CapabilityError, spend};

/// Whether `id` looks like an id `schedule` returns (`job_` and a ULID).
fn is_timer_id(id: &str) -> bool {
    id.strip_prefix(JobId::PREFIX)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|ulid| ulid.len() == 26 && ulid.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Shortest and longest delay a plugin may ask for.
const MIN_DELAY_MS: u64 = 1_000;
const MAX_DELAY_MS: u64 = 7 * 24 * 3_600 * 1_000;

impl Host for CallData {
    async fn schedule(&mut self, delay_ms: u64, payload: String) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self.schedule_timer(delay_ms, payload).await.map_err(Into::into))
    }

    async fn cancel(&mut self, timer_id: String) -> wasmtime::Result<Result<(), HostError>> {
        Ok(self.cancel_timer(timer_id).map_err(Into::into))
    }
}

impl CallData {
    async fn schedule_timer(&mut self, delay_ms: u64, payload: String) -> Result<String, CapabilityError> {
        self.require(Capability::Timers)?;
        let session = self.session()?.clone();
        let limit = self.limits.timers;
        spend(&mut self.budget.timers, "timer schedules", limit)?;
        if !(MIN_DELAY_MS..=MAX_DELAY_MS).contains(&delay_ms) {
            return Err(CapabilityError::Invalid(format!(
                "a timer's delay is {MIN_DELAY_MS} to {MAX_DELAY_MS} ms, not {delay_ms}"
            )));
        }
        if payload.len() > self.limits.timer_payload_bytes {
            return Err(CapabilityError::LimitExceeded(format!(
                "a timer's payload is at most {} bytes, not {}",
                self.limits.timer_payload_bytes,
                payload.len()
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&payload)
            .map_err(|e| CapabilityError::Invalid(format!("a timer's payload must be JSON: {e}")))?;
        let pending = self.services.pending_timers(&session).await? + self.effects.timers.len() as u64;
        if pending >= self.limits.pending_timers_per_session {
            return Err(CapabilityError::LimitExceeded(format!(
                "a session may have at most {} timers pending",
                self.limits.pending_timers_per_session
            )));
        }
        self.hold_effect_bytes(payload.len())?;
        let id = JobId::generate();
        self.effects.timers.push(QueuedTimer {
            id: id.clone(),
            delay_ms,
            payload,
        });
        Ok(id.to_string())
    }

    fn cancel_timer(&mut self, timer_id: String) -> Result<(), CapabilityError> {
        self.require(Capability::Timers)?;
        self.session()?;
        let limit = self.limits.timers;
        spend(&mut self.budget.timer_cancels, "timer cancels", limit)?;
        if !is_timer_id(&timer_id) {
            // Not an id `schedule` ever returned, so no timer to cancel.
            return Ok(());
        }
        let before = self.effects.timers.len();
        self.effects.timers.retain(|t| t.id.as_str() != timer_id);
        if self.effects.timers.len() == before && !self.effects.canceled_timers.contains(&timer_id) {
            self.effects.canceled_timers.push(timer_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_schedule_returns_can_be_canceled() {
        assert!(is_timer_id(JobId::generate().as_str()));
        assert!(!is_timer_id("job_"));
        assert!(!is_timer_id("ses_01hzz0000000000000000000000"));
        assert!(!is_timer_id(&format!("job_{}", "x".repeat(10_000))));
    }

    #[tokio::test]
    async fn timers_are_queued_canceled_and_bounded() {
        use std::sync::Arc;

        use crate::runtime::CallLimits;
        use crate::runtime::call::test_call;
        use crate::runtime::services::fake::FakeServices;

        let services = Arc::new(FakeServices::default());
        let mut call = test_call(&["timers"], services.clone(), CallLimits::default());
        let first = call.schedule(60_000, r#"{"poll":1}"#.into()).await.unwrap().unwrap();
        let second = call.schedule(1_000, "{}".into()).await.unwrap().unwrap();
        call.cancel(first.clone()).await.unwrap().unwrap();
        assert_eq!(
            call.effects.timers.len(),
            1,
            "a timer canceled in its own call is dropped"
        );
        assert_eq!(call.effects.timers[0].id.as_str(), second);
        assert!(call.effects.canceled_timers.is_empty());
        // An earlier call's timer is canceled at commit.
        let earlier = JobId::generate().to_string();
        call.cancel(earlier.clone()).await.unwrap().unwrap();
        assert_eq!(call.effects.canceled_timers, [earlier]);

        let refused = |r: wasmtime::Result<Result<String, HostError>>| format!("{:?}", r.unwrap().unwrap_err());
        assert!(refused(call.schedule(10, "{}".into()).await).contains("1000 to"));
        assert!(refused(call.schedule(1_000, "not json".into()).await).contains("must be JSON"));
        *services.pending_timers.lock().unwrap() = 20;
        assert!(refused(call.schedule(1_000, "{}".into()).await).contains("at most 20 timers pending"));
    }
}
