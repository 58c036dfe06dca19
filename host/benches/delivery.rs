//! Delivery throughput: signed deliveries per second from the host's outbox to loopback
//! receivers, against a baseline measured in the same run — a bare HTTP client posting the same
//! bodies with the same concurrency (no outbox, no signing, no attempt log).
//!
//! Scenarios: every receiver answers 200 at once; and 10 % of the receivers are slow (500 ms), to
//! show the others keep flowing. Run with `./dev bench` (or `cargo bench -p leadtime-host --bench
//! delivery`); `LEADTIME_BENCH_DATABASE_URL=postgres://…` runs it on PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::Path;
use axum::http::StatusCode;
use leadtime_host::app::HostEvent;
use leadtime_host::domain::ids::DeliveryId;
use leadtime_host::store::deliveries::Delivery;
use leadtime_host::{RunningHost, store};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const DELIVERIES: usize = 3_000;
const RECEIVERS: usize = 20;
const SLOW_RECEIVERS: usize = 2;
const SLOW_ANSWER: Duration = Duration::from_millis(500);
/// The host's default attempts in flight (at most a quarter of them to one endpoint); the
/// baseline client uses as many.
const CONCURRENCY: usize = leadtime_host::config::DEFAULT_DELIVERY_CONCURRENCY;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

/// Loopback receivers: `/fast/{n}` answers 200 at once, `/slow/{n}` after [`SLOW_ANSWER`].
async fn receivers() -> Result<String> {
    let app = axum::Router::new()
        .route(
            "/fast/{n}",
            axum::routing::post(|Path(_n): Path<usize>| async { StatusCode::OK }),
        )
        .route(
            "/slow/{n}",
            axum::routing::post(|Path(_n): Path<usize>| async {
                tokio::time::sleep(SLOW_ANSWER).await;
                StatusCode::OK
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Ok(base)
}

fn body(n: usize) -> String {
    json!({
        "eventType": "agent_session.created",
        "webhookTimestamp": "2026-05-23T12:00:00.000Z",
        "agentRunId": format!("ses_bench_{n}"),
        "context": {"promptContext": "x".repeat(1_500), "task": {"id": "tsk_bench", "shortNumber": n, "title": "Benchmark"}},
    })
    .to_string()
}

/// Baseline: the same bodies posted by a bare client, `CONCURRENCY` at a time.
async fn bare_client(base: &str) -> Result<f64> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for n in 0..DELIVERIES {
        let permit = slots.clone().acquire_owned().await?;
        let (client, url, body) = (client.clone(), format!("{base}/fast/{}", n % RECEIVERS), body(n));
        all.spawn(async move {
            let ok = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().is_success());
            drop(permit);
            ok
        });
    }
    while let Some(done) = all.join_next().await {
        anyhow::ensure!(done??, "the receiver refused a request");
    }
    Ok(DELIVERIES as f64 / started.elapsed().as_secs_f64())
}

struct Bench {
    host: RunningHost,
    db: common::BenchDb,
    _dir: tempfile::TempDir,
    admin: String,
    base: String,
}

async fn start_host() -> Result<Bench> {
    let dir = tempfile::tempdir()?;
    let db = common::BenchDb::create(dir.path(), "delivery").await?;
    // The default delivery limits, as an operator runs the host.
    let (host, base, admin) = common::start_host(&dir.path().join("data"), &db.url, |_| {}).await?;
    Ok(Bench {
        host,
        db,
        _dir: dir,
        admin,
        base,
    })
}

/// Creates one bot per receiver URL and returns their connection ids.
async fn bots(bench: &Bench, urls: &[String], tag: &str) -> Result<Vec<String>> {
    let client = reqwest::Client::new();
    let mut connections = Vec::new();
    for (n, url) in urls.iter().enumerate() {
        let created =
            common::create_self_hosted_bot(&client, &bench.base, &bench.admin, &format!("{tag}{n}"), url).await?;
        connections.push(
            created["bot"]["connection"]["id"]
                .as_str()
                .context("a connection id")?
                .to_owned(),
        );
    }
    Ok(connections)
}

/// Queues `DELIVERIES` deliveries spread over `connections` and measures how long until the
/// deliveries to `fast` connections are all delivered; returns (fast per second, total per second).
async fn host_deliveries(bench: &Bench, connections: &[(String, bool)]) -> Result<(f64, f64)> {
    let app = &bench.host.app;
    let workspace_id = first_workspace(bench).await?;
    let now = app.clock.now();
    let mut fast_total = 0;
    let mut slow_ids = std::collections::HashSet::new();
    let mut tx = app.db.begin().await?;
    for n in 0..DELIVERIES {
        let (connection, slow) = &connections[n % connections.len()];
        if !slow {
            fast_total += 1;
        }
        let url: String = sqlx::query_scalar("SELECT config FROM agent_connections WHERE id = $1")
            .bind(connection)
            .fetch_one(&mut *tx)
            .await?;
        let url: Value = serde_json::from_str(&url)?;
        let id = DeliveryId::generate();
        if *slow {
            slow_ids.insert(id.clone());
        }
        let url = url["webhookUrl"].as_str().context("a webhook URL")?.to_owned();
        let delivery = Delivery::pending(
            id,
            workspace_id.clone(),
            connection.as_str().into(),
            None,
            url,
            body(n),
            now,
        );
        store::deliveries::insert(&mut tx, &delivery).await?;
    }
    let mut events = app.events.subscribe();
    tx.commit().await?;
    let started = Instant::now();
    app.deliveries_queued.notify_one();
    let (mut fast_done, mut all_done) = (0, 0);
    let mut fast_elapsed = None;
    while all_done < DELIVERIES {
        match tokio::time::timeout(Duration::from_secs(120), events.recv()).await?? {
            HostEvent::DeliveryAttempted {
                delivery_id,
                delivered: true,
                ..
            } => {
                all_done += 1;
                if !slow_ids.contains(&delivery_id) {
                    fast_done += 1;
                    if fast_done == fast_total {
                        fast_elapsed = Some(started.elapsed());
                    }
                }
            }
            HostEvent::DeliveryAttempted { delivered: false, .. } => anyhow::bail!("a delivery attempt failed"),
            _ => {}
        }
    }
    let total = started.elapsed();
    let fast = fast_elapsed.unwrap_or(total);
    Ok((
        fast_total as f64 / fast.as_secs_f64(),
        DELIVERIES as f64 / total.as_secs_f64(),
    ))
}

async fn first_workspace(bench: &Bench) -> Result<leadtime_host::domain::ids::WorkspaceId> {
    let mut conn = bench.host.app.db.read().await?;
    let id: String = sqlx::query_scalar("SELECT id FROM workspaces LIMIT 1")
        .fetch_one(&mut *conn)
        .await?;
    Ok(id.into())
}

async fn run() -> Result<()> {
    let base = receivers().await?;
    let baseline = bare_client(&base).await?;

    let bench = start_host().await?;
    let fast_urls: Vec<String> = (0..RECEIVERS).map(|n| format!("{base}/fast/{n}")).collect();
    let all_fast: Vec<(String, bool)> = bots(&bench, &fast_urls, "fast")
        .await?
        .into_iter()
        .map(|c| (c, false))
        .collect();
    let (fast_rate, _) = host_deliveries(&bench, &all_fast).await?;

    let mixed_urls: Vec<String> = (0..RECEIVERS)
        .map(|n| {
            if n < SLOW_RECEIVERS {
                format!("{base}/slow/{n}")
            } else {
                format!("{base}/fast/{n}")
            }
        })
        .collect();
    let mixed: Vec<(String, bool)> = bots(&bench, &mixed_urls, "mixed")
        .await?
        .into_iter()
        .enumerate()
        .map(|(n, c)| (c, n < SLOW_RECEIVERS))
        .collect();
    let (mixed_fast_rate, mixed_total_rate) = host_deliveries(&bench, &mixed).await?;
    let backend = format!("{:?}", bench.host.app.db.backend());
    bench.host.shutdown().await;
    bench.db.drop_database().await?;

    println!(
        "delivery throughput ({DELIVERIES} deliveries of ~1.7 KB to {RECEIVERS} loopback receivers, {CONCURRENCY} in flight, {} per endpoint, {backend})",
        leadtime_host::config::DEFAULT_DELIVERY_PER_ENDPOINT
    );
    println!("{:<58} {:>10} {:>8}", "scenario", "per sec", "ratio");
    println!(
        "{:<58} {:>10.0} {:>8.2}",
        "baseline: bare HTTP client, no outbox/signing/log", baseline, 1.0
    );
    println!(
        "{:<58} {:>10.0} {:>8.2}",
        "host: every receiver answers 200 at once",
        fast_rate,
        fast_rate / baseline
    );
    println!(
        "{:<58} {:>10.0} {:>8.2}",
        format!(
            "host: {SLOW_RECEIVERS} of {RECEIVERS} receivers slow ({} ms): the fast 90 %",
            SLOW_ANSWER.as_millis()
        ),
        mixed_fast_rate,
        mixed_fast_rate / baseline
    );
    println!(
        "{:<58} {:>10.0} {:>8.2}",
        "host: the same, all deliveries including the slow",
        mixed_total_rate,
        mixed_total_rate / baseline
    );
    println!(
        "fast-receiver throughput with slow receivers present vs without: {:.2}",
        mixed_fast_rate / fast_rate
    );
    Ok(())
}
