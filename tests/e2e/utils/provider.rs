//! A loopback fake of a provider API that plugins call over outbound HTTP. Its contract:
//! - `GET /v1/me` needs `Authorization: Bearer <the key>` and answers `{"id":"me"}`;
//! - `POST /v1/echo` answers with the body it got;
//! - `GET /v1/huge` answers 5 MiB;
//! - `GET /v1/ping` answers `pong`;
//! - `POST /v0/agents` (a Cursor-like launch) needs a JSON body with `prompt.text` and
//!   `webhook: {url, secret}` (the secret `whsec_…`), and answers `{"id":"agent-N", "status":
//!   "CREATING", "webhook": …}` — echoing the webhook, secret included, as a careless provider might.
//!   The webhook of each launch is kept ([`FakeProvider::launches`]) so tests can play the provider;
//! - `POST /v0/agents/{id}/stop` stops a launched agent (an unknown id is a violation).
//!
//! Every request is recorded; one that breaks the contract (wrong key, unknown route) is recorded
//! as a violation too, so tests can assert there were none.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// One request the provider got.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

struct Shared {
    api_key: String,
    requests: Mutex<Vec<ProviderRequest>>,
    violations: Mutex<Vec<String>>,
    /// Requests received so far, for tests that wait for some.
    received: tokio::sync::watch::Sender<usize>,
    /// `(agent id, webhook url, webhook secret)` of every launch.
    launches: Mutex<Vec<(String, String, String)>>,
}

/// A running fake provider.
#[derive(Clone)]
pub struct FakeProvider {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    shared: Arc<Shared>,
}

impl FakeProvider {
    /// Starts the fake on a loopback port; `/v1/me` accepts `api_key` only.
    pub async fn start(api_key: &str) -> FakeProvider {
        let shared = Arc::new(Shared {
            api_key: api_key.to_owned(),
            requests: Mutex::default(),
            violations: Mutex::default(),
            received: tokio::sync::watch::channel(0).0,
            launches: Mutex::default(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind provider");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        FakeProvider { base, shared }
    }

    /// Requests received on `path`, in order.
    pub fn requests(&self, path: &str) -> Vec<ProviderRequest> {
        self.shared
            .requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `n` requests arrived on `path` (a safety timeout only guards against hangs).
    pub async fn wait_for_requests(&self, path: &str, n: usize) {
        let mut changes = self.shared.received.subscribe();
        let reached = tokio::time::timeout(
            super::EVENT_TIMEOUT,
            changes.wait_for(|_| self.requests(path).len() >= n),
        )
        .await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "{path} got {} of {n} requests",
            self.requests(path).len()
        );
    }

    /// Every request received.
    pub fn all_requests(&self) -> Vec<ProviderRequest> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// `(agent id, webhook url, webhook secret)` of every launch, in order.
    pub fn launches(&self) -> Vec<(String, String, String)> {
        self.shared.launches.lock().expect("lock").clone()
    }

    /// Requests that broke the contract, described.
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().expect("lock").clone()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_owned();
    shared.requests.lock().expect("lock").push(ProviderRequest {
        method: parts.method.clone(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body: body.to_vec(),
    });
    shared.received.send_modify(|n| *n += 1);
    let violation = |what: String| {
        shared.violations.lock().expect("lock").push(what);
    };
    match (parts.method.as_str(), path.as_str()) {
        ("GET", "/v1/me") => {
            let expected = format!("Bearer {}", shared.api_key);
            let got = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
            if got == Some(expected.as_str()) {
                ([("content-type", "application/json")], r#"{"id":"me"}"#).into_response()
            } else {
                violation(format!("GET /v1/me with authorization {got:?}"));
                StatusCode::UNAUTHORIZED.into_response()
            }
        }
        ("POST", "/v1/echo") => Bytes::from(body.to_vec()).into_response(),
        ("GET", "/v1/huge") => vec![b'x'; 5 << 20].into_response(),
        ("GET", "/v1/ping") => "pong".into_response(),
        ("POST", "/v0/agents") => {
            let json_type = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            let launch: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let url = launch["webhook"]["url"].as_str().unwrap_or_default().to_owned();
            let secret = launch["webhook"]["secret"].as_str().unwrap_or_default().to_owned();
            if !json_type
                || !launch["prompt"]["text"].is_string()
                || !url.starts_with("http")
                || !secret.starts_with("whsec_")
            {
                violation(format!("POST /v0/agents with {}", String::from_utf8_lossy(&body)));
                return StatusCode::BAD_REQUEST.into_response();
            }
            let mut launches = shared.launches.lock().expect("lock");
            let id = format!("agent-{}", launches.len() + 1);
            launches.push((id.clone(), url.clone(), secret.clone()));
            let answer = serde_json::json!({"id": id, "status": "CREATING", "webhook": {"url": url, "secret": secret}});
            ([("content-type", "application/json")], answer.to_string()).into_response()
        }
        ("POST", stop) if stop.starts_with("/v0/agents/") && stop.ends_with("/stop") => {
            let id = &stop["/v0/agents/".len()..stop.len() - "/stop".len()];
            if shared
                .launches
                .lock()
                .expect("lock")
                .iter()
                .any(|(agent, _, _)| agent == id)
            {
                ([("content-type", "application/json")], format!(r#"{{"id":"{id}"}}"#)).into_response()
            } else {
                violation(format!("POST {stop}: no such agent"));
                StatusCode::NOT_FOUND.into_response()
            }
        }
        (method, path) => {
            violation(format!("{method} {path} is not part of the provider's API"));
            StatusCode::NOT_FOUND.into_response()
        }
    }
}
