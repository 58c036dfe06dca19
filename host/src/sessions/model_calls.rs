//! Performs the model requests plugins queue (`model` capability) outside any plugin instance: a
//! waiting request is a job row, one in flight a task holding one HTTP connection (at most
//! [`IN_FLIGHT`] at once; the rest wait as rows). Before each request the session's budgets are
//! checked; the request and the answer are recorded as `modelRequest`/`modelResponse` activities
//! (with token usage); 429, 529, 5xx and transport failures are retried (honouring `Retry-After`);
//! then the plugin is called back with the answer as a `timer-fired` event — in the transaction
//! that completes the request's job, so a restart at any point neither loses nor repeats it.

use std::sync::Arc;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::app::App;
use crate::audit::Actor;
use crate::domain::ids::{JobId, SessionId};
use crate::domain::jobs::{JobKind, ModelCall};
use crate::domain::model::{self, Budgets, ModelReply, Refusal};
use crate::domain::sessions::{Activity, ActivityType, MAX_ACTIVITY_RAW_BYTES, NewActivity, RecordSource, Session};
use crate::store::{self, StoreError, jobs::Job};
use crate::use_cases::sessions::{activity_record, fail_over_budget, record_activity, write_activity};

/// Model requests in flight at once per host (half the worker's job slots, so plugin calls always
/// have the other half).
pub const IN_FLIGHT: usize = 32;
/// Requests that may wait in memory for one of the [`IN_FLIGHT`] slots (each holds one of the
/// worker's job slots while it waits); beyond them a request is put back as a row for a moment.
const WAITING: usize = 16;
/// How long a request waits in memory for a slot before it is put back.
const SLOT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
/// Attempts at one request before the plugin is told it failed.
const MAX_ATTEMPTS: i64 = 5;
/// How much of a request or answer too large for an activity's `raw` is kept.
const RAW_HEAD_BYTES: usize = 64 << 10;
/// Longest wait a `Retry-After` may ask for; longer ones are capped.
const MAX_RETRY_AFTER_MS: i64 = 60_000;

/// What handling a model-call job came to.
pub enum Handled {
    /// Done (answered, failed, or dropped with its session).
    Done,
    /// Sent and answered with a retryable failure: put back for its retry.
    Retrying,
    /// Not sent: no slot was free; put back for a moment.
    Later,
}

/// The HTTP client and the bound on requests in flight, shared by the worker's jobs.
pub struct ModelCalls {
    client: reqwest::Client,
    policy: crate::outbound::OutboundPolicy,
    slots: Semaphore,
    waiting: Semaphore,
}

impl ModelCalls {
    /// For `app`'s outbound policy; a request may take the model timeout (a model-call job's
    /// lease is a minute longer, and its completion is fenced on its claim, so a request that
    /// outlives its lease anyway is answered to the plugin once).
    pub fn new(app: &App) -> anyhow::Result<ModelCalls> {
        let policy = crate::outbound::OutboundPolicy {
            allow_private_targets: app.config.outbound.allow_private_targets,
        };
        let client = crate::outbound::client(policy, app.config.model_timeout)?;
        Ok(ModelCalls {
            client,
            policy,
            slots: Semaphore::new(IN_FLIGHT),
            waiting: Semaphore::new(WAITING),
        })
    }

    /// Handles the job `job` asking for `call`.
    pub async fn handle(&self, app: &Arc<App>, job: &Job, call: ModelCall) -> anyhow::Result<Handled> {
        let session_id: SessionId = job.session_id.clone().context("model call job without a session")?;
        let (session, budgets, usage) = {
            let mut conn = app.db.read().await?;
            let session = store::sessions::get_any(&mut conn, &session_id)
                .await?
                .context("the session is gone")?;
            let connection = store::connections::get(&mut conn, &session.connection_id).await?;
            let budgets = Budgets::from_stored(connection.as_ref().and_then(|c| c.budgets.as_deref()));
            let usage = store::model_usage::get(&mut conn, &session_id).await?;
            (session, budgets, usage)
        };
        if session.status.is_terminal() {
            complete(app, job).await?;
            return Ok(Handled::Done);
        }
        let elapsed = app.clock.now().millis() - session.created_at.millis();
        if let Some(reason) = budgets.exhausted(usage.calls, usage.input_tokens + usage.output_tokens, elapsed) {
            fail_session(app, job, &session.id, reason).await?;
            return Ok(Handled::Done);
        }
        let Some(_slot) = self.slot().await else {
            // Not an attempt: put back without counting it against the request's retries.
            defer(app, &job.id, 200).await?;
            return Ok(Handled::Later);
        };
        // Recorded as the plugin's (whose request it is), audited as the plugin acting as its bot.
        let actor = Actor::plugin(session.workspace_id.clone(), session.bot_id.clone(), session.id.clone());
        let request = &call.request;
        let asked = NewActivity {
            raw: Some(recordable_raw(request.body().to_string())),
            idempotency_key: Some(format!("model:{}:request", call.id)),
            ..NewActivity::text(
                ActivityType::ModelRequest,
                format!(
                    "Asked {} ({} messages, {} tools)",
                    request.model,
                    request.messages.as_array().map_or(0, Vec::len),
                    request.tools.as_array().map_or(0, Vec::len)
                ),
            )
        };
        record_activity(app, &session, asked, RecordSource::Plugin, &actor).await?;

        let answer = match self.send(app, &session, &call).await {
            Sent::Reply(reply) => Ok(reply),
            Sent::Retry { after_ms, why } if job.attempts < MAX_ATTEMPTS => {
                retry_later(app, job, &session.id, after_ms, &why).await?;
                return Ok(Handled::Retrying);
            }
            Sent::Retry { why, .. } => Err(format!("{why}; gave up after {} attempts", job.attempts)),
            Sent::Failed(why) => Err(why),
        };
        // The answer's activity is written with the job's completion and the callback (one
        // transaction): a crash before it leaves the request to be sent again, after it nothing.
        let (result, outcome) = match &answer {
            Ok(reply) => {
                let answered = NewActivity {
                    raw: Some(recordable_raw(
                        json!({"stopReason": reply.stop_reason, "content": reply.content, "usage": reply.usage})
                            .to_string(),
                    )),
                    idempotency_key: Some(format!("model:{}:response", call.id)),
                    ..NewActivity::text(
                        ActivityType::ModelResponse,
                        format!(
                            "{} answered ({}; {} input and {} output tokens)",
                            request.model, reply.stop_reason, reply.usage.input_tokens, reply.usage.output_tokens
                        ),
                    )
                };
                (json!({"ok": reply}), answered)
            }
            Err(why) => {
                let failed = NewActivity {
                    idempotency_key: Some(format!("model:{}:response", call.id)),
                    ..NewActivity::text(ActivityType::Error, format!("The model call failed: {why}"))
                };
                (json!({"error": why}), failed)
            }
        };
        let outcome = activity_record(app, &session, outcome, RecordSource::Plugin)?;
        let callback: Value = serde_json::from_str(&call.callback).unwrap_or(Value::Null);
        let payload = json!({"modelCall": call.id, "callback": callback, "result": result}).to_string();
        let usage = answer.as_ref().ok().map(|reply| reply.usage);
        if !answered(app, job, &session.id, payload, usage, outcome, actor).await? {
            tracing::warn!(
                job = %job.id,
                session = %session.id,
                "a model call outlived its lease and was claimed again; this answer is dropped"
            );
        }
        Ok(Handled::Done)
    }

    /// A slot for one request: free now, or within [`SLOT_PATIENCE`] for one of the [`WAITING`]
    /// requests allowed to wait (waiting in memory costs no writes; putting back costs two).
    async fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if let Ok(slot) = self.slots.try_acquire() {
            return Some(slot);
        }
        let _turn = self.waiting.try_acquire().ok()?;
        tokio::time::timeout(SLOT_PATIENCE, self.slots.acquire())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Sends the request once.
    async fn send(&self, app: &App, session: &Session, call: &ModelCall) -> Sent {
        let request = &call.request;
        // IP literals are never resolved, so the guarded resolver cannot check them: check here.
        let Ok(url) = url::Url::parse(&request.url()) else {
            return Sent::Failed(format!("`{}` is not a URL", request.base_url));
        };
        if let Err(forbidden) = self.policy.check_url(&url) {
            return Sent::Failed(format!("the model's address is not allowed: {forbidden}"));
        }
        // A key goes over https only (or, where the operator allows private targets, plain http
        // to this machine itself), as every secret the host sends.
        let plain_ok = self.policy.allow_private_targets && crate::runtime::capabilities::http::is_loopback_host(&url);
        if request.api_key_secret.is_some() && url.scheme() != "https" && !plain_ok {
            return Sent::Failed(format!(
                "the API key is only sent over https; `{}` is plain http",
                request.base_url
            ));
        }
        let mut http = self.client.post(url).json(&request.body());
        if let Some(secret) = &request.api_key_secret {
            let key = match crate::use_cases::accounts::connection_secrets::open(app, &session.connection_id, secret)
                .await
            {
                Ok(Some(key)) => key,
                Ok(None) => {
                    return Sent::Failed(format!(
                        "secret `{secret}` is not set on this connection; a workspace admin sets it with PUT /api/public/bots/{{id}}/secrets/{secret}"
                    ));
                }
                Err(error) => {
                    return Sent::Retry {
                        after_ms: 2_000,
                        why: error.to_string(),
                    };
                }
            };
            http = match request.format {
                model::WireFormat::AnthropicMessages => http.header("x-api-key", key.expose()),
                model::WireFormat::OpenaiChat => http.bearer_auth(key.expose()),
            };
        }
        if request.format == model::WireFormat::AnthropicMessages {
            http = http.header("anthropic-version", "2023-06-01");
        }
        let response = match http.send().await {
            Ok(response) => response,
            Err(error) => {
                if let Some(forbidden) = crate::outbound::forbidden_in(&error) {
                    return Sent::Failed(format!("the model's address is not allowed: {forbidden}"));
                }
                return Sent::Retry {
                    after_ms: 2_000,
                    why: format!("the model could not be reached ({})", describe(&error)),
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|secs| ((secs * 1_000.0) as i64).clamp(0, MAX_RETRY_AFTER_MS));
        let body = match read_limited(response).await {
            Ok(body) => body,
            Err(why) => return Sent::Failed(why),
        };
        if !(200..300).contains(&status) {
            return match model::refusal(request.format, status, &body) {
                Refusal::Retry => Sent::Retry {
                    after_ms: retry_after.unwrap_or(2_000),
                    why: format!("the model answered {status}"),
                },
                Refusal::Fail(why) => Sent::Failed(why),
            };
        }
        match model::parse_reply(request.format, &body) {
            Ok(reply) => Sent::Reply(reply),
            Err(why) => Sent::Failed(why),
        }
    }
}

/// One attempt's outcome.
enum Sent {
    Reply(ModelReply),
    Retry { after_ms: i64, why: String },
    Failed(String),
}

fn describe(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "transport error"
    }
}

/// The body, up to [`model::MAX_REPLY_BYTES`].
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| "the model's answer broke off".to_owned())?
    {
        if body.len() + chunk.len() > model::MAX_REPLY_BYTES {
            return Err(format!(
                "the model's answer is larger than {} KiB",
                model::MAX_REPLY_BYTES >> 10
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `raw` as an activity can hold it: whole when it fits, else a JSON note of its size with its
/// beginning (a request near the limits, or a long answer, is still recorded).
fn recordable_raw(raw: String) -> String {
    if raw.len() <= MAX_ACTIVITY_RAW_BYTES {
        return raw;
    }
    let mut end = RAW_HEAD_BYTES;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    json!({"truncated": true, "bytes": raw.len(), "head": &raw[..end]}).to_string()
}

/// Completes the job if this worker's claim is still its latest.
async fn complete(app: &App, job: &Job) -> anyhow::Result<()> {
    let (id, attempts) = (job.id.clone(), job.attempts);
    app.writer
        .write(move |tx| {
            let id = id.clone();
            Box::pin(async move { store::jobs::complete_claimed(tx.conn(), &id, attempts).await })
        })
        .await?;
    Ok(())
}

async fn defer(app: &App, job: &JobId, after_ms: i64) -> anyhow::Result<()> {
    let (job, at) = (job.clone(), app.clock.now().plus_millis(after_ms));
    app.writer
        .write(move |tx| {
            let job = job.clone();
            Box::pin(async move { store::jobs::defer(tx.conn(), &job, at).await })
        })
        .await?;
    Ok(())
}

/// Puts the job back for its retry, counting the attempt against the session's `modelCalls`.
async fn retry_later(app: &App, job: &Job, session: &SessionId, after_ms: i64, why: &str) -> anyhow::Result<()> {
    let now = app.clock.now();
    let (id, attempts, session, at, why) = (
        job.id.clone(),
        job.attempts,
        session.clone(),
        now.plus_millis(after_ms),
        why.to_owned(),
    );
    app.writer
        .write(move |tx| {
            let (id, session, why) = (id.clone(), session.clone(), why.clone());
            Box::pin(async move {
                let tx = tx.conn();
                if store::jobs::retry_claimed_at(tx, &id, attempts, at, &why).await? {
                    store::model_usage::add(tx, &session, None, now).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .await?;
    Ok(())
}

/// Fails the session over its budget (its plugin is told with a cancel) and completes the job.
async fn fail_session(app: &App, job: &Job, session: &SessionId, reason: String) -> anyhow::Result<()> {
    let (id, attempts, session, now) = (job.id.clone(), job.attempts, session.clone(), app.clock.now());
    app.writer
        .write(move |tx| {
            let (id, session, reason) = (id.clone(), session.clone(), reason.clone());
            Box::pin(async move {
                if store::jobs::complete_claimed(tx.conn(), &id, attempts).await? {
                    fail_over_budget(tx, &session, reason, now).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .await?;
    // The plugin's cancel is queued.
    app.jobs_queued.notify_one();
    Ok(())
}

/// Completes the job, records the answer's activity (`outcome`, as `actor`), counts the attempt
/// (and the answer's tokens) against the session's budgets and queues the plugin's callback —
/// all in one transaction, and only if this worker's claim is still the job's latest, so an
/// answer is recorded and handed to the plugin once. Whether it was.
async fn answered(
    app: &App,
    job: &Job,
    session: &SessionId,
    payload: String,
    usage: Option<model::Usage>,
    outcome: Activity,
    actor: Actor,
) -> anyhow::Result<bool> {
    let (id, attempts, session, now) = (job.id.clone(), job.attempts, session.clone(), app.clock.now());
    let handed = app
        .writer
        .write(move |tx| {
            let (id, session, payload, outcome, actor) = (
                id.clone(),
                session.clone(),
                payload.clone(),
                outcome.clone(),
                actor.clone(),
            );
            Box::pin(async move {
                if !store::jobs::complete_claimed(tx.conn(), &id, attempts).await? {
                    return Ok::<_, StoreError>(false);
                }
                let key = outcome.idempotency_key.as_deref().unwrap_or_default();
                if store::sessions::activity_by_key(tx.conn(), &session, key)
                    .await?
                    .is_none()
                {
                    write_activity(tx, &outcome, &actor).await?;
                }
                let tx = tx.conn();
                store::model_usage::add(tx, &session, usage, now).await?;
                let callback = JobKind::Timer { payload };
                store::jobs::insert_with_id(tx, &JobId::generate(), &callback, &session, now, now).await?;
                Ok(true)
            })
        })
        .await?;
    if handed {
        app.jobs_queued.notify_one();
    }
    Ok(handed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_too_large_for_an_activity_is_kept_as_its_size_and_beginning() {
        let small = json!({"content": "short"}).to_string();
        assert_eq!(recordable_raw(small.clone()), small);
        // Multi-byte characters across the cut: the head still ends on a character boundary.
        let large = json!({"content": "é".repeat(MAX_ACTIVITY_RAW_BYTES)}).to_string();
        let kept = recordable_raw(large.clone());
        assert!(kept.len() <= MAX_ACTIVITY_RAW_BYTES);
        let note: Value = serde_json::from_str(&kept).unwrap_or_default();
        assert_eq!(note["truncated"], true);
        assert_eq!(note["bytes"], large.len());
        assert!(large.starts_with(note["head"].as_str().unwrap_or("?")));
    }
}
