//! The audit trail: append-only in the database, hash-chained, readable by admins, and
//! `leadtime-host audit verify` names the first record someone tampered with.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::utils::TestHost;

/// Runs `leadtime-host audit verify` against the test's database.
fn verify_cli(host: &TestHost) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_leadtime-host"))
        .args(["audit", "verify", "--database-url", host.database_url()])
        .env("LEADTIME_LOG", "error")
        .output()
        .expect("run leadtime-host");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_refused_or_detected() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    for n in 0..4 {
        admin.create_task(&format!("Task {n}")).await;
    }
    let (ok, out) = verify_cli(&host);
    assert!(ok && out.contains("intact: 5 records"), "{out}");

    // The database itself refuses to change or remove records.
    assert!(
        host.execute("UPDATE audit_log SET details = '{}' WHERE seq = 3")
            .await
            .is_err()
    );
    assert!(host.execute("DELETE FROM audit_log WHERE seq = 3").await.is_err());
    let (ok, _) = verify_cli(&host);
    assert!(ok);

    // The database owner can switch that off — and the chain shows it.
    if host.is_postgres() {
        host.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            .await
            .unwrap();
    } else {
        host.execute("DROP TRIGGER audit_log_no_update").await.unwrap();
    }
    assert_eq!(
        host.execute(r#"UPDATE audit_log SET details = '{"title":"Task X"}' WHERE seq = 3"#)
            .await
            .unwrap(),
        1
    );
    let broken = leadtime_host::audit::verify(&host.app().db).await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 3, "{broken}");
    let (ok, out) = verify_cli(&host);
    assert!(!ok, "verify must fail: {out}");
    assert!(
        out.contains("#3") && out.contains("changed after it was written"),
        "{out}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_newest_record_is_detected() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    admin.create_task("One").await;
    admin.create_task("Two").await;
    if host.is_postgres() {
        host.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            .await
            .unwrap();
    } else {
        host.execute("DROP TRIGGER audit_log_no_delete").await.unwrap();
    }
    assert_eq!(host.execute("DELETE FROM audit_log WHERE seq = 3").await.unwrap(), 1);
    let broken = leadtime_host::audit::verify(&host.app().db).await.unwrap().unwrap_err();
    assert!(broken.reason.contains("removed"), "{broken}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_read_their_workspace_trail_with_filters_and_pages() {
    let host = TestHost::start().await;
    let workspace = host.bootstrap("Acme").await;
    let admin = host.api(&workspace.admin_token);
    let other = host.api(&host.bootstrap("Globex").await.admin_token);
    let task = admin.create_task("Audited").await;
    let task_id = task["id"].as_str().unwrap();
    for n in 0..3 {
        admin
            .patch(&format!("/tasks/{task_id}"), json!({"title": format!("Audited {n}")}))
            .await;
    }
    let reply = admin
        .send(
            reqwest::Method::POST,
            &format!("/tasks/{task_id}/comments"),
            Some(&json!({"comment": "hi"})),
        )
        .await;

    let (status, page) = admin.get(&format!("/audit?targetId={task_id}&pageSize=2")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["action"], "task.comment.create", "newest first");
    assert_eq!(records[0]["requestId"], reply.request_id.as_str());
    assert_eq!(records[0]["actorKind"], "person");
    assert_eq!(records[0]["actorId"], workspace.admin_id.as_str());
    assert_eq!(records[0]["ip"], "127.0.0.1");
    assert!(records[0]["tokenId"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(records[0]["userAgent"], "leadtime-e2e");
    let cursor = page["nextCursor"].as_i64().unwrap();
    let (_, rest) = admin
        .get(&format!("/audit?targetId={task_id}&pageSize=2&cursor={cursor}"))
        .await;
    let actions: Vec<&str> = rest["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["task.update", "task.update"]);
    let (_, last) = admin
        .get(&format!(
            "/audit?targetId={task_id}&pageSize=2&cursor={}",
            rest["nextCursor"]
        ))
        .await;
    assert_eq!(last["records"].as_array().unwrap().len(), 1);
    assert!(last["nextCursor"].is_null());
    let (_, updates) = admin.get("/audit?action=task.update").await;
    assert_eq!(updates["records"].as_array().unwrap().len(), 3);
    // Another workspace sees none of it; bad filters are refused.
    let (_, theirs) = other.get(&format!("/audit?targetId={task_id}")).await;
    assert!(theirs["records"].as_array().unwrap().is_empty());
    let (status, _) = admin.get("/audit?pageSize=1000").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = admin.get("/audit?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    host.stop().await;
}
