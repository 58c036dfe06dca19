//! Conveniences on the contract's types.

use crate::{Activity, ActivityType, ConnectionInfo, FieldError, HostError, PluginError, PluginManifest};

/// The contract version this SDK implements (`leadtime:agent-runtime@…`).
pub const WIT_VERSION: &str = "0.1.3";

impl PluginManifest {
    /// A manifest with the given identity, an empty config schema (`{"type":"object"}`), no secrets,
    /// no outbound hosts and no capabilities. Fill in the rest with struct update syntax or by field.
    pub fn new(id: &str, name: &str, version: &str, description: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            description: description.into(),
            config_schema: r#"{"type":"object"}"#.into(),
            secrets: Vec::new(),
            outbound_hosts: Vec::new(),
            capabilities: Vec::new(),
        }
    }
}

impl Activity {
    /// An activity with only a type and a body.
    pub fn new(activity_type: ActivityType, body: &str) -> Self {
        Self {
            activity_type,
            body: body.into(),
            action: None,
            parameter: None,
            result: None,
            provider_event_id: None,
            provider_event_type: None,
            raw: None,
            idempotency_key: None,
        }
    }

    /// Sets the idempotency key (repeating it within the session is a no-op).
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

impl ConnectionInfo {
    /// The connection config parsed as JSON (it was validated when the admin saved it).
    pub fn config_json(&self) -> Result<serde_json::Value, PluginError> {
        serde_json::from_str(&self.config)
            .map_err(|e| PluginError::Failed(format!("connection config is not JSON: {e}")))
    }
}

impl PluginError {
    /// The error in words (a config error's field messages joined), e.g. for a log line or for a
    /// model that should know why a tool failed.
    pub fn message(&self) -> String {
        match self {
            PluginError::InvalidConfig(fields) => {
                fields.iter().map(|f| f.message.clone()).collect::<Vec<_>>().join("; ")
            }
            PluginError::Failed(m) | PluginError::Transient(m) => m.clone(),
        }
    }
}

impl From<HostError> for PluginError {
    /// A refused host call ends the plugin call as `failed` (or `transient` when the host is
    /// temporarily unavailable), with the host's reason.
    fn from(error: HostError) -> Self {
        match error {
            HostError::Unavailable(m) => PluginError::Transient(m),
            HostError::NotAllowed(m) => PluginError::Failed(format!("not allowed: {m}")),
            HostError::Invalid(m) => PluginError::Failed(format!("invalid request to the host: {m}")),
            HostError::LimitExceeded(m) => PluginError::Failed(format!("limit exceeded: {m}")),
            HostError::SessionClosed(m) => PluginError::Failed(format!("session closed: {m}")),
        }
    }
}

/// Collects field errors while validating a config.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong, and why.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Starts validating `config`, which must be a JSON object whose keys are all in `known`:
    /// the object and the errors so far (one per unknown key, naming the allowed ones), or the
    /// one error when it is not an object at all.
    pub fn for_object<'a>(
        config: &'a serde_json::Value,
        known: &[&str],
    ) -> Result<(&'a serde_json::Map<String, serde_json::Value>, FieldErrors), Vec<FieldError>> {
        let Some(object) = config.as_object() else {
            return Err(vec![FieldError {
                field: String::new(),
                message: "the config must be a JSON object".into(),
            }]);
        };
        let mut errors = FieldErrors::new();
        for key in object.keys().filter(|k| !known.contains(&k.as_str())) {
            errors.add(key, format!("unknown field `{key}`; allowed: {}", known.join(", ")));
        }
        Ok((object, errors))
    }

    /// `Ok` when nothing was recorded, else every error.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() { Ok(()) } else { Err(self.0) }
    }
}
