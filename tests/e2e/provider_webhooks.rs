//! Provider webhooks (contract 0.1.2, `inbound`): a plugin opens its connection's endpoint, hands
//! the URL and a host-generated secret (by reference) to its provider, and routes the provider's
//! id to its session; the provider's signed webhooks then reach the session once each. Played with
//! the `hostile` fixture's `provider-webhooks` behavior against the loopback fake provider, the test
//! acting as the provider's webhook sender (with the secret the fake received at launch).

use leadtime_host::app::HostEvent;
use leadtime_host::domain::webhook_signing::hmac_hex;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::utils::provider::FakeProvider;
use crate::utils::{Api, TestHost};

async fn host_with_hostile() -> (TestHost, Api) {
    let host = TestHost::start_with(|config| config.outbound.allow_private_targets = true, None).await;
    host.load_hostile_plugin().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    admin.enable_connection_type("hostile").await;
    (host, admin)
}

/// Creates @agent, a `hostile` bot launching "agents" at `provider` (`provider-webhooks`); the
/// creation answer.
async fn agent_bot(admin: &Api, provider: &FakeProvider) -> Value {
    let (status, created) = admin
        .post(
            "/bots",
            json!({"name": "Agent", "handle": "agent", "connection": {"type": "hostile", "config": {"behavior": "provider-webhooks", "target": provider.base}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

/// Plays the provider: signs `body` the way Cursor does and posts it to `url`.
async fn send_webhook(url: &str, secret: &str, event_id: &str, body: &Value) -> (StatusCode, Value) {
    let body = body.to_string();
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header(
            "X-Webhook-Signature",
            format!("sha256={}", hmac_hex(secret, body.as_bytes())),
        )
        .header("X-Webhook-ID", event_id)
        .header("X-Webhook-Event", "statusChange")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Assigns a new task to `bot`; returns the session id.
async fn assign(admin: &Api, bot: &str, title: &str) -> String {
    let task = admin.create_task(title).await;
    let (status, assigned) = admin
        .patch(
            &format!("/tasks/{}", task["id"].as_str().unwrap()),
            json!({"assigneeId": bot}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{assigned}");
    assigned["agentSessionIds"][0].as_str().unwrap().to_owned()
}

fn thoughts(card: &Value) -> Vec<String> {
    card["activities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["activityType"] == "thought")
        .map(|a| a["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_provider_webhooks_reach_their_session_once() {
    let (host, admin) = host_with_hostile().await;
    let provider = FakeProvider::start("unused").await;
    let created = agent_bot(&admin, &provider).await;
    let bot = created["bot"]["id"].as_str().unwrap().to_owned();
    let mut events = host.events();

    let session = assign(&admin, &bot, "Fix the login page").await;
    events.job_finished(&session, "start_session").await;
    let launches = provider.launches();
    assert_eq!(launches.len(), 1);
    let (agent, url, secret) = launches[0].clone();
    assert_eq!(agent, "agent-1");
    let connection = url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        url,
        format!("{}/api/plugins/hostile/inbound/{connection}", host.base_url)
    );
    // The provider got the host-generated secret in the launch body (JSON-escaped into the string
    // the plugin wrote), and echoed it back: the plugin read the reference, never the value.
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    assert_eq!(card["status"], "running", "{card}");
    let launched = card["activities"][0]["body"].as_str().unwrap();
    assert!(
        launched.contains(r#""secret":"{{secret:inbound-webhook}}""#),
        "{launched}"
    );
    assert!(!card.to_string().contains(&secret));
    host.assert_absent_from_database(std::slice::from_ref(&secret)).await;
    assert_eq!(provider.violations(), Vec::<String>::new());

    // Unsigned, wrongly signed or tampered requests are refused and leave nothing behind.
    let running = json!({"event": "statusChange", "id": agent, "status": "RUNNING"});
    let (status, body) = send_webhook(&url, "whsec_not-the-secret", "evt-1", &running).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert!(
        body["message"].as_str().unwrap().contains("signature does not match"),
        "{body}"
    );
    let unsigned = reqwest::Client::new()
        .post(&url)
        .body(running.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let signature = hmac_hex(&secret, running.to_string().as_bytes());
    let tampered = reqwest::Client::new()
        .post(&url)
        .header("X-Webhook-Signature", format!("sha256={signature}"))
        .header("X-Webhook-ID", "evt-1")
        .body(json!({"event": "statusChange", "id": agent, "status": "FINISHED"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(host.count("inbound_events").await, 0);

    // A signed event is accepted once; the provider's redelivery of it is acknowledged, not
    // handed over again.
    let (status, body) = send_webhook(&url, &secret, "evt-1", &running).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"received": true, "duplicate": false}));
    events.job_finished(&session, "session_event").await;
    let (status, body) = send_webhook(&url, &secret, "evt-1", &running).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], true);
    // Below the endpoint's URL is the same endpoint; the path reaches the plugin.
    let finished = json!({"event": "statusChange", "id": agent, "status": "FINISHED", "summary": "Login page fixed"});
    let (status, _) = send_webhook(&format!("{url}/status?v=0"), &secret, "evt-2", &finished).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    events.job_finished(&session, "session_event").await;
    let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    assert_eq!(card["status"], "done", "{card}");
    assert_eq!(card["result"], "Login page fixed");
    assert_eq!(
        thoughts(&card),
        ["POST agent-1 said RUNNING", "POST agent-1 said FINISHED"],
        "each event once, in order: {card}"
    );
    assert_eq!(host.count("inbound_events").await, 2);
    // Admins see the endpoint, what it took, and what it refused and why.
    let (status, health) = admin.get(&format!("/bots/{bot}/provider-webhooks")).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["url"], url);
    assert_eq!(
        (health["received"].as_i64(), health["waiting"].as_i64()),
        (Some(2), Some(0))
    );
    assert_eq!(health["rejected"], 3, "forged, unsigned, tampered: {health}");
    let reason = health["lastRejectionReason"].as_str().unwrap();
    assert!(reason.contains("the signature does not match"), "{health}");
    assert!(!health.to_string().contains(&secret));

    // An event for an id no session has routed yet waits for the session that routes it.
    let early = json!({"event": "statusChange", "id": "agent-2", "status": "RUNNING"});
    let (status, _) = send_webhook(&url, &secret, "evt-3", &early).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let second = assign(&admin, &bot, "Fix the signup page").await;
    events.job_finished(&second, "start_session").await;
    events.job_finished(&second, "session_event").await;
    let (_, card) = admin.get(&format!("/agent-sessions/{second}")).await;
    assert_eq!(thoughts(&card), ["POST agent-2 said RUNNING"], "{card}");

    // An event for a finished session is stored and dropped, without calling the plugin.
    let late = json!({"event": "statusChange", "id": agent, "status": "RUNNING"});
    let (status, _) = send_webhook(&url, &secret, "evt-4", &late).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let dropped = events.job_finished(&session, "session_event").await;
    assert!(
        matches!(
            dropped,
            HostEvent::JobFinished {
                plugin_sha256: None,
                ..
            }
        ),
        "{dropped:?}"
    );
    let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    assert_eq!(thoughts(&card).len(), 2);

    // The audit trail says the plugin opened the endpoint, once (later calls changed nothing).
    let (_, audit) = admin.get("/audit?action=connection.inbound.open").await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1, "{audit}");
    assert!(!audit.to_string().contains(&secret));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_refuses_what_it_cannot_check_and_stays_bounded() {
    let (host, admin) = host_with_hostile().await;
    let provider = FakeProvider::start("unused").await;
    let created = agent_bot(&admin, &provider).await;
    let bot = created["bot"]["id"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();

    // Unknown connections and types, and an endpoint its plugin has not opened yet: 404.
    let (status, body) = send_webhook(
        &format!("{}/api/plugins/hostile/inbound/con_nope", host.base_url),
        "x",
        "e",
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let mut events = host.events();
    let session = assign(&admin, &bot, "Task").await;
    events.job_finished(&session, "start_session").await;
    let (_, url, secret) = provider.launches()[0].clone();
    let connection = url.rsplit('/').next().unwrap().to_owned();
    let (status, body) = send_webhook(
        &format!("{}/api/plugins/self-hosted/inbound/{connection}", host.base_url),
        &secret,
        "e",
        &json!({}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another type's path does not reach it: {body}"
    );

    // A body over 256 KiB is refused with a JSON error.
    let huge = json!({"id": "agent-1", "pad": "x".repeat(300 * 1024)});
    let (status, body) = send_webhook(&url, &secret, "big", &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"], "payload_too_large");

    // A flood of badly signed requests stores nothing, and the API answers meanwhile.
    let flood = (0..200).map(|n| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(&url)
                .header("X-Webhook-Signature", "sha256=00")
                .header("X-Webhook-ID", format!("forged-{n}"))
                .body(r#"{"id":"agent-1"}"#)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let (statuses, (api_status, _)) = tokio::join!(futures_util::future::join_all(flood), admin.get("/bots"));
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    assert_eq!(api_status, StatusCode::OK);
    assert_eq!(host.count("inbound_events").await, 0);

    // Events no session claims are kept up to a bound per connection; past it the provider is
    // told to come back later (503) and nothing more is stored.
    let waiting = 1_000;
    let senders = (0..8).map(|worker| {
        let (url, secret) = (url.clone(), secret.clone());
        async move {
            for n in (worker..waiting).step_by(8) {
                let event = json!({"id": format!("ghost-{n}"), "status": "RUNNING"});
                let (status, body) = send_webhook(&url, &secret, &format!("ghost-{n}"), &event).await;
                assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            }
        }
    });
    futures_util::future::join_all(senders).await;
    let (status, body) = send_webhook(&url, &secret, "one-too-many", &json!({"id": "ghost-x"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "busy");
    // An event for a routed session is still taken.
    let (status, _) = send_webhook(&url, &secret, "routed", &json!({"id": "agent-1", "status": "RUNNING"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(host.count("inbound_events").await, waiting as i64 + 1);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_follows_up_on_an_open_session_and_cancel_reaches_the_provider() {
    let (host, admin) = host_with_hostile().await;
    let provider = FakeProvider::start("unused").await;
    let created = agent_bot(&admin, &provider).await;
    let bot = created["bot"]["id"].as_str().unwrap().to_owned();
    // The type lists `follow-up`, so mentions continue open sessions unless the admin says not.
    assert_eq!(created["bot"]["connection"]["followUps"], Value::Null);
    let mut events = host.events();
    let session = assign(&admin, &bot, "Fix the login page").await;
    events.job_finished(&session, "start_session").await;
    let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    let task = card["taskId"].as_str().unwrap().to_owned();

    // A mention while the session runs continues it: the plugin gets the comment as a follow-up.
    let (status, comment) = admin
        .post(
            &format!("/tasks/{task}/comments"),
            json!({"comment": "@agent please also fix the footer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{comment}");
    assert_eq!(comment["agentSessionIds"], json!([]));
    assert_eq!(comment["followedUpSessionIds"], json!([session]));
    events.job_finished(&session, "session_event").await;
    let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    let feed: Vec<(String, String)> = card["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["activityType"].as_str().unwrap().to_owned(),
                a["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(feed.len(), 2, "{card}");
    assert_eq!(feed[1].0, "thought");
    assert!(feed[1].1.starts_with("follow-up from @"), "{card}");
    assert!(feed[1].1.ends_with(": @agent please also fix the footer"), "{card}");

    // Per connection, an admin can have mentions open new sessions instead; a type that cannot
    // continue sessions refuses `continue`, and an unknown mode is refused.
    for (mode, expected) in [("sometimes", StatusCode::BAD_REQUEST), ("newSession", StatusCode::OK)] {
        let (status, body) = admin
            .patch(&format!("/bots/{bot}"), json!({"connection": {"followUps": mode}}))
            .await;
        assert_eq!(status, expected, "{body}");
    }
    let (status, body) = admin
        .post(
            "/bots",
            json!({"name": "Wrapper", "handle": "wrapper", "connection": {"type": "self-hosted", "config": {"webhookUrl": "https://wrapper.example/leadtime/webhook"}, "followUps": "continue"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("cannot continue a session"),
        "{body}"
    );
    let (_, comment) = admin
        .post(
            &format!("/tasks/{task}/comments"),
            json!({"comment": "@agent and the header"}),
        )
        .await;
    assert_eq!(comment["followedUpSessionIds"], json!([]));
    let second = comment["agentSessionIds"][0].as_str().unwrap().to_owned();
    assert_ne!(second, session);
    events.job_finished(&second, "start_session").await;

    // Taking the task from the bot cancels its assigned session; the plugin stops its agent.
    let (status, _) = admin
        .patch(&format!("/tasks/{task}"), json!({"assigneeId": null}))
        .await;
    assert_eq!(status, StatusCode::OK);
    events.job_finished(&session, "session_event").await;
    assert_eq!(provider.requests("/v0/agents/agent-1/stop").len(), 1);
    let (_, card) = admin.get(&format!("/agent-sessions/{session}")).await;
    assert_eq!(card["status"], "canceled", "{card}");
    // Back to continuing: a mention reaches the bot's latest session on the task (the second,
    // still running), never the canceled one; once that one ends, a mention opens a new session.
    let (status, _) = admin
        .patch(
            &format!("/bots/{bot}"),
            json!({"connection": {"followUps": "continue"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, comment) = admin
        .post(
            &format!("/tasks/{task}/comments"),
            json!({"comment": "@agent one more thing"}),
        )
        .await;
    assert_eq!(comment["followedUpSessionIds"], json!([second]), "{comment}");
    let bot_api = host.api(created["token"].as_str().unwrap());
    let (status, body) = bot_api
        .patch(&format!("/agent-sessions/{second}/status"), json!({"status": "done"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, comment) = admin
        .post(
            &format!("/tasks/{task}/comments"),
            json!({"comment": "@agent last thing"}),
        )
        .await;
    assert_eq!(comment["followedUpSessionIds"], json!([]), "{comment}");
    assert_eq!(comment["agentSessionIds"].as_array().unwrap().len(), 1, "{comment}");
    assert_eq!(provider.violations(), Vec::<String>::new());
    host.stop().await;
}
