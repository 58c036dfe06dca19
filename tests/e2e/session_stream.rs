//! The live session stream (`GET /agent-sessions/{id}/stream`, Server-Sent Events): activities
//! and status changes arrive as they are committed, a reconnect with `Last-Event-ID` resumes
//! where it left off, the stream ends once the session has finished, it is authorized like
//! reading the session, and open streams are bounded per token and per host while the API keeps
//! answering.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::utils::receiver::{Answer, Receiver};
use crate::utils::sse::SseStream;
use crate::utils::{Api, TestHost};

/// A host with one self-hosted bot and a session assigned to it: `(host, admin, bot api, session)`.
async fn session_host(configure: impl FnOnce(&mut leadtime_host::Config)) -> (TestHost, Api, Api, String) {
    let host = TestHost::start_with(
        |config| {
            config.outbound.allow_private_targets = true;
            configure(config);
        },
        None,
    )
    .await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    // A wrapper that takes every webhook, so the host records no delivery trouble of its own.
    let wrapper = Receiver::start(0, |_, _| Answer::Status(200)).await;
    let bot = admin
        .create_bot("Coder", "coder", &wrapper.url("leadtime/webhook"))
        .await;
    // (the receiver keeps serving after its handle is dropped)
    let (_, session) = admin.assign_new_task(&bot.id, "Fix the login button", "").await;
    let bot = host.api(&bot.token);
    (host, admin, bot, session)
}

fn stream_url(api: &Api, session: &str) -> String {
    format!("{}/agent-sessions/{session}/stream", api.base)
}

async fn post_activity(bot: &Api, session: &str, body: &str) {
    let (status, answer) = bot
        .post(
            &format!("/agent-sessions/{session}/activities"),
            json!({"activityType": "thought", "body": body}),
        )
        .await;
    assert!(status.is_success(), "{answer}");
}

async fn set_status(bot: &Api, session: &str, status: &str) {
    let (code, answer) = bot
        .call(
            Method::PATCH,
            &format!("/agent-sessions/{session}/status"),
            Some(&json!({ "status": status })),
        )
        .await;
    assert!(code.is_success(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activities_and_statuses_arrive_live_and_a_reconnect_resumes_after_its_last_event() {
    let (host, admin, bot, session) = session_host(|_| {}).await;
    let token = admin.token().unwrap().to_owned();
    let url = stream_url(&admin, &session);

    let mut live = SseStream::open(&url, &token, None).await.unwrap();
    // What the session recorded before the stream opened comes first (the host's own records
    // of its start, if any, are status changes: skip to ours).
    post_activity(&bot, &session, "Reading the code").await;
    let mut first = live.next().await.unwrap();
    while first.event != "activity" {
        first = live.next().await.unwrap();
    }
    assert_eq!(first.data["body"], "Reading the code", "{first:?}");
    assert_eq!(first.data["sessionId"], session.as_str());
    assert!(first.id.as_deref().unwrap().starts_with("act_"));
    set_status(&bot, &session, "running").await;
    let running = live.next().await.unwrap();
    assert_eq!(
        (running.event.as_str(), &running.data["status"]),
        ("status", &json!("running"))
    );
    let resume_after = running.id.clone().unwrap();
    drop(live);

    // Missed while disconnected: sent on reconnect, in order, and nothing before the cursor.
    post_activity(&bot, &session, "Found it").await;
    post_activity(&bot, &session, "Fixed it").await;
    let mut resumed = SseStream::open(&url, &token, Some(&resume_after)).await.unwrap();
    let missed = resumed.take(2).await;
    assert_eq!(
        missed.iter().map(|e| e.data["body"].clone()).collect::<Vec<_>>(),
        [json!("Found it"), json!("Fixed it")]
    );
    // ?lastEventId= does the same (for clients that cannot set headers).
    let mut by_query = SseStream::open(&format!("{url}?lastEventId={resume_after}"), &token, None)
        .await
        .unwrap();
    assert_eq!(by_query.next().await.unwrap().data["body"], "Found it");
    drop(by_query);

    // The end: the last status, then `end`, then the stream closes.
    set_status(&bot, &session, "done").await;
    let done = resumed.next().await.unwrap();
    assert_eq!((done.event.as_str(), &done.data["status"]), ("status", &json!("done")));
    assert_eq!(resumed.next().await.unwrap().event, "end");
    assert!(resumed.next().await.is_none(), "the stream closes after `end`");

    // A finished session's stream replays everything and ends at once; `follow=false` too.
    let mut replay = SseStream::open(&url, &token, None).await.unwrap();
    let mut kinds = Vec::new();
    while let Some(event) = replay.next().await {
        kinds.push(event.event);
    }
    assert_eq!(kinds.last().map(String::as_str), Some("end"));
    assert_eq!(kinds.iter().filter(|k| *k == "activity").count(), 3, "{kinds:?}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_authorized_like_reading_the_session_and_refuses_a_foreign_cursor() {
    let (host, admin, bot, session) = session_host(|_| {}).await;
    let url = stream_url(&admin, &session);
    // Anonymous: 401. Another workspace's admin: the session does not exist for them.
    let anonymous = crate::utils::http_client().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let other = host.bootstrap("Globex").await.admin_token;
    let (status, body) = SseStream::open(&url, &other, None).await.err().unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The session's bot may follow it too.
    let mut as_bot = SseStream::open(&url, bot.token().unwrap(), None).await.unwrap();
    post_activity(&bot, &session, "hello").await;
    let mut event = as_bot.next().await.unwrap();
    while event.event != "activity" {
        event = as_bot.next().await.unwrap();
    }
    assert_eq!(event.data["body"], "hello");
    // A cursor that is not an event id of a stream: 400 saying what to send.
    let (status, body) = SseStream::open(&url, admin.token().unwrap(), Some("tsk_01hxyz"))
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("act_"), "{body}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_are_bounded_per_token_and_per_host_and_the_api_keeps_answering() {
    let (host, admin, bot, session) = session_host(|config| config.max_session_streams = 20).await;
    let url = stream_url(&admin, &session);
    let admin_token = admin.token().unwrap().to_owned();
    let bot_token = bot.token().unwrap().to_owned();
    let mut open = Vec::new();
    for _ in 0..leadtime_host::api::session_stream::PER_TOKEN {
        open.push(SseStream::open(&url, &admin_token, None).await.unwrap());
    }
    let (status, body) = SseStream::open(&url, &admin_token, None).await.err().unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "too_many", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("16 session streams"),
        "{body}"
    );
    // Another token still gets streams, up to the host's cap of 20.
    for _ in 0..4 {
        open.push(SseStream::open(&url, &bot_token, None).await.unwrap());
    }
    let (status, body) = SseStream::open(&url, &bot_token, None).await.err().unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("the host has its 20"),
        "{body}"
    );
    assert_eq!(host.app().session_streams.open(), 20);

    // Twenty streams following one busy session: every write wakes them, and the API answers.
    for n in 0..20 {
        post_activity(&bot, &session, &format!("step {n}")).await;
    }
    let (status, _) = admin.get("/tasks/grid").await;
    assert_eq!(status, StatusCode::OK);
    // Every stream saw every step.
    for stream in &mut open {
        let mut steps = 0;
        while steps < 20 {
            if stream.next().await.unwrap().event == "activity" {
                steps += 1;
            }
        }
    }
    drop(open);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_cancels_a_running_session_and_its_stream_ends() {
    let (host, admin, bot, session) = session_host(|_| {}).await;
    set_status(&bot, &session, "running").await;
    let mut stream = SseStream::open(&stream_url(&admin, &session), admin.token().unwrap(), None)
        .await
        .unwrap();
    let (status, card) = admin
        .post(
            &format!("/agent-sessions/{session}/cancel"),
            json!({"reason": "wrong task"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{card}");
    assert_eq!(card["status"], "canceled", "{card}");
    assert_eq!(card["statusMessage"], "wrong task", "{card}");
    let mut last = None;
    while let Some(event) = stream.next().await {
        last = Some(event);
    }
    assert_eq!(last.unwrap().event, "end");
    // Again: nothing left to cancel.
    let (status, body) = admin
        .post(&format!("/agent-sessions/{session}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("already finished"), "{body}");
    host.stop().await;
}
