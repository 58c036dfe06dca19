//! The plugins directory: files load without a restart, a broken file is reported and not fatal,
//! a changed file becomes the version new sessions start on while running sessions finish on the
//! version they started with, and a removed file takes no new sessions.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use leadtime_host::app::HostEvent;
use leadtime_host::domain::time::{Clock, ManualClock, SystemClock};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::utils::{Api, Events, HOSTILE_PLUGIN, TestHost};

/// Writes `bytes` to `dir/name` the way operators should: elsewhere first, then a rename.
fn install(dir: &Path, name: &str, bytes: &[u8]) {
    let temp = dir.join(format!(".{name}.partial"));
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, dir.join(name)).unwrap();
}

/// `wasm` with a custom section appended: the same code, but different bytes (a new version).
fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

async fn loaded(events: &mut Events, source: &str) -> String {
    match events
        .wait_for(
            &format!("{source} to load"),
            |e| matches!(e, HostEvent::PluginLoaded { source: s, .. } if s == source),
        )
        .await
    {
        HostEvent::PluginLoaded { sha256, .. } => sha256,
        _ => unreachable!(),
    }
}

/// A bot of the hostile type whose sessions wait for a timer (a minute) before finishing.
async fn poller(admin: &Api) -> String {
    let (status, body) = admin
        .post(
            "/bots",
            json!({"name": "Poller", "handle": "poller", "connection": {"type": "hostile", "config": {"behavior": "timer"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["bot"]["id"].as_str().unwrap().to_owned()
}

/// Replaces `hostile.wasm` with the same code in other bytes; returns the new version's SHA-256.
async fn install_v2(dir: &Path, events: &mut Events) -> String {
    install(
        dir,
        "hostile.wasm",
        &with_custom_section(HOSTILE_PLUGIN, "build", b"v2"),
    );
    loaded(events, "file:hostile.wasm").await
}

/// Assigns a new task to `bot`; returns the session id.
async fn assign(admin: &Api, bot: &str, title: &str) -> String {
    let task = admin.create_task(title).await;
    let (status, body) = admin
        .patch(
            &format!("/tasks/{}", task["id"].as_str().unwrap()),
            json!({"assigneeId": bot}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["agentSessionIds"][0].as_str().unwrap().to_owned()
}

/// Waits for a job of `kind` on `session` and returns the plugin version that ran it.
async fn ran_on(events: &mut Events, kind: &str, session: &str) -> Option<String> {
    match events
        .wait_for(&format!("{kind} of {session}"), |e| {
            matches!(e, HostEvent::JobFinished { kind: k, session_id: Some(s), .. } if k == kind && s.as_str() == session)
        })
        .await
    {
        HostEvent::JobFinished { plugin_sha256, .. } => plugin_sha256,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_load_and_reload_from_the_directory_without_a_restart() {
    let clock = ManualClock::new(SystemClock.now());
    let host = TestHost::start_with(
        |config| config.plugin_reload_interval = Duration::from_millis(50),
        Some(Arc::new(clock.clone())),
    )
    .await;
    let dir = host.app().plugin_directory.as_ref().unwrap().path().to_owned();
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let mut events = host.events();

    // A broken file is reported to admins, and the host runs on.
    install(&dir, "broken.wasm", b"\0asm\x0d\0\x01\0not really");
    events
        .wait_for(
            "broken.wasm to be rejected",
            |e| matches!(e, HostEvent::PluginRejected { source, .. } if source == "file:broken.wasm"),
        )
        .await;
    let (_, types) = admin.get("/connection-types").await;
    assert_eq!(types["pluginProblems"][0]["file"], "broken.wasm", "{types}");
    let problem = types["pluginProblems"][0]["message"].as_str().unwrap();
    assert!(problem.contains("not a valid WebAssembly component"), "{problem}");
    install(&dir, "notes.wasm", b"not wasm at all");
    events
        .wait_for("notes.wasm to be rejected", |e| {
            matches!(e, HostEvent::PluginRejected { source, message } if source == "file:notes.wasm"
                && message.contains("not a WebAssembly file (it does not start with `\\0asm`)"))
        })
        .await;

    // A new file loads; its connection type is off until an admin enables it.
    install(&dir, "hostile.wasm", HOSTILE_PLUGIN);
    let v1 = loaded(&mut events, "file:hostile.wasm").await;
    let (_, types) = admin.get("/connection-types").await;
    let hostile: &Value = types["connectionTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "hostile")
        .expect("the new type is listed");
    assert_eq!(hostile["enabled"], false);
    assert_eq!(hostile["builtin"], false);
    admin.enable_connection_type("hostile").await;
    let bot = poller(&admin).await;

    // A session starts on v1 and waits for its timer.
    let first = assign(&admin, &bot, "first").await;
    assert_eq!(ran_on(&mut events, "start_session", &first).await, Some(v1.clone()));

    // The file changes: new sessions start on v2, the running one stays on v1.
    let v2 = install_v2(&dir, &mut events).await;
    assert_ne!(v1, v2);
    let second = assign(&admin, &bot, "second").await;
    assert_eq!(ran_on(&mut events, "start_session", &second).await, Some(v2.clone()));

    clock.advance(60_000);
    host.app().jobs_queued.notify_one();
    assert_eq!(ran_on(&mut events, "timer", &first).await, Some(v1.clone()));
    assert_eq!(ran_on(&mut events, "timer", &second).await, Some(v2.clone()));
    for session in [&first, &second] {
        let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
        assert_eq!(card["status"], "done", "{card}");
    }

    // Removing the files: no new sessions of the type; the problem report goes with the file.
    // hostile.wasm goes last: the scan that sees it gone reads the directory after the others.
    std::fs::remove_file(dir.join("broken.wasm")).unwrap();
    std::fs::remove_file(dir.join("notes.wasm")).unwrap();
    std::fs::remove_file(dir.join("hostile.wasm")).unwrap();
    events
        .wait_for(
            "hostile.wasm to be removed",
            |e| matches!(e, HostEvent::PluginRemoved { source } if source == "file:hostile.wasm"),
        )
        .await;
    let third = assign(&admin, &bot, "third").await;
    let (_, card) = admin.get(&format!("/agent-sessions/{third}")).await;
    assert_eq!(card["status"], "failed", "{card}");
    assert!(
        card["statusMessage"]
            .as_str()
            .unwrap()
            .contains("`hostile` is not installed"),
        "{card}"
    );
    let (_, types) = admin.get("/connection-types").await;
    assert_eq!(types["pluginProblems"], json!([]), "{types}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_session_keeps_its_plugin_version_across_a_restart() {
    let clock = ManualClock::new(SystemClock.now());
    let mut host = TestHost::start_with(
        |config| config.plugin_reload_interval = Duration::from_millis(50),
        Some(Arc::new(clock.clone())),
    )
    .await;
    let dir = host.app().plugin_directory.as_ref().unwrap().path().to_owned();
    let admin_token = host.bootstrap("Acme").await.admin_token;
    let admin = host.api(&admin_token);
    let mut events = host.events();
    install(&dir, "hostile.wasm", HOSTILE_PLUGIN);
    let v1 = loaded(&mut events, "file:hostile.wasm").await;
    admin.enable_connection_type("hostile").await;
    let bot = poller(&admin).await;
    let first = assign(&admin, &bot, "first").await;
    assert_eq!(ran_on(&mut events, "start_session", &first).await, Some(v1.clone()));

    // v2 replaces v1, then the host restarts: only v2 is in the directory now.
    let v2 = install_v2(&dir, &mut events).await;
    host.restart().await;
    let admin = host.api(&admin_token);
    let mut events = host.events();
    let second = assign(&admin, &bot, "second").await;
    assert_eq!(ran_on(&mut events, "start_session", &second).await, Some(v2.clone()));

    // The first session's timer still runs on v1, brought back from the compile cache.
    clock.advance(60_000);
    host.app().jobs_queued.notify_one();
    assert_eq!(ran_on(&mut events, "timer", &first).await, Some(v1));
    assert_eq!(ran_on(&mut events, "timer", &second).await, Some(v2));
    let (_, card) = admin.get(&format!("/agent-sessions/{first}")).await;
    assert_eq!(card["status"], "done", "{card}");
    host.stop().await;
}
