//! A bot takes a task end to end through the self-hosted plugin: assignment, @mention and
//! reassignment each open a session whose card in the task history shows the wrapper's work.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::utils::TestHost;
use crate::utils::wrapper::FakeWrapper;

/// The `agentSession` card of `session` in the task's history.
async fn card(api: &crate::utils::Api, task: &str, session: &str) -> Value {
    let (status, history) = api.get(&format!("/tasks/{task}/history")).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "agentSession" && e["session"]["id"] == session)
        .unwrap_or_else(|| panic!("no card for {session} in {history}"))["session"]
        .clone()
}

/// What every finished card must show: done, the wrapper's three activities exactly once despite
/// the re-sends, the response as result, and queued → running → done.
fn assert_finished_card(card: &Value, bot_id: &str) {
    assert_eq!(card["status"], "done", "{card}");
    assert_eq!(card["statusMessage"], "Finished");
    assert_eq!(card["bot"]["id"], bot_id);
    assert_eq!(card["connectionType"], "self-hosted");
    let types: Vec<&str> = card["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["activityType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["prompt", "toolCall", "response"], "{card}");
    let tool = &card["activities"][1];
    assert_eq!(tool["action"], "leadtime_get_task");
    assert_eq!(tool["raw"], json!({"tool": "get_task", "ms": 12}));
    assert_eq!(tool["providerEventId"], "evt-1");
    assert!(card["result"].as_str().unwrap().contains("the redirect loop is fixed"));
    let statuses: Vec<&str> = card["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "running", "done"], "{card}");
    assert!(card["startedAt"].is_string() && card["endedAt"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_takes_a_task_end_to_end() {
    let host = TestHost::start().await;
    let workspace = host.bootstrap("Acme").await;
    let admin = host.api(&workspace.admin_token);
    let mut wrapper = FakeWrapper::start(&host.base_url).await;
    let bot = admin.create_bot("Claw", "claw", &wrapper.webhook_url).await;
    wrapper.configure(&bot);

    // 1. Assigning the task to the bot opens a session; the wrapper gets it and finishes it.
    let task = admin.create_task("Fix the login redirect").await;
    let task_id = task["id"].as_str().unwrap();
    let short_number = task["shortNumber"].as_i64().unwrap();
    assert!(
        task["agentSessionIds"].as_array().unwrap().is_empty(),
        "an unassigned task opens no session"
    );
    let (status, assigned) = admin
        .patch(&format!("/tasks/{short_number}"), json!({"assigneeId": bot.id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{assigned}");
    let first = assigned["agentSessionIds"][0].as_str().unwrap().to_owned();

    let (session, webhook_id, body) = wrapper.next_run().await;
    assert_eq!(session, first);
    assert!(webhook_id.starts_with("msg_"));
    assert_eq!(body["taskId"], task_id);
    assert_eq!(body["workspaceId"], workspace.id);
    assert_eq!(body["commentId"], Value::Null);
    assert_eq!(body["context"]["task"]["shortNumber"], short_number);
    assert_eq!(body["context"]["trigger"]["type"], "assigned");
    assert_eq!(body["context"]["guidance"]["instructions"], "Keep answers short.");
    let prompt = body["context"]["promptContext"].as_str().unwrap();
    assert!(
        prompt.contains("Ada Admin assigned task #") && prompt.contains("Fix the login redirect"),
        "{prompt}"
    );
    assert_finished_card(&card(&admin, task_id, &first).await, &bot.id);
    let first_card = card(&admin, task_id, &first).await;
    assert_eq!(first_card["trigger"]["type"], "assigned");
    assert_eq!(first_card["trigger"]["actor"]["id"], workspace.admin_id);

    // 2. An @mention in a comment opens another session carrying the comment.
    let (status, comment) = admin
        .post(
            &format!("/tasks/{task_id}/comments"),
            json!({"comment": "@claw can you also check the logout page?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{comment}");
    let comment_id = comment["id"].as_str().unwrap();
    let second = comment["agentSessionIds"][0].as_str().unwrap().to_owned();
    let (session, _, body) = wrapper.next_run().await;
    assert_eq!(session, second);
    assert_eq!(body["commentId"], comment_id);
    assert_eq!(body["context"]["trigger"]["type"], "mentioned");
    assert_eq!(
        body["context"]["trigger"]["comment"]["body"],
        "@claw can you also check the logout page?"
    );
    assert!(
        body["context"]["promptContext"]
            .as_str()
            .unwrap()
            .contains("> @claw can you also check the logout page?")
    );
    let second_card = card(&admin, task_id, &second).await;
    assert_finished_card(&second_card, &bot.id);
    assert_eq!(second_card["trigger"]["type"], "mentioned");
    assert_eq!(second_card["trigger"]["commentId"], comment_id);

    // 3. Assigning the same bot again later opens a third session; re-sending the same assignee does not.
    let (status, same) = admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": bot.id}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        same["agentSessionIds"].as_array().unwrap().is_empty(),
        "re-sending the current assignee changes nothing: {same}"
    );
    let (status, _) = admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": null}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = admin
        .patch(
            &format!("/tasks/{task_id}"),
            json!({"assigneeId": format!("@{}", bot.handle)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let third = again["agentSessionIds"][0].as_str().unwrap().to_owned();
    let (session, _, _) = wrapper.next_run().await;
    assert_eq!(session, third);
    assert_finished_card(&card(&admin, task_id, &third).await, &bot.id);

    // The history shows three separate cards, in order, among the task's other events.
    let (_, history) = admin.get(&format!("/tasks/{task_id}/history")).await;
    let kinds: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "assigneeChanged",
            "agentSession",
            "comment",
            "agentSession",
            "assigneeChanged",
            "assigneeChanged",
            "agentSession"
        ],
        "{history}"
    );
    let cards: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "agentSession")
        .map(|e| e["session"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(cards, [first.as_str(), second.as_str(), third.as_str()]);

    // Each delivery was accepted once; ids are unique per logical delivery.
    let received = wrapper.received();
    assert_eq!(received.len(), 3);
    let ids: std::collections::HashSet<_> = received
        .iter()
        .map(|r| r.headers["leadtime-webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(host.count("webhook_deliveries WHERE status = 'delivered'").await, 3);

    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_card_is_readable_by_people_and_the_context_only_by_its_bot() {
    let host = TestHost::start().await;
    let workspace = host.bootstrap("Acme").await;
    let admin = host.api(&workspace.admin_token);
    let mut wrapper = FakeWrapper::start(&host.base_url).await;
    let bot = admin.create_bot("Claw", "claw", &wrapper.webhook_url).await;
    wrapper.configure(&bot);
    // A task created already assigned to the bot opens its session at once.
    let (status, task) = admin
        .post(
            "/tasks",
            json!({"title": "Write the release notes", "assigneeId": bot.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let session = task["agentSessionIds"][0].as_str().unwrap().to_owned();
    let (run, _, _) = wrapper.next_run().await;
    assert_eq!(run, session);

    let (status, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(card["status"], "done");
    let (status, body) = admin.get(&format!("/agent-sessions/{session}/context")).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a person's token is not the session's bot: {body}"
    );
    let (status, context) = host
        .api(&bot.token)
        .get(&format!("/agent-sessions/{session}/context"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(context["session"]["id"], session.as_str());
    assert_eq!(context["trigger"]["type"], "assigned");
    assert_eq!(context["targets"]["taskId"], task["id"]);
    assert!(
        context["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "agentSession")
    );
    assert_eq!(context["activities"].as_array().unwrap().len(), 3);

    // After `done`, the session is finished: another status is refused, repeating `done` is fine.
    let bot_api = host.api(&bot.token);
    let (status, body) = bot_api
        .patch(
            &format!("/agent-sessions/{session}/status"),
            json!({"status": "running"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("already done"));
    let (status, body) = bot_api
        .patch(&format!("/agent-sessions/{session}/status"), json!({"status": "done"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["changed"], false);

    // Agents may move the task along by status name, as read from the statuses list.
    let (status, moved) = bot_api
        .patch(
            &format!("/tasks/{}", task["shortNumber"]),
            json!({"statusId": "in review"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["status"]["name"], "In review");
    host.stop().await;
}
