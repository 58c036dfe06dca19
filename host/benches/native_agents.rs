//! Native agents (`triage-agent`, contract 0.1.3): the loop runs in the host and its model calls
//! never hold an instance.
//!
//! 1. **Throughput**: `SESSIONS` (1,000) tasks assigned to a triage bot through the API (32
//!    clients); each session does 3 model turns (a comment, a status change, a summary) against a
//!    fake OpenAI-compatible server answering at once. Reported: sessions/s from the first
//!    assignment until every session is done. Baseline in the same run: the same 3 × `SESSIONS`
//!    chat-completion requests sent straight to the same fake by a bare client with 32 in flight
//!    (sessions/s = requests/s ÷ 3) — what the model calls alone cost on this machine.
//! 2. **Waiting is cheap**: `WAITING` (10,000) sessions whose model never answers (a slow model
//!    holding every request). Reported: the process's RSS once all of them wait (target < 200 MB:
//!    waiting sessions are rows, not instances), beside the RSS of the same host idle.
//!
//! Run with `./dev bench --bench native_agents`; `LEADTIME_BENCH_DATABASE_URL=postgres://…` runs it
//! on PostgreSQL; `LEADTIME_BENCH_SESSIONS` / `LEADTIME_BENCH_WAITING` change the counts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

const CLIENTS: usize = 32;
/// How long a phase may take before it is called stuck.
const PHASE_TIMEOUT: Duration = Duration::from_secs(900);

fn count(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

/// The fake model: answers each chat completion by the turn it is (the assistant messages so far),
/// at once — or, once `hold` is set, not until it is cleared.
#[derive(Clone, Default)]
struct Model {
    requests: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    hold: Arc<AtomicBool>,
    released: Arc<Notify>,
}

async fn complete(State(model): State<Model>, body: axum::Json<Value>) -> (StatusCode, axum::Json<Value>) {
    model.requests.fetch_add(1, Ordering::Relaxed);
    let now = model.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    model.max_in_flight.fetch_max(now, Ordering::SeqCst);
    while model.hold.load(Ordering::Relaxed) {
        let released = model.released.notified();
        if !model.hold.load(Ordering::Relaxed) {
            break;
        }
        released.await;
    }
    model.in_flight.fetch_sub(1, Ordering::SeqCst);
    let turn = body["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count());
    let message = match turn {
        0 => json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "add_comment", "arguments": "{\"comment\":\"- [ ] Reproduce\\n- [ ] Fix\\n- [ ] Test\"}"}}]}),
        1 => json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_2", "type": "function",
            "function": {"name": "set_status", "arguments": "{\"status\":\"In progress\"}"}}]}),
        _ => json!({"role": "assistant", "content": "Planned in three steps."}),
    };
    let finish = if turn < 2 { "tool_calls" } else { "stop" };
    (
        StatusCode::OK,
        axum::Json(
            json!({"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": message,
            "finish_reason": finish}], "usage": {"prompt_tokens": 400, "completion_tokens": 40, "total_tokens": 440}}),
        ),
    )
}

async fn start_model() -> Result<(Model, String)> {
    let model = Model::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(complete))
        .with_state(model.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Ok((model, base))
}

/// The process's resident set, in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Assigns `count` new tasks to `bot` with `CLIENTS` requests in flight.
async fn assign(client: &reqwest::Client, base: &str, token: &str, bot: &str, count: usize) -> Result<()> {
    let slots = Arc::new(Semaphore::new(CLIENTS));
    let mut all = tokio::task::JoinSet::new();
    for n in 0..count {
        let permit = slots.clone().acquire_owned().await?;
        let request = client
            .post(format!("{base}/tasks"))
            .bearer_auth(token)
            .json(&json!({"title": format!("Triage me #{n}"), "description": "The checkout page times out.", "assigneeId": bot}));
        all.spawn(async move {
            let answer = request.send().await?;
            anyhow::ensure!(
                answer.status() == reqwest::StatusCode::CREATED,
                "{}",
                answer.text().await?
            );
            drop(permit);
            Ok(())
        });
    }
    while let Some(done) = all.join_next().await {
        done??;
    }
    Ok(())
}

/// Waits until `query` (a `SELECT COUNT(*)`) reaches `wanted`.
async fn wait_for_count(app: &leadtime_host::App, query: &str, wanted: i64) -> Result<()> {
    tokio::time::timeout(PHASE_TIMEOUT, async {
        loop {
            let n: i64 = {
                let mut conn = app.db.read().await?;
                sqlx::query_scalar(query).fetch_one(&mut *conn).await?
            };
            if n >= wanted {
                return Ok::<_, anyhow::Error>(());
            }
            let failed: Option<String> = {
                let mut conn = app.db.read().await?;
                sqlx::query_scalar("SELECT status_message FROM agent_sessions WHERE status = 'failed' LIMIT 1")
                    .fetch_optional(&mut *conn)
                    .await?
            };
            if let Some(why) = failed {
                anyhow::bail!("a session failed: {why}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .with_context(|| format!("stuck waiting for {wanted} of `{query}`"))?
}

async fn run() -> Result<()> {
    let sessions = count("LEADTIME_BENCH_SESSIONS", 1_000);
    let waiting = count("LEADTIME_BENCH_WAITING", 10_000);
    let dir = tempfile::tempdir()?;
    let db = common::BenchDb::create(dir.path(), "native").await?;
    let (model, model_base) = start_model().await?;
    let (host, base, token) = common::start_host(dir.path(), &db.url, |_| {}).await?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let created: Value = client
        .post(format!("{base}/bots"))
        .bearer_auth(&token)
        .json(&json!({"name": "Triage", "handle": "triage", "connection": {"type": "triage-agent",
            "config": {"provider": "openai", "baseUrl": model_base, "model": "bench-model", "allowedStatuses": ["In progress"],
                "keyless": true}}}))
        .send()
        .await?
        .json()
        .await?;
    let bot = created["bot"]["id"]
        .as_str()
        .with_context(|| format!("the triage bot was not created: {created}"))?
        .to_owned();
    let idle_rss = rss_mib();

    // 1. Throughput.
    let started = Instant::now();
    assign(&client, &base, &token, &bot, sessions).await?;
    wait_for_count(
        &host.app,
        "SELECT COUNT(*) FROM agent_sessions WHERE status = 'done'",
        sessions as i64,
    )
    .await?;
    let host_rate = sessions as f64 / started.elapsed().as_secs_f64();
    let failed: i64 = {
        let mut conn = host.app.db.read().await?;
        sqlx::query_scalar("SELECT COUNT(*) FROM agent_sessions WHERE status = 'failed'")
            .fetch_one(&mut *conn)
            .await?
    };
    anyhow::ensure!(failed == 0, "{failed} sessions failed");
    anyhow::ensure!(
        model.requests.load(Ordering::Relaxed) == 3 * sessions,
        "not 3 turns a session"
    );

    // Baseline: the same model requests, straight.
    let calls = 3 * sessions;
    let slots = Arc::new(Semaphore::new(CLIENTS));
    let started = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for n in 0..calls {
        let permit = slots.clone().acquire_owned().await?;
        let assistants = vec![json!({"role": "assistant", "content": "x"}); n % 3];
        let mut messages = vec![json!({"role": "user", "content": "Triage me"})];
        messages.extend(assistants);
        let request = client
            .post(format!("{model_base}/v1/chat/completions"))
            .json(&json!({"model": "bench-model", "messages": messages, "max_tokens": 1024}));
        all.spawn(async move {
            let answer = request.send().await?;
            anyhow::ensure!(answer.status().is_success());
            answer.bytes().await?;
            drop(permit);
            Ok(())
        });
    }
    while let Some(done) = all.join_next().await {
        done??;
    }
    let bare_rate = sessions as f64 / started.elapsed().as_secs_f64();

    // 2. Sessions waiting on a model that does not answer.
    model.hold.store(true, Ordering::Relaxed);
    let before = model.requests.load(Ordering::Relaxed);
    assign(&client, &base, &token, &bot, waiting).await?;
    wait_for_count(
        &host.app,
        "SELECT COUNT(*) FROM jobs WHERE kind = 'model_call'",
        waiting as i64,
    )
    .await?;
    let waiting_rss = rss_mib();
    let sent = model.requests.load(Ordering::Relaxed) - before;
    let at_once = model.max_in_flight.load(Ordering::SeqCst);
    model.hold.store(false, Ordering::Relaxed);
    model.released.notify_waiters();

    println!(
        "native agents ({}):",
        if db.url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "  {sessions} sessions × 3 model turns: {host_rate:.0} sessions/s; bare model calls: {bare_rate:.0} sessions/s; ratio {:.2}",
        host_rate / bare_rate
    );
    println!(
        "  {waiting} sessions waiting on a model that does not answer (at most {at_once} requests held at once, \
         {sent} sent in all with the timed-out ones retried; the rest are rows): RSS {waiting_rss:.0} MiB \
         (idle host {idle_rss:.0} MiB; ratio {:.2}; target < 200 MiB)",
        waiting_rss / idle_rss
    );
    host.shutdown().await;
    db.drop_database().await?;
    Ok(())
}
