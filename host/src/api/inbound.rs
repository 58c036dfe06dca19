//! `POST /api/plugins/{type}/inbound/{connectionId}[/…]`: where providers send their webhooks for a
//! connection (contract 0.1.2, `inbound`). No token: the provider's signature, checked against the
//! connection's secret, is the credential. Answered as soon as the event is stored: `202` for a new
//! event, `200` for a redelivery of one already stored; `401` for a bad or missing signature (nothing
//! is stored). Not part of the public API document: providers, not API clients, call it.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::json;

use super::extract::Json;
use crate::api::error::AppError;
use crate::app::SharedApp;
use crate::domain::inbound::MAX_BODY_BYTES;
use crate::use_cases::inbound::{self, Received, Request};

/// Where endpoints live: `{INBOUND_BASE}/{type}/inbound/{connectionId}`.
pub const INBOUND_BASE: &str = "/api/plugins";

pub fn router() -> Router<SharedApp> {
    Router::new()
        .route(
            "/api/plugins/{connection_type}/inbound/{connection_id}",
            axum::routing::post(receive),
        )
        .route(
            "/api/plugins/{connection_type}/inbound/{connection_id}/{*rest}",
            axum::routing::post(receive),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Both routes: the endpoint itself, and any path below it (`rest`, handed to the plugin).
async fn receive(
    State(app): State<SharedApp>,
    Path(params): Path<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let below = params.get("rest").map(|rest| format!("/{rest}")).unwrap_or_default();
    answer(
        &app,
        param("connection_type"),
        param("connection_id"),
        below,
        method,
        uri,
        headers,
        body,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn answer(
    app: &SharedApp,
    connection_type: String,
    connection_id: String,
    mut path: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge(format!(
            "a provider webhook body is at most {} KiB",
            MAX_BODY_BYTES >> 10
        )),
        _ => AppError::invalid("body", format!("the request body could not be read: {rejection}")),
    })?;
    if let Some(query) = uri.query() {
        path.push('?');
        path.push_str(query);
    }
    let headers = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    let request = Request {
        method: method.as_str().to_owned(),
        path,
        headers,
        body: body.to_vec(),
    };
    match inbound::receive(app, &connection_type, &connection_id, request).await? {
        Received::Accepted => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"received": true, "duplicate": false})),
        )),
        Received::Duplicate => Ok((StatusCode::OK, Json(json!({"received": true, "duplicate": true})))),
    }
}
