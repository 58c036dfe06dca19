//! `leadtime:agent-runtime/model` (0.1.3): a model request is checked here and queued as a job
//! committed with the call's outcome; the session worker performs it outside any instance
//! (`sessions::model_calls`) and calls the plugin back with the answer.

use crate::domain::ids::JobId;
use crate::domain::jobs::ModelCall;
use crate::domain::model::{self, ModelRequest, WireFormat};
use crate::runtime::bindings::model::{Host, ModelRequest as WitRequest, WireFormat as WitFormat};
use crate::runtime::bindings::types::HostError;
use crate::runtime::call::{CallData, QueuedModelCall};
use crate::runtime::grants::Capability;
use crate::runtime::services::{CapabilityError, spend};

use super::http::host_allowed;

/// `model` requests one plugin call may make.
pub(crate) const MODEL_REQUESTS: u32 = 1;
/// Model requests one session may have waiting.
const PENDING_PER_SESSION: u64 = 1;
/// Largest callback payload, in bytes.
const MAX_CALLBACK_BYTES: usize = 16 << 10;

impl Host for CallData {
    async fn request(&mut self, request: WitRequest, callback: String) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self.queue_model_call(request, callback).await.map_err(Into::into))
    }
}

impl CallData {
    async fn queue_model_call(&mut self, request: WitRequest, callback: String) -> Result<String, CapabilityError> {
        self.require(Capability::Model)?;
        let session = self.session()?.clone();
        spend(&mut self.budget.model_requests, "model requests", MODEL_REQUESTS)?;
        if callback.len() > MAX_CALLBACK_BYTES {
            return Err(CapabilityError::LimitExceeded(format!(
                "a model request's callback is at most {MAX_CALLBACK_BYTES} bytes"
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&callback)
            .map_err(|e| CapabilityError::Invalid(format!("the callback must be JSON: {e}")))?;
        if request.messages.len() > model::MAX_MESSAGES_BYTES || request.tools.len() > model::MAX_TOOLS_BYTES {
            return Err(CapabilityError::LimitExceeded(format!(
                "a model request's messages are at most {} KiB and its tools {} KiB",
                model::MAX_MESSAGES_BYTES >> 10,
                model::MAX_TOOLS_BYTES >> 10
            )));
        }
        let parse = |what: &str, text: &str| {
            serde_json::from_str(text).map_err(|e| CapabilityError::Invalid(format!("`{what}` must be JSON: {e}")))
        };
        let checked = ModelRequest {
            format: match request.format {
                WitFormat::AnthropicMessages => WireFormat::AnthropicMessages,
                WitFormat::OpenaiChat => WireFormat::OpenaiChat,
            },
            base_url: request.base_url,
            model: request.model,
            api_key_secret: request.api_key_secret,
            system: request.system,
            messages: parse("messages", &request.messages)?,
            tools: parse("tools", &request.tools)?,
            max_tokens: request.max_tokens,
        };
        checked.check().map_err(CapabilityError::Invalid)?;
        let host = url::Url::parse(&checked.base_url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            })
            .unwrap_or_default();
        let workspace_allows = self
            .context
            .workspace_outbound_hosts
            .as_ref()
            .is_none_or(|hosts| host_allowed(hosts, &host));
        if !host_allowed(&self.context.outbound_hosts, &host) || !workspace_allows {
            return Err(CapabilityError::NotAllowed(format!(
                "model host `{host}` is not among the plugin's outbound hosts (or the workspace's narrowing of them)"
            )));
        }
        if let Some(secret) = &checked.api_key_secret
            && !self.context.secrets.iter().any(|s| s == secret)
        {
            return Err(CapabilityError::NotAllowed(format!(
                "secret `{secret}` is not declared in the plugin's manifest"
            )));
        }
        let pending = self.services.pending_model_calls(&session).await? + self.effects.model_calls.len() as u64;
        if pending >= PENDING_PER_SESSION {
            return Err(CapabilityError::LimitExceeded(format!(
                "a session may have {PENDING_PER_SESSION} model request waiting; wait for its answer"
            )));
        }
        self.hold_effect_bytes(checked.messages.to_string().len() + callback.len())?;
        let id = JobId::generate();
        self.effects.model_calls.push(QueuedModelCall {
            id: id.clone(),
            call: ModelCall {
                id: id.to_string(),
                request: checked,
                callback,
            },
        });
        Ok(id.to_string())
    }
}
