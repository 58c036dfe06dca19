//! The README's walkthrough with its own example wrapper (`examples/wrapper.py`, run by the
//! machine's `python3`): an assignment finished by the wrapper, then a mention held open by
//! `--hold` and finished by hand — every call the README shows answers 2xx and changes the session.

use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::utils::{Bot, EVENT_TIMEOUT, TestHost};

struct ExampleWrapper {
    child: Child,
    output: Lines<BufReader<ChildStdout>>,
}

impl ExampleWrapper {
    /// Starts `examples/wrapper.py` on `port` for `bot`, and waits until it listens.
    async fn start(host: &TestHost, bot: &Bot, port: u16, hold: bool) -> ExampleWrapper {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/wrapper.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .args(hold.then_some("--hold"))
            .env("LEADTIME_BASE_URL", format!("{}/api", host.base_url))
            .env("BOT_TOKEN", &bot.token)
            .env("WEBHOOK_SECRET", &bot.webhook_secret)
            .env("PORT", port.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("python3 runs the example wrapper");
        let output = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut wrapper = ExampleWrapper { child, output };
        wrapper.wait_for_line("listening on").await;
        wrapper
    }

    /// Waits for the wrapper to print a line containing `needle`.
    async fn wait_for_line(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(EVENT_TIMEOUT, async {
            while let Some(line) = self.output.next_line().await.expect("read wrapper output") {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("the example wrapper exited before printing {needle:?}")
        })
        .await;
        found.unwrap_or_else(|_| panic!("the example wrapper never printed {needle:?}"))
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A loopback port nothing listens on right now.
async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_wrapper_and_the_manual_calls_work_as_the_readme_says() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let port = free_port().await;
    let bot = admin
        .create_bot("Claw", "claw", &format!("http://127.0.0.1:{port}/leadtime/webhook"))
        .await;

    // Assigned: the wrapper marks the session running, posts the prompt and a response, and ends it.
    let mut wrapper = ExampleWrapper::start(&host, &bot, port, false).await;
    let task = admin.create_task("Fix the login redirect").await;
    let (status, assigned) = admin
        .patch(
            &format!("/tasks/{}", task["shortNumber"]),
            json!({"assigneeId": bot.id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{assigned}");
    let first = assigned["agentSessionIds"][0].as_str().unwrap().to_owned();
    wrapper.wait_for_line(&format!("session {first} done")).await;
    let (_, card) = admin.get(&format!("/agent-sessions/{first}")).await;
    assert_eq!(card["status"], "done", "{card}");
    assert_eq!(card["delivery"]["status"], "delivered", "{card}");
    assert!(
        card["result"]
            .as_str()
            .unwrap()
            .contains("Hello from the example wrapper")
    );
    wrapper.stop().await;

    // Mentioned, with the wrapper in --hold: the session stays running for the manual calls.
    let mut wrapper = ExampleWrapper::start(&host, &bot, port, true).await;
    let (status, comment) = admin
        .post(
            &format!("/tasks/{}/comments", task["shortNumber"]),
            json!({"comment": "@claw please also check the logout page"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{comment}");
    let session = comment["agentSessionIds"][0].as_str().unwrap().to_owned();
    wrapper.wait_for_line(&format!("session {session} is running")).await;
    let bot_api = host.api(&bot.token);
    let (status, context) = bot_api.get(&format!("/agent-sessions/{session}/context")).await;
    assert_eq!(status, StatusCode::OK, "{context}");
    assert_eq!(context["session"]["status"], "running");
    let thought = json!({"activityType": "thought", "body": "Looking at the logs", "idempotencyKey": "k1"});
    let done = json!({"status": "done", "message": "Fixed", "idempotencyKey": "k2"});
    for _ in 0..2 {
        let (status, body) = bot_api
            .post(&format!("/agent-sessions/{session}/activities"), thought.clone())
            .await;
        assert!(status.is_success(), "{body}");
        let (status, body) = bot_api
            .patch(&format!("/agent-sessions/{session}/status"), done.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["changed"], true,
            "the repeat answers as the first call did: {body}"
        );
    }
    let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    assert_eq!(card["status"], "done", "{card}");
    assert_eq!(card["statusMessage"], "Fixed");
    let types: Vec<&str> = card["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["activityType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["prompt", "thought"], "{card}");
    wrapper.stop().await;
    host.stop().await;
}
