//! A loopback webhook receiver whose answers the test scripts per path and attempt, and which
//! records every request it gets (webhook id, time, concurrency).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::{Semaphore, watch};

use super::EVENT_TIMEOUT;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// This status and body.
    Status(u16),
    /// This status with these headers.
    WithHeaders(u16, Vec<(&'static str, String)>),
    /// Wait this long, then 200 (longer than the host's attempt timeout: a timeout).
    Slow(Duration),
    /// Wait until the test releases the receiver, then 200.
    Held,
}

/// What the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub webhook_id: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Script = dyn Fn(&str, usize) -> Answer + Send + Sync;

#[derive(Default)]
struct Counters {
    hits: HashMap<String, Vec<Hit>>,
    in_flight: HashMap<String, usize>,
    max_in_flight: HashMap<String, usize>,
}

struct Shared {
    script: Mutex<Arc<Script>>,
    counters: Mutex<Counters>,
    /// Held requests wait for a permit; releasing adds plenty.
    release: Semaphore,
    /// Bumped whenever the counters change, so tests can wait for a state instead of sleeping.
    changed: watch::Sender<u64>,
}

/// A running receiver; deliveries go to `{base}/{path}`.
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 (port 0, or `port`) answering as `script(path, attempt)` says.
    pub async fn start(port: u16, script: impl Fn(&str, usize) -> Answer + Send + Sync + 'static) -> Receiver {
        let shared = Arc::new(Shared {
            script: Mutex::new(Arc::new(script)),
            counters: Mutex::default(),
            release: Semaphore::new(0),
            changed: watch::channel(0).0,
        });
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind receiver");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Receiver { base, shared }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// Replaces the script.
    pub fn answer_with(&self, script: impl Fn(&str, usize) -> Answer + Send + Sync + 'static) {
        *self.shared.script.lock().expect("lock") = Arc::new(script);
    }

    /// Requests received on `path` so far.
    pub fn hits(&self, path: &str) -> Vec<Hit> {
        self.shared
            .counters
            .lock()
            .expect("lock")
            .hits
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Most requests on `path` that were in progress at once.
    pub fn max_in_flight(&self, path: &str) -> usize {
        self.shared
            .counters
            .lock()
            .expect("lock")
            .max_in_flight
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until `path` has `n` requests in progress at once.
    pub async fn wait_for_in_flight(&self, path: &str, n: usize) {
        let mut changes = self.shared.changed.subscribe();
        let reached = tokio::time::timeout(EVENT_TIMEOUT, changes.wait_for(|_| self.in_flight(path) >= n)).await;
        assert!(reached.is_ok(), "{path} never had {n} requests in progress");
    }

    /// Waits until `path` has received `n` requests.
    pub async fn wait_for_hits(&self, path: &str, n: usize) {
        let mut changes = self.shared.changed.subscribe();
        let reached = tokio::time::timeout(EVENT_TIMEOUT, changes.wait_for(|_| self.hits(path).len() >= n)).await;
        assert!(
            reached.is_ok(),
            "{path} got {} requests, not {n}",
            self.hits(path).len()
        );
    }

    /// Requests on `path` in progress now.
    pub fn in_flight(&self, path: &str) -> usize {
        self.shared
            .counters
            .lock()
            .expect("lock")
            .in_flight
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Lets every held request (and every later one) answer.
    pub fn release(&self) {
        self.answer_with(|_, _| Answer::Status(200));
        self.shared.release.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let attempt = {
        let mut counters = shared.counters.lock().expect("lock");
        let hits = counters.hits.entry(path.clone()).or_default();
        hits.push(Hit {
            webhook_id: webhook_id.clone(),
            headers: headers.clone(),
            body,
        });
        let attempt = hits.iter().filter(|h| h.webhook_id == webhook_id).count();
        let now = {
            let in_flight = counters.in_flight.entry(path.clone()).or_default();
            *in_flight += 1;
            *in_flight
        };
        let max = counters.max_in_flight.entry(path.clone()).or_default();
        *max = (*max).max(now);
        attempt
    };
    shared.changed.send_modify(|n| *n += 1);
    let script = shared.script.lock().expect("lock").clone();
    let response = match script(&path, attempt) {
        Answer::Status(status) => status_only(status),
        Answer::WithHeaders(status, headers) => {
            let mut response = status_only(status);
            for (name, value) in headers {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
        Answer::Slow(wait) => {
            tokio::time::sleep(wait).await;
            status_only(200)
        }
        Answer::Held => {
            let _permit = shared.release.acquire().await;
            status_only(200)
        }
    };
    if let Some(in_flight) = shared.counters.lock().expect("lock").in_flight.get_mut(&path) {
        *in_flight -= 1;
    }
    shared.changed.send_modify(|n| *n += 1);
    response
}

fn status_only(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("{{\"answer\":{}}}", status.as_u16())).into_response()
}
