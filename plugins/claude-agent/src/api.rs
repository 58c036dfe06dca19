//! Anthropic's Managed Agents API (beta `managed-agents-2026-04-01`): agents, environments, vaults,
//! sessions and their events. The key is sent by reference (`{{secret:api-key}}`): the host inserts
//! it, so this plugin never holds it.
//!
//! Progress is read from the session's event list (`GET /v1/sessions/{id}/events`, paged with an
//! opaque `next_page` cursor) on a timer and, when configured, on Anthropic's webhook; the SSE
//! stream needs a connection held open, which a short plugin call cannot do.

use leadtime_plugin_sdk::http::{HttpError, Request, Response};
use leadtime_plugin_sdk::{FieldError, PluginError};
use serde_json::{Value, json};

const API_KEY: &str = "{{secret:api-key}}";
const VERSION: &str = "2023-06-01";
const BETA: &str = "managed-agents-2026-04-01";
/// Events read per page.
pub const PAGE_SIZE: usize = 100;

/// The Managed Agents API at `base`.
pub struct Api<'a> {
    pub base: &'a str,
}

/// A page of a session's events.
pub struct EventPage {
    pub events: Vec<Value>,
    /// The cursor of the following page, if Anthropic has one.
    pub next_page: Option<String>,
}

impl Api<'_> {
    fn request(&self, method: &str, path: &str) -> Request {
        Request::new(method, &format!("{}{path}", self.base))
            .header("x-api-key", API_KEY)
            .header("anthropic-version", VERSION)
            .header("anthropic-beta", BETA)
            .header("accept", "application/json")
    }

    fn post(&self, path: &str, body: &Value, doing: &str) -> Result<Value, PluginError> {
        json_of(self.request("POST", path).json(body).send()?, doing)
    }

    fn get(&self, path: &str, doing: &str) -> Result<Value, PluginError> {
        json_of(self.request("GET", path).send()?, doing)
    }

    /// `GET {path}`, as sent (validate connection reads the answer itself).
    pub fn probe(&self, path: &str) -> Result<Response, HttpError> {
        self.request("GET", path).send()
    }

    /// `POST /v1/agents`: a new agent; its id.
    pub fn create_agent(&self, spec: &Value) -> Result<String, PluginError> {
        id_of(self.post("/v1/agents", spec, "creating the agent")?, "agent")
    }

    /// `POST /v1/agents/{id}`: a new version of the agent with `spec`. `Ok(false)` when the agent
    /// is gone (so it is created again).
    pub fn update_agent(&self, id: &str, spec: &Value) -> Result<bool, PluginError> {
        let response = self.request("POST", &format!("/v1/agents/{id}")).json(spec).send()?;
        if matches!(response.status, 404 | 410) {
            return Ok(false);
        }
        json_of(response, "updating the agent").map(|_| true)
    }

    /// `POST /v1/environments` (a cloud container); its id.
    pub fn create_environment(&self, name: &str) -> Result<String, PluginError> {
        let body = json!({"name": name, "config": {"type": "cloud"}});
        id_of(
            self.post("/v1/environments", &body, "creating the environment")?,
            "environment",
        )
    }

    /// `POST /v1/vaults`; its id.
    pub fn create_vault(&self, name: &str) -> Result<String, PluginError> {
        id_of(
            self.post(
                "/v1/vaults",
                &json!({"display_name": name}),
                "creating the session's vault",
            )?,
            "vault",
        )
    }

    /// `POST /v1/vaults/{vault}/credentials`: a bearer token (by secret reference) for the MCP
    /// server at `url`; its id.
    pub fn add_bearer_credential(&self, vault: &str, url: &str, token_reference: &str) -> Result<String, PluginError> {
        let body = json!({
            "display_name": format!("Bearer token for {url}"),
            "auth": {"type": "static_bearer", "mcp_server_url": url, "token": token_reference},
        });
        id_of(
            self.post(
                &format!("/v1/vaults/{vault}/credentials"),
                &body,
                "storing an MCP credential",
            )?,
            "credential",
        )
    }

    /// `DELETE /v1/vaults/{vault}/credentials/{id}` (the session is over; its token with it).
    pub fn delete_credential(&self, vault: &str, id: &str) -> Result<(), PluginError> {
        let response = self
            .request("DELETE", &format!("/v1/vaults/{vault}/credentials/{id}"))
            .send()?;
        if response.status == 404 {
            return Ok(());
        }
        json_of(response, "deleting an MCP credential").map(|_| ())
    }

    /// `POST /v1/sessions`; its id. `Ok(None)` when Anthropic answers 404 (the agent or the
    /// environment is gone).
    pub fn create_session(&self, body: &Value) -> Result<Option<String>, PluginError> {
        let response = self.request("POST", "/v1/sessions").json(body).send()?;
        if response.status == 404 {
            return Ok(None);
        }
        id_of(json_of(response, "creating the session")?, "session").map(Some)
    }

    /// `POST /v1/sessions/{id}/events` with one event.
    pub fn send_event(&self, session: &str, event: &Value, doing: &str) -> Result<(), PluginError> {
        self.post(
            &format!("/v1/sessions/{session}/events"),
            &json!({"events": [event]}),
            doing,
        )
        .map(|_| ())
    }

    /// `GET /v1/sessions/{id}/events`, oldest first, from `page` (the first page when `None`).
    pub fn events(&self, session: &str, page: Option<&str>) -> Result<EventPage, PluginError> {
        let mut path = format!("/v1/sessions/{session}/events?order=asc&limit={PAGE_SIZE}");
        if let Some(page) = page {
            path.push_str("&page=");
            path.push_str(&encode(page));
        }
        let body = self.get(&path, "reading the session's events")?;
        Ok(EventPage {
            events: body["data"].as_array().cloned().unwrap_or_default(),
            next_page: body["next_page"].as_str().filter(|p| !p.is_empty()).map(str::to_owned),
        })
    }
}

/// A user message event.
pub fn user_message(text: &str) -> Value {
    json!({"type": "user.message", "content": [{"type": "text", "text": text}]})
}

/// `text` percent-encoded for a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn id_of(body: Value, what: &str) -> Result<String, PluginError> {
    body["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| PluginError::Failed(format!("Anthropic created the {what} but its answer had no id")))
}

/// The JSON of a successful answer, or what an admin should know about a refusal.
fn json_of(response: Response, doing: &str) -> Result<Value, PluginError> {
    if response.is_success() {
        return Ok(response.json().unwrap_or(Value::Null));
    }
    Err(refusal(&response, doing))
}

/// Anthropic's refusal in words an admin can act on.
pub fn refusal(response: &Response, doing: &str) -> PluginError {
    let said = message_of(response);
    match response.status {
        401 => PluginError::InvalidConfig(vec![FieldError {
            field: "api-key".into(),
            message: format!(
                "Anthropic rejected the API key while {doing}{said}; set a valid key from the Anthropic Console (Settings → API keys)"
            ),
        }]),
        403 => PluginError::Failed(format!(
            "Anthropic refused {doing} (403){said}; check that the key's workspace may use Managed Agents and the resources named in the config"
        )),
        404 => PluginError::Failed(format!("Anthropic found nothing while {doing} (404){said}")),
        429 => PluginError::Transient(format!(
            "Anthropic's rate limit or quota was reached while {doing}{said}; retrying later"
        )),
        status if status >= 500 => PluginError::Transient(format!(
            "Anthropic is unavailable or overloaded ({status}) while {doing}{said}; retrying later"
        )),
        status => PluginError::Failed(format!("Anthropic refused {doing} ({status}){said}")),
    }
}

/// `: <message>` from Anthropic's error body (`{"type": "error", "error": {"type", "message"}}`).
fn message_of(response: &Response) -> String {
    let body: Value = response.json().unwrap_or(Value::Null);
    match body["error"]["message"].as_str() {
        Some(m) => format!(": {}", m.chars().take(300).collect::<String>()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_cursors_are_encoded_for_the_query() {
        assert_eq!(super::encode("abc+/="), "abc%2B%2F%3D");
    }
}
