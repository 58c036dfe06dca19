//! `leadtime-host plugin check`: loads a `.wasm` the way the host would and reports, in words a
//! plugin author can act on, either what the plugin is and may do, or why it cannot be loaded.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::{CallLimits, LoadError, PluginRuntime, SUPPORTED_WIT_VERSIONS, not_a_component};

/// Checks `wasm` (named `source` in messages). `Ok` holds the report, `Err` the explanation.
pub async fn check_plugin(source: &str, wasm: &[u8]) -> Result<String, String> {
    if let Some(reason) = not_a_component(wasm) {
        return Err(format!("{source}: {reason}."));
    }
    let runtime = PluginRuntime::new(CallLimits::default(), Default::default(), None, 1)
        .map_err(|e| format!("{source}: the host failed to start its engine: {e:#}"))?;
    let plugin = runtime.load(source, wasm).await.map_err(|error| explain(&error))?;
    let m = &plugin.manifest;
    let mut report = String::new();
    let _ = writeln!(report, "OK: {source} is a loadable plugin.");
    let _ = writeln!(report, "  connection type: {} — {} {}", m.id, m.name, m.version);
    let _ = writeln!(report, "  description:     {}", m.description);
    let _ = writeln!(report, "  contract:        leadtime:agent-runtime@{}", m.wit_version);
    let _ = writeln!(report, "  capabilities:    {}", list(&m.capabilities));
    let _ = writeln!(report, "  outbound hosts:  {}", list(&m.outbound_hosts));
    let secrets: Vec<String> = m
        .secrets
        .iter()
        .map(|s| format!("{} ({})", s.name, s.description))
        .collect();
    let _ = writeln!(report, "  secrets:         {}", list(&secrets));
    let _ = writeln!(report, "  config schema:   {}", m.config_schema);
    let _ = write!(
        report,
        "  size {} bytes, sha256 {}",
        wasm.len(),
        hex::encode(Sha256::digest(wasm))
    );
    Ok(report)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn explain(error: &LoadError) -> String {
    let advice = match error {
        LoadError::Compile { .. } => {
            "The file is not a valid component. Rebuild it; if it was post-processed, check the tool's output."
        }
        LoadError::Contract { message, .. }
            if message.contains("does not export") || message.contains("built against") =>
        {
            "Build the plugin with leadtime-plugin-sdk (implement `Plugin`, call `export_plugin!`) so it exports the plugin interface."
        }
        LoadError::Contract { .. } => {
            "The plugin imports something this host does not provide. Plugins may import only the \
             leadtime:agent-runtime interfaces and WASI's standard ones (no filesystem or network access is granted)."
        }
        LoadError::Manifest { .. } => {
            "Fix what the plugin's `manifest()` returns (id, name, config schema, capabilities)."
        }
        LoadError::Duplicate { .. } => {
            "Another plugin already provides that connection type; give this one another id."
        }
    };
    format!(
        "REFUSED: {error}\n{advice}\nThis host supports leadtime:agent-runtime {}.",
        SUPPORTED_WIT_VERSIONS.join(", ")
    )
}
