//! Job leases against the real database: a model call is leased for its request's time limit, and
//! a worker whose lease ran out (another claimed the job meanwhile) cannot complete or reschedule
//! it — so a slow model answer is handed to its plugin once.

use leadtime_host::domain::ids::JobId;
use leadtime_host::domain::jobs::JobKind;
use leadtime_host::domain::time::Timestamp;
use leadtime_host::store::{self, Db, jobs::Leases};

use crate::utils::db::TestDb;

const LEASES: Leases = Leases {
    plugin_ms: 35_000,
    model_ms: 360_000,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_overtaken_after_its_lease_cannot_complete_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::create(dir.path()).await;
    let db = Db::connect(&test_db.url).await.unwrap();
    let t0 = Timestamp::from_millis(1_800_000_000_000);
    let job = {
        let mut tx = db.begin().await.unwrap();
        let job = store::jobs::insert(&mut tx, &JobKind::StartSession, None, t0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        job
    };
    let claim = |at: Timestamp| {
        let db = &db;
        async move {
            let mut tx = db.begin().await.unwrap();
            let claimed = store::jobs::claim_due(&mut tx, db.backend(), at, LEASES, 10)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            claimed
        }
    };
    let first = claim(t0).await;
    assert_eq!(first.len(), 1);
    assert!(claim(t0.plus_millis(34_000)).await.is_empty(), "leased");
    // The first worker is slow: its lease ends and a second worker claims the job.
    let second = claim(t0.plus_millis(36_000)).await;
    assert_eq!(second.len(), 1);
    assert_eq!((first[0].attempts, second[0].attempts), (1, 2));

    let id: JobId = job;
    let mut tx = db.begin().await.unwrap();
    assert!(
        !store::jobs::complete_claimed(&mut tx, &id, first[0].attempts)
            .await
            .unwrap(),
        "the overtaken claim completes nothing"
    );
    assert!(
        !store::jobs::retry_claimed_at(&mut tx, &id, first[0].attempts, t0, "late")
            .await
            .unwrap(),
        "nor reschedules it"
    );
    assert!(
        store::jobs::complete_claimed(&mut tx, &id, second[0].attempts)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_call_is_leased_for_its_request_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::create(dir.path()).await;
    let db = Db::connect(&test_db.url).await.unwrap();
    let t0 = Timestamp::from_millis(1_800_000_000_000);
    {
        let mut tx = db.begin().await.unwrap();
        // A model-call job row as the worker queues it (its payload is not read here).
        sqlx::query(
            "INSERT INTO jobs (id, kind, session_id, payload, run_at, attempts, created_at) \
             VALUES ('job_model', 'model_call', NULL, '{}', $1, 0, $1)",
        )
        .bind(t0.millis())
        .execute(&mut *tx)
        .await
        .unwrap();
        store::jobs::insert(&mut tx, &JobKind::StartSession, None, t0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let claim = |at: Timestamp| {
        let db = &db;
        async move {
            let mut tx = db.begin().await.unwrap();
            let claimed = store::jobs::claim_due(&mut tx, db.backend(), at, LEASES, 10)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            claimed.into_iter().map(|j| j.kind).collect::<Vec<_>>()
        }
    };
    let mut first = claim(t0).await;
    first.sort();
    assert_eq!(first, ["model_call", "start_session"]);
    // After the plugin lease only the plugin job is free again; the model call is still answering.
    assert_eq!(claim(t0.plus_millis(40_000)).await, ["start_session"]);
    assert_eq!(claim(t0.plus_millis(300_000)).await, ["start_session"]);
    let mut late = claim(t0.plus_millis(361_000)).await;
    late.sort();
    assert_eq!(late, ["model_call", "start_session"]);
    db.close().await;
}
