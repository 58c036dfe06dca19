//! What admins do with deliveries: read the attempt log per bot or session, see an endpoint's
//! health, re-enable it, and redeliver (same id) one delivery or every failed one in a time range.

use serde_json::json;

use super::sessions;
use crate::app::App;
use crate::audit::{self, Entry};
use crate::domain::connection_schema::{self, WEBHOOK_URL_ROLE};
use crate::domain::ids::SessionId;
use crate::domain::sessions::Connection;
use crate::domain::time::Timestamp;
use crate::store::deliveries::{Attempt, Delivery, Filter};
use crate::store::endpoints::Endpoint;
use crate::store::{self, Conn, StoreError};
use crate::use_cases::accounts::Caller;
use crate::use_cases::accounts::bots::{connection_of, find_bot};
use crate::use_cases::error::Error;

/// A delivery with its attempts.
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    pub delivery: Delivery,
    pub attempts: Vec<Attempt>,
}

async fn with_attempts(conn: &mut Conn, deliveries: Vec<Delivery>) -> Result<Vec<DeliveryLog>, StoreError> {
    let mut logs = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let attempts = store::deliveries::attempts(conn, &delivery.id).await?;
        logs.push(DeliveryLog { delivery, attempts });
    }
    Ok(logs)
}

async fn bot_connection(conn: &mut Conn, caller: &Caller, bot_id: &str) -> Result<Connection, Error> {
    let bot = find_bot(conn, caller, bot_id).await?;
    connection_of(conn, &bot).await
}

/// A page of a bot's deliveries (newest first) with their attempts.
pub async fn for_bot(
    app: &App,
    caller: &Caller,
    bot_id: &str,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<DeliveryLog>, Error> {
    let mut conn = app.db.read().await?;
    let connection = bot_connection(&mut conn, caller, bot_id).await?;
    let deliveries = store::deliveries::for_connection(&mut conn, &connection.id, filter, limit).await?;
    Ok(with_attempts(&mut conn, deliveries).await?)
}

/// A session's deliveries with their attempts.
pub async fn for_session(app: &App, caller: &Caller, session_id: &str) -> Result<Vec<DeliveryLog>, Error> {
    let mut conn = app.db.read().await?;
    let session = store::sessions::get(&mut conn, caller.workspace_id(), session_id)
        .await?
        .ok_or_else(|| Error::not_found("agent session", session_id))?;
    let deliveries = store::deliveries::for_session(&mut conn, &session.id).await?;
    Ok(with_attempts(&mut conn, deliveries).await?)
}

/// The health of a bot's webhook endpoint (`None` before the first attempt).
pub async fn endpoint_health(app: &App, caller: &Caller, bot_id: &str) -> Result<(String, Option<Endpoint>), Error> {
    let mut conn = app.db.read().await?;
    let connection = bot_connection(&mut conn, caller, bot_id).await?;
    let endpoint = store::endpoints::get(&mut conn, &connection.id).await?;
    // Where the connection delivers now: the field its connection type marks as the webhook URL.
    let configured = app
        .runtime
        .plugin(&connection.connection_type)
        .zip(serde_json::from_str::<serde_json::Value>(&connection.config).ok())
        .and_then(|(plugin, config)| {
            connection_schema::value_with_role(&plugin.manifest.config_schema, &config, WEBHOOK_URL_ROLE)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Ok((configured, endpoint))
}

/// Lets deliveries to a disabled endpoint go out again.
pub async fn enable_endpoint(app: &App, caller: &Caller, bot_id: &str) -> Result<(), Error> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let connection = bot_connection(&mut tx, caller, bot_id).await?;
    if !store::endpoints::enable(&mut tx, &connection.id, now).await? {
        return Err(Error::Conflict("the webhook endpoint is not disabled".into()));
    }
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("webhook_endpoint.enable", "connection", &connection.id, json!({})),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

/// Queues `delivery` again in `tx`, with its id and a fresh schedule, and puts its session back in
/// the queue if the host failed it for want of this delivery.
async fn requeue(
    tx: &mut Conn,
    caller: &Caller,
    delivery: &Delivery,
    now: Timestamp,
) -> Result<Option<SessionId>, StoreError> {
    store::deliveries::requeue(tx, &delivery.id, now).await?;
    let mut reopened = None;
    if let Some(session) = &delivery.session_id {
        let why = format!("redelivery requested by {}", caller.user.name);
        if sessions::reopen_for_redelivery(tx, session, why, now).await? {
            reopened = Some(session.clone());
        }
    }
    Ok(reopened)
}

/// Redelivers one delivery (same id): its attempts go on in the log, its schedule starts over.
pub async fn redeliver(app: &App, caller: &Caller, delivery_id: &str) -> Result<Delivery, Error> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let delivery = store::deliveries::get(&mut tx, caller.workspace_id(), delivery_id)
        .await?
        .ok_or_else(|| Error::not_found("delivery", delivery_id))?;
    if delivery.status == "pending" {
        return Err(Error::Conflict(format!(
            "delivery `{delivery_id}` is still being delivered"
        )));
    }
    let reopened = requeue(&mut tx, caller, &delivery, now).await?;
    let details = json!({"previousStatus": delivery.status, "reopenedSession": reopened});
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("delivery.redeliver", "delivery", &delivery.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    app.deliveries_queued.notify_one();
    let mut conn = app.db.read().await?;
    store::deliveries::get(&mut conn, caller.workspace_id(), delivery_id)
        .await?
        .ok_or_else(|| Error::not_found("delivery", delivery_id))
}

/// Most deliveries one range redelivery may requeue.
pub const MAX_RANGE_REDELIVERY: i64 = 1_000;

/// Redelivers every failed delivery of a bot created in `[since, until)`; returns how many.
pub async fn redeliver_failed(
    app: &App,
    caller: &Caller,
    bot_id: &str,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<usize, Error> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let connection = bot_connection(&mut tx, caller, bot_id).await?;
    let filter = Filter {
        status: Some("failed".into()),
        since,
        until,
        before_id: None,
    };
    let failed = store::deliveries::for_connection(&mut tx, &connection.id, &filter, MAX_RANGE_REDELIVERY + 1).await?;
    if failed.len() as i64 > MAX_RANGE_REDELIVERY {
        return Err(Error::invalid(
            "since",
            format!("more than {MAX_RANGE_REDELIVERY} failed deliveries in that range; narrow it with since/until"),
        ));
    }
    let mut reopened = Vec::new();
    for delivery in &failed {
        reopened.extend(requeue(&mut tx, caller, delivery, now).await?);
    }
    let ids: Vec<String> = failed.iter().map(|d| d.id.to_string()).collect();
    let details = json!({"deliveries": ids, "since": since, "until": until, "reopenedSessions": reopened});
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("delivery.redeliver_failed", "connection", &connection.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    app.deliveries_queued.notify_one();
    Ok(failed.len())
}
