//! The authorization matrix: every operation of the served OpenAPI document, called by every kind
//! of caller — two workspaces; admin, member, bot, the session's own bot, another bot; revoked,
//! expired and wrong-scope tokens; no token. The expected outcome comes from the operation's
//! `x-leadtime-access` policy, so a new route without a policy fails here, and a policy the code
//! does not enforce fails here too. Successful changes must leave exactly one audit record;
//! refused calls none.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use leadtime_host::app::HostEvent;

use crate::utils::{Api, Reply, TestHost};

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", UNIQUE.fetch_add(1, Ordering::Relaxed))
}

/// The callers of the matrix.
struct Callers {
    admin: Api,
    member: Api,
    other_bot: Api,
    read_only: Api,
    without_admin_scope: Api,
    revoked: Api,
    expired: Api,
    anonymous: Api,
    foreign_admin: Api,
}

/// Fresh objects for one operation, so destructive calls never disturb the next.
struct Fixture {
    task_id: String,
    bot_id: String,
    bot: Api,
    session_id: String,
    token_id: String,
    delivery_id: String,
}

async fn mint(admin: &Api, scopes: &[&str], expires_in_days: Option<u32>) -> (String, String) {
    let (status, body) = admin
        .post(
            "/tokens",
            json!({"name": unique("token"), "scopes": scopes, "expiresInDays": expires_in_days}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn callers(host: &TestHost) -> Callers {
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (status, member) = admin
        .post(
            "/people",
            json!({"name": "Max Member", "handle": "max", "role": "member"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{member}");
    let member = host.api(member["token"].as_str().unwrap());
    let other_bot = host.api(
        &admin
            .create_bot("Other", "other", "http://127.0.0.1:9/unused")
            .await
            .token,
    );
    let read_only = host.api(&mint(&admin, &["read"], None).await.1);
    let without_admin_scope = host.api(&mint(&admin, &["read", "write"], None).await.1);
    let (revoked_id, revoked) = mint(&admin, &["read", "write", "admin"], None).await;
    let (status, body) = admin.call(Method::DELETE, &format!("/tokens/{revoked_id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (expired_id, expired) = mint(&admin, &["read", "write", "admin"], Some(1)).await;
    // The API never issues a token that is already expired; age one in the database instead.
    host.execute(&format!(
        "UPDATE api_tokens SET expires_at = 1000 WHERE id = '{expired_id}'"
    ))
    .await
    .unwrap();
    let foreign_admin = host.api(&host.bootstrap("Globex").await.admin_token);
    Callers {
        admin,
        member,
        other_bot,
        read_only,
        without_admin_scope,
        revoked: host.api(&revoked),
        expired: host.api(&expired),
        anonymous: host.anonymous(),
        foreign_admin,
    }
}

/// A task assigned to a fresh bot (so a session exists) and a token. The session's webhook goes to
/// `receiver`; the fixture is ready once its first delivery attempt was recorded.
async fn fixture(host: &TestHost, admin: &Api, receiver: &str) -> Fixture {
    let task_id = admin.create_task(&unique("matrix task ")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bot = admin.create_bot("Fixture", &unique("fixture"), receiver).await;
    let mut events = host.events();
    let (status, body) = admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": bot.id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session_id = body["agentSessionIds"][0].as_str().unwrap().to_owned();
    events
        .wait_for(
            "the fixture's first delivery attempt",
            |e| matches!(e, HostEvent::DeliveryAttempted { session_id: Some(s), .. } if s.as_str() == session_id),
        )
        .await;
    let (_, deliveries) = admin.get(&format!("/agent-sessions/{session_id}/deliveries")).await;
    let delivery_id = deliveries["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let (token_id, _) = mint(admin, &["read"], None).await;
    Fixture {
        task_id,
        bot_id: bot.id,
        bot: host.api(&bot.token),
        session_id,
        token_id,
        delivery_id,
    }
}

/// A bot whose connection type declares the secret `api-key`, set when `with_secret`.
async fn secret_bot(admin: &Api, with_secret: bool) -> String {
    let (status, body) = admin
        .post(
            "/bots",
            json!({"name": "Keyed", "handle": unique("keyed"), "connection": {"type": "hostile", "config": {"behavior": "well-behaved"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["bot"]["id"].as_str().unwrap().to_owned();
    if with_secret {
        let (status, body) = admin
            .call(
                Method::PUT,
                &format!("/bots/{id}/secrets/api-key"),
                Some(&json!({"value": "sk-matrix"})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    id
}

/// A receiver answering `410 Gone`: a delivery to it fails at once and disables its endpoint.
async fn gone_receiver() -> String {
    let app = axum::Router::new().route("/leadtime/webhook", axum::routing::post(|| async { StatusCode::GONE }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/leadtime/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

/// The path with its parameters filled from the fixture.
fn concrete_path(template: &str, f: &Fixture) -> String {
    let id = if template.starts_with("/agent-sessions/") {
        f.session_id.clone()
    } else if template.starts_with("/bots/") {
        f.bot_id.clone()
    } else if template.starts_with("/tokens/") {
        f.token_id.clone()
    } else if template.starts_with("/connection-types/") {
        "self-hosted".to_owned()
    } else if template.starts_with("/deliveries/") {
        f.delivery_id.clone()
    } else {
        String::new()
    };
    template
        .replace("{identifier}", &f.task_id)
        .replace("{id}", &id)
        .replace("{name}", "api-key")
}

/// A valid body for each operation that takes one.
fn sample_body(operation_id: &str) -> Option<Value> {
    Some(match operation_id {
        "createTask" => json!({"title": "matrix"}),
        "updateTask" => json!({"title": "matrix, updated"}),
        "addTaskComment" => json!({"comment": "a comment"}),
        "postAgentSessionActivity" => json!({"activityType": "log", "body": "matrix"}),
        "setAgentSessionStatus" => json!({"status": "running"}),
        "cancelAgentSession" => json!({"reason": "matrix"}),
        "createBot" => {
            json!({"name": "Made", "handle": unique("made"), "connection": {"type": "self-hosted", "config": {"webhookUrl": "http://127.0.0.1:9/x"}}})
        }
        "updateBot" => json!({"name": "Renamed"}),
        "createBotSetupCode" => json!({"expiresInMinutes": 30}),
        "rotateBotWebhookSecret" => json!({"graceSeconds": 60}),
        "setBotSecret" => json!({"value": "sk-matrix"}),
        "updateConnectionType" => json!({"enabled": true}),
        "addPerson" => json!({"name": "Pat", "handle": unique("pat")}),
        "createToken" => json!({"name": "made", "scopes": ["read"]}),
        "redeliverFailedDeliveries" => json!({"since": "2020-01-01T00:00:00Z"}),
        "claimConnectorSetup" => {
            json!({"setupToken": "lt_conn_notarealcode", "gatewayPublicUrl": "http://127.0.0.1:9"})
        }
        _ => return None,
    })
}

struct Case<'a> {
    host: &'a TestHost,
    method: Method,
    path: String,
    body: Option<Value>,
    name: String,
}

impl Case<'_> {
    async fn call(&self, api: &Api) -> Reply {
        api.send(self.method.clone(), &self.path, self.body.as_ref()).await
    }

    /// Calls as `api` and expects `expected`; a refused call must leave no audit record.
    async fn expect(&self, who: &str, api: &Api, expected: StatusCode) {
        let reply = self.call(api).await;
        assert_eq!(reply.status, expected, "{} as {who}: {}", self.name, reply.body);
        assert!(
            reply.body["error"].is_string() && reply.body["message"].is_string(),
            "{} as {who}: JSON error expected",
            self.name
        );
        assert_eq!(
            self.host.audit_records_of(&reply.request_id).await,
            0,
            "{} as {who} was refused but audited",
            self.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_enforces_its_policy() {
    let host = TestHost::start().await;
    let c = callers(&host).await;
    // Connection secrets need a connection type that declares one: the hostile fixture does.
    host.load_hostile_plugin().await;
    c.admin.enable_connection_type("hostile").await;
    let (_, document) = c.anonymous.get("/docs/json").await;
    let gone = gone_receiver().await;

    let mut operations = BTreeMap::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations.insert(
                operation["operationId"].as_str().unwrap().to_owned(),
                (method.to_uppercase(), path.clone(), operation.clone()),
            );
        }
    }
    assert!(
        operations.len() >= 45,
        "only {} operations documented",
        operations.len()
    );

    // Each operation's fixture mints the admin a token; the one before is revoked first, so the
    // admin stays under the 50 working tokens a person may hold however many operations there are.
    let mut previous_token: Option<String> = None;
    for (operation_id, (method, template, operation)) in &operations {
        if let Some(token) = previous_token.take() {
            c.admin.call(Method::DELETE, &format!("/tokens/{token}"), None).await;
        }
        let access = &operation["x-leadtime-access"];
        assert!(
            access.is_object(),
            "{operation_id} has no access policy: add it to api/access.rs"
        );
        let callers = access["callers"].as_str().unwrap();
        let scope = access["scope"].as_str();
        let mutates = access["mutates"].as_bool().unwrap();
        // Listed paths are relative to the public base the test client calls.
        let template = template.as_str();
        assert!(
            !template.starts_with("/api/"),
            "{template} is not relative to /api/public"
        );
        let takes_body = operation.get("requestBody").is_some();

        // Redelivery and endpoint re-enabling need a delivery that failed and an endpoint that is off.
        let needs_failure = matches!(
            operation_id.as_str(),
            "redeliverDelivery" | "redeliverFailedDeliveries" | "enableWebhookEndpoint"
        );
        let mut f = fixture(
            &host,
            &c.admin,
            if needs_failure {
                &gone
            } else {
                "http://127.0.0.1:9/unused"
            },
        )
        .await;
        if template.starts_with("/bots/{id}/secrets") {
            f.bot_id = secret_bot(&c.admin, operation_id == "deleteBotSecret").await;
        }
        previous_token = Some(f.token_id.clone());
        if operation_id == "enableBot" {
            let (status, body) = c.admin.post(&format!("/bots/{}/disable", f.bot_id), json!({})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let body = sample_body(operation_id);
        assert!(
            !takes_body || body.is_some(),
            "{operation_id} takes a body: add a sample to sample_body()"
        );
        let case = Case {
            host: &host,
            method: Method::from_bytes(method.as_bytes()).unwrap(),
            // The live stream of a running session never ends: ask for what there is, then the end.
            path: if operation_id == "streamAgentSession" {
                format!("{}?follow=false", concrete_path(template, &f))
            } else {
                concrete_path(template, &f)
            },
            body,
            name: format!("{method} {template} ({operation_id})"),
        };

        if callers == "public" {
            let reply = case.call(&c.anonymous).await;
            assert!(
                !matches!(reply.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "{}: {}",
                case.name,
                reply.body
            );
            continue;
        }
        case.expect("anonymous", &c.anonymous, StatusCode::UNAUTHORIZED).await;
        case.expect("a revoked token", &c.revoked, StatusCode::UNAUTHORIZED)
            .await;
        case.expect("an expired token", &c.expired, StatusCode::UNAUTHORIZED)
            .await;
        match scope {
            Some("write") => {
                case.expect("a read-only token", &c.read_only, StatusCode::FORBIDDEN)
                    .await
            }
            Some("admin") => {
                case.expect(
                    "an admin without the admin scope",
                    &c.without_admin_scope,
                    StatusCode::FORBIDDEN,
                )
                .await
            }
            _ => {}
        }
        if template.contains("{identifier}")
            || (template.contains("{id}") && !template.starts_with("/connection-types/"))
        {
            case.expect("another workspace's admin", &c.foreign_admin, StatusCode::NOT_FOUND)
                .await;
        }
        match callers {
            "admins" => {
                case.expect("a member", &c.member, StatusCode::FORBIDDEN).await;
                case.expect("a bot", &c.other_bot, StatusCode::FORBIDDEN).await;
            }
            "people" => case.expect("a bot", &c.other_bot, StatusCode::FORBIDDEN).await,
            "session-bot" => {
                case.expect("a person", &c.admin, StatusCode::FORBIDDEN).await;
                case.expect("a member", &c.member, StatusCode::FORBIDDEN).await;
                case.expect("another bot", &c.other_bot, StatusCode::FORBIDDEN).await;
            }
            "anyone" => {
                for (who, api) in [("a member", &c.member), ("a bot", &f.bot)] {
                    let reply = case.call(api).await;
                    assert!(
                        reply.status.is_success(),
                        "{} as {who}: {} {}",
                        case.name,
                        reply.status,
                        reply.body
                    );
                }
            }
            other => panic!("{operation_id}: unknown callers `{other}`"),
        }

        let allowed = if callers == "session-bot" { &f.bot } else { &c.admin };
        let reply = case.call(allowed).await;
        assert!(
            reply.status.is_success(),
            "{} by an allowed caller: {} {}",
            case.name,
            reply.status,
            reply.body
        );
        let audited = host.audit_records_of(&reply.request_id).await;
        assert_eq!(
            audited,
            i64::from(mutates),
            "{} left {audited} audit records",
            case.name
        );
    }

    let verified = leadtime_host::audit::verify(&host.app().db, &host.app().audit_keys, None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        verified.records > 100,
        "the matrix should have left a long chain, got {}",
        verified.records
    );
    host.stop().await;
}
