//! The store's many-row writes (what the start recorder commits for starts that finish together)
//! against the real database: each does what its one-row form does for every row, across runs of
//! rows of every size, including a session settled twice in one batch.

use leadtime_host::domain::ids::{DeliveryId, JobId, SessionId};
use leadtime_host::domain::jobs::JobKind;
use leadtime_host::store::deliveries::Delivery;
use leadtime_host::store::sessions::SettledCall;
use leadtime_host::store::{self};
use sqlx::Row;

use crate::utils::TestHost;
use crate::utils::receiver::{Answer, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_row_writes_do_for_every_row_what_their_one_row_forms_do() {
    let host = TestHost::start().await;
    let workspace = host.bootstrap("Batch").await;
    let admin = host.api(&workspace.admin_token);
    let receiver = Receiver::start(0, |_, _| Answer::Status(200)).await;
    let bot = admin.create_bot("Claw", "claw", &receiver.url("hook")).await;
    let opened = admin.open_sessions(&bot.id, 3, 3).await;
    receiver.wait_for_hits("hook", 3).await;
    let sessions: Vec<SessionId> = opened.iter().map(|id| SessionId::from(id.as_str())).collect();
    let db = &host.app().db;

    let before = call_counts(db, &sessions).await;

    // Settling: the first session twice (with a pin, then without), the second once.
    let settled = vec![
        SettledCall {
            session: sessions[0].clone(),
            pin: Some("pinned-sha".into()),
            micros: 5,
        },
        SettledCall {
            session: sessions[1].clone(),
            pin: None,
            micros: 7,
        },
        SettledCall {
            session: sessions[0].clone(),
            pin: None,
            micros: 1,
        },
    ];
    let mut tx = db.begin().await.unwrap();
    store::sessions::settle_calls(&mut tx, &settled).await.unwrap();
    // And without a repeat: the third alone, in a run of one.
    store::sessions::settle_calls(
        &mut tx,
        &[SettledCall {
            session: sessions[2].clone(),
            pin: Some("third-sha".into()),
            micros: 11,
        }],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let after = call_counts(db, &sessions).await;
    assert_eq!(after[0], (before[0].0 + 2, before[0].1 + 6, Some("pinned-sha".into())));
    assert_eq!(after[1], (before[1].0 + 1, before[1].1 + 7, before[1].2.clone()));
    assert_eq!(after[2], (before[2].0 + 1, before[2].1 + 11, Some("third-sha".into())));

    // Seven deliveries go in as runs of 4, 2 and 1, each with its own lease (or none).
    let (workspace_id, connection_id) = {
        let mut conn = db.read().await.unwrap();
        let row = sqlx::query("SELECT workspace_id, connection_id FROM agent_sessions WHERE id = $1")
            .bind(sessions[0].as_str().to_owned())
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let workspace: String = row.try_get(0).unwrap();
        let connection: String = row.try_get(1).unwrap();
        (workspace, connection)
    };
    let now = host.app().clock.now();
    let rows: Vec<(Delivery, Option<leadtime_host::domain::time::Timestamp>)> = (0..7)
        .map(|n| {
            let delivery = Delivery::pending(
                DeliveryId::from(format!("msg_batch_{n}").as_str()),
                workspace_id.as_str().into(),
                connection_id.as_str().into(),
                Some(sessions[n % 3].clone()),
                format!("http://127.0.0.1:9/never/{n}"),
                format!("{{\"n\":{n}}}"),
                now,
            );
            let lease = (n % 2 == 0).then(|| now.plus_millis(60_000 + n as i64));
            (delivery, lease)
        })
        .collect();
    // Leased into the future and unleased rows due later than now would be claimed by the host's
    // worker: keep them out of its reach for the test by making them not yet due.
    let rows: Vec<_> = rows
        .into_iter()
        .map(|(mut d, lease)| {
            d.next_attempt_at = Some(now.plus_millis(3_600_000));
            (d, lease)
        })
        .collect();
    let mut tx = db.begin().await.unwrap();
    store::deliveries::insert_many(&mut tx, &rows).await.unwrap();
    tx.commit().await.unwrap();
    let mut conn = db.read().await.unwrap();
    let stored = sqlx::query(
        "SELECT id, url, body, session_id, locked_until FROM webhook_deliveries WHERE id LIKE 'msg_batch_%' ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    assert_eq!(stored.len(), 7);
    for (row, (delivery, lease)) in stored.iter().zip(&rows) {
        let id: String = row.try_get(0).unwrap();
        let url: String = row.try_get(1).unwrap();
        let body: String = row.try_get(2).unwrap();
        let session: Option<String> = row.try_get(3).unwrap();
        let locked_until: Option<i64> = row.try_get(4).unwrap();
        assert_eq!(id, delivery.id.as_str());
        assert_eq!(
            (url.as_str(), body.as_str()),
            (delivery.url.as_str(), delivery.body.as_str())
        );
        assert_eq!(session.as_deref(), delivery.session_id.as_ref().map(SessionId::as_str));
        assert_eq!(locked_until, lease.map(|l| l.millis()));
    }

    // Completing jobs tells whether their sessions have others left: three jobs of the first
    // session, one of the second.
    let later = now.plus_millis(3_600_000);
    let mut tx = db.begin().await.unwrap();
    let mut first: Vec<JobId> = Vec::new();
    for _ in 0..3 {
        first.push(
            store::jobs::insert(&mut tx, &JobKind::StartSession, Some(&sessions[0]), later)
                .await
                .unwrap(),
        );
    }
    let second = store::jobs::insert(&mut tx, &JobKind::StartSession, Some(&sessions[1]), later)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    assert!(
        store::jobs::complete_many_and_look(&mut tx, &[first[0].clone(), second])
            .await
            .unwrap(),
        "the first session still has two jobs"
    );
    assert!(
        !store::jobs::complete_many_and_look(&mut tx, &[first[1].clone(), first[2].clone()])
            .await
            .unwrap(),
        "nothing is left of either session"
    );
    tx.commit().await.unwrap();
    let mut conn = db.read().await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE run_at = $1")
        .bind(later.millis())
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "every completed job is gone");
    drop(conn);

    // The start recorder's write of all three at once (one statement on PostgreSQL) does what
    // the three above do: calls settled, deliveries in, jobs gone, and whether others are left.
    let before = call_counts(db, &sessions).await;
    let mut tx = db.begin().await.unwrap();
    let mut jobs: Vec<JobId> = Vec::new();
    for session in [&sessions[0], &sessions[1], &sessions[1]] {
        jobs.push(
            store::jobs::insert(&mut tx, &JobKind::StartSession, Some(session), later)
                .await
                .unwrap(),
        );
    }
    tx.commit().await.unwrap();
    let outbox: Vec<(Delivery, Option<leadtime_host::domain::time::Timestamp>)> = (0..3)
        .map(|n| {
            let mut delivery = Delivery::pending(
                DeliveryId::from(format!("msg_outcome_{n}").as_str()),
                workspace_id.as_str().into(),
                connection_id.as_str().into(),
                Some(sessions[n].clone()),
                format!("http://127.0.0.1:9/outcome/{n}"),
                // Of different lengths, with escapes and two-byte characters
                // (on PostgreSQL the bodies travel one after the other as bytes).
                format!("{{\"text\":\"é line\\n\\\"quoted\\\" {n} {}\"}}", "é".repeat(n + 1)),
                now,
            );
            delivery.next_attempt_at = Some(now.plus_millis(3_600_000));
            (delivery, (n == 1).then(|| now.plus_millis(90_000)))
        })
        .collect();
    let calls = [
        SettledCall {
            session: sessions[0].clone(),
            pin: Some("again-sha".into()),
            micros: 3,
        },
        SettledCall {
            session: sessions[1].clone(),
            pin: None,
            micros: 4,
        },
    ];
    let mut tx = db.begin().await.unwrap();
    assert!(
        store::start_outcomes::write(&mut tx, &calls, &outbox, &[jobs[0].clone(), jobs[1].clone()])
            .await
            .unwrap(),
        "the second session still has a job"
    );
    assert!(
        !store::start_outcomes::write(&mut tx, &[], &[], &[jobs[2].clone()])
            .await
            .unwrap(),
        "nothing is left of either session"
    );
    tx.commit().await.unwrap();
    let after = call_counts(db, &sessions).await;
    assert_eq!(after[0], (before[0].0 + 1, before[0].1 + 3, Some("again-sha".into())));
    assert_eq!(after[1], (before[1].0 + 1, before[1].1 + 4, before[1].2.clone()));
    assert_eq!(after[2], before[2]);
    let mut conn = db.read().await.unwrap();
    let stored = sqlx::query(
        "SELECT id, url, body, session_id, locked_until, status, attempts FROM webhook_deliveries \
         WHERE id LIKE 'msg_outcome_%' ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(stored.len(), 3);
    for (row, (delivery, lease)) in stored.iter().zip(&outbox) {
        let (url, body): (String, String) = (row.try_get(1).unwrap(), row.try_get(2).unwrap());
        let session: Option<String> = row.try_get(3).unwrap();
        let locked_until: Option<i64> = row.try_get(4).unwrap();
        let (status, attempts): (String, i64) = (row.try_get(5).unwrap(), row.try_get(6).unwrap());
        assert_eq!(
            (url.as_str(), body.as_str()),
            (delivery.url.as_str(), delivery.body.as_str())
        );
        assert_eq!(session.as_deref(), delivery.session_id.as_ref().map(SessionId::as_str));
        assert_eq!(locked_until, lease.map(|l| l.millis()));
        assert_eq!((status.as_str(), attempts), ("pending", delivery.attempts));
    }
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE run_at = $1")
        .bind(later.millis())
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "every completed job is gone");
}

/// Each session's plugin calls, CPU micros and pinned version.
async fn call_counts(db: &store::Db, sessions: &[SessionId]) -> Vec<(i64, i64, Option<String>)> {
    let mut conn = db.read().await.unwrap();
    let mut counts = Vec::new();
    for session in sessions {
        let row =
            sqlx::query("SELECT plugin_calls, plugin_cpu_micros, plugin_sha256 FROM agent_sessions WHERE id = $1")
                .bind(session.as_str().to_owned())
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        counts.push((
            row.try_get(0).unwrap(),
            row.try_get(1).unwrap(),
            row.try_get(2).unwrap(),
        ));
    }
    counts
}
