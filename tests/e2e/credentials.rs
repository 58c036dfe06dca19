//! Tokens, setup codes, webhook secret rotation and rate limits.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use leadtime_host::delivery::signing;
use leadtime_host::domain::time::{Clock, ManualClock, SystemClock};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use crate::utils::wrapper::FakeWrapper;
use crate::utils::{Bot, EVENT_TIMEOUT, TestHost};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_minted_revoked_rotated_and_never_escalated() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let bot = admin.create_bot("Claw", "claw", "http://127.0.0.1:9/x").await;

    // A read-only token for oneself, expiring in 30 days; shown once, listed without the secret.
    let (status, minted) = admin
        .post(
            "/tokens",
            json!({"name": "dashboards", "scopes": ["read"], "expiresInDays": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let secret = minted["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("lt_pat_") && secret.len() == 45);
    assert_eq!(minted["scopes"], json!(["read"]));
    assert!(minted["expiresAt"].is_string());
    let reader = host.api(&secret);
    let (status, _) = reader.get("/tasks/statuses").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = reader.post("/tasks", json!({"title": "nope"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, listed) = admin.get("/tokens").await;
    let entry = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == minted["id"])
        .unwrap()
        .clone();
    assert!(entry.get("secret").is_none());
    assert!(entry["lastUsedAt"].is_string(), "use is recorded: {entry}");
    assert_eq!(entry["lastUsedIp"], "127.0.0.1");

    // No escalation: a read-only token cannot mint a write token; bots cannot mint at all.
    let (status, body) = reader
        .post("/tokens", json!({"name": "more", "scopes": ["read", "write"]}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = host
        .api(&bot.token)
        .post("/tokens", json!({"name": "x", "scopes": ["read"]}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = admin
        .post(
            "/tokens",
            json!({"name": "bot admin", "scopes": ["admin"], "userId": bot.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "bot tokens never get admin: {body}");
    let (status, body) = admin.post("/tokens", json!({"name": "x", "scopes": ["root"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = admin
        .post("/tokens", json!({"name": "x", "scopes": ["read"], "expiresInDays": 0}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Admins mint bot tokens.
    let (status, for_bot) = admin
        .post(
            "/tokens",
            json!({"name": "second bot token", "scopes": ["read", "write"], "userId": bot.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{for_bot}");
    assert_eq!(for_bot["userId"], bot.id.as_str());

    // Rotation: the old token stops, the new one works with the same scopes.
    let (status, rotated) = admin
        .post(&format!("/tokens/{}/rotate", minted["id"].as_str().unwrap()), json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_eq!(rotated["scopes"], json!(["read"]));
    assert_eq!(rotated["name"], "dashboards");
    let (status, _) = reader.get("/tasks/statuses").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let renewed = host.api(rotated["secret"].as_str().unwrap());
    let (status, _) = renewed.get("/tasks/statuses").await;
    assert_eq!(status, StatusCode::OK);
    // Revocation takes effect at once; revoking twice says so.
    let (status, revoked) = admin
        .call(
            Method::DELETE,
            &format!("/tokens/{}", rotated["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revokedAt"].is_string());
    let (status, _) = renewed.get("/tasks/statuses").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("/tokens/{}", rotated["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Every token and setup code ever shown is absent from every column of every table.
    let (_, code) = admin.post(&format!("/bots/{}/setup-codes", bot.id), json!({})).await;
    let shown = [
        secret,
        rotated["secret"].as_str().unwrap().to_owned(),
        for_bot["secret"].as_str().unwrap().to_owned(),
        bot.token.clone(),
        bot.webhook_secret.clone(),
        code["setupToken"].as_str().unwrap().to_owned(),
    ];
    host.assert_absent_from_database(&shown).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapper_claims_a_setup_code_once() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let bot = admin.create_bot("Claw", "claw", "http://127.0.0.1:9/not-yet").await;
    let (status, code) = admin
        .post(
            &format!("/bots/{}/setup-codes", bot.id),
            json!({"expiresInMinutes": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{code}");
    let setup_token = code["setupToken"].as_str().unwrap().to_owned();
    assert!(setup_token.starts_with("lt_conn_"));

    let mut wrapper = FakeWrapper::start(&host.base_url).await;
    let gateway = wrapper.webhook_url.trim_end_matches("/leadtime/webhook").to_owned();
    let claim = json!({"setupToken": setup_token, "gatewayPublicUrl": gateway, "agentId": "openclaw-main", "runtimeVersion": "1.4.2"});
    let anonymous = host.anonymous();
    let (status, claimed) = anonymous.post("/agent-connectors/setup/claim", claim.clone()).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(claimed["botUserId"], bot.id.as_str());
    assert_eq!(claimed["botName"], "Claw");
    assert_eq!(claimed["agentId"], "openclaw-main");
    assert_eq!(claimed["mode"], "basic");
    assert_eq!(claimed["guidance"]["instructions"], "Keep answers short.");
    assert_eq!(claimed["webhookPath"], "/leadtime/webhook");
    assert_eq!(claimed["exposeRawApiCredentialToAgent"], false);
    let (_, stored) = admin.get(&format!("/bots/{}", bot.id)).await;
    assert_eq!(
        stored["connection"]["config"]["webhookUrl"],
        format!("{gateway}/leadtime/webhook")
    );

    // The claimed credentials are the ones that work: deliveries are signed with the new secret.
    let claimed_bot = Bot {
        id: bot.id.clone(),
        handle: bot.handle.clone(),
        token: claimed["botPat"].as_str().unwrap().to_owned(),
        webhook_secret: claimed["webhookSecret"].as_str().unwrap().to_owned(),
    };
    assert_ne!(claimed_bot.webhook_secret, bot.webhook_secret);
    wrapper.configure(&claimed_bot);
    let task = admin.create_task("After setup").await;
    admin
        .patch(
            &format!("/tasks/{}", task["id"].as_str().unwrap()),
            json!({"assigneeId": bot.id}),
        )
        .await;
    let (_, _, _) = wrapper.next_run().await;
    let received = wrapper.received();
    assert_eq!(
        received[0].headers["leadtime-signature"]
            .to_str()
            .unwrap()
            .matches("v1=")
            .count(),
        1,
        "the old secret retired at claim"
    );

    // A second claim is refused with a message.
    let (status, body) = anonymous.post("/agent-connectors/setup/claim", claim).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("already used"));
    let (status, body) = anonymous
        .post(
            "/agent-connectors/setup/claim",
            json!({"setupToken": "lt_conn_forged", "gatewayPublicUrl": gateway}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].is_string());
    // A well-formed code that was never issued is not found.
    let never_issued = leadtime_host::domain::tokens::generate_with_prefix("lt_conn_");
    let (status, body) = anonymous
        .post(
            "/agent-connectors/setup/claim",
            json!({"setupToken": never_issued, "gatewayPublicUrl": gateway}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["message"].is_string());
    host.stop().await;
}

/// The claim answers with the mode and the credential exposure the admin chose for the bot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_returns_the_settings_an_admin_chose() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (status, created) = admin
        .post(
            "/bots",
            json!({"name": "Full", "handle": "full", "connection": {"type": "self-hosted", "config": {
                "webhookUrl": "https://agent.example.com/leadtime/webhook", "mode": "full",
                "guidance": "Use the whole API.", "exposeRawApiCredentialToAgent": true}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let bot_id = created["bot"]["id"].as_str().unwrap().to_owned();
    let claim = |config_note: &'static str| {
        let admin = admin.clone();
        let anonymous = host.anonymous();
        let bot_id = bot_id.clone();
        async move {
            let (_, code) = admin
                .post(&format!("/bots/{bot_id}/setup-codes"), json!({"expiresInMinutes": 5}))
                .await;
            let (status, claimed) = anonymous
                .post(
                    "/agent-connectors/setup/claim",
                    json!({"setupToken": code["setupToken"], "gatewayPublicUrl": "https://agent.example.com",
                           "agentId": config_note, "runtimeVersion": "hermes-leadtime-plugin@0.1.0"}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{claimed}");
            claimed
        }
    };
    let claimed = claim("exposed").await;
    assert_eq!(claimed["mode"], "full");
    assert_eq!(claimed["guidance"]["instructions"], "Use the whole API.");
    assert_eq!(claimed["exposeRawApiCredentialToAgent"], true);

    // Off again: the next claim says so. A value that is not a boolean is refused, naming the field.
    let (status, body) = admin
        .patch(
            &format!("/bots/{bot_id}"),
            json!({"connection": {"config": {"webhookUrl": "https://agent.example.com/leadtime/webhook", "mode": "full"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claim("default").await["exposeRawApiCredentialToAgent"], false);
    let (status, body) = admin
        .patch(
            &format!("/bots/{bot_id}"),
            json!({"connection": {"config": {"webhookUrl": "https://agent.example.com/leadtime/webhook",
                                             "exposeRawApiCredentialToAgent": "yes"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("exposeRawApiCredentialToAgent"), "{body}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_setup_code_is_refused() {
    let clock = ManualClock::new(SystemClock.now());
    let host = TestHost::start_with(|_| {}, Some(Arc::new(clock.clone()))).await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let bot = admin.create_bot("Claw", "claw", "http://127.0.0.1:9/x").await;
    let (_, code) = admin
        .post(&format!("/bots/{}/setup-codes", bot.id), json!({"expiresInMinutes": 1}))
        .await;
    clock.advance(61_000);
    let (status, body) = host
        .anonymous()
        .post(
            "/agent-connectors/setup/claim",
            json!({"setupToken": code["setupToken"], "gatewayPublicUrl": "https://agent.example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(body["message"].as_str().unwrap().contains("expired"));
    let (status, _) = admin
        .post(&format!("/bots/{}/setup-codes", bot.id), json!({"expiresInMinutes": 0}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    host.stop().await;
}

/// A receiver that records every delivery and answers 200.
async fn recording_receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = Arc::new(Mutex::new(tx));
    let app = axum::Router::new().route(
        "/leadtime/webhook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.lock().unwrap().send((headers, body));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/leadtime/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, rx)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `secret` verifies the Leadtime header when the receiver checks every `v1=` entry.
fn leadtime_any_v1(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let timestamp = header(headers, "leadtime-webhook-timestamp").unwrap();
    let expected = signing::leadtime_v1(secret, timestamp, body);
    header(headers, "leadtime-signature")
        .unwrap()
        .split(',')
        .any(|part| part == format!("v1={expected}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secrets_sign_side_by_side_until_the_old_one_retires() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (url, mut deliveries) = recording_receiver().await;
    let bot = admin.create_bot("Claw", "claw", &url).await;
    let old = bot.webhook_secret.clone();

    let (status, rotated) = admin
        .post(
            &format!("/bots/{}/webhook-secret/rotate", bot.id),
            json!({"graceSeconds": 3600}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["webhookSecret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    let task = admin.create_task("During the grace period").await;
    admin
        .patch(
            &format!("/tasks/{}", task["id"].as_str().unwrap()),
            json!({"assigneeId": bot.id}),
        )
        .await;
    let (headers, body) = tokio::time::timeout(EVENT_TIMEOUT, deliveries.recv())
        .await
        .expect("a delivery")
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let signature = header(&headers, "leadtime-signature").unwrap();
    assert_eq!(signature.matches("v1=").count(), 2, "{signature}");
    assert_eq!(header(&headers, "webhook-signature").unwrap().split(' ').count(), 2);
    // A receiver that knows only the new secret: the first v1= is the newest (connectors check only it).
    signing::verify_leadtime(
        &new,
        header(&headers, "leadtime-webhook-timestamp"),
        Some(signature),
        &body,
        now,
    )
    .unwrap();
    signing::verify_standard(
        &new,
        header(&headers, "webhook-id"),
        header(&headers, "webhook-timestamp"),
        header(&headers, "webhook-signature"),
        &body,
        now,
    )
    .unwrap();
    // A receiver that knows only the old secret still verifies both schemes (any entry).
    assert!(leadtime_any_v1(&old, &headers, &body));
    signing::verify_standard(
        &old,
        header(&headers, "webhook-id"),
        header(&headers, "webhook-timestamp"),
        header(&headers, "webhook-signature"),
        &body,
        now,
    )
    .unwrap();

    // With no grace, the previous secrets retire at once.
    let (_, rotated_again) = admin
        .post(
            &format!("/bots/{}/webhook-secret/rotate", bot.id),
            json!({"graceSeconds": 0}),
        )
        .await;
    let newest = rotated_again["webhookSecret"].as_str().unwrap().to_owned();
    let task = admin.create_task("After the grace period").await;
    admin
        .patch(
            &format!("/tasks/{}", task["id"].as_str().unwrap()),
            json!({"assigneeId": bot.id}),
        )
        .await;
    let (headers, body) = tokio::time::timeout(EVENT_TIMEOUT, deliveries.recv())
        .await
        .expect("a delivery")
        .unwrap();
    assert_eq!(
        header(&headers, "leadtime-signature").unwrap().matches("v1=").count(),
        1
    );
    assert!(leadtime_any_v1(&newest, &headers, &body));
    assert!(!leadtime_any_v1(&new, &headers, &body) && !leadtime_any_v1(&old, &headers, &body));
    let standard = header(&headers, "webhook-signature");
    assert!(
        signing::verify_standard(
            &old,
            header(&headers, "webhook-id"),
            header(&headers, "webhook-timestamp"),
            standard,
            &body,
            now
        )
        .is_err()
    );
    let (status, _) = admin
        .post(
            &format!("/bots/{}/webhook-secret/rotate", bot.id),
            json!({"graceSeconds": 999999999}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_has_a_request_budget() {
    let host = TestHost::start_with(
        |config| {
            config.rate_limit_per_minute = 60;
            config.rate_limit_burst = 3;
        },
        None,
    )
    .await;
    let workspace = host.bootstrap("Acme").await;
    let admin = host.api(&workspace.admin_token);
    let (_, other) = admin.post("/people", json!({"name": "Max", "handle": "max"})).await;
    // The admin's burst of 3: the POST above and two reads.
    for _ in 0..2 {
        assert_eq!(
            admin.send(Method::GET, "/tasks/statuses", None).await.status,
            StatusCode::OK
        );
    }
    let limited = admin.send(Method::GET, "/tasks/statuses", None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.body["error"], "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Another token is unaffected.
    let (status, _) = host.api(other["token"].as_str().unwrap()).get("/tasks/statuses").await;
    assert_eq!(status, StatusCode::OK);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_secrets_stored_in_plaintext_are_sealed_at_start_and_still_sign() {
    let mut host = TestHost::start().await;
    let admin_token = host.bootstrap("Acme").await.admin_token;
    let admin = host.api(&admin_token);
    let mut wrapper = FakeWrapper::start(&host.base_url).await;
    let bot = admin.create_bot("Claw", "claw", &wrapper.webhook_url).await;
    wrapper.configure(&bot);
    host.assert_absent_from_database(std::slice::from_ref(&bot.webhook_secret))
        .await;
    // What a host from before sealing left behind: the secret in plaintext.
    host.execute(&format!(
        "UPDATE webhook_secrets SET secret = '{}', nonce = NULL, ciphertext = NULL",
        bot.webhook_secret
    ))
    .await
    .unwrap();

    host.restart().await;
    host.assert_absent_from_database(std::slice::from_ref(&bot.webhook_secret))
        .await;
    let admin = host.api(&admin_token);
    let task = admin.create_task("signed after sealing").await;
    let (status, _) = admin
        .patch(
            &format!("/tasks/{}", task["id"].as_str().unwrap()),
            json!({"assigneeId": bot.id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The wrapper checks both signatures against the secret it was given at creation.
    wrapper.next_run().await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_refuses_to_start_with_another_secrets_key_than_its_secrets_were_sealed_with() {
    let mut host = TestHost::start().await;
    let admin_token = host.bootstrap("Acme").await.admin_token;
    let admin = host.api(&admin_token);
    admin.create_bot("Claw", "claw", "http://127.0.0.1:9/x").await;
    let key_file = host.config().secrets_key_file.clone();
    let key = std::fs::read_to_string(&key_file).unwrap();

    // Another key: refused, naming both fingerprints' prefixes.
    let other = leadtime_host::secrets::SecretValue::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into());
    let error = host
        .try_restart(|config| config.secrets_key = Some(other))
        .await
        .expect_err("a wrong key is refused");
    assert!(
        format!("{error:#}").contains("is not the one this database's secrets were sealed with"),
        "{error:#}"
    );

    // The key file lost: refused rather than replaced by a new key.
    std::fs::remove_file(&key_file).unwrap();
    let error = host
        .try_restart(|config| config.secrets_key = None)
        .await
        .expect_err("a lost key file is not replaced");
    assert!(format!("{error:#}").contains("is missing"), "{error:#}");
    assert!(!key_file.exists(), "no new key was written");

    // The right key, given in the environment's place, works.
    let right = leadtime_host::secrets::SecretValue::new(key.trim().to_owned());
    host.try_restart(|config| config.secrets_key = Some(right))
        .await
        .expect("the right key starts the host");
    let (status, _) = host.api(&admin_token).get("/bots").await;
    assert_eq!(status, StatusCode::OK);
    host.stop().await;
}

/// A client address that keeps failing to authenticate is locked out (429 with Retry-After, even
/// for a good token), without touching other addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_lock_out_their_address() {
    let host = TestHost::start_with(|config| config.auth_failures_per_minute = 5, None).await;
    let admin_token = host.bootstrap("Acme").await.admin_token;
    let forged = host.api("lt_pat_0000000000000000000000000000000000000000");
    for _ in 0..5 {
        let (status, body) = forged.get("/account/info").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let reply = forged.send(reqwest::Method::GET, "/account/info", None).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.body);
    assert_eq!(reply.body["error"], "rate_limited");
    let retry: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let (status, _) = host.api(&admin_token).get("/account/info").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the address is locked out, whatever token it sends"
    );
    // Another loopback address is another client.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let answer = other
        .get(format!("{}/api/public/account/info", host.base_url))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    host.stop().await;
}

/// Nobody may hold more than 50 working tokens; revoking one makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tokens_per_person_are_capped() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let mut last = String::new();
    // Bootstrap minted the first.
    for n in 1..50 {
        let (status, body) = admin
            .post("/tokens", json!({"name": format!("t{n}"), "scopes": ["read"]}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{n}: {body}");
        last = body["id"].as_str().unwrap().to_owned();
    }
    let tokens_before = host.count("api_tokens").await;
    let (status, body) = admin
        .post("/tokens", json!({"name": "one too many", "scopes": ["read"]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("revoke"), "{body}");
    assert_eq!(host.count("api_tokens").await, tokens_before, "nothing was minted");
    let (status, _) = admin
        .call(reqwest::Method::DELETE, &format!("/tokens/{last}"), None)
        .await;
    assert!(status.is_success());
    let (status, body) = admin
        .post("/tokens", json!({"name": "room again", "scopes": ["read"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    host.stop().await;
}

/// Setup codes are for connection types whose config schema names a webhook URL (the host knows
/// that from the schema's `x-leadtime-role`, not from any plugin's keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_connections_that_deliver_to_a_wrapper_take_setup_codes() {
    let host = TestHost::start().await;
    host.load_hostile_plugin().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    admin.enable_connection_type("hostile").await;
    let (status, created) = admin
        .post(
            "/bots",
            json!({"name": "H", "handle": "hostile-bot", "connection": {"type": "hostile", "config": {"behavior": "well-behaved"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, body) = admin
        .post(
            &format!("/bots/{}/setup-codes", created["bot"]["id"].as_str().unwrap()),
            json!({"expiresInMinutes": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("names no webhook URL"),
        "{body}"
    );
    host.stop().await;
}

/// Authentication remembers a token it read for a second (`use_cases::token_memo`): every change
/// this host makes to a token or a user forgets it at once; a change made past the host (another
/// host, SQL by hand) is seen within that second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_token_follows_every_change_to_it_or_its_user() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let bot = admin.create_bot("Claw", "claw", "http://127.0.0.1:9/x").await;
    let as_bot = host.api(&bot.token);
    let me = || as_bot.get("/account/info");
    let (status, info) = me().await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["user"]["name"], "Claw");

    // Renamed: the next call sees the new name.
    let (status, body) = admin
        .patch(&format!("/bots/{}", bot.id), json!({"name": "Claw Two"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, info) = me().await;
    assert_eq!(info["user"]["name"], "Claw Two");
    // Disabled: refused at once; enabled again: accepted at once.
    let (status, body) = admin.post(&format!("/bots/{}/disable", bot.id), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(me().await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = admin.post(&format!("/bots/{}/enable", bot.id), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(me().await.0, StatusCode::OK);

    // Revoked past the host: refused within the memo's second.
    host.execute(&format!(
        "UPDATE api_tokens SET revoked_at = 1 WHERE user_id = '{}'",
        bot.id
    ))
    .await
    .unwrap();
    let revoked_at = std::time::Instant::now();
    while me().await.0 == StatusCode::OK {
        assert!(
            revoked_at.elapsed() < 2 * leadtime_host::use_cases::token_memo::TTL,
            "a token revoked in the database still worked after twice the memo's lifetime"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(me().await.0, StatusCode::UNAUTHORIZED);

    // Deleted: its other token is refused at once.
    let (status, minted) = admin
        .post(
            "/tokens",
            json!({"name": "second", "scopes": ["read"], "userId": bot.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let second = host.api(minted["secret"].as_str().unwrap());
    assert_eq!(second.get("/account/info").await.0, StatusCode::OK);
    let (status, body) = admin.call(Method::DELETE, &format!("/bots/{}", bot.id), None).await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(second.get("/account/info").await.0, StatusCode::UNAUTHORIZED);
    host.stop().await;
}
