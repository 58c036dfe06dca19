//! Crash test: the real `leadtime-host` binary as a child process, a burst of 1,000 sessions toward
//! a loopback receiver, `kill -9` mid-burst, restart on the same database. Every delivery must
//! arrive at least once, with its original id, and duplicates only for attempts that were in
//! flight at the kill.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use tokio::sync::watch;

use crate::utils::EVENT_TIMEOUT;
use crate::utils::process::{HostFiles, HostProcess, free_port};

const SESSIONS: usize = 1_000;
const PER_ENDPOINT: usize = 4;

/// The receiver's record: how often each webhook id arrived, and which arrived before the kill.
#[derive(Default)]
struct Arrivals {
    count: HashMap<String, usize>,
    killed: bool,
    before_kill: HashSet<String>,
}

/// Answers 200 after a short pause (so the burst lasts long enough to be interrupted).
async fn receiver(arrivals: Arc<Mutex<Arrivals>>, distinct: watch::Sender<usize>) -> String {
    let app = axum::Router::new().route(
        "/leadtime/webhook",
        axum::routing::post(move |headers: HeaderMap| {
            let (arrivals, distinct) = (arrivals.clone(), distinct.clone());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(40)).await;
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mut a = arrivals.lock().unwrap();
                if !a.killed {
                    a.before_kill.insert(id.clone());
                }
                *a.count.entry(id).or_default() += 1;
                distinct.send_replace(a.count.len());
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/leadtime/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

/// Starts the binary on the test's files, with short timeouts and few attempts per endpoint.
async fn start_host(files: &HostFiles, port: u16) -> HostProcess {
    let per_endpoint = PER_ENDPOINT.to_string();
    HostProcess::start_on(
        &files.data_dir,
        &files.db.url,
        port,
        &[
            "--delivery-timeout-secs",
            "2",
            "--plugin-timeout-secs",
            "2",
            "--delivery-per-endpoint",
            &per_endpoint,
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_loses_no_delivery() {
    let files = HostFiles::bootstrap("Crash").await;

    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let (distinct_tx, mut distinct) = watch::channel(0);
    let webhook_url = receiver(arrivals.clone(), distinct_tx).await;

    let host = start_host(&files, free_port()).await;
    let admin = host.api(&files.admin_token);
    let bot = admin.create_bot("Burst", "burst", &webhook_url).await;

    // The burst: 1,000 tasks assigned to the bot, eight requests at a time.
    let next = Arc::new(Mutex::new(0usize));
    let mut creators = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (admin, next, bot_id) = (admin.clone(), next.clone(), bot.id.clone());
        creators.spawn(async move {
            loop {
                let n = {
                    let mut next = next.lock().unwrap();
                    *next += 1;
                    *next
                };
                if n > SESSIONS {
                    break;
                }
                let (status, body) = admin
                    .post("/tasks", json!({"title": format!("burst {n}"), "assigneeId": bot_id}))
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
            }
        });
    }
    while let Some(done) = creators.join_next().await {
        done.unwrap();
    }
    // Kill -9 once a third of the deliveries arrived: the rest are queued or in flight.
    let third = tokio::time::timeout(EVENT_TIMEOUT, distinct.wait_for(|n| *n >= SESSIONS / 3))
        .await
        .map(|r| r.is_ok());
    assert_eq!(third, Ok(true), "deliveries did not start");
    drop(host);
    let arrived_before_kill = {
        let mut a = arrivals.lock().unwrap();
        a.killed = true;
        a.count.len()
    };
    assert!(
        arrived_before_kill < SESSIONS,
        "the kill came after the burst ({arrived_before_kill} delivered)"
    );

    // Restart on the same database: everything still arrives.
    let _host = start_host(&files, free_port()).await;
    let all = tokio::time::timeout(EVENT_TIMEOUT * 3, distinct.wait_for(|n| *n >= SESSIONS))
        .await
        .map(|r| r.is_ok());
    assert_eq!(
        all,
        Ok(true),
        "only {} of {SESSIONS} deliveries arrived after the restart",
        *distinct.borrow()
    );

    let store = leadtime_host::store::Db::connect(&files.db.url).await.unwrap();
    let mut conn = store.read().await.unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT d.id, d.status, s.status FROM webhook_deliveries d JOIN agent_sessions s ON s.id = d.session_id",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), SESSIONS, "exactly one delivery per session");
    let (count, before_kill) = {
        let a = arrivals.lock().unwrap();
        (a.count.clone(), a.before_kill.clone())
    };
    let stored: HashSet<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
    let received: HashSet<&str> = count.keys().map(String::as_str).collect();
    assert_eq!(
        stored, received,
        "every delivery arrived, and only with its original id"
    );
    let duplicates: Vec<&String> = count.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).collect();
    for id in &duplicates {
        assert!(
            before_kill.contains(*id),
            "{id} arrived twice but was not in flight at the kill"
        );
        assert_eq!(count[*id], 2, "{id} arrived more than twice");
    }
    assert!(
        duplicates.len() <= PER_ENDPOINT,
        "{} duplicates; at most {PER_ENDPOINT} attempts were in flight",
        duplicates.len()
    );
    eprintln!(
        "crash test: {arrived_before_kill} of {SESSIONS} deliveries had arrived at the kill; {} arrived twice",
        duplicates.len()
    );
    // Eventually every delivery is recorded as delivered, one per session.
    let all_recorded = tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            let pending: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'delivered'")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
            if pending == 0 {
                break;
            }
            // The receiver has answered everything; the child process records the last answers
            // within moments. It sends no event this test could await, so look again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(all_recorded.is_ok(), "deliveries stayed unrecorded");
    let delivered: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT session_id) FROM webhook_deliveries WHERE status = 'delivered'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(delivered as usize, SESSIONS);
    drop(conn);
    store.close().await;
}
