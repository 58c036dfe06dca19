//! A new session's start is handed to the job worker with the rows its opening write read (no
//! read of its own); a start claimed from the table reads them. Both must show the plugin the same
//! session: the webhook a claimed start sends for a session equals the one its handed start sent.

use leadtime_host::domain::ids::SessionId;
use leadtime_host::domain::jobs::JobKind;
use leadtime_host::store;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::utils::TestHost;
use crate::utils::receiver::{Answer, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_start_shows_the_plugin_what_a_claimed_start_reads() {
    let host = TestHost::start().await;
    let workspace = host.bootstrap("Handed").await;
    let admin = host.api(&workspace.admin_token);
    let receiver = Receiver::start(0, |_, _| Answer::Status(200)).await;
    let bot = admin.create_bot("Claw", "claw", &receiver.url("hook")).await;

    // Created with its assignee: the task's number is given when the batch commits.
    let (status, created) = admin
        .post(
            "/tasks",
            json!({"title": "Created assigned", "description": "Steps:\n1. open\n2. fix", "assigneeId": bot.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let first = created["agentSessionIds"][0].as_str().unwrap().to_owned();
    // Assigned later, by handle, after comments (the start then reads them and their authors).
    let task = admin.create_task("Assigned later").await;
    let task_id = task["id"].as_str().unwrap();
    for body in ["First look: the redirect loops.", "Still loops on Safari."] {
        let (status, comment) = admin
            .post(&format!("/tasks/{task_id}/comments"), json!({ "comment": body }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{comment}");
    }
    let (status, assigned) = admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": "@Claw"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{assigned}");
    let second = assigned["agentSessionIds"][0].as_str().unwrap().to_owned();
    receiver.wait_for_hits("hook", 2).await;

    // Each session started again from a job in the table: claimed, its rows read.
    let now = host.app().clock.now();
    let mut tx = host.app().db.begin().await.unwrap();
    for session in [&first, &second] {
        store::jobs::insert(
            &mut tx,
            &JobKind::StartSession,
            Some(&SessionId::from(session.as_str())),
            now,
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    host.app().jobs_queued.notify_one();
    receiver.wait_for_hits("hook", 4).await;

    // Each attempt carries its own send time; the rest is the session as the start saw it.
    let bodies: Vec<Value> = receiver
        .hits("hook")
        .iter()
        .map(|hit| {
            let mut body: Value = serde_json::from_slice(&hit.body).unwrap();
            body.as_object_mut().unwrap().remove("webhookTimestamp");
            body
        })
        .collect();
    for (session, short_number) in [(&first, &created["shortNumber"]), (&second, &assigned["shortNumber"])] {
        let of_session: Vec<&Value> = bodies.iter().filter(|b| b["agentRunId"] == **session).collect();
        assert_eq!(
            of_session.len(),
            2,
            "a handed and a claimed start of {session}: {bodies:?}"
        );
        assert_eq!(
            of_session[0], of_session[1],
            "handed (first) and claimed (second) starts differ"
        );
        assert_eq!(of_session[0]["context"]["task"]["shortNumber"], *short_number);
        assert_eq!(of_session[0]["context"]["task"]["assignee"]["id"], bot.id);
        assert_eq!(of_session[0]["context"]["trigger"]["actor"]["id"], workspace.admin_id);
    }
    let later = bodies.iter().find(|b| b["agentRunId"] == *second).unwrap();
    let comments = later["context"]["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 2, "{later}");
    assert_eq!(comments[0]["author"]["id"], workspace.admin_id);
    host.stop().await;
}
