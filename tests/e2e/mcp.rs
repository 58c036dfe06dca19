//! The MCP endpoint `/api/mcp` driven by a real MCP client (the official Rust SDK, `rmcp`, over
//! streamable HTTP): it lists and calls the task tools as a bot, each checked like the same REST
//! call and audited with the bound session; another workspace's task and another bot's session
//! are refused.

use reqwest::StatusCode;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::utils::{Api, TestHost};

/// A self-hosted bot (its webhooks go nowhere; these tests only use its token); `(id, token)`.
async fn bot(admin: &Api, handle: &str) -> (String, String) {
    let (status, created) = admin
        .post(
            "/bots",
            json!({"name": handle, "handle": handle, "connection": {"type": "self-hosted", "config": {"webhookUrl": "https://wrapper.invalid/leadtime/webhook"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["bot"]["id"].as_str().unwrap().to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    )
}

/// Creates a task assigned to `bot`; `(task id, session id)`.
async fn assigned_task(admin: &Api, bot: &str, title: &str) -> (String, String) {
    let task = admin.create_task(title).await;
    let task = task["id"].as_str().unwrap().to_owned();
    let (_, assigned) = admin.patch(&format!("/tasks/{task}"), json!({"assigneeId": bot})).await;
    (task, assigned["agentSessionIds"][0].as_str().unwrap().to_owned())
}

pub(crate) fn args(value: Value) -> Option<serde_json::Map<String, Value>> {
    value.as_object().cloned()
}

/// Calls tool `name` with `arguments`: whether it was a tool error, its structured content, and
/// its text.
pub(crate) async fn call_tool(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    name: &'static str,
    arguments: Value,
) -> (bool, Value, String) {
    let mut params = CallToolRequestParams::new(name);
    params.arguments = args(arguments);
    let result = client.call_tool(params).await.expect("a tool answer");
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default();
    (
        result.is_error.unwrap_or(false),
        result.structured_content.unwrap_or(Value::Null),
        text,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_mcp_client_uses_the_task_tools_as_its_bot() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (alpha, alpha_token) = bot(&admin, "alpha").await;
    let (beta, _) = bot(&admin, "beta").await;
    let (task, session) = assigned_task(&admin, &alpha, "Write the release notes").await;
    let (_, beta_session) = assigned_task(&admin, &beta, "Someone else's work").await;
    let other = host.api(&host.bootstrap("Other").await.admin_token);
    let foreign = other.create_task("Not yours").await;
    let foreign = foreign["id"].as_str().unwrap().to_owned();

    let url = format!("{}/api/mcp?agentRunId={session}", host.base_url);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(alpha_token.clone()),
    );
    let client = ().serve(transport).await.expect("the MCP handshake");
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("leadtime-agent-host")
    );

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "add_comment",
            "get_session_context",
            "get_task",
            "list_statuses",
            "update_task_status"
        ]
    );

    let call = |name: &'static str, arguments: Value| call_tool(&client, name, arguments);

    // The bound session's context, without naming it.
    let (failed, context, _) = call("get_session_context", json!({})).await;
    assert!(!failed);
    assert_eq!(context["session"]["id"], session);
    assert_eq!(context["task"]["title"], "Write the release notes");

    // Read, comment, change status: as the bot, audited with the session.
    let (failed, read, _) = call("get_task", json!({"task": task})).await;
    assert!(!failed);
    assert_eq!(read["task"]["id"], task);
    let (failed, added, text) = call("add_comment", json!({"task": task, "comment": "Draft is in the doc."})).await;
    assert!(!failed, "{text}");
    assert_eq!(added["comment"]["author"]["id"], alpha);
    let (_, statuses, _) = call("list_statuses", json!({})).await;
    let last = statuses["statuses"].as_array().unwrap().last().unwrap().clone();
    let (failed, moved, text) = call("update_task_status", json!({"task": task, "status": last["name"]})).await;
    assert!(!failed, "{text}");
    assert_eq!(moved["task"]["statusId"], last["id"]);
    let (_, comments) = admin.get(&format!("/tasks/{task}/comments")).await;
    assert_eq!(comments["comments"][0]["body"], "Draft is in the doc.");
    let (_, audit) = admin.get(&format!("/audit?sessionId={session}")).await;
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"task.comment.create") && actions.contains(&"task.update"),
        "{audit}"
    );

    // What the bot's token could not do through REST, it cannot do here either.
    let (failed, _, text) = call("get_task", json!({"task": foreign})).await;
    assert!(
        failed && text.contains(&format!("no task `{foreign}` in this workspace")),
        "{text}"
    );
    let (failed, _, text) = call("get_session_context", json!({"agentRunId": beta_session})).await;
    assert!(failed && text.contains("belongs to another bot"), "{text}");
    let (failed, _, text) = call("add_comment", json!({"task": task})).await;
    assert!(failed && text.contains("`comment` is required"), "{text}");
    let unknown = client.call_tool(CallToolRequestParams::new("drop_database")).await;
    assert!(unknown.is_err(), "an unknown tool is a protocol error");
    client.cancel().await.ok();

    // Binding to another bot's session, a person's token, no token: refused before any tool.
    let http = reqwest::Client::new();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    for (query, token, expected) in [
        (
            format!("?agentRunId={beta_session}"),
            Some(alpha_token.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (String::new(), Some(admin.token().unwrap()), StatusCode::FORBIDDEN),
        (String::new(), None, StatusCode::UNAUTHORIZED),
    ] {
        let mut request = http.post(format!("{}/api/mcp{query}", host.base_url)).json(&initialize);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected);
        let body: Value = response.json().await.unwrap();
        assert!(body["message"].is_string(), "{body}");
    }
    let stream = http
        .get(format!("{}/api/mcp", host.base_url))
        .bearer_auth(&alpha_token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::METHOD_NOT_ALLOWED);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mode_opens_the_public_api_with_the_bots_own_rights() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (alpha, token) = bot(&admin, "alpha").await;
    let (task, session) = assigned_task(&admin, &alpha, "Write the release notes").await;
    let connect = |query: String| {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("{}/api/mcp{query}", host.base_url))
                .auth_header(token.clone()),
        );
        ().serve(transport)
    };

    // Without `tools=full` the API tools are not there.
    let basic = connect(String::new()).await.unwrap();
    assert_eq!(basic.list_all_tools().await.unwrap().len(), 5);
    assert!(
        basic
            .call_tool(CallToolRequestParams::new("list_operations"))
            .await
            .is_err()
    );
    basic.cancel().await.ok();

    let client = connect(format!("?agentRunId={session}&tools=full")).await.unwrap();
    assert_eq!(client.list_all_tools().await.unwrap().len(), 8);
    let connected = &client;
    let call = |name: &'static str, arguments: Value| async move {
        let (failed, structured, text) = call_tool(connected, name, arguments).await;
        assert!(!failed, "{name}: {text}");
        structured
    };
    let listed = call("list_operations", json!({"tag": "tasks"})).await;
    let ids: Vec<&str> = listed["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operationId"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"getTask") && ids.contains(&"addTaskComment"), "{ids:?}");
    assert!(!ids.contains(&"createBot"), "only the tag asked for");
    let described = call("describe_operation", json!({"operationId": "addTaskComment"})).await;
    assert_eq!(
        (described["method"].as_str(), described["path"].as_str()),
        (Some("POST"), Some("/tasks/{identifier}/comments"))
    );
    assert!(described["schemas"]["AddComment"].is_object(), "{described}");

    // An operation runs as the bot's own REST call: allowed, refused, audited with the session.
    let read = call(
        "call_operation",
        json!({"operationId": "getTask", "pathParams": {"identifier": task}}),
    )
    .await;
    assert_eq!(read["status"], 200);
    assert_eq!(read["body"]["id"], task);
    let commented = call(
        "call_operation",
        json!({"operationId": "addTaskComment", "pathParams": {"identifier": task}, "body": {"comment": "Through the API tools."}}),
    )
    .await;
    assert_eq!(commented["status"], 201, "{commented}");
    let forbidden = call(
        "call_operation",
        json!({"operationId": "createBot", "body": {"name": "x", "handle": "x", "connection": {"type": "self-hosted", "config": {}}}}),
    )
    .await;
    assert_eq!(
        forbidden["status"], 403,
        "a bot token cannot create bots, here either: {forbidden}"
    );
    let (_, audit) = admin
        .get(&format!("/audit?sessionId={session}&action=task.comment.create"))
        .await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1, "{audit}");
    let mut missing = CallToolRequestParams::new("call_operation");
    missing.arguments = args(json!({"operationId": "getTask"}));
    let result = client.call_tool(missing).await.unwrap();
    assert_eq!(result.is_error, Some(true));
    client.cancel().await.ok();
    host.stop().await;
}
