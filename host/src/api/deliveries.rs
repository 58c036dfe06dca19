//! Webhook deliveries for admins: the attempt log per bot and per session, the health of a bot's
//! endpoint, and manual redelivery (same id).

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Admin, Json, JsonOrEmpty, Query, iso_time_param};
use crate::api::error::{AppError, ErrorBody};
use crate::app::SharedApp;
use crate::domain::time::Timestamp;
use crate::store::deliveries::Filter;
use crate::use_cases::deliveries::{self, DeliveryLog};

/// Largest `pageSize`.
pub(super) const MAX_PAGE_SIZE: i64 = 100;

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(list_bot_deliveries))
        .routes(routes!(list_session_deliveries))
        .routes(routes!(redeliver))
        .routes(routes!(redeliver_failed))
        .routes(routes!(get_webhook_endpoint))
        .routes(routes!(enable_webhook_endpoint))
        .routes(routes!(get_provider_webhooks))
}

/// A bot's provider-webhook endpoint (for connection types whose provider calls back).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ProviderWebhooksView {
    /// Where the provider sends webhooks; `null` until the connection's plugin opened the endpoint
    /// (it does when it starts a session).
    url: Option<String>,
    /// Webhooks stored within the 7-day retention window, and when the last arrived.
    received: i64,
    last_received_at: Option<String>,
    /// Webhooks waiting for a session to claim them.
    waiting: i64,
    /// Requests refused (bad or missing signature, unset secret) since the host started.
    rejected: u64,
    last_rejected_at: Option<String>,
    /// Why the last one was refused: what to fix (usually the secret the provider signs with).
    last_rejection_reason: Option<String>,
}

/// Get a bot's provider-webhook endpoint
///
/// Its URL, the webhooks received and waiting, and those refused — with why the last one was —
/// so an admin sees when a provider's webhooks are turned away. Admins only.
#[utoipa::path(get, path = "/bots/{id}/provider-webhooks", tag = "deliveries", operation_id = "getProviderWebhooks",
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = ProviderWebhooksView), (status = 404, body = ErrorBody)))]
async fn get_provider_webhooks(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<ProviderWebhooksView>, AppError> {
    let health = crate::use_cases::inbound::health(&app, &caller, &id).await?;
    Ok(Json(ProviderWebhooksView {
        url: health.url,
        received: health.received,
        last_received_at: health.last_received_at.map(Timestamp::to_iso),
        waiting: health.waiting,
        rejected: health.rejected.as_ref().map_or(0, |r| r.count),
        last_rejected_at: health.rejected.as_ref().map(|r| r.last_at.to_iso()),
        last_rejection_reason: health.rejected.map(|r| r.last_reason),
    }))
}

/// One attempt at sending a delivery.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AttemptView {
    attempt: i64,
    started_at: String,
    /// The receiver's HTTP status, when it answered.
    status_code: Option<i64>,
    latency_ms: i64,
    /// The first 4 KiB of the receiver's answer.
    response_body: Option<String>,
    error: Option<String>,
}

/// A webhook delivery and its attempts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeliveryView {
    /// Sent as `Leadtime-Webhook-Id` / `webhook-id`; the same on every attempt and redelivery.
    id: String,
    session_id: Option<String>,
    url: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    next_attempt_at: Option<String>,
    last_error: Option<String>,
    delivered_at: Option<String>,
    created_at: String,
    attempts: Vec<AttemptView>,
}

impl From<DeliveryLog> for DeliveryView {
    fn from(log: DeliveryLog) -> Self {
        let d = log.delivery;
        Self {
            id: d.id.to_string(),
            session_id: d.session_id.map(|s| s.to_string()),
            url: d.url,
            next_attempt_at: if d.status == "pending" {
                d.next_attempt_at.map(Timestamp::to_iso)
            } else {
                None
            },
            status: d.status,
            last_error: d.last_error,
            delivered_at: d.delivered_at.map(Timestamp::to_iso),
            created_at: d.created_at.to_iso(),
            attempts: log
                .attempts
                .into_iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    started_at: a.started_at.to_iso(),
                    status_code: a.status_code,
                    latency_ms: a.latency_ms,
                    response_body: a.response_body,
                    error: a.error,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeliveryPage {
    /// Newest first.
    deliveries: Vec<DeliveryView>,
    /// Pass as `cursor` for the next (older) page.
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    /// `pending`, `delivered` or `failed`.
    #[param(inline, value_type = Option<DeliveryStatus>)]
    status: Option<String>,
    /// Created at or after (RFC 3339, e.g. `2026-05-23T12:00:00Z`).
    #[param(format = DateTime,
        pattern = r"^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")]
    since: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime,
        pattern = r"^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")]
    until: Option<String>,
    /// The previous page's `nextCursor`.
    cursor: Option<String>,
    /// 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    page_size: Option<i64>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, ToSchema)]
#[schema(rename_all = "lowercase")]
enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl DeliveryStatus {
    const ALL: [DeliveryStatus; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    /// The stored and wire name.
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// A time range of failed deliveries to send again.
#[derive(Debug, Default, Deserialize, ToSchema)]
struct RedeliverRange {
    /// Created at or after (RFC 3339, e.g. `2026-05-23T12:00:00Z`); from the beginning when absent.
    #[schema(format = DateTime,
        pattern = r"^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")]
    since: Option<String>,
    /// Created before (RFC 3339); until now when absent.
    #[schema(format = DateTime,
        pattern = r"^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")]
    until: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Redelivered {
    /// How many failed deliveries were queued again.
    redelivered: usize,
}

/// A webhook endpoint's health.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EndpointView {
    url: String,
    /// Failed attempts in a row.
    consecutive_failures: i64,
    /// Deliveries in a row that failed for good.
    failed_deliveries: i64,
    last_error: Option<String>,
    last_attempt_at: Option<String>,
    last_success_at: Option<String>,
    /// Whether deliveries to it are stopped, and why.
    disabled: bool,
    disabled_at: Option<String>,
    disabled_reason: Option<String>,
}

fn filter(query: &DeliveryQuery) -> Result<(Filter, i64), AppError> {
    if let Some(status) = query
        .status
        .as_deref()
        .filter(|s| !DeliveryStatus::ALL.iter().any(|known| known.as_str() == *s))
    {
        return Err(AppError::invalid(
            "status",
            format!("unknown status `{status}`; allowed: pending, delivered, failed"),
        ));
    }
    let page_size = query.page_size.unwrap_or(50);
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(AppError::invalid(
            "pageSize",
            format!("`pageSize` must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    let filter = Filter {
        status: query.status.clone(),
        since: iso_time_param("since", query.since.as_deref())?,
        until: iso_time_param("until", query.until.as_deref())?,
        before_id: query.cursor.clone(),
    };
    Ok((filter, page_size))
}

/// List a bot's webhook deliveries
///
/// The bot's deliveries, newest first, each with its attempt log (time, HTTP status, latency, the
/// start of the answer, error). Filter by status and creation time. Admins only.
#[utoipa::path(get, path = "/bots/{id}/deliveries", tag = "deliveries", operation_id = "listBotDeliveries",
    params(("id" = String, Path, description = "Bot id"), DeliveryQuery),
    responses((status = 200, body = DeliveryPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_bot_deliveries(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, AppError> {
    let (filter, page_size) = filter(&query)?;
    let mut logs = deliveries::for_bot(&app, &caller, &id, &filter, page_size + 1).await?;
    let more = logs.len() as i64 > page_size;
    logs.truncate(page_size as usize);
    let next_cursor = if more {
        logs.last().map(|l| l.delivery.id.to_string())
    } else {
        None
    };
    Ok(Json(DeliveryPage {
        deliveries: logs.into_iter().map(DeliveryView::from).collect(),
        next_cursor,
    }))
}

/// List an agent session's webhook deliveries
///
/// The deliveries made for one session, each with its attempt log. Admins only.
#[utoipa::path(get, path = "/agent-sessions/{id}/deliveries", tag = "deliveries", operation_id = "listSessionDeliveries",
    params(("id" = String, Path, description = "Agent session id")),
    responses((status = 200, body = DeliveryPage), (status = 404, body = ErrorBody)))]
async fn list_session_deliveries(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<DeliveryPage>, AppError> {
    let logs = deliveries::for_session(&app, &caller, &id).await?;
    Ok(Json(DeliveryPage {
        deliveries: logs.into_iter().map(DeliveryView::from).collect(),
        next_cursor: None,
    }))
}

/// Redeliver a webhook delivery
///
/// Sends the delivery again with the same id (receivers deduplicate on it) and a fresh retry
/// schedule. A session that failed because this delivery failed goes back to `queued`. Admins only.
#[utoipa::path(post, path = "/deliveries/{id}/redeliver", tag = "deliveries", operation_id = "redeliverDelivery",
    params(("id" = String, Path, description = "Delivery id (`msg_…`)")),
    responses((status = 200, body = DeliveryView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn redeliver(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, AppError> {
    let delivery = deliveries::redeliver(&app, &caller, &id).await?;
    Ok(Json(DeliveryView::from(DeliveryLog {
        delivery,
        attempts: Vec::new(),
    })))
}

/// Redeliver a bot's failed deliveries
///
/// Sends every failed delivery of the bot created in the time range again (same ids). Admins only.
#[utoipa::path(post, path = "/bots/{id}/deliveries/redeliver", tag = "deliveries", operation_id = "redeliverFailedDeliveries",
    request_body = RedeliverRange,
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = Redelivered), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn redeliver_failed(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    JsonOrEmpty(range): JsonOrEmpty<RedeliverRange>,
) -> Result<Json<Redelivered>, AppError> {
    let since = iso_time_param("since", range.since.as_deref())?;
    let until = iso_time_param("until", range.until.as_deref())?;
    let redelivered = deliveries::redeliver_failed(&app, &caller, &id, since, until).await?;
    Ok(Json(Redelivered { redelivered }))
}

/// Get a bot's webhook endpoint health
///
/// Failed attempts and deliveries in a row, the last error, the last success, and whether
/// deliveries are stopped (410 Gone, or sustained failure) and why. Admins only.
#[utoipa::path(get, path = "/bots/{id}/webhook-endpoint", tag = "deliveries", operation_id = "getWebhookEndpoint",
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)))]
async fn get_webhook_endpoint(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, AppError> {
    let (url, endpoint) = deliveries::endpoint_health(&app, &caller, &id).await?;
    Ok(Json(match endpoint {
        Some(e) => EndpointView {
            url: e.url,
            consecutive_failures: e.consecutive_failures,
            failed_deliveries: e.failed_deliveries,
            last_error: e.last_error,
            last_attempt_at: e.last_attempt_at.map(Timestamp::to_iso),
            last_success_at: e.last_success_at.map(Timestamp::to_iso),
            disabled: e.disabled_at.is_some(),
            disabled_at: e.disabled_at.map(Timestamp::to_iso),
            disabled_reason: e.disabled_reason,
        },
        None => EndpointView {
            url,
            consecutive_failures: 0,
            failed_deliveries: 0,
            last_error: None,
            last_attempt_at: None,
            last_success_at: None,
            disabled: false,
            disabled_at: None,
            disabled_reason: None,
        },
    }))
}

/// Re-enable a bot's webhook endpoint
///
/// Lets deliveries to a disabled endpoint go out again (redeliver the failed ones separately).
/// Admins only.
#[utoipa::path(post, path = "/bots/{id}/webhook-endpoint/enable", tag = "deliveries", operation_id = "enableWebhookEndpoint",
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn enable_webhook_endpoint(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, AppError> {
    deliveries::enable_endpoint(&app, &caller, &id).await?;
    get_webhook_endpoint(State(app), Admin(caller), Path(id)).await
}
