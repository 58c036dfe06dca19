//! Leadtime's connectors against the host, call for call (`utils::connector` plays OpenClaw's and
//! Hermes's conversations): a whole session, then the same webhook redelivered to a connector that
//! restarted and so runs it again with the same idempotency keys — and again after the session was
//! canceled. Every repeat is answered 2xx with the original result and changes nothing.

use leadtime_host::app::HostEvent;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::utils::connector::{AgentOutcome, Connector, Flavor, Run};
use crate::utils::{Api, Bot, TestHost};

/// A bot whose webhooks go to a connector of `flavor`.
async fn connector_bot(host: &TestHost, admin: &Api, flavor: Flavor, handle: &str) -> (Connector, Bot) {
    let (listener, url) = Connector::bind().await;
    let bot = admin.create_bot(handle, handle, &url).await;
    let connector = Connector::start(flavor, bot.clone(), listener, &host.base_url).await;
    (connector, bot)
}

/// Assigns a new task to `bot`; returns (task id, session id).
async fn assign_new_task(admin: &Api, bot: &Bot) -> (String, String) {
    let task = admin.create_task("Fix the login redirect").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let (status, body) = admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": bot.id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (task_id, body["agentSessionIds"][0].as_str().unwrap().to_owned())
}

/// What a session's card shows of its work: status, message, result, feed and status history.
async fn work_of(admin: &Api, session: &str) -> Value {
    let (status, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    assert_eq!(status, StatusCode::OK, "{card}");
    json!({
        "status": card["status"],
        "statusMessage": card["statusMessage"],
        "result": card["result"],
        "activities": card["activities"],
        "statusHistory": card["statusHistory"],
    })
}

fn activity_types(work: &Value) -> Vec<String> {
    work["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["activityType"].as_str().unwrap().to_owned())
        .collect()
}

fn statuses(work: &Value) -> Vec<String> {
    work["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .collect()
}

/// Asks for `webhook_id` to be delivered again, as an admin would after a wrapper outage.
async fn redeliver(admin: &Api, webhook_id: &str) {
    let (status, body) = admin
        .post(&format!("/deliveries/{webhook_id}/redeliver"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], webhook_id);
}

/// The replay made the same calls as the original run, every one 2xx, and each session call got
/// exactly the original answer back (the same activity, the same status result).
fn assert_same_answers(original: &Run, replay: &Run) {
    assert_eq!(replay.webhook_id, original.webhook_id);
    assert!(
        replay.refused().is_empty(),
        "refused on replay: {:#?}",
        replay.refused()
    );
    let labels = |run: &Run| run.calls.iter().map(|c| c.label()).collect::<Vec<_>>();
    assert_eq!(labels(replay), labels(original));
    for (first, again) in original.calls.iter().zip(&replay.calls) {
        if first.is_session_call() {
            assert_eq!(
                again.response,
                first.response,
                "{} {:?} answered differently on replay",
                first.label(),
                first.request
            );
        }
    }
}

async fn whole_session_then_redelivered(flavor: Flavor) {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (mut connector, bot) = connector_bot(&host, &admin, flavor, "claw").await;

    // The whole conversation: running, prompt, task tools (and tool activities), comment, task
    // update, response, done.
    let (task_id, session) = assign_new_task(&admin, &bot).await;
    let first = connector.next_run().await;
    assert_eq!(first.session_id, session);
    assert!(first.refused().is_empty(), "refused: {:#?}", first.refused());
    let work = work_of(&admin, &session).await;
    let expected: &[&str] = match flavor {
        Flavor::OpenClaw => &["prompt", "response"],
        Flavor::Hermes => &["prompt", "toolCall", "toolResult", "response"],
    };
    assert_eq!(activity_types(&work), expected, "{work}");
    assert_eq!(statuses(&work), ["queued", "running", "done"], "{work}");
    assert_eq!(work["statusMessage"], format!("{} agent finished", flavor.name()));
    let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    assert_eq!(card["delivery"]["status"], "delivered", "{card}");
    assert_eq!(card["delivery"]["id"], first.webhook_id.as_str(), "{card}");
    let status_sources: Vec<&str> = card["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        status_sources,
        ["host", "api", "api"],
        "the connector, not the delivery, moves the session to running"
    );

    // The connector restarted (its seen ids are gone) and the webhook is delivered again: it runs
    // the same conversation with the same keys. Every answer is the original one.
    connector.restart();
    redeliver(&admin, &first.webhook_id).await;
    let replay = connector.next_run().await;
    assert_same_answers(&first, &replay);
    assert_eq!(work_of(&admin, &session).await, work, "the replay changed the session");

    // The task is taken from the bot (its finished session stays done), the connector restarts
    // once more and the webhook comes again: still all 2xx and nothing changes.
    let (status, body) = admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    connector.restart();
    redeliver(&admin, &first.webhook_id).await;
    let again = connector.next_run().await;
    assert_same_answers(&first, &again);
    assert_eq!(work_of(&admin, &session).await, work);

    // A *new* key asking the finished session to run again is still refused.
    let bot_api = host.api(&bot.token);
    let (status, body) = bot_api
        .patch(
            &format!("/agent-sessions/{session}/status"),
            json!({"status": "running", "idempotencyKey": "status-running-msg_new"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(work_of(&admin, &session).await, work);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_replays_a_redelivered_session_unchanged() {
    whole_session_then_redelivered(Flavor::OpenClaw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hermes_replays_a_redelivered_session_unchanged() {
    whole_session_then_redelivered(Flavor::Hermes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_agent_run_replays_unchanged() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (mut connector, bot) = connector_bot(&host, &admin, Flavor::Hermes, "hermes").await;
    connector.set_outcome(AgentOutcome::Fails);
    let (_, session) = assign_new_task(&admin, &bot).await;
    let first = connector.next_run().await;
    assert!(first.refused().is_empty(), "refused: {:#?}", first.refused());
    let work = work_of(&admin, &session).await;
    assert_eq!(statuses(&work), ["queued", "running", "failed"], "{work}");
    assert_eq!(activity_types(&work).last().unwrap(), "error");

    connector.restart();
    redeliver(&admin, &first.webhook_id).await;
    let replay = connector.next_run().await;
    assert_same_answers(&first, &replay);
    assert_eq!(work_of(&admin, &session).await, work);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_repeating_itself_after_a_cancel_gets_its_original_answers() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (mut connector, bot) = connector_bot(&host, &admin, Flavor::Hermes, "hermes").await;

    // The connector dies mid-run: running, prompt, context, task and the first tool activity.
    connector.stop_after(Some(5));
    let (task_id, session) = assign_new_task(&admin, &bot).await;
    let first = connector.next_run().await;
    assert_eq!(first.calls.len(), 5);
    assert!(first.refused().is_empty(), "refused: {:#?}", first.refused());
    let work = work_of(&admin, &session).await;
    assert_eq!(activity_types(&work), ["prompt", "toolCall"], "{work}");
    assert_eq!(work["status"], "running");

    // The task is taken from the bot: the host cancels the session and tells its plugin (which
    // notes it in the feed).
    let mut events = host.events();
    let (status, body) = admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    events
        .wait_for("the plugin hears of the cancel", |e| {
            matches!(e, HostEvent::JobFinished { kind, session_id: Some(s), .. } if kind == "session_event" && s.as_str() == session)
        })
        .await;
    let canceled = work_of(&admin, &session).await;
    assert_eq!(statuses(&canceled), ["queued", "running", "canceled"], "{canceled}");

    // The connector comes back and the webhook is redelivered: it repeats what it had done, with
    // the same keys. Each repeat answers 2xx as the first time did, and the session stays canceled.
    connector.restart();
    redeliver(&admin, &first.webhook_id).await;
    let replay = connector.next_run().await;
    assert_same_answers(&first, &replay);
    assert_eq!(work_of(&admin, &session).await, canceled);

    // A new key asking the canceled session to finish is refused, and changes nothing either.
    let (status, body) = host
        .api(&bot.token)
        .patch(
            &format!("/agent-sessions/{session}/status"),
            json!({"status": "done", "idempotencyKey": format!("status-done-{}", first.webhook_id)}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("canceled"), "{body}");
    assert_eq!(work_of(&admin, &session).await, canceled);
    host.stop().await;
}

/// The first request with a key decides its answer, even when it changed nothing; the key then
/// answers the same way after the session moved on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_changed_nothing_keeps_its_answer() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (mut connector, bot) = connector_bot(&host, &admin, Flavor::OpenClaw, "claw").await;
    connector.stop_after(Some(0));
    let (_, session) = assign_new_task(&admin, &bot).await;
    connector.next_run().await;
    let bot_api = host.api(&bot.token);
    let status = |key: &str, to: &str| {
        let bot_api = bot_api.clone();
        let path = format!("/agent-sessions/{session}/status");
        let body = json!({"status": to, "message": "", "idempotencyKey": key});
        async move { bot_api.patch(&path, body).await }
    };

    let (code, started) = status("a", "running").await;
    assert_eq!(code, StatusCode::OK, "{started}");
    assert_eq!(started["changed"], true);
    let (code, unchanged) = status("b", "running").await;
    assert_eq!(code, StatusCode::OK, "{unchanged}");
    assert_eq!(unchanged["changed"], false);
    assert_eq!(unchanged["status"], "running");
    let (code, done) = status("c", "done").await;
    assert_eq!((code, &done["changed"]), (StatusCode::OK, &json!(true)), "{done}");

    // The session is done now; each key still answers as it first did.
    assert_eq!(status("a", "running").await, (StatusCode::OK, started));
    assert_eq!(status("b", "running").await, (StatusCode::OK, unchanged));
    assert_eq!(status("c", "done").await, (StatusCode::OK, done));
    let (code, body) = status("d", "running").await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let work = work_of(&admin, &session).await;
    assert_eq!(statuses(&work), ["queued", "running", "done"], "{work}");
    host.stop().await;
}
