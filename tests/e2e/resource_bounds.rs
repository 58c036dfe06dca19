//! Hostile plugins and clients against the real binary (a child process, so the resources it holds
//! are its own): plugins spinning on every plugin thread leave the API answering; plugins hoarding
//! host-side resources fail with the limit named while the host's memory stays bounded; thousands
//! of idle, slow and half-sent connections leave room for real clients; at the connection cap the
//! host sheds load with `503` and `Retry-After` instead of refusing to accept; floods of forged
//! provider webhooks and MCP tool calls leave the API answering and memory bounded, storing nothing.
//!
//! A child process sends the test no events, so where a test must wait for its state it asks the
//! API again every few milliseconds ([`eventually`]), under the usual safety timeout.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::utils::process::{HostFiles, HostProcess};
use crate::utils::provider::FakeProvider;
use crate::utils::{Api, EVENT_TIMEOUT, HOSTILE_PLUGIN, http_client};

/// What "still answering" means under load: far below the plugins' time limit (20 s here), which
/// is how long the API stalled when guest code ran on its threads.
const ANSWER_BOUND: Duration = Duration::from_secs(3);

/// Asks `check` again until it holds (see the module docs for why this test polls).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let done = tokio::time::timeout(EVENT_TIMEOUT, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "{what} did not happen within {EVENT_TIMEOUT:?}");
}

/// A host process with the hostile fixture plugin enabled in its workspace.
async fn hostile_host(args: &[&str]) -> (HostFiles, HostProcess, Api) {
    let files = HostFiles::bootstrap("Hostile").await;
    files.add_plugin("hostile.wasm", HOSTILE_PLUGIN);
    let host = HostProcess::start(&files, args).await;
    let admin = host.api(&files.admin_token);
    admin.enable_connection_type("hostile").await;
    (files, host, admin)
}

/// Opens a session of a new `hostile` bot doing `behavior`; returns its id.
async fn hostile_session(admin: &Api, handle: &str, config: Value) -> String {
    let (status, bot) = admin
        .post(
            "/bots",
            json!({"name": handle, "handle": handle, "connection": {"type": "hostile", "config": config}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bot}");
    let (status, task) = admin
        .post(
            "/tasks",
            json!({"title": format!("work for {handle}"), "assigneeId": bot["bot"]["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    task["agentSessionIds"][0].as_str().unwrap().to_owned()
}

/// The slowest of a round of API calls a client makes meanwhile (each must succeed).
async fn slowest_answer(host: &HostProcess, admin: &Api, round: usize) -> Duration {
    let client = http_client();
    let mut slowest = Duration::ZERO;
    for n in 0..10 {
        let started = Instant::now();
        let health = client.get(format!("{}/healthz", host.base_url())).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        slowest = slowest.max(started.elapsed());
        let started = Instant::now();
        let (status, task) = admin
            .post("/tasks", json!({"title": format!("while spinning {round}.{n}")}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        let (status, _) = admin.get(&format!("/tasks/{}", task["id"].as_str().unwrap())).await;
        assert_eq!(status, StatusCode::OK);
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_plugins_do_not_starve_the_api() {
    let (_files, host, admin) = hostile_host(&["--plugin-timeout-secs", "20", "--plugin-threads", "2"]).await;
    let provider = FakeProvider::start("key").await;
    let spin = json!({"behavior": "spin-after-ping", "target": provider.base});
    let mut spinning = 0;
    for (round, wanted) in [2, 4].into_iter().enumerate() {
        while spinning < wanted {
            spinning += 1;
            hostile_session(&admin, &format!("spinner{spinning}"), spin.clone()).await;
        }
        // Each session pings the provider right before it starts spinning.
        provider.wait_for_requests("/v1/ping", wanted).await;
        let slowest = slowest_answer(&host, &admin, round).await;
        eprintln!("{wanted} plugins spinning: slowest API answer {slowest:?}");
        assert!(
            slowest < ANSWER_BOUND,
            "with {wanted} plugins spinning an API call took {slowest:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hoarding_plugins_fail_with_the_limit_named_and_host_memory_stays_bounded() {
    let (_files, host, admin) = hostile_host(&["--plugin-timeout-secs", "20"]).await;
    let before = host.memory_kib("VmRSS");
    let mut sessions = Vec::new();
    for n in 0..8 {
        sessions.push(hostile_session(&admin, &format!("hoarder{n}"), json!({"behavior": "fields-hoard"})).await);
    }
    for session in &sessions {
        eventually(&format!("{session} fails"), || {
            let admin = admin.clone();
            let session = session.clone();
            async move { admin.get(&format!("/agent-sessions/{session}")).await.1["status"] == "failed" }
        })
        .await;
        let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
        let message = card["statusMessage"].as_str().unwrap();
        assert!(
            message.contains("exceeded its limit of 256 host resources held at once"),
            "{message}"
        );
    }
    // Each hoarder tried to keep 100,000 header fields of 8 KiB (800 MB) in host memory.
    let peak = host.memory_kib("VmHWM");
    eprintln!("host memory: {before} KiB before, peak {peak} KiB");
    assert!(
        peak.saturating_sub(before) < 256 << 10,
        "the host grew from {before} KiB to a peak of {peak} KiB"
    );
}

/// Connects to the host and sends `bytes` (possibly an unfinished request).
async fn connect(host: &HostProcess, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", host.port)).await.unwrap();
    if !bytes.is_empty() {
        stream.write_all(bytes).await.unwrap();
    }
    stream
}

/// Reads what the host sends until it closes the connection (or `limit` bytes arrive).
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.len() > 64 << 10 {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the host neither answered nor closed the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A real client's round trip: health and a task.
async fn real_client_is_served(host: &HostProcess, admin: &Api) {
    let health = http_client()
        .get(format!("{}/healthz", host.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (status, body) = admin.post("/tasks", json!({"title": "a real client"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_and_slow_connections_leave_room_for_real_clients() {
    let files = HostFiles::bootstrap("Crowded").await;
    let host = HostProcess::start(&files, &[]).await;
    let admin = host.api(&files.admin_token);
    let mut held = Vec::new();
    for n in 0..5_000 {
        let bytes: &[u8] = match n % 50 {
            // Headers that never end, and a body that never comes.
            0 => b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",
            1 => b"POST /api/public/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"ti",
            _ => b"",
        };
        held.push(connect(&host, bytes).await);
    }
    real_client_is_served(&host, &admin).await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_timed_out_with_json_answers() {
    let files = HostFiles::bootstrap("Slow").await;
    let host = HostProcess::start(
        &files,
        &["--header-read-timeout-secs", "1", "--body-read-timeout-secs", "1"],
    )
    .await;
    // Headers that never end: the connection is closed.
    let mut partial = connect(&host, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    let answer = read_answer(&mut partial).await;
    eprintln!("partial: {answer:?}");
    assert!(!answer.contains("200 OK"), "{answer}");
    // Nothing at all: closed too.
    let mut idle = connect(&host, b"").await;
    let answer = read_answer(&mut idle).await;
    eprintln!("idle: {answer:?}");
    // A body that stops arriving: 408, in the API's JSON error shape.
    let mut stalled = connect(
        &host,
        b"POST /api/public/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"ti",
    )
    .await;
    let answer = read_answer(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("application/json") && answer.contains("\"error\""),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_idle_connections_make_room() {
    let files = HostFiles::bootstrap("Capped").await;
    let host = HostProcess::start(&files, &["--max-connections", "32"]).await;
    let admin = host.api(&files.admin_token);
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(connect(&host, b"").await);
    }
    real_client_is_served(&host, &admin).await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_with_every_connection_busy_new_ones_get_503() {
    const CAP: usize = 8;
    let files = HostFiles::bootstrap("Busy").await;
    let host = HostProcess::start(
        &files,
        &["--max-connections", &CAP.to_string(), "--body-read-timeout-secs", "60"],
    )
    .await;
    // Requests whose bodies are being read: `100 Continue` says the host started reading.
    let mut busy = Vec::new();
    for _ in 0..CAP {
        let mut stream = connect(
            &host,
            b"POST /api/public/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
        )
        .await;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(EVENT_TIMEOUT, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        stream.write_all(b"{\"ti").await.unwrap();
        busy.push(stream);
    }
    let mut refused = connect(&host, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = read_answer(&mut refused).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"], "unavailable", "{body}");
    // A busy client leaves: there is room again.
    drop(busy.pop());
    eventually("a connection is served again", || async {
        let mut stream = connect(&host, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        read_answer(&mut stream).await.starts_with("HTTP/1.1 200")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_provider_webhooks_and_mcp_floods_leave_the_api_answering_and_memory_bounded() {
    use futures_util::StreamExt;

    let (_files, host, admin) = hostile_host(&[]).await;
    let provider = FakeProvider::start("key").await;
    let (status, created) = admin
        .post(
            "/bots",
            json!({"name": "agent", "handle": "agent", "connection": {"type": "hostile", "config": {"behavior": "provider-webhooks", "target": provider.base}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let bot = created["bot"]["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let (_, task) = admin
        .post("/tasks", json!({"title": "launch", "assigneeId": bot}))
        .await;
    let task = task["id"].as_str().unwrap().to_owned();
    // The session's start opens the connection's endpoint.
    let health = format!("/bots/{bot}/provider-webhooks");
    eventually("the endpoint opens", || {
        let (admin, health) = (admin.clone(), health.clone());
        async move { admin.get(&health).await.1["url"].is_string() }
    })
    .await;
    let url = admin.get(&health).await.1["url"].as_str().unwrap().to_owned();
    let before = host.memory_kib("VmRSS");

    // 2,000 forged webhooks with 200 KiB bodies from 32 clients at once, and 400 MCP tool calls
    // with the bot's token, while another client measures the API.
    let client = http_client();
    let padding = "x".repeat(200 << 10);
    let forged = futures_util::stream::iter(0..2_000)
        .map(|n| {
            let (client, url) = (client.clone(), url.clone());
            let body = format!(r#"{{"id":"agent-1","n":{n},"pad":"{padding}"}}"#);
            async move {
                client
                    .post(&url)
                    .header("X-Webhook-Signature", format!("sha256={n:064x}"))
                    .header("X-Webhook-ID", format!("forged-{n}"))
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    let mcp_url = format!("{}/api/mcp", host.base_url());
    let tool_calls = futures_util::stream::iter(0..400)
        .map(|n| {
            let (client, url, token, task) = (client.clone(), mcp_url.clone(), token.clone(), task.clone());
            async move {
                let call = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "get_task", "arguments": {"task": task}}});
                client.post(&url).bearer_auth(&token).json(&call).send().await.unwrap().status()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>();
    let measured = async {
        let mut slowest = Duration::ZERO;
        for round in 0..3 {
            slowest = slowest.max(slowest_answer(&host, &admin, round).await);
        }
        slowest
    };
    let started = Instant::now();
    let (forged, tool_calls, slowest) = tokio::join!(forged, tool_calls, measured);
    let took = started.elapsed();
    let peak = host.memory_kib("VmHWM");
    let answered = tool_calls.iter().filter(|s| **s == StatusCode::OK).count();
    eprintln!(
        "2,000 forged webhooks of 200 KiB + 400 MCP calls ({answered} answered) in {took:?}: \
         slowest API answer {slowest:?}; host memory {before} KiB before, peak {peak} KiB"
    );
    assert!(
        forged.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "every forged webhook is refused"
    );
    assert!(
        tool_calls
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS),
        "tool calls are answered or rate limited: {tool_calls:?}"
    );
    assert!(answered > 0);
    assert!(slowest < ANSWER_BOUND, "an API call took {slowest:?} during the floods");
    assert!(
        peak.saturating_sub(before) < 256 << 10,
        "the host grew from {before} KiB to a peak of {peak} KiB"
    );
    // Nothing was stored for the forgeries; admins see that they were refused, and why.
    let (_, health) = admin.get(&health).await;
    assert_eq!(
        (health["received"].as_i64(), health["rejected"].as_i64()),
        (Some(0), Some(2_000)),
        "{health}"
    );
    assert!(
        health["lastRejectionReason"]
            .as_str()
            .unwrap()
            .contains("signature does not match")
    );
}
