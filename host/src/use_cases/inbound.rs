//! Provider webhooks (`inbound`, contract 0.1.2): a request arriving at a connection's endpoint is
//! checked against the spec its plugin opened (signature by the connection's secret, which the
//! plugin never sees), stored once per provider event id, and queued as an `inbound-webhook`
//! event for the session that routed its key — or kept until one does. Plugins open endpoints and
//! route keys through [`open_endpoint`] and [`route`].

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;

use crate::app::App;
use crate::audit::{Actor, Entry};
use crate::domain::ids::{ConnectionId, InboundEventId, SessionId};
use crate::domain::inbound::{self, EndpointSpec};
use crate::domain::jobs::{JobKind, QueuedEvent};
use crate::domain::time::Timestamp;
use crate::domain::webhook_signing;
use crate::secrets::SecretValue;
use crate::store::inbound::InboundEvent;
use crate::store::{self, StoreError};

use super::Error;
use super::accounts::Caller;
use super::accounts::bots::{connection_of, find_bot};

/// Connections whose refusals are remembered at most; past it the longest quiet one is forgotten.
const TRACKED_CONNECTIONS: usize = 10_000;

/// What a connection's endpoint refused since the host started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub count: u64,
    pub last_at: Timestamp,
    /// Why the last one was refused (e.g. "the signature does not match …").
    pub last_reason: String,
}

/// Provider webhooks refused per connection, so admins can see that (and why) a provider's
/// webhooks are turned away. Kept in memory, bounded ([`TRACKED_CONNECTIONS`]), and only for
/// connections whose endpoint is open: a flood of forged requests costs no database write.
#[derive(Debug, Default)]
pub struct Rejections(Mutex<HashMap<ConnectionId, Rejected>>);

impl Rejections {
    fn record(&self, connection: &ConnectionId, at: Timestamp, reason: String) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(connection) {
            entry.count += 1;
            entry.last_at = at;
            entry.last_reason = reason;
            return;
        }
        if map.len() >= TRACKED_CONNECTIONS
            && let Some(quietest) = map.iter().min_by_key(|(_, r)| r.last_at).map(|(c, _)| c.clone())
        {
            map.remove(&quietest);
        }
        map.insert(
            connection.clone(),
            Rejected {
                count: 1,
                last_at: at,
                last_reason: reason,
            },
        );
    }

    /// What `connection`'s endpoint refused, if anything (since the host started).
    pub fn of(&self, connection: &ConnectionId) -> Option<Rejected> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(connection)
            .cloned()
    }
}

/// How a bot's provider-webhook endpoint is doing, for its admins.
#[derive(Debug, Clone)]
pub struct EndpointHealth {
    /// The endpoint's URL once its plugin opened it.
    pub url: Option<String>,
    /// Events stored (within the retention window), and the last one's time.
    pub received: i64,
    pub last_received_at: Option<Timestamp>,
    /// Events no session has routed yet.
    pub waiting: i64,
    /// Requests refused since the host started.
    pub rejected: Option<Rejected>,
}

/// The provider-webhook endpoint of bot `bot_id`'s connection. Admins only (the API checks).
pub async fn health(app: &App, caller: &Caller, bot_id: &str) -> Result<EndpointHealth, Error> {
    let mut conn = app.db.read().await?;
    let bot = find_bot(&mut conn, caller, bot_id).await?;
    let connection = connection_of(&mut conn, &bot).await?;
    let opened = store::inbound::endpoint(&mut conn, &connection.id).await?.is_some();
    let (received, last) = store::inbound::received(&mut conn, &connection.id).await?;
    let waiting = store::inbound::count_waiting(&mut conn, &connection.id).await?;
    Ok(EndpointHealth {
        url: opened.then(|| endpoint_url(app, &connection.connection_type, &connection.id)),
        received,
        last_received_at: last.map(Timestamp::from_millis),
        waiting,
        rejected: app.inbound_rejections.of(&connection.id),
    })
}

/// A request as it reached the endpoint.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query after the endpoint's URL (often empty).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What became of an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Stored, and queued for its session (or waiting for one to route its key).
    Accepted,
    /// The connection already has this event id: nothing more was done.
    Duplicate,
}

/// The URL of `connection`'s endpoint, as providers call it.
pub fn endpoint_url(app: &App, connection_type: &str, connection: &ConnectionId) -> String {
    format!(
        "{}/plugins/{connection_type}/inbound/{}",
        app.config.api_base_url(),
        connection.as_str()
    )
}

/// Receives `request` at the endpoint of connection `connection_id` of type `connection_type`.
pub async fn receive(
    app: &App,
    connection_type: &str,
    connection_id: &str,
    request: Request,
) -> Result<Received, Error> {
    let unknown = || {
        Error::NotFound(format!(
            "no connection `{}` of type `{}` accepts provider webhooks here",
            connection_id.chars().take(64).collect::<String>(),
            connection_type.chars().take(64).collect::<String>()
        ))
    };
    if connection_id.len() > 64 {
        return Err(unknown());
    }
    let connection = ConnectionId::from(connection_id);
    let (spec, secret) = {
        let mut conn = app.db.read().await?;
        let found = store::connections::get(&mut conn, &connection).await?;
        if found.is_none_or(|c| c.connection_type != connection_type) {
            return Err(unknown());
        }
        let spec: EndpointSpec = match store::inbound::endpoint(&mut conn, &connection).await? {
            Some(text) => serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("stored inbound spec: {e}"))?,
            None => {
                return Err(Error::NotFound(format!(
                    "connection `{connection}` has not opened its provider webhook endpoint yet (its plugin opens it when it starts a session)"
                )));
            }
        };
        let secret = opened_secret(app, &mut conn, &connection, spec.secret_name()).await?;
        (spec, secret)
    };
    let now = app.clock.now();
    let Some(secret) = secret else {
        let reason = format!(
            "this endpoint cannot check signatures yet: secret `{}` is not set on the connection",
            spec.secret_name()
        );
        app.inbound_rejections.record(&connection, now, reason.clone());
        return Err(Error::Unauthenticated(reason));
    };
    let event_id = inbound::verify(
        &spec,
        secret.expose(),
        &request.headers,
        &request.body,
        now.millis() / 1_000,
    )
    .map_err(|refused| {
        let reason = format!("provider webhook refused: {refused}");
        app.inbound_rejections.record(&connection, now, reason.clone());
        Error::Unauthenticated(reason)
    })?;
    let route_key = inbound::route_key(&spec, &request.body);
    let event = InboundEvent {
        id: InboundEventId::generate(),
        connection_id: connection.clone(),
        event_id,
        route_key,
        session_id: None,
        method: request.method,
        path: request.path,
        headers: serde_json::to_string(&inbound::kept_headers(request.headers)).unwrap_or_else(|_| "[]".into()),
        body: request.body,
        received_at: now.millis(),
    };
    let stored = event.clone();
    let (received, waiting) = app
        .writer
        .write(move |tx| {
            let mut event = stored.clone();
            Box::pin(async move {
                let tx = tx.conn();
                store::inbound::lock_routes(tx, &event.connection_id).await?;
                let session = match &event.route_key {
                    Some(key) => store::inbound::route(tx, &event.connection_id, key).await?,
                    None => None,
                };
                if session.is_none()
                    && store::inbound::count_waiting(tx, &event.connection_id).await?
                        >= inbound::MAX_WAITING_PER_CONNECTION
                {
                    return Err(Error::Busy(format!(
                        "connection `{}` holds {} provider webhooks no session has claimed yet; try again later",
                        event.connection_id,
                        inbound::MAX_WAITING_PER_CONNECTION
                    )));
                }
                event.session_id = session.clone();
                if !store::inbound::insert_event(tx, &event).await? {
                    return Ok((Received::Duplicate, false));
                }
                if let Some(session) = &session {
                    queue(tx, session, &event.id, now).await?;
                }
                Ok((Received::Accepted, session.is_none()))
            })
        })
        .await?;
    if received == Received::Accepted && !waiting {
        app.jobs_queued.notify_one();
    }
    Ok(received)
}

/// Queues the `inbound-webhook` event `event` for `session`.
async fn queue(
    tx: &mut store::Conn,
    session: &SessionId,
    event: &InboundEventId,
    now: crate::domain::time::Timestamp,
) -> Result<(), StoreError> {
    let job = JobKind::SessionEvent(QueuedEvent::Inbound {
        event: event.to_string(),
    });
    store::jobs::insert(tx, &job, Some(session), now).await.map(|_| ())
}

/// The value of `connection`'s secret `name`, if set.
async fn opened_secret(
    app: &App,
    conn: &mut store::Conn,
    connection: &ConnectionId,
    name: &str,
) -> Result<Option<SecretValue>, Error> {
    let Some(sealed) = store::connection_secrets::get(conn, connection, name).await? else {
        return Ok(None);
    };
    app.secrets
        .open(connection.as_str(), name, &sealed)
        .map(Some)
        .map_err(|_| {
            Error::Internal(anyhow::anyhow!(
                "secret `{name}` of {connection} cannot be opened with this host's key"
            ))
        })
}

/// Opens (or re-specifies) `connection`'s endpoint as its plugin asks in a call about `session`,
/// generating the connection's inbound secret when the spec names none and none exists yet.
/// Returns the endpoint's URL. A spec equal to the stored one writes nothing.
pub async fn open_endpoint(
    app: &App,
    connection_type: &str,
    connection: &ConnectionId,
    session: &SessionId,
    spec: EndpointSpec,
) -> Result<String, Error> {
    let text = serde_json::to_string(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (stored, has_secret) = {
        let mut conn = app.db.read().await?;
        let stored = store::inbound::endpoint(&mut conn, connection).await?;
        let has_secret = spec.secret.is_some()
            || store::connection_secrets::get(&mut conn, connection, inbound::GENERATED_SECRET)
                .await?
                .is_some();
        (stored, has_secret)
    };
    if stored.as_deref() != Some(text.as_str()) || !has_secret {
        let generated = (!has_secret).then(|| {
            let value = SecretValue::new(webhook_signing::generate_secret());
            app.secrets.seal(connection.as_str(), inbound::GENERATED_SECRET, &value)
        });
        let session_row = {
            let mut conn = app.db.read().await?;
            store::sessions::get_any(&mut conn, session).await?
        }
        .ok_or_else(|| Error::NotFound(format!("session `{session}` is gone")))?;
        let actor = Actor::plugin(
            session_row.workspace_id.clone(),
            session_row.bot_id.clone(),
            session.clone(),
        );
        let now = app.clock.now();
        let (connection, text) = (connection.clone(), text.clone());
        app.writer
            .write(move |tx| {
                let (connection, text, generated, actor) =
                    (connection.clone(), text.clone(), generated.clone(), actor.clone());
                Box::pin(async move {
                    store::inbound::put_endpoint(tx.conn(), &connection, &text, now).await?;
                    if let Some(sealed) = &generated {
                        store::connection_secrets::put(tx.conn(), &connection, inbound::GENERATED_SECRET, sealed, now)
                            .await?;
                    }
                    let details = json!({"connectionId": connection, "spec": serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default(), "secretGenerated": generated.is_some()});
                    tx.audit(
                        &actor,
                        Entry::new("connection.inbound.open", "agent_connection", &connection, details),
                        now,
                    );
                    Ok::<_, StoreError>(())
                })
            })
            .await?;
    }
    Ok(endpoint_url(app, connection_type, connection))
}

/// Routes `key` of `connection` to `session`, and hands it the events that waited for the key.
pub async fn route(app: &App, connection: &ConnectionId, key: &str, session: &SessionId) -> Result<(), Error> {
    inbound::validate_route_key(key)?;
    hand_over_waiting(app, connection, key, session).await
}

async fn hand_over_waiting(app: &App, connection: &ConnectionId, key: &str, session: &SessionId) -> Result<(), Error> {
    let now = app.clock.now();
    let (connection, key, session) = (connection.clone(), key.to_owned(), session.clone());
    let queued = app
        .writer
        .write(move |tx| {
            let (connection, key, session) = (connection.clone(), key.clone(), session.clone());
            Box::pin(async move {
                let tx = tx.conn();
                store::inbound::lock_routes(tx, &connection).await?;
                store::inbound::put_route(tx, &connection, &key, &session, now).await?;
                let waiting = store::inbound::take_waiting(tx, &connection, &key, &session).await?;
                for event in &waiting {
                    queue(tx, &session, event, now).await?;
                }
                Ok::<_, StoreError>(waiting.len())
            })
        })
        .await?;
    if queued > 0 {
        app.jobs_queued.notify_one();
    }
    Ok(())
}

/// Deletes events past the deduplication window (a bounded number per call); how many.
pub async fn forget_old_events(app: &App) -> Result<u64, Error> {
    let before = app.clock.now().plus_millis(-inbound::RETENTION_MS);
    let deleted = app
        .writer
        .write(move |tx| {
            Box::pin(async move { store::inbound::delete_received_before(tx.conn(), before, 1_000).await })
        })
        .await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_per_connection_and_bounded() {
        let rejections = Rejections::default();
        let at = Timestamp::from_millis;
        let first = ConnectionId::from("con_first");
        rejections.record(&first, at(1), "bad signature".into());
        rejections.record(&first, at(2), "stale".into());
        assert_eq!(
            rejections.of(&first),
            Some(Rejected {
                count: 2,
                last_at: at(2),
                last_reason: "stale".into()
            })
        );
        for n in 0..TRACKED_CONNECTIONS {
            rejections.record(
                &ConnectionId::from(format!("con_{n}").as_str()),
                at(10 + n as i64),
                "x".into(),
            );
        }
        // Full: the quietest connection (the first, last refused at 2 ms) made room.
        assert_eq!(rejections.0.lock().unwrap().len(), TRACKED_CONNECTIONS);
        assert_eq!(rejections.of(&first), None);
        assert!(rejections.of(&ConnectionId::from("con_0")).is_some());
    }
}
