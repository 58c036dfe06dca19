//! `leadtime:agent-runtime/kv`: small durable state private to the call's connection.

use crate::runtime::bindings::kv::Host;
use crate::runtime::bindings::types::HostError;
use crate::runtime::call::CallData;
use crate::runtime::grants::Capability;

use crate::runtime::services::{CapabilityError, spend};

impl Host for CallData {
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

impl CallData {
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
        self.require(Capability::Kv)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::runtime::CallLimits;
    use crate::runtime::call::test_call;
    use crate::runtime::services::fake::FakeServices;

    fn refusal(result: wasmtime::Result<Result<impl std::fmt::Debug, HostError>>) -> String {
        match result.expect("no trap") {
            Err(error) => format!("{error:?}"),
            Ok(value) => panic!("expected a refusal, got {value:?}"),
        }
    }

    #[tokio::test]
    async fn values_round_trip_within_the_connection() {
        let services = Arc::new(FakeServices::default());
        let mut call = test_call(&["kv"], services.clone(), CallLimits::default());
        call.set("a".into(), b"1".to_vec()).await.unwrap().unwrap();
        assert_eq!(call.get("a".into()).await.unwrap().unwrap(), Some(b"1".to_vec()));
        call.delete("a".into()).await.unwrap().unwrap();
        assert_eq!(call.get("a".into()).await.unwrap().unwrap(), None);
        assert!(services.kv.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn grants_budgets_and_sizes_are_enforced() {
        let services = Arc::new(FakeServices::default());
        let mut ungranted = test_call(&["log"], services.clone(), CallLimits::default());
        assert!(refusal(ungranted.get("a".into()).await).contains("did not declare the `kv` capability"));

        let limits = CallLimits {
            kv_operations: 3,
            ..CallLimits::default()
        };
        let mut call = test_call(&["kv"], services.clone(), limits);
        assert!(refusal(call.set("k".repeat(300), b"1".to_vec()).await).contains("kv keys must be 1–256 bytes"));
        assert!(refusal(call.set("a\0b".into(), b"1".to_vec()).await).contains("NUL"));
        assert!(refusal(call.set("big".into(), vec![0; 65 << 10]).await).contains("at most 65536 bytes"));
        assert!(refusal(call.get("a".into()).await).contains("at most 3 kv operations"));
        assert!(services.kv.lock().unwrap().is_empty(), "nothing refused was written");
    }
}
