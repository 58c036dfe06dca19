//! `leadtime:agent-runtime/webhook`: queue a signed delivery. The webhook is committed to the
//! outbox only when the call succeeds; signing and retries belong to `delivery`.

use crate::domain::ids::DeliveryId;
use crate::runtime::bindings::types::HostError;
use crate::runtime::bindings::webhook::{Host, OutgoingWebhook};
use crate::runtime::call::{CallData, QueuedWebhook};
use crate::runtime::grants::Capability;

use crate::runtime::services::{CapabilityError, spend};

impl Host for CallData {
    async fn deliver(&mut self, request: OutgoingWebhook) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self.queue_webhook(request).map_err(Into::into))
    }
}

impl CallData {
    fn queue_webhook(&mut self, request: OutgoingWebhook) -> Result<String, CapabilityError> {
        self.require(Capability::Webhook)?;
        self.session()?;
        let limit = self.limits.webhooks;
        spend(&mut self.budget.webhooks, "webhook deliveries", limit)?;
        let url = url::Url::parse(request.url.trim())
            .map_err(|e| CapabilityError::Invalid(format!("webhook URL `{}` is not a URL: {e}", request.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(CapabilityError::Invalid(format!(
                "webhook URL `{}` must be an absolute http(s) URL",
                request.url
            )));
        }
        if request.body.len() > self.limits.webhook_body_bytes {
            return Err(CapabilityError::LimitExceeded(format!(
                "webhook body is {} bytes; at most {} are allowed",
                request.body.len(),
                self.limits.webhook_body_bytes
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&request.body)
            .map_err(|e| CapabilityError::Invalid(format!("webhook body is not JSON: {e}")))?;
        self.hold_effect_bytes(request.body.len() + request.url.len())?;
        let id = DeliveryId::generate();
        self.effects.webhooks.push(QueuedWebhook {
            id: id.clone(),
            url: url.to_string(),
            body: request.body,
        });
        Ok(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::runtime::CallLimits;
    use crate::runtime::call::test_call;
    use crate::runtime::services::fake::FakeServices;

    fn webhook(url: &str, body: &str) -> OutgoingWebhook {
        OutgoingWebhook {
            url: url.into(),
            body: body.into(),
        }
    }

    #[tokio::test]
    async fn webhooks_are_queued_for_commit_and_checked() {
        let limits = CallLimits {
            effect_bytes: 64,
            ..CallLimits::default()
        };
        let mut call = test_call(&["webhook"], Arc::new(FakeServices::default()), limits);
        let id = call
            .deliver(webhook("https://hooks.example/x", r#"{"a":1}"#))
            .await
            .unwrap()
            .unwrap();
        assert!(id.starts_with("msg_"), "{id}");
        assert_eq!(call.effects.webhooks.len(), 1);
        for (request, expected) in [
            (webhook("ftp://x", "{}"), "must be an absolute http(s) URL"),
            (webhook("https://hooks.example/x", "not json"), "not JSON"),
            (
                webhook("https://hooks.example/x", &format!(r#"{{"p":"{}"}}"#, "x".repeat(60))),
                "at most 0 MiB of webhooks and timers",
            ),
        ] {
            let refused = call.deliver(request).await.unwrap().unwrap_err();
            assert!(format!("{refused:?}").contains(expected), "{refused:?}");
        }
        assert_eq!(call.effects.webhooks.len(), 1, "refused webhooks are not queued");
    }
}
