//! What a plugin says about itself (its `manifest()`), checked once when it loads: the contract
//! version it was built against, its id, config schema, secrets, outbound hosts and capabilities
//! (parsed into a typed [`Grants`] set).

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings;
use super::grants::Grants;

/// The contract versions this host can load, newest first.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.3", "0.1.2", "0.1.1", "0.1.0"];
/// The exported interface every plugin must provide (without the version).
const PLUGIN_INTERFACE: &str = "leadtime:agent-runtime/plugin";

/// How a plugin describes itself (its `manifest()`), as the host keeps and serves it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Connection-type id, e.g. `self-hosted`.
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    /// JSON Schema of the connection config.
    #[schema(value_type = Object)]
    pub config_schema: serde_json::Value,
    /// Secrets an admin provides, by name.
    pub secrets: Vec<SecretSpec>,
    /// Hosts the plugin may call.
    pub outbound_hosts: Vec<String>,
    /// Host capabilities the plugin uses (`session`, `webhook`, `kv`, `log`, `timers`, `http`).
    pub capabilities: Vec<String>,
    /// The contract version the plugin was built against.
    pub wit_version: String,
}

/// A secret a connection type needs.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SecretSpec {
    pub name: String,
    pub description: String,
}

/// The `leadtime:agent-runtime` version a component was built against (from its export name).
pub(crate) fn contract_version(engine: &Engine, component: &Component) -> Result<String, String> {
    let ty = component.component_type();
    let mut found = Vec::new();
    for (name, _) in ty.exports(engine) {
        if let Some(version) = name
            .strip_prefix(PLUGIN_INTERFACE)
            .and_then(|rest| rest.strip_prefix('@'))
        {
            found.push(version.to_owned());
        }
    }
    match found.as_slice() {
        [] => Err(format!(
            "it does not export `{PLUGIN_INTERFACE}`; build it with leadtime-plugin-sdk (`export_plugin!`) against wit/ version {}",
            SUPPORTED_WIT_VERSIONS[0]
        )),
        [version] if SUPPORTED_WIT_VERSIONS.contains(&version.as_str()) => Ok(version.clone()),
        [version] => Err(format!(
            "it was built against {PLUGIN_INTERFACE}@{version}, which this host does not support (supported: {})",
            SUPPORTED_WIT_VERSIONS.join(", ")
        )),
        _ => Err(format!(
            "it exports several versions of `{PLUGIN_INTERFACE}`: {}",
            found.join(", ")
        )),
    }
}

/// Checks a plugin's manifest; returns it as the host keeps it, with its capabilities parsed.
pub(crate) fn check_manifest(
    raw: bindings::types::PluginManifest,
    wit_version: String,
) -> Result<(Manifest, Grants), String> {
    let id_ok = !raw.id.is_empty()
        && raw.id.len() <= 64
        && raw
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && raw.id.starts_with(|c: char| c.is_ascii_lowercase());
    if !id_ok {
        return Err(format!(
            "id `{}` must be 1–64 characters of a-z, 0-9 and `-`, starting with a letter",
            raw.id
        ));
    }
    if raw.name.trim().is_empty() {
        return Err("name must not be empty".into());
    }
    let config_schema: serde_json::Value =
        serde_json::from_str(&raw.config_schema).map_err(|e| format!("config-schema is not JSON: {e}"))?;
    if !config_schema.is_object() {
        return Err("config-schema must be a JSON Schema object".into());
    }
    let grants = Grants::parse(&raw.capabilities)?;
    if let Some(bad) = raw.outbound_hosts.iter().find(|h| !is_host_pattern(h)) {
        return Err(format!(
            "outbound host `{bad}` must be a host name, an IP address or `*.example.com` — no scheme, port or path"
        ));
    }
    if !raw.outbound_hosts.is_empty()
        && !grants.contains(super::grants::Capability::Http)
        && !grants.contains(super::grants::Capability::Model)
    {
        return Err(
            "it lists outbound-hosts but neither the `http` nor the `model` capability; add the one it uses to capabilities"
                .into(),
        );
    }
    for (reserved, what) in [
        (
            crate::domain::inbound::GENERATED_SECRET,
            "the host-generated provider webhook secret",
        ),
        (
            crate::domain::session_tokens::SECRET_NAME,
            "the session token of the `task-tools` capability",
        ),
    ] {
        if raw.secrets.iter().any(|s| s.name == reserved) {
            return Err(format!(
                "secret name `{reserved}` is reserved for {what}; choose another name"
            ));
        }
    }
    let manifest = Manifest {
        id: raw.id,
        name: raw.name,
        version: raw.version,
        description: raw.description,
        config_schema,
        secrets: raw
            .secrets
            .into_iter()
            .map(|s| SecretSpec {
                name: s.name,
                description: s.description,
            })
            .collect(),
        outbound_hosts: raw.outbound_hosts,
        capabilities: raw.capabilities,
        wit_version,
    };
    Ok((manifest, grants))
}

/// Why `wasm` is plainly not a component, in words a plugin author can act on (wasmtime's own
/// parse errors cover the rest).
pub fn not_a_component(wasm: &[u8]) -> Option<&'static str> {
    if !wasm.starts_with(b"\0asm") {
        return Some("not a WebAssembly file (it does not start with `\\0asm`)");
    }
    // Byte 6 is the layer: 0 for a core module, 1 for a component.
    if wasm.get(6) == Some(&0) {
        return Some(
            "a core WebAssembly module, not a component: build the plugin with \
             `cargo build --target wasm32-wasip2` (leadtime-plugin-sdk does the rest), or wrap a core \
             module with `wasm-tools component new`",
        );
    }
    None
}

/// A manifest `outbound-hosts` entry: a host name, an IP address, or `*.` and a host name.
pub fn is_host_pattern(pattern: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if name.parse::<std::net::IpAddr>().is_ok() {
        return !pattern.starts_with("*.");
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::call::CallContext;
    use crate::runtime::grants::Capability;

    fn raw(secrets: &[&str], capabilities: &[&str]) -> bindings::types::PluginManifest {
        bindings::types::PluginManifest {
            id: "provider".into(),
            name: "Provider".into(),
            version: "1.0.0".into(),
            description: "A provider".into(),
            config_schema: r#"{"type":"object"}"#.into(),
            secrets: secrets
                .iter()
                .map(|name| bindings::types::SecretSpec {
                    name: (*name).into(),
                    description: "a secret".into(),
                })
                .collect(),
            outbound_hosts: vec!["api.example.com".into()],
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn names_the_host_fills_in_cannot_be_declared_as_secrets() {
        for reserved in ["inbound-webhook", "session-token"] {
            let error = check_manifest(raw(&["api-key", reserved], &["http"]), "0.1.2".into()).unwrap_err();
            assert!(
                error.contains(&format!("secret name `{reserved}` is reserved")),
                "{error}"
            );
        }
        assert!(check_manifest(raw(&["api-key"], &["http"]), "0.1.2".into()).is_ok());
    }

    #[test]
    fn only_task_tools_plugins_of_the_current_contract_may_send_the_session_token() {
        let context = |capabilities: &[&str], version: &str| {
            let (manifest, grants) = check_manifest(raw(&["api-key"], capabilities), version.into()).unwrap();
            CallContext::for_session(&manifest, grants, "ws_1".into(), "con_1".into(), "ses_1".into())
        };
        let granted = context(&["http", "task-tools"], "0.1.2");
        assert!(granted.grants.contains(Capability::TaskTools));
        assert_eq!(granted.secrets, ["api-key", "session-token"]);
        assert_eq!(context(&["http"], "0.1.2").secrets, ["api-key"]);
        // Before 0.1.2 references in bodies travel as written, so no token is offered.
        assert_eq!(context(&["http", "task-tools"], "0.1.1").secrets, ["api-key"]);
    }
}
