//! The group commit's promises, against the real database: every unit of a batch gets its own
//! answer, a unit that fails (by its own error, or a statement the database refused) takes back
//! only its own writes and audit records, and the audit chain stays whole.

use std::collections::BTreeSet;

use leadtime_host::audit::{self, AuditKeys};
use leadtime_host::commit::Writer;
use leadtime_host::domain::audit::{Actor, Entry};
use leadtime_host::domain::time::Timestamp;
use leadtime_host::secrets::SecretBox;
use leadtime_host::store::{self, Db, StoreError};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::utils::TestHost;
use crate::utils::db::TestDb;

#[derive(Debug)]
enum UnitError {
    Store(#[allow(dead_code)] StoreError),
    Refused(u32),
    /// Stands for a deadlock the database broke by giving up on the transaction.
    GaveUp,
}

impl leadtime_host::commit::UnitError for UnitError {
    fn is_retryable(&self) -> bool {
        match self {
            UnitError::Store(error) => error.is_retryable(),
            UnitError::GaveUp => true,
            UnitError::Refused(_) => false,
        }
    }
}

impl From<StoreError> for UnitError {
    fn from(error: StoreError) -> Self {
        UnitError::Store(error)
    }
}

/// What unit `n` does: 0 succeeds, 1 refuses after writing, 2 runs a statement the database
/// rejects after writing.
fn fate(n: u32) -> u32 {
    n % 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_unit_takes_back_only_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::create(dir.path()).await;
    let db = Db::connect(&test_db.url).await.unwrap();
    {
        let mut tx = db.begin().await.unwrap();
        sqlx::query("CREATE TABLE scratch (n BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let keys = AuditKeys::derive(&SecretBox::from_key(&[7; 32]));
    let (writer, tasks) = Writer::start(db.clone(), keys.clone());

    // Sent together, so they share batches (each batch takes every unit waiting).
    let mut units = tokio::task::JoinSet::new();
    for n in 0..90u32 {
        let writer = writer.clone();
        units.spawn(async move {
            let answer = writer
                .write(move |tx| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO scratch (n) VALUES ($1)")
                            .bind(i64::from(n))
                            .execute(tx.conn())
                            .await
                            .map_err(StoreError::from)?;
                        let entry = Entry::new("test.unit", "scratch", n, serde_json::json!({}));
                        tx.audit(
                            &Actor::system(None),
                            entry,
                            Timestamp::from_millis(1_000 + i64::from(n)),
                        );
                        match fate(n) {
                            0 => Ok(n),
                            1 => Err(UnitError::Refused(n)),
                            _ => {
                                sqlx::query("SELECT no_such_column FROM scratch")
                                    .execute(tx.conn())
                                    .await
                                    .map_err(StoreError::from)?;
                                Ok(n)
                            }
                        }
                    })
                })
                .await;
            (n, answer)
        });
    }
    let answers = units.join_all().await;
    assert_eq!(answers.len(), 90);

    for (n, answer) in &answers {
        match (fate(*n), answer) {
            (0, Ok(value)) => assert_eq!(value, n),
            (1, Err(UnitError::Refused(value))) => assert_eq!(value, n),
            (2, Err(UnitError::Store(_))) => {}
            (_, other) => panic!("unit {n} answered {other:?}"),
        }
    }
    let kept: BTreeSet<i64> = (0..90).filter(|n| fate(*n) == 0).map(i64::from).collect();

    let mut conn = db.read().await.unwrap();
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT n FROM scratch")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let written: BTreeSet<i64> = rows.into_iter().map(|(n,)| n).collect();
    assert_eq!(written, kept, "only the units that succeeded keep their rows");

    let records = store::audit::after(&mut conn, 0, 1_000).await.unwrap();
    let audited: BTreeSet<i64> = records
        .iter()
        .map(|r| r.target_id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(audited, kept, "only the units that succeeded keep their audit records");
    assert_eq!(records.len(), kept.len(), "one record per unit that succeeded");
    drop(conn);
    let verified = audit::verify(&db, &keys, None).await.unwrap().expect("the chain holds");
    assert_eq!(verified.records, kept.len() as i64);

    // Dropping the last handle lets the writers finish and stop.
    drop(writer);
    for task in tasks {
        task.await.unwrap();
    }
    db.close().await;
}

/// A unit the database gave up on (as it does to break a deadlock between PostgreSQL's writers)
/// makes its whole batch run again: every unit answers once, with what its last run gave, and what
/// the abandoned run wrote is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_database_gave_up_on_runs_again_whole() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::create(dir.path()).await;
    let db = Db::connect(&test_db.url).await.unwrap();
    {
        let mut tx = db.begin().await.unwrap();
        sqlx::query("CREATE TABLE scratch (n BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let keys = AuditKeys::derive(&SecretBox::from_key(&[7; 32]));
    let (writer, tasks) = Writer::start(db.clone(), keys.clone());

    // Unit 0 gives up on its first two runs, unit 20 (sent alone, after) on every run.
    let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..21).map(|_| AtomicUsize::new(0)).collect());
    let unit = |n: u32| {
        let (writer, runs) = (writer.clone(), runs.clone());
        async move {
            writer
                .write(move |tx| {
                    let runs = runs.clone();
                    Box::pin(async move {
                        let run = runs[n as usize].fetch_add(1, Ordering::SeqCst);
                        sqlx::query("INSERT INTO scratch (n) VALUES ($1)")
                            .bind(i64::from(n))
                            .execute(tx.conn())
                            .await
                            .map_err(StoreError::from)?;
                        let entry = Entry::new("test.unit", "scratch", n, serde_json::json!({}));
                        tx.audit(&Actor::system(None), entry, Timestamp::from_millis(1_000));
                        match (n, run) {
                            (0, 0 | 1) | (20, _) => Err(UnitError::GaveUp),
                            _ => Ok(n),
                        }
                    })
                })
                .await
        }
    };
    let mut units = tokio::task::JoinSet::new();
    for n in 0..20u32 {
        let answer = unit(n);
        units.spawn(async move { (n, answer.await) });
    }
    for (n, answer) in units.join_all().await {
        assert_eq!(answer.unwrap(), n, "unit {n}");
    }
    assert_eq!(runs[0].load(Ordering::SeqCst), 3, "unit 0 ran until it got through");
    let gave_up = unit(20).await;
    assert!(matches!(gave_up, Err(UnitError::GaveUp)), "{gave_up:?}");
    assert_eq!(runs[20].load(Ordering::SeqCst), 4, "a batch runs again at most 3 times");

    let mut conn = db.read().await.unwrap();
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT n FROM scratch ORDER BY n")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let written: Vec<i64> = rows.into_iter().map(|(n,)| n).collect();
    assert_eq!(
        written,
        (0..20).collect::<Vec<i64>>(),
        "each acknowledged unit's row, once; no other"
    );
    drop(conn);
    let verified = audit::verify(&db, &keys, None).await.unwrap().expect("the chain holds");
    assert_eq!(verified.records, 20);
    drop(writer);
    for task in tasks {
        task.await.unwrap();
    }
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_created_at_once_get_gap_free_numbers_in_answers_rows_and_audit() {
    let host = TestHost::start().await;
    let workspaces = [
        host.api(&host.bootstrap("Acme").await.admin_token),
        host.api(&host.bootstrap("Other").await.admin_token),
    ];
    // Many creations at once in two workspaces (so batches hold tasks of both); every third
    // names an assignee that does not exist, which fails its unit inside the batch.
    let mut all = tokio::task::JoinSet::new();
    for n in 0..120 {
        let api = workspaces[n % 2].clone();
        all.spawn(async move {
            let assignee = if n % 3 == 0 { json!("@nobody") } else { json!(null) };
            let (status, task) = api
                .post("/tasks", json!({"title": format!("task {n}"), "assigneeId": assignee}))
                .await;
            (n % 2, n % 3 == 0, status, task)
        });
    }
    let mut created: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
    while let Some(done) = all.join_next().await {
        let (workspace, refused, status, task) = done.unwrap();
        if refused {
            assert_eq!(status, StatusCode::NOT_FOUND, "{task}");
        } else {
            assert_eq!(status, StatusCode::CREATED, "{task}");
            created[workspace].push(task);
        }
    }
    for (api, tasks) in workspaces.iter().zip(&created) {
        let mut numbers: Vec<i64> = tasks.iter().map(|t| t["shortNumber"].as_i64().unwrap()).collect();
        numbers.sort();
        assert_eq!(
            numbers,
            (1..=tasks.len() as i64).collect::<Vec<_>>(),
            "numbers are gap-free: a refused creation takes none"
        );
        for task in tasks {
            let id = task["id"].as_str().unwrap();
            let (_, stored) = api.get(&format!("/tasks/{id}")).await;
            assert_eq!(
                stored["shortNumber"], task["shortNumber"],
                "the answer's number is the row's"
            );
            let (_, audit) = api.get(&format!("/audit?targetId={id}&action=task.create")).await;
            assert_eq!(
                audit["records"][0]["detailsJson"]["shortNumber"], task["shortNumber"],
                "the audit record names the number: {audit}"
            );
        }
    }
    host.stop().await;
}

/// Changes to different fields of one task sent at once all land: units of one batch see the
/// changes earlier units made (the task's row is written once, when the batch commits), and on
/// PostgreSQL, whose writers run batches side by side, a change read from the row is not
/// overwritten by one read before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_to_one_task_sent_at_once_all_land() {
    let host = TestHost::start().await;
    let workspace = host.bootstrap("Acme").await;
    let api = host.api(&workspace.admin_token);
    let first = api.create_task("probe").await["statusId"].clone();
    let (_, statuses) = api.get("/tasks/statuses").await;
    let status = statuses["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .find(|id| json!(id) != first)
        .expect("a second status");
    let mut tasks = Vec::new();
    for n in 0..24 {
        tasks.push(
            api.create_task(&format!("task {n}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Four changes per task, each to another field, all sent together.
    let mut all = tokio::task::JoinSet::new();
    for (n, id) in tasks.iter().enumerate() {
        let changes = [
            json!({"title": format!("title {n}")}),
            json!({"description": format!("description {n}")}),
            json!({"statusId": status}),
            json!({"assigneeId": workspace.admin_id}),
        ];
        for change in changes {
            let (api, path) = (api.clone(), format!("/tasks/{id}"));
            all.spawn(async move { api.patch(&path, change).await });
        }
    }
    for (status, body) in all.join_all().await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for (n, id) in tasks.iter().enumerate() {
        let (_, task) = api.get(&format!("/tasks/{id}")).await;
        assert_eq!(task["title"], format!("title {n}"), "{task}");
        assert_eq!(task["description"], format!("description {n}"), "{task}");
        assert_eq!(task["statusId"], json!(status), "{task}");
        assert_eq!(task["assigneeId"], json!(workspace.admin_id), "{task}");
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_numbers_hundreds_of_tasks_of_one_workspace() {
    use leadtime_host::domain::ids::{TaskId, WorkspaceId};
    use leadtime_host::domain::tasks::Task;

    let host = TestHost::start().await;
    let workspace = host.bootstrap("Acme").await;
    let admin = host.api(&workspace.admin_token);
    let app = host.app().clone();
    let (workspace_id, admin_id) = (WorkspaceId::from(workspace.id.as_str()), workspace.admin_id.clone());
    let status = {
        let mut conn = app.db.read().await.unwrap();
        store::tasks::statuses(&mut conn, &workspace_id).await.unwrap()[0]
            .id
            .clone()
    };
    // One unit inserting 250 tasks: their numbers are set in more than one statement.
    let numbers = app
        .writer
        .write(move |tx| {
            let (workspace_id, admin_id, status) = (workspace_id.clone(), admin_id.clone(), status.clone());
            Box::pin(async move {
                let mut numbers = Vec::new();
                for n in 0..250 {
                    let id = TaskId::generate();
                    let (placeholder, number) = tx.number_task(&workspace_id, &id);
                    let now = Timestamp::from_millis(1_800_000_000_000);
                    let task = Task {
                        id: id.clone(),
                        workspace_id: workspace_id.clone(),
                        short_number: placeholder,
                        title: format!("bulk {n}"),
                        description: String::new(),
                        status_id: status.clone(),
                        assignee_id: None,
                        created_by: admin_id.as_str().into(),
                        created_at: now,
                        updated_at: now,
                    };
                    store::tasks::insert(tx.conn(), &task).await?;
                    numbers.push((id, number));
                }
                Ok::<_, StoreError>(numbers)
            })
        })
        .await
        .unwrap();
    for (expected, (id, number)) in (1..).zip(&numbers) {
        assert_eq!(number.get(), Some(expected), "in the order the unit asked");
        let (_, task) = admin.get(&format!("/tasks/{id}")).await;
        assert_eq!(task["shortNumber"], expected, "{task}");
    }
    // The next task through the API continues the sequence.
    let task = admin.create_task("after the bulk").await;
    assert_eq!(task["shortNumber"], 251);
    host.stop().await;
}

/// The history rows a unit records (task events, written for the whole batch just before it
/// commits) go with the unit: a unit that fails leaves none, the others' are all there, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_units_history_rows_go_with_it() {
    use leadtime_host::domain::ids::{SessionId, TaskEventId, TaskId, UserId};
    use leadtime_host::domain::jobs::JobKind;
    use leadtime_host::domain::tasks::TaskEvent;
    use leadtime_host::store::jobs::NewJob;

    let host = TestHost::start().await;
    let workspace = host.bootstrap("History").await;
    let admin = host.api(&workspace.admin_token);
    // A session for the units' jobs to belong to (its webhooks go nowhere; that is not the point).
    let bot = admin
        .create_bot("Historian", "historian", "http://127.0.0.1:9/hook")
        .await;
    let (task, session) = admin.assign_new_task(&bot.id, "history", "").await;
    let (task, session) = (TaskId::from(task.as_str()), SessionId::from(session.as_str()));
    // The units' jobs are leased far into the future, so no worker runs them and they are told apart.
    let far = Timestamp::from_millis(4_102_444_800_000);
    let (before, template) = {
        let mut conn = host.app().db.read().await.unwrap();
        let before = store::tasks::events(&mut conn, &task).await.unwrap().len();
        (
            before,
            store::sessions::get_any(&mut conn, &session).await.unwrap().unwrap(),
        )
    };

    // Sent together, so they share batches; every third unit fails after recording its event and
    // opening a session (every fourth writes the batch's new sessions first, as a unit that reads
    // sessions does).
    let mut units = tokio::task::JoinSet::new();
    for n in 0..60u32 {
        let (writer, task, actor, session) = (
            host.app().writer.clone(),
            task.clone(),
            UserId::from(workspace.admin_id.as_str()),
            session.clone(),
        );
        let mut opened = template.clone();
        opened.id = SessionId::from(format!("ses_history_{n:03}"));
        units.spawn(async move {
            let answer = writer
                .write(move |tx| {
                    let (task, actor, session, opened) = (task.clone(), actor.clone(), session.clone(), opened.clone());
                    Box::pin(async move {
                        tx.insert_session_at_commit(opened);
                        if n % 4 == 0 {
                            tx.write_new_rows().await?;
                        }
                        let (job, _) = NewJob::leased(&JobKind::StartSession, &session, far, far);
                        tx.insert_job_at_commit(job);
                        tx.record_task_event(TaskEvent {
                            id: TaskEventId::generate(),
                            task_id: task,
                            actor_id: Some(actor),
                            kind: format!("test_{n}"),
                            details: "{}".into(),
                            created_at: Timestamp::from_millis(1_000),
                        });
                        if n % 3 == 1 { Err(UnitError::Refused(n)) } else { Ok(n) }
                    })
                })
                .await;
            (n, answer)
        });
    }
    for (n, answer) in units.join_all().await {
        match answer {
            Ok(got) => assert!(got == n && n % 3 != 1, "unit {n} answered {got}"),
            Err(UnitError::Refused(refused)) => assert!(refused == n && n % 3 == 1, "unit {n}"),
            Err(other) => panic!("unit {n}: {other:?}"),
        }
    }
    let mut conn = host.app().db.read().await.unwrap();
    let events = store::tasks::events(&mut conn, &task).await.unwrap();
    assert_eq!(events.len(), before + expected_count(), "{events:?}");
    let kinds: Vec<String> = events
        .iter()
        .filter(|e| e.kind.starts_with("test_"))
        .map(|e| e.kind.clone())
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), kinds.len(), "each event once: {kinds:?}");
    let expected: BTreeSet<String> = (0..60u32).filter(|n| n % 3 != 1).map(|n| format!("test_{n}")).collect();
    assert_eq!(kinds.into_iter().collect::<BTreeSet<_>>(), expected);
    let (jobs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE session_id = $1 AND locked_until = $2")
        .bind(session.as_str())
        .bind(far.millis())
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(jobs, expected_count() as i64, "one job per unit that succeeded");
    let opened: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM agent_sessions WHERE id LIKE 'ses_history_%' ORDER BY id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let expected: Vec<String> = (0..60u32)
        .filter(|n| n % 3 != 1)
        .map(|n| format!("ses_history_{n:03}"))
        .collect();
    assert_eq!(
        opened.into_iter().map(|(id,)| id).collect::<Vec<_>>(),
        expected,
        "one session per unit that succeeded, none of those that failed"
    );
}

/// Units of `a_failing_units_history_rows_go_with_it` that succeed.
fn expected_count() -> usize {
    (0..60u32).filter(|n| n % 3 != 1).count()
}

/// Polls `write` once, so its unit is in the writer's queue (it then waits for its batch): units
/// sent this way, one after the other, are queued in that order.
async fn send_now<F: std::future::Future + Unpin>(write: &mut F) {
    std::future::poll_fn(|cx| {
        assert!(
            std::pin::Pin::new(&mut *write).poll(cx).is_pending(),
            "a write answered before its batch ran"
        );
        std::task::Poll::Ready(())
    })
    .await
}

/// A unit that answers whether the task `named` has comments, as a change to it reads the task.
fn has_comments(
    tx: &mut leadtime_host::commit::WriteTx,
    workspace: leadtime_host::domain::ids::WorkspaceId,
    named: leadtime_host::domain::tasks::TaskRef,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<bool>, StoreError>> + Send + '_>> {
    Box::pin(async move {
        let read = tx.task_to_change(&workspace, &named, None).await?;
        Ok(read.map(|read| read.has_comments))
    })
}

/// A batch reads the tasks its units change at its start (on PostgreSQL, in one statement for all
/// of them): a unit that comments on one makes the units after it in the batch read it again, so
/// they see the comment as they did when each read its own task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_later_in_a_batch_sees_a_comment_made_earlier_in_it() {
    use leadtime_host::domain::ids::{CommentId, TaskId, UserId, WorkspaceId};
    use leadtime_host::domain::tasks::{Comment, TaskRef};
    use std::sync::Arc;

    let host = TestHost::start().await;
    let workspace = host.bootstrap("Acme").await;
    let api = host.api(&workspace.admin_token);
    let task = api.create_task("probe").await["id"].as_str().unwrap().to_string();
    let writer = host.app().writer.clone();
    let ws = WorkspaceId::from(workspace.id.clone());
    let named = TaskRef::Id(task.clone());

    // A unit on the task's writer that holds it until let go: the units sent meanwhile wait
    // behind it and make the next batch, in the order they were sent.
    let (running, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let holder = {
        let (writer, ws, named, gate) = (writer.clone(), ws.clone(), named.clone(), gate.clone());
        tokio::spawn(async move {
            writer
                .write_to_task(&ws, &named, move |_tx| {
                    let (gate, running) = (gate.clone(), running.clone());
                    Box::pin(async move {
                        let _ = running.send(());
                        let _open = gate.acquire().await;
                        Ok::<_, StoreError>(())
                    })
                })
                .await
        })
    };
    started.recv().await.expect("the holding unit runs");

    let comment = Comment {
        id: CommentId::generate(),
        workspace_id: ws.clone(),
        task_id: TaskId::from(task.clone()),
        author_id: UserId::from(workspace.admin_id.clone()),
        body: "a comment".into(),
        created_at: Timestamp::from_millis(1_000),
    };
    let (w, n) = (ws.clone(), named.clone());
    let mut before = Box::pin(writer.write_to_task(&ws, &named, move |tx| has_comments(tx, w.clone(), n.clone())));
    let mut commenting = Box::pin(writer.write_to_task(&ws, &named, move |tx| {
        let comment = comment.clone();
        Box::pin(async move {
            store::tasks::insert_comment(tx.conn(), &comment).await?;
            tx.forget_task_read(&comment.task_id);
            Ok::<_, StoreError>(())
        })
    }));
    let (w, n) = (ws.clone(), named.clone());
    let mut after = Box::pin(writer.write_to_task(&ws, &named, move |tx| has_comments(tx, w.clone(), n.clone())));
    send_now(&mut before).await;
    send_now(&mut commenting).await;
    send_now(&mut after).await;
    gate.add_permits(1_000);

    holder.await.unwrap().unwrap();
    assert_eq!(before.await.unwrap(), Some(false), "the unit before the comment");
    commenting.await.unwrap();
    assert_eq!(after.await.unwrap(), Some(true), "the unit after the comment reads it");
    let (_, comments) = api.get(&format!("/tasks/{task}/comments")).await;
    assert_eq!(comments["comments"].as_array().map(Vec::len), Some(1), "{comments}");
    host.stop().await;
}
