//! Cursor's Cloud Agents API, v0 (`https://api.cursor.com/v0/…`). The key is sent by reference
//! (`{{secret:api-key}}`): the host inserts it, so this plugin never holds it.
//!
//! v0 is the version Cursor's integrations widely run on, and it fits how a plugin works here: a
//! call is short, so progress is fetched (agent + conversation) when Cursor's signed webhook says
//! the agent finished, and by a polling timer in between. v1's runs add an SSE stream, which a
//! short call cannot hold open.

use leadtime_plugin_sdk::http::{HttpError, Request, Response};
use leadtime_plugin_sdk::{FieldError, PluginError};
use serde_json::{Value, json};

const AUTHORIZATION: &str = "Bearer {{secret:api-key}}";

/// One message of an agent's conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    /// `user_message` or `assistant_message`.
    pub kind: String,
    pub text: String,
}

fn get(base: &str, path: &str) -> Request {
    Request::get(&format!("{base}{path}"))
        .header("Authorization", AUTHORIZATION)
        .header("Accept", "application/json")
}

fn post(base: &str, path: &str, body: &Value) -> Request {
    Request::post(&format!("{base}{path}"))
        .header("Authorization", AUTHORIZATION)
        .header("Accept", "application/json")
        .json(body)
}

/// `GET /v0/me`: whether the key works (validate connection).
pub fn me(base: &str) -> Result<Response, HttpError> {
    get(base, "/v0/me").send()
}

/// `POST /v0/agents`: launches an agent; its JSON.
pub fn launch(base: &str, body: &Value) -> Result<Value, PluginError> {
    json_of(post(base, "/v0/agents", body).send()?, "launching the agent")
}

/// `GET /v0/agents/{id}`.
pub fn agent(base: &str, id: &str) -> Result<Value, PluginError> {
    json_of(get(base, &format!("/v0/agents/{id}")).send()?, "reading the agent")
}

/// `GET /v0/agents/{id}/conversation`: its messages, oldest first.
pub fn conversation(base: &str, id: &str) -> Result<Vec<Message>, PluginError> {
    let body = json_of(
        get(base, &format!("/v0/agents/{id}/conversation")).send()?,
        "reading the conversation",
    )?;
    Ok(body["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| {
                    Some(Message {
                        id: m["id"].as_str()?.to_owned(),
                        kind: m["type"].as_str().unwrap_or_default().to_owned(),
                        text: m["text"].as_str().unwrap_or_default().to_owned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default())
}

/// `POST /v0/agents/{id}/followup`.
pub fn follow_up(base: &str, id: &str, text: &str) -> Result<(), PluginError> {
    let body = json!({"prompt": {"text": text}});
    json_of(
        post(base, &format!("/v0/agents/{id}/followup"), &body).send()?,
        "sending the follow-up",
    )
    .map(|_| ())
}

/// `POST /v0/agents/{id}/stop`.
pub fn stop(base: &str, id: &str) -> Result<(), PluginError> {
    json_of(
        post(base, &format!("/v0/agents/{id}/stop"), &json!({})).send()?,
        "stopping the agent",
    )
    .map(|_| ())
}

/// The JSON of a successful answer, or what an admin should know about a refusal.
fn json_of(response: Response, doing: &str) -> Result<Value, PluginError> {
    if response.is_success() {
        return Ok(response.json().unwrap_or(Value::Null));
    }
    Err(refusal(&response, doing))
}

/// Cursor's refusal in words an admin can act on.
pub fn refusal(response: &Response, doing: &str) -> PluginError {
    let said = message_of(response);
    match response.status {
        401 => PluginError::InvalidConfig(vec![FieldError {
            field: "api-key".into(),
            message: format!(
                "Cursor rejected the API key while {doing}{said}; set a valid key from cursor.com/dashboard (Integrations)"
            ),
        }]),
        403 | 404 if doing == "launching the agent" => PluginError::Failed(format!(
            "Cursor could not access the repository ({}){said}; check the repository URL and that Cursor's GitHub app may use it",
            response.status
        )),
        429 => PluginError::Transient(format!(
            "Cursor's rate limit or quota was reached while {doing}{said}; retrying later"
        )),
        status if status >= 500 => PluginError::Transient(format!(
            "Cursor is unavailable ({status}) while {doing}{said}; retrying later"
        )),
        status => PluginError::Failed(format!("Cursor refused {doing} ({status}){said}")),
    }
}

/// `: <message>` from Cursor's error body (`{"error": "…"}` or `{"error": {"message": "…"}}`).
fn message_of(response: &Response) -> String {
    let body: Value = response.json().unwrap_or(Value::Null);
    let message = body["error"]["message"]
        .as_str()
        .or_else(|| body["error"].as_str())
        .or_else(|| body["message"].as_str());
    match message {
        Some(m) => format!(": {}", m.chars().take(300).collect::<String>()),
        None => String::new(),
    }
}
