//! The OpenAPI document lists every operation with an operationId and a summary, including the
//! contract's paths.

use std::collections::HashSet;

use reqwest::StatusCode;

use crate::utils::TestHost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_has_an_id_and_a_summary() {
    let host = TestHost::start().await;
    let (status, doc) = host.anonymous().get("/docs/json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut ids = HashSet::new();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no summary"
            );
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
            operations.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    for expected in [
        "GET /api/public/agent-sessions/{id}/context",
        "POST /api/public/agent-sessions/{id}/activities",
        "PATCH /api/public/agent-sessions/{id}/status",
        "GET /api/public/tasks/{identifier}",
        "PATCH /api/public/tasks/{identifier}",
        "POST /api/public/tasks/{identifier}/comments",
        "GET /api/public/tasks/statuses",
        "GET /api/public/tasks/grid",
        "GET /api/public/account/info",
        "GET /api/public/workspace/details",
        "GET /api/public/docs/json",
        "GET /api/public/tasks/{identifier}/history",
        "POST /api/public/tasks",
    ] {
        assert!(
            operations.iter().any(|o| o == expected),
            "{expected} missing from {operations:?}"
        );
    }
    // People get a readable page of the same operations.
    let page = crate::utils::http_client()
        .get(format!("{}/api/public/docs", host.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let page = page.text().await.unwrap();
    for operation in [
        "createBot",
        "setAgentSessionStatus",
        "claimConnectorSetup",
        "listAuditRecords",
    ] {
        assert!(page.contains(operation), "the docs page lacks {operation}");
    }
    // Unknown routes answer with the JSON error shape too.
    let (status, body) = host.anonymous().get("/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    host.stop().await;
}
