//! Plugins' outbound HTTP (`wasi:http`) and connection secrets: a plugin reaches only the hosts
//! its manifest lists, never a private address (unless the operator allows it), and uses its
//! connection's secrets only by reference — the value never enters the plugin, the database in
//! plaintext, the API, or the audit trail. Uses the `hostile` fixture against a loopback fake
//! provider that checks every request it gets.

use std::collections::HashMap;
use std::time::Duration;

use leadtime_host::app::HostEvent;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::utils::provider::FakeProvider;
use crate::utils::{Api, TestHost};

const API_KEY: &str = "sk-test-4f9a2c71e0b84d36a5c1";

async fn host_with_hostile(allow_private_targets: bool) -> (TestHost, Api) {
    let host = TestHost::start_with(
        |config| {
            config.outbound.allow_private_targets = allow_private_targets;
            config.plugin_limits.timeout = Duration::from_secs(10);
        },
        None,
    )
    .await;
    host.load_hostile_plugin().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    admin.enable_connection_type("hostile").await;
    (host, admin)
}

async fn bot(admin: &Api, handle: &str, behavior: &str, target: &str) -> String {
    let (status, body) = admin
        .post(
            "/bots",
            json!({"name": handle, "handle": handle, "connection": {"type": "hostile", "config": {"behavior": behavior, "target": target}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["bot"]["id"].as_str().unwrap().to_owned()
}

/// Assigns a fresh task to each bot and waits until every session's start has run; returns the
/// session cards by handle.
async fn run_sessions(host: &TestHost, admin: &Api, bots: &[(&str, String)]) -> HashMap<String, Value> {
    let mut events = host.events();
    let mut sessions = Vec::new();
    for (handle, bot_id) in bots {
        let task = admin.create_task(&format!("task for {handle}")).await;
        let (_, assigned) = admin
            .patch(
                &format!("/tasks/{}", task["id"].as_str().unwrap()),
                json!({"assigneeId": bot_id}),
            )
            .await;
        sessions.push((
            handle.to_string(),
            assigned["agentSessionIds"][0].as_str().unwrap().to_owned(),
        ));
    }
    let mut cards = HashMap::new();
    for (handle, session) in sessions {
        events
            .wait_for(
                &format!("the {handle} session's start"),
                |e| matches!(e, HostEvent::JobFinished { session_id: Some(s), .. } if s.as_str() == session),
            )
            .await;
        cards.insert(handle, admin.get(&format!("/agent-sessions/{session}")).await.1);
    }
    cards
}

fn assert_failed_with(cards: &HashMap<String, Value>, handle: &str, reason: &str) {
    let card = &cards[handle];
    assert_eq!(card["status"], "failed", "{handle}: {card}");
    let message = card["statusMessage"].as_str().unwrap_or_default();
    assert!(message.contains(reason), "{handle}: expected {reason:?} in {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_reach_only_their_hosts_and_use_secrets_without_seeing_them() {
    let (host, admin) = host_with_hostile(true).await;
    let provider = FakeProvider::start(API_KEY).await;
    let target = provider.base.as_str();

    let caller = bot(&admin, "caller", "provider-call", target).await;
    // The secrets API: only declared names, one line of text; values never come back.
    let (status, body) = admin
        .call(
            Method::PUT,
            &format!("/bots/{caller}/secrets/openai-key"),
            Some(&json!({"value": API_KEY})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("declares: `api-key`"),
        "{body}"
    );
    let (status, body) = admin
        .call(
            Method::PUT,
            &format!("/bots/{caller}/secrets/api-key"),
            Some(&json!({"value": "two\nlines"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = admin.get(&format!("/bots/{caller}/secrets")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        host.count("connection_secrets").await,
        0,
        "refused values are not stored"
    );

    let mut with_secret = vec![("caller", caller)];
    for (handle, behavior) in [
        ("unlisted", "unlisted-host"),
        ("exfiltrator", "secret-exfiltration"),
        ("undeclared", "undeclared-secret"),
        ("cleartext", "secret-over-http"),
        ("hoarder", "huge-response"),
        ("flooder", "http-flood"),
        ("bystander", "well-behaved"),
    ] {
        with_secret.push((handle, bot(&admin, handle, behavior, target).await));
    }
    for (_, bot_id) in &with_secret {
        let (status, body) = admin
            .call(
                Method::PUT,
                &format!("/bots/{bot_id}/secrets/api-key"),
                Some(&json!({"value": API_KEY})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let unset = bot(&admin, "unset", "provider-call", target).await;
    let mut bots = with_secret.clone();
    bots.push(("unset", unset));

    let cards = run_sessions(&host, &admin, &bots).await;

    assert_eq!(cards["caller"]["status"], "done", "{}", cards["caller"]);
    assert_eq!(cards["caller"]["result"], r#"provider said 200: {"id":"me"}"#);
    assert_eq!(cards["bystander"]["status"], "done", "{}", cards["bystander"]);
    assert_failed_with(
        &cards,
        "unset",
        "refers to secret `api-key`, which is not set on this connection",
    );
    assert_failed_with(
        &cards,
        "unlisted",
        "GET http://example.org/: host `example.org` is not in the plugin's manifest outbound-hosts",
    );
    assert_failed_with(
        &cards,
        "exfiltrator",
        "host `exfil.example` is not in the plugin's manifest outbound-hosts",
    );
    assert_failed_with(
        &cards,
        "undeclared",
        "refers to secret `someone-elses-key`, which the plugin's manifest does not declare",
    );
    // Private targets are allowed here (the fakes listen on loopback), yet a secret goes over
    // plain http only to this machine.
    assert_failed_with(
        &cards,
        "cleartext",
        "header `authorization` refers to a secret, which is only sent over https",
    );
    assert_failed_with(&cards, "hoarder", "the response body is larger than the 4 MiB limit");
    assert_failed_with(&cards, "flooder", "a plugin call may send at most 32 HTTP requests");

    // The provider saw the key exactly once, from the one plugin that may send it, and nothing
    // that breaks its contract.
    assert_eq!(provider.violations(), Vec::<String>::new());
    assert_eq!(provider.requests("/v1/me").len(), 1);
    assert_eq!(provider.requests("/v1/ping").len(), 32);
    // A reference in a body reaches a listed host as the value (contract 0.1.2), and the echo of
    // the value comes back to the plugin as the reference: the value never enters it.
    let echo = provider.requests("/v1/echo");
    assert_eq!(echo.len(), 1);
    assert_eq!(echo[0].method, Method::POST);
    assert_eq!(echo[0].body, API_KEY.as_bytes());
    let exfiltrator_log = &cards["exfiltrator"]["activities"][0]["body"];
    assert_eq!(exfiltrator_log, "echo got: {{secret:api-key}}");
    for request in provider.all_requests() {
        if request.path != "/v1/me" && request.path != "/v1/echo" {
            for (name, value) in &request.headers {
                assert!(
                    !value.to_str().unwrap_or_default().contains(API_KEY),
                    "{} got the key in {name}",
                    request.path
                );
            }
        }
    }

    // The value is nowhere to be read: not in API reads, the audit trail, session cards, or any
    // database column.
    let caller_id = &with_secret[0].1;
    let (_, listed) = admin.get(&format!("/bots/{caller_id}/secrets")).await;
    assert_eq!(listed["secrets"][0]["name"], "api-key");
    assert_eq!(listed["secrets"][0]["set"], true);
    let (_, bot_view) = admin.get(&format!("/bots/{caller_id}")).await;
    let (_, audit) = admin.get("/audit?action=bot.secret.set").await;
    assert_eq!(audit["records"].as_array().unwrap().len(), with_secret.len(), "{audit}");
    // Audit details are kept as the JSON text that was hashed into the chain.
    let details: Value = serde_json::from_str(audit["records"][0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["name"], "api-key", "{details}");
    for read in [&listed, &bot_view, &audit, &json!(cards)] {
        assert!(!read.to_string().contains(API_KEY), "the key leaked into {read}");
    }
    host.assert_absent_from_database(&[API_KEY.to_owned()]).await;

    // Removing the secret cuts the plugin off; removing it twice is a 404.
    let (status, _) = admin
        .call(Method::DELETE, &format!("/bots/{caller_id}/secrets/api-key"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = admin
        .call(Method::DELETE, &format!("/bots/{caller_id}/secrets/api-key"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let again = run_sessions(&host, &admin, &[("caller", caller_id.clone())]).await;
    assert_failed_with(&again, "caller", "which is not set on this connection");
    assert_eq!(provider.requests("/v1/me").len(), 1);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_host_names_do_not_open_the_private_network() {
    // The operator setting is off, as in production.
    let (host, admin) = host_with_hostile(false).await;
    // Something really listens on loopback, so a refusal is the guard's doing, not a closed port.
    let provider = FakeProvider::start(API_KEY).await;
    let bots = [
        (
            "loopback",
            bot(&admin, "loopback", "loopback-via-allowed-name", &provider.base).await,
        ),
        (
            "metadata",
            bot(&admin, "metadata", "metadata-via-allowed-name", &provider.base).await,
        ),
        (
            "bystander",
            bot(&admin, "bystander", "well-behaved", &provider.base).await,
        ),
        (
            "cleartext",
            bot(
                &admin,
                "cleartext",
                "provider-call",
                &provider.base.replace("127.0.0.1", "localhost"),
            )
            .await,
        ),
    ];
    let (status, _) = admin
        .call(
            Method::PUT,
            &format!("/bots/{}/secrets/api-key", bots[3].1),
            Some(&json!({"value": API_KEY})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cards = run_sessions(&host, &admin, &bots).await;
    assert_failed_with(&cards, "loopback", "refused to connect to localhost: it resolves to");
    assert_failed_with(&cards, "loopback", "(loopback address)");
    assert_failed_with(
        &cards,
        "metadata",
        "refused to connect to 169.254.169.254 (link-local / cloud metadata address)",
    );
    assert_eq!(cards["bystander"]["status"], "done", "{}", cards["bystander"]);
    // A secret is never sent in cleartext, even to a listed host.
    assert_failed_with(
        &cards,
        "cleartext",
        "header `authorization` refers to a secret, which is only sent over https",
    );
    assert!(provider.all_requests().is_empty(), "nothing reached loopback");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_narrows_the_hosts_a_plugin_may_call() {
    let (host, admin) = host_with_hostile(true).await;
    let provider = FakeProvider::start(API_KEY).await;
    let caller = bot(&admin, "caller", "provider-call", &provider.base).await;
    let (status, _) = admin
        .call(
            Method::PUT,
            &format!("/bots/{caller}/secrets/api-key"),
            Some(&json!({"value": API_KEY})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Only hosts the manifest lists can be allowed, written as hosts.
    let (status, body) = admin
        .patch("/connection-types/hostile", json!({"outboundHosts": ["example.org"]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("its manifest lists: 127.0.0.1, localhost, 169.254.169.254"),
        "{body}"
    );
    let (status, body) = admin
        .patch(
            "/connection-types/hostile",
            json!({"outboundHosts": ["https://localhost/"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = admin.patch("/connection-types/hostile", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = admin
        .patch("/connection-types/hostile", json!({"outboundHosts": ["localhost"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], true, "narrowing keeps the type enabled");
    assert_eq!(body["allowedOutboundHosts"], json!(["localhost"]));
    let cards = run_sessions(&host, &admin, &[("caller", caller.clone())]).await;
    assert_failed_with(
        &cards,
        "caller",
        "host `127.0.0.1` is not among the hosts this workspace lets connection type `hostile` call (localhost)",
    );
    assert!(provider.all_requests().is_empty());

    let (status, body) = admin
        .patch("/connection-types/hostile", json!({"outboundHosts": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["allowedOutboundHosts"], Value::Null);
    let cards = run_sessions(&host, &admin, &[("caller", caller)]).await;
    assert_eq!(cards["caller"]["status"], "done", "{}", cards["caller"]);
    let (_, audit) = admin.get("/audit?action=connection_type.outbound_hosts").await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 2, "{audit}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validating_a_saved_connection_checks_it_with_the_provider() {
    let (host, admin) = host_with_hostile(true).await;
    let provider = FakeProvider::start(API_KEY).await;
    // Saving a config checks its shape only: the plugin's live check is denied and skipped.
    let caller = bot(&admin, "caller", "provider-call", &provider.base).await;
    assert!(provider.all_requests().is_empty());
    let validate_path = format!("/bots/{caller}/validate-connection");
    let validate = || admin.post(&validate_path, json!({}));

    // No key yet: the host says why the check could not run.
    let (status, result) = validate().await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["ok"], false, "{result}");
    let message = result["fieldErrors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("refers to secret `api-key`, which is not set on this connection"),
        "{result}"
    );
    assert!(provider.all_requests().is_empty());

    // A key the provider refuses is named as the field at fault.
    let secret_path = format!("/bots/{caller}/secrets/api-key");
    let (wrong, right) = (json!({"value": "sk-not-the-key-0000"}), json!({ "value": API_KEY }));
    let set = |value| admin.call(Method::PUT, &secret_path, Some(value));
    assert_eq!(set(&wrong).await.0, StatusCode::NO_CONTENT);
    let (_, result) = validate().await;
    assert_eq!(
        result["fieldErrors"],
        json!([{"field": "api-key", "message": "the provider refused this key; paste a valid one"}]),
        "{result}"
    );
    // The right key passes; the provider saw each key only in the header it was meant for.
    assert_eq!(set(&right).await.0, StatusCode::NO_CONTENT);
    let (_, result) = validate().await;
    assert_eq!(result, json!({"ok": true, "fieldErrors": []}));
    let seen: Vec<String> = provider
        .requests("/v1/me")
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ["Bearer sk-not-the-key-0000", &format!("Bearer {API_KEY}")]);
    assert!(!result.to_string().contains(API_KEY));
    host.stop().await;
}
