//! Workspace administration: bots' lifecycle, connection types per workspace, people, the
//! assignee picker.

use leadtime_host::app::HostEvent;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::utils::TestHost;
use crate::utils::wrapper::FakeWrapper;

/// An unreachable receiver: its sessions stay queued (delivery keeps retrying).
const NOWHERE: &str = "http://127.0.0.1:9/leadtime/webhook";

fn card_of<'a>(history: &'a Value, session: &str) -> &'a Value {
    history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["session"]["id"] == session)
        .map(|e| &e["session"])
        .unwrap_or_else(|| panic!("no card for {session}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_bot_stops_its_tokens_cancels_its_sessions_and_refuses_work() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let bot = admin.create_bot("Claw", "claw", NOWHERE).await;
    let bot_api = host.api(&bot.token);
    let task = admin.create_task("Long job").await;
    let task_id = task["id"].as_str().unwrap();

    let mut events = host.events();
    let (_, assigned) = admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": bot.id}))
        .await;
    let session = assigned["agentSessionIds"][0].as_str().unwrap().to_owned();
    events
        .wait_for(
            "the session start",
            |e| matches!(e, HostEvent::JobFinished { kind, .. } if kind == "start_session"),
        )
        .await;
    let (status, _) = bot_api.get(&format!("/agent-sessions/{session}/context")).await;
    assert_eq!(status, StatusCode::OK, "the bot works before it is disabled");

    let (status, disabled) = admin.post(&format!("/bots/{}/disable", bot.id), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{disabled}");
    assert_eq!(disabled["enabled"], false);
    // Its token stops working at once.
    let (status, body) = bot_api.get(&format!("/agent-sessions/{session}/context")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["message"].as_str().unwrap().contains("disabled"));
    // Its unfinished session is canceled, and the plugin hears of it through on-event.
    events.wait_for( "the cancel reaching the plugin", |e| {
        matches!(e, HostEvent::JobFinished { kind, session_id: Some(s), .. } if kind == "session_event" && s.as_str() == session)
    })
    .await;
    let (_, history) = admin.get(&format!("/tasks/{task_id}/history")).await;
    let card = card_of(&history, &session);
    assert_eq!(card["status"], "canceled", "{card}");
    assert!(
        card["statusMessage"].as_str().unwrap().contains("@claw was disabled"),
        "{card}"
    );
    let plugin_note = card["activities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"] == "plugin")
        .expect("the plugin's cancel note");
    assert!(
        plugin_note["body"]
            .as_str()
            .unwrap()
            .starts_with("Cancel requested: @claw was disabled"),
        "{plugin_note}"
    );
    // It takes no new work: assignment is refused with a clear message, mentions open nothing.
    let other = admin.create_task("Another").await;
    let (status, body) = admin
        .patch(
            &format!("/tasks/{}", other["id"].as_str().unwrap()),
            json!({"assigneeId": bot.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("@claw is disabled"),
        "{body}"
    );
    let (status, comment) = admin
        .post(
            &format!("/tasks/{task_id}/comments"),
            json!({"comment": "@claw are you there?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(comment["agentSessionIds"].as_array().unwrap().is_empty());
    // Disabling twice says so; enabling brings the token back.
    let (status, _) = admin.post(&format!("/bots/{}/disable", bot.id), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = admin.post(&format!("/bots/{}/enable", bot.id), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = bot_api.get("/account/info").await;
    assert_eq!(status, StatusCode::OK);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_bot_revokes_it_frees_its_handle_and_keeps_its_history() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let mut wrapper = FakeWrapper::start(&host.base_url).await;
    let bot = admin.create_bot("Claw", "claw", &wrapper.webhook_url).await;
    wrapper.configure(&bot);
    let task = admin.create_task("Before the bot goes").await;
    let task_id = task["id"].as_str().unwrap();
    admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": bot.id}))
        .await;
    let (session, _, _) = wrapper.next_run().await;

    let (status, _) = admin.call(Method::DELETE, &format!("/bots/{}", bot.id), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = host.api(&bot.token).get("/account/info").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin.get(&format!("/bots/{}", bot.id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, users) = admin.get("/users").await;
    assert!(
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["id"] != bot.id.as_str())
    );
    // The handle is free again; the old card still names its bot.
    admin.create_bot("Claw II", "claw", &wrapper.webhook_url).await;
    let (_, history) = admin.get(&format!("/tasks/{task_id}/history")).await;
    let card = card_of(&history, &session);
    assert_eq!(card["status"], "done");
    assert_eq!(card["bot"]["name"], "Claw");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_types_are_enabled_per_workspace() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let other_admin = host.api(&host.bootstrap("Globex").await.admin_token);
    let bot = admin.create_bot("Claw", "claw", NOWHERE).await;

    let (_, types) = admin.get("/connection-types").await;
    let self_hosted = types["connectionTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "self-hosted")
        .unwrap()
        .clone();
    assert_eq!(self_hosted["enabled"], true);
    assert_eq!(self_hosted["builtin"], true);
    assert_eq!(self_hosted["configSchema"]["required"], json!(["webhookUrl"]));
    assert_eq!(self_hosted["witVersion"], "0.1.3");

    let (status, body) = admin
        .patch("/connection-types/self-hosted", json!({"enabled": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false);
    // No new bot of a disabled type.
    let (status, body) = admin
        .post("/bots", json!({"name": "Two", "handle": "two", "connection": {"type": "self-hosted", "config": {"webhookUrl": NOWHERE}}}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("disabled in this workspace"));
    // New sessions of existing bots of that type fail with a reason a person understands.
    let task = admin.create_task("Blocked").await;
    let (_, assigned) = admin
        .patch(
            &format!("/tasks/{}", task["id"].as_str().unwrap()),
            json!({"assigneeId": bot.id}),
        )
        .await;
    let session = assigned["agentSessionIds"][0].as_str().unwrap();
    let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    assert_eq!(card["status"], "failed");
    assert!(
        card["statusMessage"]
            .as_str()
            .unwrap()
            .contains("`self-hosted` is disabled in this workspace"),
        "{card}"
    );
    // The same for a task created with the bot as its assignee (the task is new in the very
    // write that records the refused session).
    let (status, created) = admin
        .post("/tasks", json!({"title": "Blocked too", "assigneeId": bot.id}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let session = created["agentSessionIds"][0].as_str().unwrap();
    let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    assert_eq!(card["status"], "failed", "{card}");
    assert_eq!(card["taskId"], created["id"], "{card}");
    // Written early (before the refused session), the task still got its number in the row.
    let (_, read) = admin.get(&format!("/tasks/{}", created["id"].as_str().unwrap())).await;
    assert_eq!(read["shortNumber"], created["shortNumber"], "{read}");
    assert!(read["shortNumber"].as_i64().unwrap() > 0, "{read}");
    // Another workspace is unaffected.
    let (_, types) = other_admin.get("/connection-types").await;
    assert_eq!(types["connectionTypes"][0]["enabled"], true);
    other_admin.create_bot("Theirs", "theirs", NOWHERE).await;
    // Unknown types are 404; enabling again works.
    let (status, _) = admin
        .patch("/connection-types/telepathy", json!({"enabled": true}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    admin
        .patch("/connection-types/self-hosted", json!({"enabled": true}))
        .await;
    admin.create_bot("Two", "two", NOWHERE).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_are_updated_and_validated_through_their_plugin() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let bot = admin.create_bot("Claw", "claw", NOWHERE).await;
    let (status, body) = admin
        .post(&format!("/bots/{}/validate-connection", bot.id), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"ok": true, "fieldErrors": []}));

    let (status, body) = admin
        .patch(
            &format!("/bots/{}", bot.id),
            json!({"connection": {"config": {"webhookUrl": "not a url", "mode": "full"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["fieldErrors"][0]["field"], "webhookUrl");
    let (_, unchanged) = admin.get(&format!("/bots/{}", bot.id)).await;
    assert_eq!(unchanged["connection"]["config"]["webhookUrl"], NOWHERE);

    let (status, body) = admin
        .patch(
            &format!("/bots/{}", bot.id),
            json!({"name": "Claw 2", "handle": "claw2", "avatarUrl": "https://example.com/claw.png", "connection": {"config": {"webhookUrl": "https://agents.example.com/leadtime/webhook", "mode": "full"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["handle"], "claw2");
    assert_eq!(body["avatarUrl"], "https://example.com/claw.png");
    assert_eq!(body["connection"]["config"]["mode"], "full");
    admin.create_bot("Other", "other", NOWHERE).await;
    let (status, body) = admin
        .patch(&format!("/bots/{}", bot.id), json!({"handle": "other"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = admin.patch(&format!("/bots/{}", bot.id), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assignee_picker_lists_people_and_bots() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (status, added) = admin
        .post(
            "/people",
            json!({"name": "Max Member", "handle": "max", "email": "max@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["user"]["role"], "member");
    let member = host.api(added["token"].as_str().unwrap());
    let bot = admin.create_bot("Claw", "claw", NOWHERE).await;
    admin.post(&format!("/bots/{}/disable", bot.id), json!({})).await;

    let (status, users) = member.get("/users").await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<(String, String, bool)> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["handle"].as_str().unwrap().to_owned(),
                u["kind"].as_str().unwrap().to_owned(),
                u["enabled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("ada".into(), "person".into(), true),
            ("max".into(), "person".into(), true),
            ("claw".into(), "bot".into(), false)
        ]
    );
    let (_, bots) = member.get("/users?kind=bot").await;
    assert_eq!(bots["users"].as_array().unwrap().len(), 1);
    let (status, _) = member.get("/users?kind=robot").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = member.post("/people", json!({"name": "Eve", "handle": "eve"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "members cannot add people");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_a_task_from_a_bot_cancels_the_work_it_was_assigned() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let bot = admin.create_bot("Claw", "claw", NOWHERE).await;
    let task = admin.create_task("Changed my mind").await;
    let task_id = task["id"].as_str().unwrap();
    let mut events = host.events();
    let (_, assigned) = admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": bot.id}))
        .await;
    let assigned_session = assigned["agentSessionIds"][0].as_str().unwrap().to_owned();
    let (_, comment) = admin
        .post(
            &format!("/tasks/{task_id}/comments"),
            json!({"comment": "@claw also look at this"}),
        )
        .await;
    let mentioned_session = comment["agentSessionIds"][0].as_str().unwrap().to_owned();

    let (status, _) = admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": null}))
        .await;
    assert_eq!(status, StatusCode::OK);
    events
        .wait_for("the cancel reaching the plugin", |e| {
            matches!(e, HostEvent::JobFinished { kind, session_id: Some(s), .. } if kind == "session_event" && s.as_str() == assigned_session)
        })
        .await;
    let (_, history) = admin.get(&format!("/tasks/{task_id}/history")).await;
    let card = card_of(&history, &assigned_session);
    assert_eq!(card["status"], "canceled", "{card}");
    assert_eq!(card["statusMessage"], "unassigned by Ada Admin");
    assert!(
        card["activities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["source"] == "plugin"),
        "the plugin heard of it: {card}"
    );
    // The session the mention opened is not about the assignment: it keeps going.
    assert_eq!(card_of(&history, &mentioned_session)["status"], "queued");
    host.stop().await;
}
