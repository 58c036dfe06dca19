//! API latency while plugins saturate every plugin thread, against the same API idle, in one run.
//!
//! The real `leadtime-host` binary runs as a child process (its threads and cores are its own)
//! with the `hostile` fixture plugin in its plugins directory. A client here sends an open-loop
//! load of `GET /healthz` and `GET /api/public/tasks/{id}` and records each answer's latency:
//! first with no plugin running (the baseline), then while twice as many sessions as the host has
//! plugin threads run a plugin that spins until its time limit. The host's CPU use during each
//! phase shows the plugin threads were indeed busy.
//!
//! Run with `./dev bench --bench api_under_load` (`LEADTIME_BENCH_DATABASE_URL=postgres://…` for
//! PostgreSQL).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

/// Requests per phase, and their rate.
const REQUESTS: usize = 3_000;
const RATE: u64 = 300;
/// Plugin threads the host is given (the machine's cores on a default start).
const PLUGIN_THREADS: usize = 2;

const HOSTILE_PLUGIN: &[u8] = include_bytes!(env!("LEADTIME_TEST_FIXTURE_HOSTILE"));

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

/// The host process; killed when dropped.
struct HostProcess(Child);

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl HostProcess {
    /// CPU time the process used so far (user + system), from `/proc/PID/stat`.
    fn cpu_time(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id()))?;
        let after_name = stat.rsplit_once(')').context("a /proc stat line")?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // SAFETY: sysconf only reads a system constant.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_millis(ticks * 1000 / per_second))
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fake provider whose `/v1/ping` tells the bench a spinning session started.
async fn ping_counter() -> Result<(String, watch::Receiver<usize>)> {
    let (tx, rx) = watch::channel(0usize);
    let app = axum::Router::new().route(
        "/v1/ping",
        axum::routing::get(move || {
            let tx = tx.clone();
            async move {
                tx.send_modify(|n| *n += 1);
                "pong"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Ok((base, rx))
}

/// Latencies of an open-loop load: `REQUESTS` requests at `RATE` per second, alternating health
/// and a task read.
async fn measure(client: &reqwest::Client, base: &str, token: &str, task: &str) -> Result<Vec<Duration>> {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut all = tokio::task::JoinSet::new();
    for n in 0..REQUESTS {
        tick.tick().await;
        let request = if n % 2 == 0 {
            client.get(format!("{base}/healthz"))
        } else {
            client.get(format!("{base}/api/public/tasks/{task}")).bearer_auth(token)
        };
        all.spawn(async move {
            let started = Instant::now();
            let response = request.send().await?;
            anyhow::ensure!(response.status() == StatusCode::OK, "answered {}", response.status());
            response.bytes().await?;
            Ok(started.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(REQUESTS);
    while let Some(done) = all.join_next().await {
        latencies.push(done??);
    }
    latencies.sort();
    Ok(latencies)
}

fn at(latencies: &[Duration], q: f64) -> Duration {
    latencies[((latencies.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = common::BenchDb::create(dir.path(), "api_under_load").await?;
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(data_dir.join("plugins"))?;
    std::fs::write(data_dir.join("plugins").join("hostile.wasm"), HOSTILE_PLUGIN)?;
    let binary = env!("CARGO_BIN_EXE_leadtime-host");
    let bootstrap = Command::new(binary)
        .args(["bootstrap", "--json", "--workspace", "Bench", "--database-url", &db.url])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("LEADTIME_LOG", "error")
        .output()?;
    if !bootstrap.status.success() {
        bail!("bootstrap failed: {}", String::from_utf8_lossy(&bootstrap.stderr));
    }
    let token = serde_json::from_slice::<Value>(&bootstrap.stdout)?["adminToken"]
        .as_str()
        .context("an admin token")?
        .to_owned();
    let port = free_port()?;
    let host = HostProcess(
        Command::new(binary)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data_dir)
            .args([
                "--database-url",
                &db.url,
                "--allow-private-targets",
                "--rate-limit-per-minute",
                "0",
            ])
            .args([
                "--plugin-timeout-secs",
                "120",
                "--plugin-threads",
                &PLUGIN_THREADS.to_string(),
            ])
            .env("LEADTIME_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().build()?;
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the host did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api = format!("{base}/api/public");
    let enabled = client
        .patch(format!("{api}/connection-types/hostile"))
        .bearer_auth(&token)
        .json(&json!({"enabled": true}))
        .send()
        .await?;
    anyhow::ensure!(enabled.status().is_success(), "enable hostile: {}", enabled.status());
    let task: Value = client
        .post(format!("{api}/tasks"))
        .bearer_auth(&token)
        .json(&json!({"title": "Read me"}))
        .send()
        .await?
        .json()
        .await?;
    let task_id = task["id"].as_str().context("a task id")?.to_owned();

    // Warm up connections and caches, then the baseline.
    measure(&client, &base, &token, &task_id).await?;
    let cpu_before = host.cpu_time()?;
    let wall = Instant::now();
    let idle = measure(&client, &base, &token, &task_id).await?;
    let idle_cores = (host.cpu_time()? - cpu_before).as_secs_f64() / wall.elapsed().as_secs_f64();

    // Saturate: twice as many spinning sessions as plugin threads.
    let (provider, mut pings) = ping_counter().await?;
    let spinners = PLUGIN_THREADS * 2;
    for n in 0..spinners {
        let bot: Value = client
            .post(format!("{api}/bots"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("Spinner {n}"), "handle": format!("spinner{n}"),
                          "connection": {"type": "hostile", "config": {"behavior": "spin-after-ping", "target": provider}}}))
            .send()
            .await?
            .json()
            .await?;
        let bot_id = bot["bot"]["id"].as_str().context("a bot id")?;
        let opened = client
            .post(format!("{api}/tasks"))
            .bearer_auth(&token)
            .json(&json!({"title": format!("Spin {n}"), "assigneeId": bot_id}))
            .send()
            .await?;
        anyhow::ensure!(opened.status().is_success(), "open a session: {}", opened.status());
    }
    tokio::time::timeout(Duration::from_secs(60), pings.wait_for(|n| *n >= spinners))
        .await
        .context("the spinning sessions did not start")??;
    let cpu_before = host.cpu_time()?;
    let wall = Instant::now();
    let loaded = measure(&client, &base, &token, &task_id).await?;
    let loaded_cores = (host.cpu_time()? - cpu_before).as_secs_f64() / wall.elapsed().as_secs_f64();
    drop(host);
    db.drop_database().await?;

    println!("API latency, {REQUESTS} requests at {RATE}/s (GET /healthz and GET /tasks/{{id}} alternating):");
    println!(
        "  idle:      p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms   host CPU {:.2} cores",
        ms(at(&idle, 0.5)),
        ms(at(&idle, 0.99)),
        ms(at(&idle, 1.0)),
        idle_cores
    );
    println!(
        "  saturated: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms   host CPU {:.2} cores ({spinners} sessions spinning on {PLUGIN_THREADS} plugin threads)",
        ms(at(&loaded, 0.5)),
        ms(at(&loaded, 0.99)),
        ms(at(&loaded, 1.0)),
        loaded_cores
    );
    println!(
        "  ratio saturated/idle: p50 {:.2}x  p99 {:.2}x   (target: p99 < 50 ms saturated)",
        ms(at(&loaded, 0.5)) / ms(at(&idle, 0.5)).max(0.001),
        ms(at(&loaded, 0.99)) / ms(at(&idle, 0.99)).max(0.001)
    );
    Ok(())
}
