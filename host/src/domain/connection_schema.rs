//! What a connection type's config schema (its plugin's JSON Schema) says a field is *for*, so the
//! host can act on a connection without knowing any plugin's config keys. A plugin marks fields
//! with annotations beside the standard keywords:
//!
//! - `"x-leadtime-role": "webhook-url"` — where the connection delivers webhooks; a setup-code
//!   claim (wire contract §4) writes the wrapper's URL there, so only connection types with such
//!   a field take setup codes;
//! - `"x-leadtime-claim": "<answer field>"` — the field's value (or its schema `default`) goes into
//!   the claim's answer under that name (`mode`, `guidance.instructions`,
//!   `exposeRawApiCredentialToAgent`).

use serde_json::Value;

/// The role of a connection's webhook URL.
pub const WEBHOOK_URL_ROLE: &str = "webhook-url";

fn properties(schema: &Value) -> impl Iterator<Item = (&String, &Value)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

/// The config field `schema` marks with `role`, if any.
pub fn field_with_role<'a>(schema: &'a Value, role: &str) -> Option<&'a str> {
    properties(schema)
        .find(|(_, property)| property.get("x-leadtime-role").and_then(Value::as_str) == Some(role))
        .map(|(name, _)| name.as_str())
}

/// The value of the field `schema` marks with `role` in `config`, if it is text.
pub fn value_with_role<'a>(schema: &Value, config: &'a Value, role: &str) -> Option<&'a str> {
    field_with_role(schema, role)
        .and_then(|field| config.get(field))
        .and_then(Value::as_str)
}

/// The claim-answer fields `schema` declares, each with the config's value (or the schema's
/// default when the config has none): `(answer field, value)`.
pub fn claim_fields(schema: &Value, config: &Value) -> Vec<(String, Value)> {
    properties(schema)
        .filter_map(|(name, property)| {
            let answer = property.get("x-leadtime-claim")?.as_str()?;
            let value = config
                .get(name)
                .filter(|v| !v.is_null())
                .or_else(|| property.get("default"))?
                .clone();
            Some((answer.to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"properties": {
            "url": {"type": "string", "x-leadtime-role": "webhook-url"},
            "style": {"enum": ["a", "b"], "default": "a", "x-leadtime-claim": "mode"},
            "notes": {"type": "string", "x-leadtime-claim": "guidance.instructions"},
            "other": {"type": "string"}
        }})
    }

    #[test]
    fn roles_and_claim_fields_are_read_from_the_schema_not_known_keys() {
        let config = json!({"url": "https://w.example/hook", "notes": "Be brief", "other": "x"});
        assert_eq!(field_with_role(&schema(), WEBHOOK_URL_ROLE), Some("url"));
        assert_eq!(
            value_with_role(&schema(), &config, WEBHOOK_URL_ROLE),
            Some("https://w.example/hook")
        );
        let mut fields = claim_fields(&schema(), &config);
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            fields,
            [
                ("guidance.instructions".to_owned(), json!("Be brief")),
                ("mode".to_owned(), json!("a"))
            ]
        );
        assert_eq!(field_with_role(&json!({"properties": {}}), WEBHOOK_URL_ROLE), None);
    }
}
