//! The host's own log under load, read from the real binary's stderr: a burst of sessions writes
//! no line per session, and plugin lines the per-connection rate limit drops are reported as one
//! line per interval with a count, not one warning per call.

use reqwest::StatusCode;
use serde_json::json;

use crate::utils::process::{HostFiles, HostProcess};
use crate::utils::receiver::{Answer, Receiver};
use crate::utils::{EVENT_TIMEOUT, HOSTILE_PLUGIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sessions_writes_no_line_per_session() {
    let files = HostFiles::bootstrap("Burst").await;
    let host = HostProcess::start(&files, &[]).await;
    let admin = host.api(&files.admin_token);
    let receiver = Receiver::start(0, |_, _| Answer::Status(200)).await;
    let bot = admin.create_bot("Claw", "claw", &receiver.url("hook")).await;

    let burst = 400;
    let sessions = admin.open_sessions(&bot.id, burst, 32).await;
    receiver.wait_for_hits("hook", burst).await;

    let (lines, total) = host.log_lines();
    let per_session: Vec<&String> = lines
        .iter()
        .filter(|line| sessions.iter().any(|session| line.contains(session.as_str())))
        .collect();
    assert!(per_session.is_empty(), "lines naming a session: {per_session:#?}");
    let warnings: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert!(
        total < 20,
        "{burst} sessions wrote {total} log lines (a line per session or request?): {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_plugin_log_lines_are_reported_once_per_interval_with_a_count() {
    let files = HostFiles::bootstrap("Chatty").await;
    files.add_plugin("hostile.wasm", HOSTILE_PLUGIN);
    let host = HostProcess::start(&files, &[]).await;
    let admin = host.api(&files.admin_token);
    admin.enable_connection_type("hostile").await;
    let (status, bot) = admin
        .post(
            "/bots",
            json!({"name": "Chatty", "handle": "chatty", "connection": {"type": "hostile", "config": {"behavior": "log-flood"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bot}");
    let bot_id = bot["bot"]["id"].as_str().unwrap();
    let connection = bot["bot"]["connection"]["id"].as_str().unwrap().to_owned();

    // Four sessions of one connection log 500 lines each (the per-call cap): the connection's
    // burst of 500 passes, most of the rest is dropped.
    let started = std::time::Instant::now();
    let sessions = admin.open_sessions(bot_id, 4, 4).await;
    for session in &sessions {
        let finished = tokio::time::timeout(EVENT_TIMEOUT, async {
            loop {
                let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
                if card["status"] == "done" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        })
        .await;
        assert!(finished.is_ok(), "session {session} did not finish");
    }
    // Every line is written or counted in a report; reports come once per interval (10 s).
    let accounted = tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            let (lines, _) = host.log_lines();
            let written = lines.iter().filter(|line| line.contains("log flood")).count();
            let reports: Vec<String> = lines
                .iter()
                .filter(|line| line.contains("plugin log lines dropped"))
                .cloned()
                .collect();
            let dropped: usize = reports.iter().map(|report| dropped_count(report)).sum();
            if written + dropped == 4 * 500 {
                return (written, reports);
            }
            assert!(written + dropped < 4 * 500, "{written} written, {dropped} dropped");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    let (written, reports) = accounted.expect("every flood line written or reported as dropped");
    assert!(written < 1_000, "the rate limit held: {written} lines written");
    let intervals = started.elapsed().as_secs() / 10 + 1;
    assert!(
        reports.len() as u64 <= intervals,
        "{} reports in {intervals} intervals: {reports:#?}",
        reports.len()
    );
    for report in &reports {
        assert!(
            report.contains(&connection),
            "the report names the connection: {report}"
        );
    }
}

/// The `dropped=N` count of a report line.
fn dropped_count(report: &str) -> usize {
    report
        .split("dropped=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {report}"))
}
