//! `leadtime:agent-runtime/kv`: small durable state private to the call's connection.

use crate::runtime::bindings::kv::Host;
use crate::runtime::bindings::types::HostError;
use crate::runtime::state::PluginState;

use super::{CapabilityError, spend};

impl Host for PluginState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, HostError>> {
        let connection = match self.kv_access(&key) {
            Ok(connection) => connection,
            Err(refused) => return Ok(Err(refused.into())),
        };
        let services = self.services.clone();
        Ok(services.kv_get(&connection, &key).await.map_err(Into::into))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), HostError>> {
        let connection = match self.kv_access(&key).and_then(|c| self.check_value(&value).map(|()| c)) {
            Ok(connection) => connection,
            Err(refused) => return Ok(Err(refused.into())),
        };
        let (services, cap) = (self.services.clone(), self.limits.kv_connection_bytes);
        Ok(services
            .kv_set(&connection, &key, &value, cap)
            .await
            .map_err(Into::into))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), HostError>> {
        let connection = match self.kv_access(&key) {
            Ok(connection) => connection,
            Err(refused) => return Ok(Err(refused.into())),
        };
        let services = self.services.clone();
        Ok(services.kv_delete(&connection, &key).await.map_err(Into::into))
    }
}

impl PluginState {
    fn check_value(&self, value: &[u8]) -> Result<(), CapabilityError> {
        if value.len() > self.limits.kv_value_bytes {
            return Err(CapabilityError::LimitExceeded(format!(
                "kv values are at most {} bytes; this one has {}",
                self.limits.kv_value_bytes,
                value.len()
            )));
        }
        Ok(())
    }

    /// Checks grant, budget and key; returns the connection whose state is touched.
    fn kv_access(&mut self, key: &str) -> Result<crate::domain::ids::ConnectionId, CapabilityError> {
        self.require("kv")?;
        let connection = self.connection()?.clone();
        let limit = self.limits.kv_operations;
        spend(&mut self.budget.kv_operations, "kv operations", limit)?;
        if key.is_empty() || key.len() > self.limits.kv_key_bytes {
            return Err(CapabilityError::Invalid(format!(
                "kv keys must be 1–{} bytes",
                self.limits.kv_key_bytes
            )));
        }
        if key.contains('\0') {
            return Err(CapabilityError::Invalid(
                "kv keys cannot contain a NUL character (\\u0000)".into(),
            ));
        }
        Ok(connection)
    }
}
