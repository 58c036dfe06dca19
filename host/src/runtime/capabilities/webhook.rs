//! `leadtime:agent-runtime/webhook`: queue a signed delivery. The webhook is committed to the
//! outbox only when the call succeeds; signing and retries belong to `delivery`.

use crate::domain::ids::DeliveryId;
use crate::runtime::bindings::types::HostError;
use crate::runtime::bindings::webhook::{Host, OutgoingWebhook};
use crate::runtime::state::{PluginState, QueuedWebhook};

use super::{CapabilityError, spend};

impl Host for PluginState {
    async fn deliver(&mut self, request: OutgoingWebhook) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self.queue_webhook(request).map_err(Into::into))
    }
}

impl PluginState {
    fn queue_webhook(&mut self, request: OutgoingWebhook) -> Result<String, CapabilityError> {
        self.require("webhook")?;
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
