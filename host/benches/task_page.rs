//! The console's task page for a task with `SESSIONS` (50) agent sessions of `ACTIVITIES` (100)
//! activities each, beside the JSON read of the same history (`GET /tasks/{n}/history`) in the
//! same run: server time per render (median and p99 of `RENDERS` sequential requests) and the
//! number of SQL statements one render runs, for the big task and for a task with one session
//! (the same number: the page reads in a fixed number of queries however many sessions it has).
//!
//! Run with `./dev bench --bench task_page`; `LEADTIME_BENCH_DATABASE_URL=postgres://…` runs it on
//! PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const SESSIONS: usize = 50;
const ACTIVITIES: usize = 100;
const RENDERS: usize = 200;
const CLIENTS: usize = 16;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

/// A wrapper that accepts every webhook.
async fn start_wrapper() -> Result<String> {
    let app = axum::Router::new().route(
        "/leadtime/webhook",
        axum::routing::post(|| async { axum::http::StatusCode::OK }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/leadtime/webhook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Ok(url)
}

async fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = common::BenchDb::create(dir.path(), "task_page").await?;
    let (host, base, admin) = common::start_host(dir.path(), &db.url, |_| {}).await?;
    let site = base.trim_end_matches("/api/public").to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let wrapper = start_wrapper().await?;
    let bot = common::create_self_hosted_bot(&client, &base, &admin, "coder", &wrapper).await?;
    let bot_id = bot["bot"]["id"].as_str().context("bot id")?.to_owned();
    let bot_token = bot["token"].as_str().context("bot token")?.to_owned();

    println!("task page bench ({}): seeding…", db.backend());
    let big = seed_task(&client, &base, &admin, &bot_id, &bot_token, SESSIONS, ACTIVITIES).await?;
    let small = seed_task(&client, &base, &admin, &bot_id, &bot_token, 1, ACTIVITIES).await?;
    let cookie = sign_in(&client, &site, &admin).await?;

    let page = |number: i64| {
        client
            .get(format!("{site}/console/tasks/{number}"))
            .header("cookie", cookie.clone())
    };
    let json = |number: i64| client.get(format!("{base}/tasks/{number}/history")).bearer_auth(&admin);
    // What each shows, once: the page has every card and every activity the JSON has.
    let html = page(big).send().await?.text().await?;
    let cards = html.matches("<article class=\"session\"").count();
    anyhow::ensure!(
        cards == SESSIONS,
        "the page shows {cards} session cards, not {SESSIONS}"
    );
    let history: Value = json(big).send().await?.json().await?;
    let entries = history["entries"].as_array().map_or(0, Vec::len);

    let (page_median, page_p99, page_bytes) = time(RENDERS, || page(big)).await?;
    let (json_median, json_p99, json_bytes) = time(RENDERS, || json(big)).await?;
    let page_statements = [statements(|| page(small)).await?, statements(|| page(big)).await?];
    let json_statements = [statements(|| json(small)).await?, statements(|| json(big)).await?];

    println!(
        "task page bench ({}): one task with {SESSIONS} sessions × {ACTIVITIES} activities ({entries} history entries), {RENDERS} sequential reads each",
        db.backend()
    );
    println!(
        "  baseline JSON  GET /api/public/tasks/{{n}}/history: median {:>7.2} ms, p99 {:>7.2} ms, {:>7} bytes, SQL statements per read: {} (1 session) / {} ({SESSIONS} sessions)",
        ms(json_median),
        ms(json_p99),
        json_bytes,
        json_statements[0],
        json_statements[1]
    );
    println!(
        "  console page   GET /console/tasks/{{n}}:           median {:>7.2} ms, p99 {:>7.2} ms, {:>7} bytes, SQL statements per render: {} (1 session) / {} ({SESSIONS} sessions)",
        ms(page_median),
        ms(page_p99),
        page_bytes,
        page_statements[0],
        page_statements[1]
    );
    println!(
        "  page / JSON: {:.2}x the median server time",
        page_median.as_secs_f64() / json_median.as_secs_f64()
    );
    anyhow::ensure!(
        page_statements[0] == page_statements[1],
        "the page's statements grow with its sessions"
    );
    host.shutdown().await;
    db.drop_database().await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median and p99 of `n` sequential requests (the body read to its end), and the body's size.
async fn time(n: usize, request: impl Fn() -> reqwest::RequestBuilder) -> Result<(Duration, Duration, usize)> {
    let mut latencies = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n {
        let started = Instant::now();
        let answer = request().send().await?;
        anyhow::ensure!(answer.status().is_success(), "{}", answer.status());
        bytes = answer.bytes().await?.len();
        latencies.push(started.elapsed());
    }
    let (median, p99) = common::percentiles(latencies);
    Ok((median, p99, bytes))
}

/// The fewest SQL statements the store ran while the host served one request, over 10 tries
/// (the fewest leaves out statements of background work that happened to run at the same time).
async fn statements(request: impl Fn() -> reqwest::RequestBuilder) -> Result<u64> {
    let mut fewest = u64::MAX;
    for _ in 0..10 {
        let before = leadtime_host::store::statements_run();
        let answer = request().send().await?;
        anyhow::ensure!(answer.status().is_success(), "the read failed: {}", answer.status());
        answer.bytes().await?;
        fewest = fewest.min(leadtime_host::store::statements_run() - before);
    }
    Ok(fewest)
}

/// Signs in to the console with `token`; the cookie to send.
async fn sign_in(client: &reqwest::Client, site: &str, token: &str) -> Result<String> {
    let answer = client
        .post(format!("{site}/console/sign-in"))
        .form(&[("token", token)])
        .send()
        .await?;
    let cookie = answer
        .headers()
        .get("set-cookie")
        .context("no console cookie")?
        .to_str()?;
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

/// A task whose history has `sessions` finished sessions of `bot`, each with `activities`
/// activities: the first opened by the assignment, the others by @mentions. Its number.
async fn seed_task(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    bot_id: &str,
    bot_token: &str,
    sessions: usize,
    activities: usize,
) -> Result<i64> {
    let task: Value = client
        .post(format!("{base}/tasks"))
        .bearer_auth(admin)
        .json(
            &json!({"title": "Speed up the checkout", "description": "It takes 8 s on mobile.", "assigneeId": bot_id}),
        )
        .send()
        .await?
        .json()
        .await?;
    let number = task["shortNumber"].as_i64().context("task number")?;
    let mut session = task["agentSessionIds"][0].as_str().context("a session")?.to_owned();
    // A comment without a mention, so both tasks read the same kinds of rows.
    let answer = client
        .post(format!("{base}/tasks/{number}/comments"))
        .bearer_auth(admin)
        .json(&json!({"comment": "Repro: iPhone 13, Safari, 4G."}))
        .send()
        .await?;
    anyhow::ensure!(answer.status().is_success(), "{}", answer.text().await?);
    let slots = Arc::new(Semaphore::new(CLIENTS));
    for n in 0..sessions {
        if n > 0 {
            let comment: Value = client
                .post(format!("{base}/tasks/{number}/comments"))
                .bearer_auth(admin)
                .json(&json!({"comment": format!("@coder round {n}, please")}))
                .send()
                .await?
                .json()
                .await?;
            session = comment["agentSessionIds"][0]
                .as_str()
                .with_context(|| format!("the mention opened no session: {comment}"))?
                .to_owned();
        }
        let mut all = tokio::task::JoinSet::new();
        for a in 0..activities {
            let permit = slots.clone().acquire_owned().await?;
            let kind = ["thought", "action", "toolCall", "response"][a % 4];
            let request = client
                .post(format!("{base}/agent-sessions/{session}/activities"))
                .bearer_auth(bot_token)
                .json(&json!({"activityType": kind, "body": format!("Step {a}: looked at the checkout's slow query and its index")}));
            all.spawn(async move {
                let answer = request.send().await?;
                let status = answer.status();
                anyhow::ensure!(status.is_success(), "{status}: {}", answer.text().await?);
                drop(permit);
                Ok(())
            });
        }
        while let Some(done) = all.join_next().await {
            done??;
        }
        let answer = client
            .patch(format!("{base}/agent-sessions/{session}/status"))
            .bearer_auth(bot_token)
            .json(&json!({"status": "done"}))
            .send()
            .await?;
        anyhow::ensure!(answer.status().is_success(), "{}", answer.text().await?);
    }
    Ok(number)
}
