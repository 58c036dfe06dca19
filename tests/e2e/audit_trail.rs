//! The audit trail: append-only in the database, chained with a key the database does not hold,
//! checkpointed into signed files outside it, readable by admins — and `leadtime-host audit verify`
//! names the first sign of tampering by someone who can write to the database: an edited record,
//! the newest records removed with the head moved back, the whole chain recomputed, the
//! append-only triggers dropped, a checkpoint file edited.

use std::process::Command;

use leadtime_host::audit::BrokenLink;
use leadtime_host::audit::checkpoints::CheckpointWriter;
use leadtime_host::domain::audit::{Chain, ChainKey, GENESIS_HASH};
use reqwest::StatusCode;
use serde_json::json;

use crate::utils::TestHost;

/// Runs `leadtime-host audit verify` on the test host's data directory and database.
fn verify_cli(host: &TestHost) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_leadtime-host"))
        .args(["audit", "verify", "--database-url", host.database_url()])
        .arg("--data-dir")
        .arg(&host.config().data_dir)
        .env("LEADTIME_LOG", "error")
        .env_remove("LEADTIME_SECRETS_KEY")
        .output()
        .expect("run leadtime-host");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Verifies in-process; the problem found, if any.
async fn verify(host: &TestHost) -> Option<BrokenLink> {
    let app = host.app();
    leadtime_host::audit::verify(&app.db, &app.audit_keys, Some(&host.config().audit_checkpoint_dir))
        .await
        .unwrap()
        .err()
}

/// Signs the chain's head into the checkpoint directory now (the host does it every few seconds).
async fn checkpoint(host: &TestHost) {
    let mut writer = CheckpointWriter::new(host.config().audit_checkpoint_dir.clone());
    let app = host.app();
    writer
        .write_if_moved(&app.db, &app.audit_keys, app.clock.now())
        .await
        .unwrap();
}

/// A database owner switches the append-only guard off…
async fn disable_guard(host: &TestHost) {
    if host.is_postgres() {
        host.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            .await
            .unwrap();
    } else {
        host.execute("DROP TRIGGER audit_log_no_update").await.unwrap();
        host.execute("DROP TRIGGER audit_log_no_delete").await.unwrap();
    }
}

/// …and back on, to cover their tracks.
async fn restore_guard(host: &TestHost) {
    if host.is_postgres() {
        host.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")
            .await
            .unwrap();
    } else {
        host.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN \
             SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed'); END",
        )
        .await
        .unwrap();
        host.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN \
             SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed'); END",
        )
        .await
        .unwrap();
    }
}

/// A workspace with `tasks` tasks created (one record each, after bootstrap's).
async fn host_with_records(tasks: usize) -> TestHost {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    for n in 0..tasks {
        admin.create_task(&format!("Task {n}")).await;
    }
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_refused_or_detected() {
    let host = host_with_records(4).await;
    checkpoint(&host).await;
    let (ok, out) = verify_cli(&host);
    assert!(ok && out.contains("intact: 5 records"), "{out}");
    assert!(out.contains("1 signed checkpoints, the newest covering #5"), "{out}");

    // The database itself refuses to change or remove records.
    assert!(
        host.execute("UPDATE audit_log SET details = '{}' WHERE seq = 3")
            .await
            .is_err()
    );
    assert!(host.execute("DELETE FROM audit_log WHERE seq = 3").await.is_err());
    assert!(verify(&host).await.is_none());
    // The database owner can switch that off — and verify says so, even before anything changed.
    disable_guard(&host).await;
    let broken = verify(&host).await.unwrap();
    assert!(broken.reason.contains("append-only"), "{broken}");
    // An edited record is named.
    assert_eq!(
        host.execute(r#"UPDATE audit_log SET details = '{"title":"Task X"}' WHERE seq = 3"#)
            .await
            .unwrap(),
        1
    );
    restore_guard(&host).await;
    let broken = verify(&host).await.unwrap();
    assert_eq!(broken.seq, 3, "{broken}");
    let (ok, out) = verify_cli(&host);
    assert!(!ok, "verify must fail: {out}");
    assert!(
        out.contains("#3") && out.contains("changed after it was written"),
        "{out}"
    );
    host.stop().await;
}

/// Recomputes every link from record `from` on with plain SHA-256 (all an attacker without the
/// secrets key can do) and points the head at the result.
async fn rechain_without_the_key(host: &TestHost, from: i64) {
    let records = {
        let mut conn = host.app().db.read().await.unwrap();
        leadtime_host::store::audit::after(&mut conn, 0, 100).await.unwrap()
    };
    let guess = ChainKey::new([0; 32]);
    let plain = Chain {
        key: &guess,
        keyed_from: i64::MAX,
    };
    let mut prev = GENESIS_HASH.to_owned();
    for mut record in records {
        if record.seq >= from {
            record.prev_hash = prev.clone();
            record.hash = record.expected_hash(&plain);
            host.execute(&format!(
                "UPDATE audit_log SET prev_hash = '{}', hash = '{}' WHERE seq = {}",
                record.prev_hash, record.hash, record.seq
            ))
            .await
            .unwrap();
        }
        prev = record.hash;
    }
    host.execute(&format!("UPDATE audit_head SET hash = '{prev}'"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_recomputed_without_the_key_is_detected() {
    let host = host_with_records(4).await;
    checkpoint(&host).await;
    disable_guard(&host).await;
    host.execute(r#"UPDATE audit_log SET details = '{"title":"Task X"}' WHERE seq = 3"#)
        .await
        .unwrap();
    rechain_without_the_key(&host, 3).await;
    restore_guard(&host).await;
    let broken = verify(&host).await.unwrap();
    assert_eq!(broken.seq, 3, "{broken}");
    assert!(broken.reason.contains("without the chain key"), "{broken}");

    // Recomputing the whole chain and claiming it was never keyed does not help either: the
    // checkpoint signed before the tampering says it was.
    disable_guard(&host).await;
    rechain_without_the_key(&host, 1).await;
    host.execute("UPDATE audit_head SET keyed_from = 1000").await.unwrap();
    restore_guard(&host).await;
    let broken = verify(&host).await.unwrap();
    assert!(broken.reason.contains("keyed from"), "{broken}");
    let (ok, out) = verify_cli(&host);
    assert!(!ok && out.contains("head was altered"), "{out}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_newest_records_and_moving_the_head_back_is_detected() {
    let host = host_with_records(2).await;
    checkpoint(&host).await;
    disable_guard(&host).await;
    let (prev,): (String,) = {
        let mut conn = host.app().db.read().await.unwrap();
        sqlx::query_as("SELECT prev_hash FROM audit_log WHERE seq = 3")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
    };
    assert_eq!(host.execute("DELETE FROM audit_log WHERE seq = 3").await.unwrap(), 1);
    restore_guard(&host).await;
    // Without moving the head, the chain alone shows it.
    let broken = verify(&host).await.unwrap();
    assert!(broken.reason.contains("removed"), "{broken}");
    // Moving the head back makes the chain consistent again; the checkpoint still shows it.
    host.execute(&format!("UPDATE audit_head SET seq = 2, hash = '{prev}'"))
        .await
        .unwrap();
    let broken = verify(&host).await.unwrap();
    assert!(
        broken.reason.contains("covers records up to #3") && broken.reason.contains("removed"),
        "{broken}"
    );
    let (ok, out) = verify_cli(&host);
    assert!(!ok && out.contains("records at the end were removed"), "{out}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_checkpoint_file_is_detected() {
    let host = host_with_records(1).await;
    checkpoint(&host).await;
    let file = host
        .config()
        .audit_checkpoint_dir
        .join(leadtime_host::audit::checkpoints::CHECKPOINT_FILE);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("\"seq\":2", "\"seq\":1")).unwrap();
    let broken = verify(&host).await.unwrap();
    assert!(broken.reason.contains("not signed with this host's key"), "{broken}");
    host.stop().await;
}

/// The records in the trail and the head's sequence number.
async fn records_and_head(host: &TestHost) -> (usize, i64) {
    let mut conn = host.app().db.read().await.unwrap();
    let records = leadtime_host::store::audit::after(&mut conn, 0, 100_000).await.unwrap();
    let (seq, _, _) = leadtime_host::store::audit::head(&mut conn).await.unwrap();
    (records.len(), seq)
}

/// On PostgreSQL the group-commit writers keep the chain head in the host between batches; a use
/// case that appends on its own (minting a token) moves it behind their back. Taking turns, then
/// all at once: every write lands with its record, each linked to the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_appends_of_their_own_keep_one_chain() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (records_before, head_before) = records_and_head(&host).await;
    let mint = |admin: crate::utils::Api, n: usize| async move {
        let (status, body) = admin
            .post("/tokens", json!({"name": format!("token {n}"), "scopes": ["read"]}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    };
    // Each task's batch finds the head moved by the token before it.
    for n in 0..6 {
        mint(admin.clone(), n).await;
        admin.create_task(&format!("Task {n}")).await;
    }
    let mut all = tokio::task::JoinSet::new();
    for n in 6..66 {
        let admin = admin.clone();
        if n % 3 == 0 {
            all.spawn(mint(admin, n));
        } else {
            all.spawn(async move {
                admin.create_task(&format!("Task {n}")).await;
            });
        }
    }
    all.join_all().await;
    let (records, head) = records_and_head(&host).await;
    assert_eq!(records - records_before, 72, "one record per write");
    assert_eq!(head - head_before, 72, "the head moved past each record once");
    assert_eq!(head as usize, records, "sequence numbers without gaps");
    assert!(verify(&host).await.is_none(), "{:?}", verify(&host).await);
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

#[test]
fn verifying_a_data_directory_the_host_never_ran_in_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_leadtime-host"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&data_dir)
        .env("LEADTIME_LOG", "error")
        .env("RUST_BACKTRACE", "0")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run leadtime-host");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("no database at") && said.contains("./dev run"),
        "the error says what is missing and what to do: {said}"
    );
    assert!(!data_dir.join("leadtime.db").exists(), "verify created no database");
}
