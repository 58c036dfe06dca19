//! `leadtime:agent-runtime/tasks` (0.1.3): the task tools as host calls, acting as the session's
//! bot — the same implementation, checks and audit as the MCP tools and the REST calls.

use serde_json::{Value, json};

use crate::runtime::bindings::tasks::Host;
use crate::runtime::bindings::types::HostError;
use crate::runtime::call::CallData;
use crate::runtime::grants::Capability;
use crate::runtime::services::{CapabilityError, spend};

/// `tasks` calls one plugin call may make.
pub(crate) const TASK_CALLS: u32 = 64;

impl Host for CallData {
    async fn session_context(&mut self) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self.task_tool("get_session_context", json!({})).await)
    }

    async fn get_task(&mut self, task: String) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self.task_tool("get_task", json!({ "task": task })).await)
    }

    async fn add_comment(&mut self, task: String, body: String) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self
            .task_tool("add_comment", json!({ "task": task, "comment": body }))
            .await)
    }

    async fn list_statuses(&mut self) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self.task_tool("list_statuses", json!({})).await)
    }

    async fn update_status(&mut self, task: String, status: String) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self
            .task_tool("update_task_status", json!({ "task": task, "status": status }))
            .await)
    }
}

impl CallData {
    /// Runs task tool `tool` as the session's bot; its JSON answer.
    async fn task_tool(&mut self, tool: &str, arguments: Value) -> Result<String, HostError> {
        let session = match self.task_access() {
            Ok(session) => session,
            Err(refused) => return Err(refused.into()),
        };
        let services = self.services.clone();
        services
            .task_tool(&session, tool, arguments)
            .await
            .map(|answer| answer.to_string())
            .map_err(Into::into)
    }

    fn task_access(&mut self) -> Result<crate::domain::ids::SessionId, CapabilityError> {
        self.require(Capability::Tasks)?;
        let session = self.session()?.clone();
        spend(&mut self.budget.task_calls, "tasks calls", TASK_CALLS)?;
        Ok(session)
    }
}
