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
use crate::domain::sessions::{ActivityType, NewActivity, RecordSource, Session};
use crate::store::{self, jobs::Job};
use crate::use_cases::sessions::{fail, record_activity};

/// Model requests in flight at once per host (half the worker's job slots, so plugin calls always
/// have the other half).
pub const IN_FLIGHT: usize = 32;
/// Attempts at one request before the plugin is told it failed.
const MAX_ATTEMPTS: i64 = 5;
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
}

impl ModelCalls {
    /// For `app`'s outbound policy; a request may take the plugin timeout (the job's lease is
    /// longer, so a request never outlives its claim).
    pub fn new(app: &App) -> anyhow::Result<ModelCalls> {
        let policy = crate::outbound::OutboundPolicy {
            allow_private_targets: app.config.outbound.allow_private_targets,
        };
        let client = crate::outbound::client(policy, app.config.plugin_limits.timeout)?;
        Ok(ModelCalls {
            client,
            policy,
            slots: Semaphore::new(IN_FLIGHT),
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
            complete(app, &job.id).await?;
            return Ok(Handled::Done);
        }
        let elapsed = app.clock.now().millis() - session.created_at.millis();
        if let Some(reason) = budgets.exhausted(usage.calls, usage.input_tokens + usage.output_tokens, elapsed) {
            fail_session(app, &job.id, &session.id, reason).await?;
            return Ok(Handled::Done);
        }
        let Ok(_slot) = self.slots.try_acquire() else {
            // Not an attempt: put back without counting it against the request's retries.
            defer(app, &job.id, 200).await?;
            return Ok(Handled::Later);
        };
        // Recorded as the plugin's (whose request it is), audited as the plugin acting as its bot.
        let actor = Actor::plugin(session.workspace_id.clone(), session.bot_id.clone(), session.id.clone());
        let request = &call.request;
        let asked = NewActivity {
            raw: Some(request.body().to_string()),
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
                retry_later(app, &job.id, after_ms, &why).await?;
                return Ok(Handled::Retrying);
            }
            Sent::Retry { why, .. } => Err(format!("{why}; gave up after {} attempts", job.attempts)),
            Sent::Failed(why) => Err(why),
        };
        let result = match &answer {
            Ok(reply) => {
                let answered = NewActivity {
                    raw: Some(
                        json!({"stopReason": reply.stop_reason, "content": reply.content, "usage": reply.usage})
                            .to_string(),
                    ),
                    idempotency_key: Some(format!("model:{}:response", call.id)),
                    ..NewActivity::text(
                        ActivityType::ModelResponse,
                        format!(
                            "{} answered ({}; {} input and {} output tokens)",
                            request.model, reply.stop_reason, reply.usage.input_tokens, reply.usage.output_tokens
                        ),
                    )
                };
                record_activity(app, &session, answered, RecordSource::Plugin, &actor).await?;
                json!({"ok": reply})
            }
            Err(why) => {
                let failed = NewActivity {
                    idempotency_key: Some(format!("model:{}:response", call.id)),
                    ..NewActivity::text(ActivityType::Error, format!("The model call failed: {why}"))
                };
                record_activity(app, &session, failed, RecordSource::Plugin, &actor).await?;
                json!({"error": why})
            }
        };
        let callback: Value = serde_json::from_str(&call.callback).unwrap_or(Value::Null);
        let payload = json!({"modelCall": call.id, "callback": callback, "result": result}).to_string();
        let usage = answer.as_ref().ok().map(|reply| reply.usage);
        answered(app, &job.id, &session.id, payload, usage).await?;
        Ok(Handled::Done)
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

async fn complete(app: &App, job: &JobId) -> anyhow::Result<()> {
    let job = job.clone();
    app.writer
        .write(move |tx| {
            let job = job.clone();
            Box::pin(async move { store::jobs::complete(tx.conn(), &job).await })
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

async fn retry_later(app: &App, job: &JobId, after_ms: i64, why: &str) -> anyhow::Result<()> {
    let (job, at, why) = (job.clone(), app.clock.now().plus_millis(after_ms), why.to_owned());
    app.writer
        .write(move |tx| {
            let (job, why) = (job.clone(), why.clone());
            Box::pin(async move { store::jobs::retry_at(tx.conn(), &job, at, &why).await })
        })
        .await?;
    Ok(())
}

async fn fail_session(app: &App, job: &JobId, session: &SessionId, reason: String) -> anyhow::Result<()> {
    let (job, session, now) = (job.clone(), session.clone(), app.clock.now());
    app.writer
        .write(move |tx| {
            let (job, session, reason) = (job.clone(), session.clone(), reason.clone());
            Box::pin(async move {
                fail(tx, &session, reason, now).await?;
                store::jobs::complete(tx.conn(), &job).await
            })
        })
        .await?;
    Ok(())
}

/// Records the usage and queues the plugin's callback, with the job's completion.
async fn answered(
    app: &App,
    job: &JobId,
    session: &SessionId,
    payload: String,
    usage: Option<model::Usage>,
) -> anyhow::Result<()> {
    let (job, session, now) = (job.clone(), session.clone(), app.clock.now());
    app.writer
        .write(move |tx| {
            let (job, session, payload) = (job.clone(), session.clone(), payload.clone());
            Box::pin(async move {
                let tx = tx.conn();
                if let Some(usage) = usage {
                    store::model_usage::add(tx, &session, usage, now).await?;
                }
                let callback = JobKind::Timer { payload };
                store::jobs::insert_with_id(tx, &JobId::generate(), &callback, &session, now, now).await?;
                store::jobs::complete(tx, &job).await
            })
        })
        .await?;
    app.jobs_queued.notify_one();
    Ok(())
}
