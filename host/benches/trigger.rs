//! Trigger throughput and latency: assigning tasks to a bot through the public API until each
//! session is committed **and** its first webhook is enqueued in the outbox (the session worker
//! ran the real self-hosted plugin's `start-session` and committed what it queued).
//!
//! Baselines, measured in the same run on the same kind of database:
//! - throughput: a raw sqlx commit loop (sqlx's own driver and pool) that writes, per trigger, the
//!   three rows a trigger leaves (its session, its start job, its webhook delivery) in one
//!   transaction, on the host's database once the host stopped — what the database can commit one
//!   trigger at a time, with no HTTP, plugin or group commit. The same loop through the host's own
//!   store (`Db`, which runs SQLite statements in the calling task) is shown beside it;
//! - latency: a bare axum endpoint that writes one row per request through the host's own `Db` —
//!   the least a durable write per HTTP request costs on this machine.
//!
//! Run with `./dev bench --bench trigger`; `LEADTIME_BENCH_DATABASE_URL=postgres://…` runs it on
//! PostgreSQL.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use leadtime_host::RunningHost;
use leadtime_host::app::HostEvent;
use leadtime_host::domain::ids::{DeliveryId, SessionId};
use leadtime_host::domain::jobs::JobKind;
use leadtime_host::domain::time::Timestamp;
use leadtime_host::store::{self, Db, deliveries::Delivery};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// Assignments in the throughput run (`LEADTIME_BENCH_TRIGGERS` changes it).
fn triggers() -> usize {
    std::env::var("LEADTIME_BENCH_TRIGGERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000)
}
/// Requests in flight at once in the throughput run.
const CONCURRENCY: usize = 32;
/// Throughput runs, one after the other on the same host (each with tasks of its own): reported
/// as the least, the median and the greatest, since one run of a second or two varies with what
/// else the machine does.
const RUNS: usize = 3;
/// Requests per second of the latency runs, and how many requests each sends.
const LATENCY_RATES: [u64; 2] = [500, 1_000];
const LATENCY_REQUESTS: usize = 1_000;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

/// A loopback receiver that accepts every webhook at once.
async fn receiver() -> Result<String> {
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { StatusCode::OK }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Ok(url)
}

/// The baseline server: `POST /rows` writes one row in its own transaction.
async fn baseline_server(database_url: String) -> Result<(String, Db)> {
    let db = Db::connect(&database_url).await?;
    {
        let mut tx = db.begin().await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_rows (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    async fn write(State(db): State<Db>, body: String) -> StatusCode {
        let id = ulid::Ulid::new().to_string();
        let done = async {
            let mut tx = db.begin().await?;
            sqlx::query("INSERT INTO bench_rows (id, body) VALUES ($1, $2)")
                .bind(id)
                .bind(body)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            anyhow::Ok(())
        }
        .await;
        if done.is_ok() {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
    let app = axum::Router::new()
        .route("/rows", axum::routing::post(write))
        .with_state(db.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/rows", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Ok((url, db))
}

/// Baseline throughput: `triggers()` writes, `CONCURRENCY` at a time.
async fn baseline_throughput(client: &reqwest::Client, url: &str) -> Result<f64> {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for n in 0..triggers() {
        let permit = slots.clone().acquire_owned().await?;
        let (client, url) = (client.clone(), url.to_owned());
        all.spawn(async move {
            let ok = client
                .post(url)
                .body(format!(r#"{{"assigneeId":"usr_{n}"}}"#))
                .send()
                .await
                .map(|r| r.status().is_success());
            drop(permit);
            ok
        });
    }
    while let Some(done) = all.join_next().await {
        anyhow::ensure!(done??, "the baseline refused a write");
    }
    Ok(triggers() as f64 / started.elapsed().as_secs_f64())
}

/// Baseline latency: `LATENCY_REQUESTS` writes at `rate` per second; (p50, p99).
async fn baseline_latency(client: &reqwest::Client, url: &str, rate: u64) -> Result<(Duration, Duration)> {
    let latencies = paced(LATENCY_REQUESTS, rate, |n| {
        let (client, url) = (client.clone(), url.to_owned());
        async move {
            let started = Instant::now();
            let response = client.post(url).body(format!("row {n}")).send().await?;
            anyhow::ensure!(response.status().is_success(), "the baseline refused a write");
            Ok(started.elapsed())
        }
    })
    .await?;
    Ok(common::percentiles(latencies))
}

/// Runs `request(n)` for `count` requests started at `rate` per second, whatever the answers'
/// pace (an open-loop load), and returns what each returned.
async fn paced<F, Fut>(count: usize, rate: u64, request: F) -> Result<Vec<Duration>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<Duration>> + Send + 'static,
{
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut all = tokio::task::JoinSet::new();
    for n in 0..count {
        tick.tick().await;
        all.spawn(request(n));
    }
    let mut latencies = Vec::with_capacity(count);
    while let Some(done) = all.join_next().await {
        latencies.push(done??);
    }
    Ok(latencies)
}

/// What the throughput run measured, per second over the run.
struct Throughput {
    /// API answers (sessions committed), until the last answer.
    answered: f64,
    /// Sessions committed with their first webhook enqueued, until the last was.
    enqueued: f64,
}

struct Bench {
    host: RunningHost,
    client: reqwest::Client,
    base: String,
    admin: String,
    bot: String,
}

impl Bench {
    async fn start(database_url: &str, dir: &std::path::Path) -> Result<Bench> {
        let (host, base, admin) = common::start_host(&dir.join("data"), database_url, |_| {}).await?;
        let client = reqwest::Client::builder().no_proxy().build()?;
        let hook = receiver().await?;
        let created = common::create_self_hosted_bot(&client, &base, &admin, "benchbot", &hook).await?;
        let bot = created["bot"]["id"].as_str().context("a bot id")?.to_owned();
        Ok(Bench {
            host,
            client,
            base,
            admin,
            bot,
        })
    }

    /// Creates `count` tasks (not measured) and returns their ids.
    async fn tasks(&self, count: usize) -> Result<Vec<String>> {
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        let mut all = tokio::task::JoinSet::new();
        for n in 0..count {
            let permit = slots.clone().acquire_owned().await?;
            let (client, url, token) = (self.client.clone(), format!("{}/tasks", self.base), self.admin.clone());
            all.spawn(async move {
                let task: Value = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"title": format!("Bench task {n}")}))
                    .send()
                    .await?
                    .json()
                    .await?;
                drop(permit);
                task["id"].as_str().map(str::to_owned).context("a task id")
            });
        }
        let mut ids = Vec::with_capacity(count);
        while let Some(done) = all.join_next().await {
            ids.push(done??);
        }
        Ok(ids)
    }

    /// Assigns `task` to the bot; returns the session it opened.
    async fn assign(client: reqwest::Client, base: String, token: String, bot: String, task: String) -> Result<String> {
        let response: Value = client
            .patch(format!("{base}/tasks/{task}"))
            .bearer_auth(token)
            .json(&json!({"assigneeId": bot}))
            .send()
            .await?
            .json()
            .await?;
        response["agentSessionIds"][0]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no session opened: {response}"))
    }

    fn assignment(&self, task: String) -> impl Future<Output = Result<String>> + Send + 'static {
        Self::assign(
            self.client.clone(),
            self.base.clone(),
            self.admin.clone(),
            self.bot.clone(),
            task,
        )
    }

    /// Assigns every task, `CONCURRENCY` at a time; the rates at which the API answered and at
    /// which sessions were committed with their first webhook enqueued.
    async fn throughput(&self, tasks: Vec<String>) -> Result<Throughput> {
        let count = tasks.len();
        let app = self.host.app.clone();
        let before = enqueued_deliveries(&app).await?;
        let mut events = app.events.subscribe();
        let started = Instant::now();
        let done = tokio::spawn(async move {
            let mut enqueued = 0;
            while enqueued < count {
                match tokio::time::timeout(Duration::from_secs(120), events.recv()).await? {
                    Ok(HostEvent::JobFinished { kind, .. }) if kind == "start_session" => enqueued += 1,
                    Ok(_) => {}
                    // Too many events to keep up with: count the outbox instead.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        enqueued = (enqueued_deliveries(&app).await? - before) as usize;
                    }
                    Err(closed) => return Err(closed.into()),
                }
            }
            anyhow::Ok(started.elapsed())
        });
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        let mut all = tokio::task::JoinSet::new();
        for task in tasks {
            let permit = slots.clone().acquire_owned().await?;
            let assignment = self.assignment(task);
            all.spawn(async move {
                let session = assignment.await;
                drop(permit);
                session
            });
        }
        while let Some(done) = all.join_next().await {
            done??;
        }
        let answered = started.elapsed();
        let elapsed = done.await??;
        Ok(Throughput {
            answered: count as f64 / answered.as_secs_f64(),
            enqueued: count as f64 / elapsed.as_secs_f64(),
        })
    }

    /// Assigns tasks at `rate` per second; (p50, p99) of the API answer (session committed) and
    /// of the first webhook being enqueued, both from the request's start.
    async fn latency(&self, tasks: Vec<String>, rate: u64) -> Result<((Duration, Duration), (Duration, Duration))> {
        let count = tasks.len();
        let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
        let mut events = self.host.app.events.subscribe();
        let watcher = tokio::spawn(async move {
            let mut started: HashMap<String, Instant> = HashMap::new();
            let mut finished: HashMap<String, Instant> = HashMap::new();
            let mut enqueue = Vec::with_capacity(count);
            while enqueue.len() < count {
                tokio::select! {
                    Some((session, at)) = started_rx.recv() => match finished.remove(&session) {
                        Some(done) => enqueue.push(done.saturating_duration_since(at)),
                        None => { started.insert(session, at); }
                    },
                    event = events.recv() => match event {
                        Ok(HostEvent::JobFinished { kind, session_id: Some(session), .. }) if kind == "start_session" => {
                            let (session, now) = (session.to_string(), Instant::now());
                            match started.remove(&session) {
                                Some(at) => enqueue.push(now.saturating_duration_since(at)),
                                None => { finished.insert(session, now); }
                            }
                        }
                        Ok(_) => {}
                        Err(error) => anyhow::bail!("lost host events ({error}); lower the rate"),
                    },
                }
            }
            anyhow::Ok(enqueue)
        });
        let tasks = Arc::new(tasks);
        let api = paced(count, rate, |n| {
            let assignment = self.assignment(tasks[n].clone());
            let started_tx = started_tx.clone();
            async move {
                let started = Instant::now();
                let session = assignment.await?;
                let elapsed = started.elapsed();
                let _ = started_tx.send((session, started));
                Ok(elapsed)
            }
        })
        .await?;
        let enqueue = tokio::time::timeout(Duration::from_secs(120), watcher).await???;
        Ok((common::percentiles(api), common::percentiles(enqueue)))
    }
}

/// Webhook deliveries in the outbox (every state).
async fn enqueued_deliveries(app: &leadtime_host::App) -> Result<i64> {
    let mut conn = app.db.read().await?;
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries")
        .fetch_one(&mut *conn)
        .await?)
}

/// A session the host opened and its delivery's URL and body: what the commit loops copy.
async fn template(database_url: &str) -> Result<(leadtime_host::domain::sessions::Session, String, String)> {
    let db = Db::connect(database_url).await?;
    let found = {
        let mut conn = db.read().await?;
        let (session_id, url, body): (String, String, String) =
            sqlx::query_as("SELECT session_id, url, body FROM webhook_deliveries WHERE session_id IS NOT NULL LIMIT 1")
                .fetch_one(&mut *conn)
                .await?;
        let session = store::sessions::get_any(&mut conn, &SessionId::from(session_id))
            .await?
            .context("the host's session")?;
        (session, url, body)
    };
    db.close().await;
    Ok(found)
}

/// The throughput baseline: `count` transactions, one after the other, on one connection of
/// sqlx's own pool, each inserting a session (the template's, under a new id), its start job and
/// its webhook delivery.
async fn sqlx_commit_loop(database_url: &str, count: usize) -> Result<f64> {
    let (session, url, body) = template(database_url).await?;
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    let started = Instant::now();
    for _ in 0..count {
        let (id, delivery) = (SessionId::generate().to_string(), DeliveryId::generate().to_string());
        let now = session.created_at.millis() + started.elapsed().as_millis() as i64;
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO agent_sessions (id, workspace_id, task_id, bot_id, connection_id, connection_type, \
             trigger_kind, trigger_actor_id, comment_id, status, status_message, external_url, external_label, \
             created_at, started_at, ended_at, updated_at, plugin_sha256, plugin_cpu_micros) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        )
        .bind(&id)
        .bind(session.workspace_id.as_str())
        .bind(session.task_id.as_str())
        .bind(session.bot_id.as_str())
        .bind(session.connection_id.as_str())
        .bind(&session.connection_type)
        .bind(session.trigger_kind.as_str())
        .bind(session.trigger_actor_id.as_ref().map(|a| a.as_str()))
        .bind(None::<&str>)
        .bind("queued")
        .bind(None::<&str>)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .bind(now)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(now)
        .bind(None::<&str>)
        .bind(0_i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO jobs (id, kind, session_id, payload, run_at, attempts, created_at) \
             VALUES ($1, 'start_session', $2, '{}', $3, 0, $3)",
        )
        .bind(ulid::Ulid::new().to_string())
        .bind(&id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, workspace_id, connection_id, session_id, url, body, status, \
             attempts, retry_base, next_attempt_at, last_error, delivered_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, 0, $7, NULL, NULL, $7)",
        )
        .bind(&delivery)
        .bind(session.workspace_id.as_str())
        .bind(session.connection_id.as_str())
        .bind(&id)
        .bind(&url)
        .bind(&body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}

/// The same loop through the host's store (`Db` and its insert functions).
async fn store_commit_loop(database_url: &str, count: usize) -> Result<f64> {
    let (template, url, body) = template(database_url).await?;
    let db = Db::connect(database_url).await?;
    let started = Instant::now();
    for _ in 0..count {
        let now = Timestamp::from_millis(template.created_at.millis() + started.elapsed().as_millis() as i64);
        let session = leadtime_host::domain::sessions::Session {
            id: SessionId::generate(),
            created_at: now,
            updated_at: now,
            ..template.clone()
        };
        let pending = Delivery::pending(
            DeliveryId::generate(),
            session.workspace_id.clone(),
            session.connection_id.clone(),
            Some(session.id.clone()),
            url.clone(),
            body.clone(),
            now,
        );
        let mut tx = db.begin().await?;
        store::sessions::insert(&mut tx, &session).await?;
        store::jobs::insert(&mut tx, &JobKind::StartSession, Some(&session.id), now).await?;
        store::deliveries::insert(&mut tx, &pending).await?;
        tx.commit().await?;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    db.close().await;
    Ok(rate)
}

async fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let baseline_db = common::BenchDb::create(dir.path(), "baseline").await?;
    let (baseline, baseline_pool) = baseline_server(baseline_db.url.clone()).await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let http_rate = baseline_throughput(&client, &baseline).await?;
    let mut baseline_latencies = Vec::new();
    for rate in LATENCY_RATES {
        baseline_latencies.push(baseline_latency(&client, &baseline, rate).await?);
    }
    baseline_pool.close().await;
    baseline_db.drop_database().await?;

    let host_db = common::BenchDb::create(dir.path(), "trigger").await?;
    let bench = Bench::start(&host_db.url, dir.path()).await?;
    let mut tasks = bench
        .tasks(triggers() * RUNS + LATENCY_REQUESTS * LATENCY_RATES.len())
        .await?;
    let latency_tasks = tasks.split_off(triggers() * RUNS);
    common::analyze(&bench.host.app.db).await?;
    // Markers on stderr, for a profiler to start and stop by (around all the runs).
    eprintln!("[bench] throughput run starts");
    let mut runs = Vec::with_capacity(RUNS);
    for run_tasks in tasks.chunks(triggers()) {
        runs.push(bench.throughput(run_tasks.to_vec()).await?);
    }
    eprintln!("[bench] throughput run ends");
    let enqueued = common::spread(runs.iter().map(|run| run.enqueued));
    let answered = common::spread(runs.iter().map(|run| run.answered));
    let mut latencies = Vec::new();
    for (n, latency_rate) in LATENCY_RATES.into_iter().enumerate() {
        let batch = latency_tasks[n * LATENCY_REQUESTS..(n + 1) * LATENCY_REQUESTS].to_vec();
        latencies.push(bench.latency(batch, latency_rate).await?);
    }
    let backend = format!("{:?}", bench.host.app.db.backend());
    bench.host.shutdown().await;
    let loop_rate = sqlx_commit_loop(&host_db.url, triggers()).await?;
    let store_loop_rate = store_commit_loop(&host_db.url, triggers()).await?;
    host_db.drop_database().await?;

    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    println!(
        "trigger → session committed + first webhook enqueued ({backend}; {} assignments, {CONCURRENCY} in flight; \
         the host's median of {RUNS} runs)",
        triggers()
    );
    println!("{:<62} {:>10} {:>8}", "throughput", "per sec", "ratio");
    println!(
        "{:<62} {:>10.0} {:>8.2}",
        "baseline: raw sqlx commit loop, a trigger's 3 rows per tx", loop_rate, 1.0
    );
    println!(
        "{:<62} {:>10.0} {:>8.2}",
        "reference: the same loop through the host's store (Db)",
        store_loop_rate,
        store_loop_rate / loop_rate
    );
    println!(
        "{:<62} {:>10.0} {:>8.2}",
        "reference: bare axum endpoint, one row per request",
        http_rate,
        http_rate / loop_rate
    );
    println!(
        "{:<62} {:>10.0} {:>8.2}",
        "host: PATCH /tasks/{id} assignee → session + plugin + outbox",
        enqueued[1],
        enqueued[1] / loop_rate
    );
    println!(
        "{:<62} {:>10.0} {:>8.2}",
        "  of which the API's answers (session committed) alone",
        answered[1],
        answered[1] / loop_rate
    );
    println!(
        "  min / median / max of the {RUNS} runs: {:.0} / {:.0} / {:.0} (API answers {:.0} / {:.0} / {:.0})",
        enqueued[0], enqueued[1], enqueued[2], answered[0], answered[1], answered[2]
    );
    for ((latency_rate, (baseline_p50, baseline_p99)), ((api_p50, api_p99), (enqueue_p50, enqueue_p99))) in
        LATENCY_RATES.iter().zip(&baseline_latencies).zip(&latencies)
    {
        println!("latency at {latency_rate} requests/s ({LATENCY_REQUESTS} requests)      p50 ms   p99 ms  p99 ratio");
        println!(
            "{:<56} {:>8.1} {:>8.1} {:>10.2}",
            "baseline: one row per request",
            ms(*baseline_p50),
            ms(*baseline_p99),
            1.0
        );
        println!(
            "{:<56} {:>8.1} {:>8.1} {:>10.2}",
            "host: API answer (session committed)",
            ms(*api_p50),
            ms(*api_p99),
            ms(*api_p99) / ms(*baseline_p99)
        );
        println!(
            "{:<56} {:>8.1} {:>8.1} {:>10.2}",
            "host: first webhook enqueued (plugin ran, outbox row)",
            ms(*enqueue_p50),
            ms(*enqueue_p99),
            ms(*enqueue_p99) / ms(*baseline_p99)
        );
    }
    Ok(())
}
