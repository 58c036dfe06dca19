//! `/audit`: the workspace's audit trail, newest first, for admins.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Admin, Json, Query, iso_time_param};
use crate::api::error::{AppError, ErrorBody};
use crate::app::SharedApp;
use crate::domain::audit::Record;
use crate::store;

/// Largest `pageSize`.
pub(super) const MAX_PAGE_SIZE: i64 = 200;

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new().routes(routes!(list_audit_records))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only records of this actor (person or bot id).
    actor_id: Option<String>,
    /// Only this action, e.g. `bot.disable`.
    action: Option<String>,
    /// Only records about this object.
    target_id: Option<String>,
    /// Only records made within this agent session.
    session_id: Option<String>,
    /// Records at or after this time (RFC 3339, e.g. `2026-05-23T12:00:00Z`).
    #[param(format = DateTime,
        pattern = r"^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")]
    since: Option<String>,
    /// Records before this time (RFC 3339).
    #[param(format = DateTime,
        pattern = r"^(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")]
    until: Option<String>,
    /// The `nextCursor` of the previous page.
    cursor: Option<i64>,
    /// Records per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    page_size: Option<i64>,
}

/// A page of audit records.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuditPage {
    /// Newest first.
    records: Vec<AuditRecordView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<i64>,
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuditRecordView {
    #[serde(flatten)]
    record: Record,
    /// `at` as ISO-8601.
    time: String,
    /// `details` as JSON.
    #[schema(value_type = Object)]
    details_json: serde_json::Value,
}

/// List audit records
///
/// Every change in the workspace — by people, bots, plugins acting as bots, and the host — with
/// time, actor, token, session, action, target, request id, IP and user agent. Filter by actor,
/// action, target, session and time; page with `cursor`. Admins only.
#[utoipa::path(get, path = "/audit", tag = "audit", operation_id = "listAuditRecords", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_audit_records(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, AppError> {
    let page_size = query.page_size.unwrap_or(50);
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(AppError::invalid(
            "pageSize",
            format!("`pageSize` must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    let filter = store::audit::Filter {
        workspace_id: caller.workspace_id().to_string(),
        actor_id: query.actor_id,
        action: query.action,
        target_id: query.target_id,
        session_id: query.session_id,
        since: iso_time_param("since", query.since.as_deref())?,
        until: iso_time_param("until", query.until.as_deref())?,
        before_seq: query.cursor,
    };
    let mut conn = app.db.read().await?;
    let records = store::audit::page(&mut conn, &filter, page_size + 1).await?;
    let more = records.len() as i64 > page_size;
    let records: Vec<Record> = records.into_iter().take(page_size as usize).collect();
    let next_cursor = if more { records.last().map(|r| r.seq) } else { None };
    let records = records
        .into_iter()
        .map(|record| AuditRecordView {
            time: record.time().to_iso(),
            details_json: serde_json::from_str(&record.details).unwrap_or_default(),
            record,
        })
        .collect();
    Ok(Json(AuditPage { records, next_cursor }))
}
