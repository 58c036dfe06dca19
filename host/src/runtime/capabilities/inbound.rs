//! `leadtime:agent-runtime/inbound` (0.1.2): provider webhooks. `open` records how the
//! connection's endpoint checks and routes what arrives and returns its URL; `route` sends events
//! with a key to the call's session. Both take effect at once (not with the call's outcome): a
//! provider given the URL during the call may call it before the call ends.

use crate::domain::inbound::{self, EndpointSpec, Scheme};
use crate::runtime::bindings::inbound::{EndpointSpec as WitSpec, Host, SignatureScheme};
use crate::runtime::bindings::types::HostError;
use crate::runtime::call::CallData;
use crate::runtime::grants::Capability;
use crate::runtime::services::{CapabilityError, spend};

/// `open` and `route` calls one plugin call may make.
pub(crate) const INBOUND_CALLS: u32 = 32;

impl Host for CallData {
    async fn open(&mut self, spec: WitSpec) -> wasmtime::Result<Result<String, HostError>> {
        Ok(self.open_inbound(spec).await.map_err(Into::into))
    }

    async fn route(&mut self, key: String) -> wasmtime::Result<Result<(), HostError>> {
        Ok(self.route_inbound(key).await.map_err(Into::into))
    }
}

/// The WIT spec in the host's terms.
fn spec_of(spec: WitSpec) -> EndpointSpec {
    EndpointSpec {
        scheme: match spec.scheme {
            SignatureScheme::HmacSha256Hex(h) => Scheme::HmacSha256Hex {
                header: h.header,
                prefix: h.prefix,
                event_id_header: h.event_id_header,
            },
            SignatureScheme::StandardWebhooks => Scheme::StandardWebhooks,
        },
        secret: spec.secret,
        route_pointer: spec.route_pointer,
    }
}

impl CallData {
    async fn open_inbound(&mut self, spec: WitSpec) -> Result<String, CapabilityError> {
        self.require(Capability::Inbound)?;
        let session = self.session()?.clone();
        let connection = self.connection()?.clone();
        spend(&mut self.budget.inbound, "inbound calls", INBOUND_CALLS)?;
        let spec = spec_of(spec);
        let declared: Vec<String> = self
            .context
            .secrets
            .iter()
            .filter(|s| *s != inbound::GENERATED_SECRET)
            .cloned()
            .collect();
        spec.validate(&declared)
            .map_err(|e| CapabilityError::Invalid(e.to_string()))?;
        self.services
            .open_inbound(&self.context.plugin_id, &connection, &session, spec)
            .await
    }

    async fn route_inbound(&mut self, key: String) -> Result<(), CapabilityError> {
        self.require(Capability::Inbound)?;
        let session = self.session()?.clone();
        let connection = self.connection()?.clone();
        spend(&mut self.budget.inbound, "inbound calls", INBOUND_CALLS)?;
        inbound::validate_route_key(&key).map_err(|e| CapabilityError::Invalid(e.to_string()))?;
        self.services.route_inbound(&connection, &session, &key).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::runtime::CallLimits;
    use crate::runtime::bindings::inbound::HmacSignature;
    use crate::runtime::call::test_call;
    use crate::runtime::services::fake::FakeServices;

    fn cursor() -> WitSpec {
        WitSpec {
            scheme: SignatureScheme::HmacSha256Hex(HmacSignature {
                header: "X-Webhook-Signature".into(),
                prefix: "sha256=".into(),
                event_id_header: "X-Webhook-ID".into(),
            }),
            secret: None,
            route_pointer: "/id".into(),
        }
    }

    #[tokio::test]
    async fn endpoints_open_and_keys_route_through_the_services() {
        let services = Arc::new(FakeServices::default());
        let mut call = test_call(&["inbound"], services.clone(), CallLimits::default());
        let url = call.open(cursor()).await.unwrap().unwrap();
        assert!(url.ends_with("/inbound/con_test"), "{url}");
        call.route("bc_1".into()).await.unwrap().unwrap();
        assert_eq!(services.inbound_specs.lock().unwrap()[0].route_pointer, "/id");
        assert_eq!(services.routes.lock().unwrap()[0].1, "bc_1");
    }

    #[tokio::test]
    async fn bad_specs_keys_and_missing_grants_are_refused() {
        let refused = |r: wasmtime::Result<Result<String, HostError>>| format!("{:?}", r.unwrap().unwrap_err());
        let services = Arc::new(FakeServices::default());
        let mut call = test_call(&["inbound"], services.clone(), CallLimits::default());
        let undeclared = WitSpec {
            secret: Some("signing".into()),
            ..cursor()
        };
        assert!(refused(call.open(undeclared).await).contains("not declared"));
        // The generated secret's name is not a secret the spec may name.
        let reserved = WitSpec {
            secret: Some(inbound::GENERATED_SECRET.into()),
            ..cursor()
        };
        assert!(refused(call.open(reserved).await).contains("not declared"));
        let route = call.route(String::new()).await.unwrap().unwrap_err();
        assert!(format!("{route:?}").contains("1 to 256 bytes"));
        assert!(services.inbound_specs.lock().unwrap().is_empty());
        assert!(services.routes.lock().unwrap().is_empty());

        let mut ungranted = test_call(&["session"], services.clone(), CallLimits::default());
        assert!(refused(ungranted.open(cursor()).await).contains("`inbound` capability"));

        for _ in 0..INBOUND_CALLS - 3 {
            call.route("k".into()).await.unwrap().unwrap();
        }
        let spent = call.route("k".into()).await.unwrap().unwrap_err();
        assert!(format!("{spent:?}").contains("at most 32 inbound calls"), "{spent:?}");
    }
}
