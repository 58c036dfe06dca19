//! End to end, as an operator compares the host with a dedicated webhook server: `TASKS` tasks of
//! ~1.7 KB are created through the public API by 32 concurrent keep-alive clients, each assigned
//! to a self-hosted bot whose webhook goes to a loopback receiver. Per run it reports API accepts/s,
//! API p50/p99, end-to-end deliveries/s (first → last arrival at the receiver) and the lag between
//! the last accept and the last arrival. The receiver verifies every request's Standard Webhooks
//! signature and counts each session once.
//!
//! Baseline, measured in the same run: a bare axum endpoint that forwards each request's body to
//! the same receiver before it answers (no database, no plugin, no signing) — what HTTP in, HTTP
//! out costs on this machine.
//!
//! Run with `./dev bench --bench end_to_end`; `LEADTIME_BENCH_DATABASE_URL=postgres://…` runs it
//! on PostgreSQL; `LEADTIME_BENCH_TASKS` changes the number of tasks (3,000).

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use leadtime_host::domain::webhook_signing;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

const CLIENTS: usize = 32;
const RUNS: usize = 3;
/// How long a run may take before it is called stuck.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

fn task_count() -> usize {
    std::env::var("LEADTIME_BENCH_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000)
}

/// `LEADTIME_BENCH_PER_ENDPOINT` overrides the host's per-endpoint in-flight limit (to see how
/// much of the delivery rate that limit sets).
fn per_endpoint() -> Option<usize> {
    std::env::var("LEADTIME_BENCH_PER_ENDPOINT")
        .ok()
        .and_then(|n| n.parse().ok())
}

/// A task body of ~1.7 KB assigned to `assignee` (`None` for the baseline: the same size).
fn task_body(n: usize, assignee: &str) -> String {
    json!({
        "title": format!("Investigate flaky checkout test #{n}"),
        "description": format!("Steps to reproduce, logs and context. {}", "The checkout test fails one run in twenty with a timeout in the payment step. ".repeat(20)),
        "assigneeId": assignee,
    })
    .to_string()
}

/// What the receiver saw in one run.
#[derive(Default)]
struct Arrivals {
    sessions: HashSet<String>,
    repeats: usize,
    refused: Vec<String>,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// The loopback receiver: checks each webhook (signature when a secret is set) and records when
/// it arrived.
#[derive(Clone)]
struct Receiver {
    arrivals: Arc<Mutex<Arrivals>>,
    secret: Arc<Mutex<Option<String>>>,
    changed: Arc<Notify>,
}

impl Receiver {
    async fn start() -> Result<(Receiver, String)> {
        let receiver = Receiver {
            arrivals: Arc::default(),
            secret: Arc::default(),
            changed: Arc::new(Notify::new()),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Ok((receiver, url))
    }

    /// Starts a new run: forgets the arrivals, and checks signatures with `secret` (if any).
    fn reset(&self, secret: Option<String>) {
        *self.arrivals.lock().unwrap_or_else(|p| p.into_inner()) = Arrivals::default();
        *self.secret.lock().unwrap_or_else(|p| p.into_inner()) = secret;
    }

    /// Waits until `count` distinct requests arrived; (first, last) arrival.
    async fn wait_for(&self, count: usize) -> Result<(Instant, Instant)> {
        tokio::time::timeout(RUN_TIMEOUT, async {
            loop {
                let changed = self.changed.notified();
                {
                    let arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
                    anyhow::ensure!(arrivals.refused.is_empty(), "refused: {:?}", &arrivals.refused[..1]);
                    if arrivals.sessions.len() >= count {
                        return Ok((arrivals.first.context("a first")?, arrivals.last.context("a last")?));
                    }
                }
                changed.await;
            }
        })
        .await
        .context("the deliveries did not all arrive")?
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let secret = receiver.secret.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let checked = match &secret {
        Some(secret) => webhook_signing::verify_standard(
            secret,
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            &body,
            chrono::Utc::now().timestamp(),
        )
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let body: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            body["agentRunId"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| "no agentRunId".to_owned())
        }),
        // The baseline forwards task bodies: each is told apart by its title.
        None => serde_json::from_slice::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|b| b["title"].as_str().map(str::to_owned).ok_or_else(|| "no title".into())),
    };
    let mut arrivals = receiver.arrivals.lock().unwrap_or_else(|p| p.into_inner());
    let status = match checked {
        Ok(session) => {
            if !arrivals.sessions.insert(session) {
                arrivals.repeats += 1;
            }
            arrivals.first.get_or_insert(now);
            arrivals.last = Some(now);
            StatusCode::OK
        }
        Err(error) => {
            arrivals.refused.push(error);
            StatusCode::BAD_REQUEST
        }
    };
    drop(arrivals);
    receiver.changed.notify_waiters();
    status
}

/// The baseline: `POST /tasks` forwards the body to the receiver and answers once it did.
async fn forwarder(receiver_url: String) -> Result<String> {
    #[derive(Clone)]
    struct Forward {
        client: reqwest::Client,
        url: String,
    }
    async fn forward(State(f): State<Forward>, body: Bytes) -> StatusCode {
        match f
            .client
            .post(&f.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
        {
            Ok(answer) if answer.status().is_success() => StatusCode::CREATED,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
    let state = Forward {
        client: reqwest::Client::builder().no_proxy().build()?,
        url: receiver_url,
    };
    let app = axum::Router::new()
        .route("/api/public/tasks", axum::routing::post(forward))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/api/public", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Ok(base)
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    accepts_per_sec: f64,
    p50: Duration,
    p99: Duration,
    deliveries_per_sec: f64,
    lag: Duration,
}

/// Creates `count` tasks through `base` with `CLIENTS` requests in flight, and waits until the
/// receiver has them all.
async fn load(base: &str, token: &str, assignee: &str, count: usize, receiver: &Receiver) -> Result<Figures> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let slots = Arc::new(Semaphore::new(CLIENTS));
    let started = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for n in 0..count {
        let permit = slots.clone().acquire_owned().await?;
        let request = client
            .post(format!("{base}/tasks"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(task_body(n, assignee));
        all.spawn(async move {
            let sent = Instant::now();
            let answer = request.send().await?;
            let status = answer.status();
            anyhow::ensure!(status == StatusCode::CREATED, "{status}: {}", answer.text().await?);
            drop(permit);
            Ok((sent.elapsed(), Instant::now()))
        });
    }
    let mut latencies = Vec::with_capacity(count);
    let mut last_accept = started;
    while let Some(done) = all.join_next().await {
        let (latency, at) = done??;
        latencies.push(latency);
        last_accept = last_accept.max(at);
    }
    let (first, last) = receiver.wait_for(count).await?;
    let repeats = receiver.arrivals.lock().unwrap_or_else(|p| p.into_inner()).repeats;
    anyhow::ensure!(repeats == 0, "{repeats} webhooks arrived twice");
    let (p50, p99) = common::percentiles(latencies);
    Ok(Figures {
        accepts_per_sec: count as f64 / (last_accept - started).as_secs_f64(),
        p50,
        p99,
        deliveries_per_sec: count as f64 / (last - first).as_secs_f64().max(1e-6),
        lag: last.saturating_duration_since(last_accept),
    })
}

/// One run against a fresh host and database.
async fn host_run(receiver: &Receiver, hook: &str, count: usize) -> Result<(Figures, String)> {
    let dir = tempfile::tempdir()?;
    let db = common::BenchDb::create(dir.path(), "end_to_end").await?;
    let (host, base, admin) = common::start_host(&dir.path().join("data"), &db.url, |config| {
        if let Some(limit) = per_endpoint() {
            config.delivery.per_endpoint_in_flight = limit;
        }
    })
    .await?;
    let created = common::create_self_hosted_bot(&reqwest::Client::new(), &base, &admin, "claw", hook).await?;
    let bot = created["bot"]["id"].as_str().context("a bot id")?.to_owned();
    let secret = created["webhookSecret"]
        .as_str()
        .with_context(|| format!("a webhook secret in {created}"))?
        .to_owned();
    receiver.reset(Some(secret));
    let figures = load(&base, &admin, &bot, count, receiver).await;
    let backend = format!("{:?}", host.app.db.backend());
    host.shutdown().await;
    db.drop_database().await?;
    Ok((figures?, backend))
}

fn print_row(label: &str, runs: &[Figures], baseline: Option<&[Figures]>) {
    let accepts = common::spread(runs.iter().map(|f| f.accepts_per_sec));
    let deliveries = common::spread(runs.iter().map(|f| f.deliveries_per_sec));
    let p50 = common::spread(runs.iter().map(|f| f.p50.as_secs_f64() * 1e3));
    let p99 = common::spread(runs.iter().map(|f| f.p99.as_secs_f64() * 1e3));
    let lag = common::spread(runs.iter().map(|f| f.lag.as_secs_f64()));
    let ratio = baseline
        .map(|b| {
            let base = common::spread(b.iter().map(|f| f.deliveries_per_sec))[1];
            format!("{:.2}", deliveries[1] / base)
        })
        .unwrap_or_else(|| "1.00".into());
    let triple = |v: [f64; 3], digits: usize| format!("{:.digits$} / {:.digits$} / {:.digits$}", v[0], v[1], v[2]);
    println!("{label}");
    println!("  API accepts/s            {}", triple(accepts, 0));
    println!("  API p50 ms               {}", triple(p50, 1));
    println!("  API p99 ms               {}", triple(p99, 1));
    println!(
        "  deliveries/s             {}   (median ratio to baseline {ratio})",
        triple(deliveries, 0)
    );
    println!("  lag after last accept s  {}", triple(lag, 2));
}

async fn run() -> Result<()> {
    let count = task_count();
    let (receiver, hook) = Receiver::start().await?;
    let forward = forwarder(hook.clone()).await?;
    let mut baseline = Vec::new();
    let mut host = Vec::new();
    let mut backend = String::new();
    // Baseline and host alternate, so both see the same machine state.
    for _ in 0..RUNS {
        receiver.reset(None);
        baseline.push(load(&forward, "none", "none", count, &receiver).await?);
        let (figures, name) = host_run(&receiver, &hook, count).await?;
        host.push(figures);
        backend = name;
    }
    println!(
        "end to end ({count} tasks of ~1.7 KB, {CLIENTS} keep-alive clients, one loopback receiver, {backend}; min / median / max of {RUNS} runs)"
    );
    print_row(
        "baseline: bare axum endpoint forwarding each request to the receiver",
        &baseline,
        None,
    );
    print_row(
        "host: task created + assigned → session → plugin → signed webhook delivered",
        &host,
        Some(&baseline),
    );
    Ok(())
}
