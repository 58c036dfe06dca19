//! Durable, signed webhook delivery against loopback receivers: every kind of answer leads to the
//! right next step, retries run on a controllable clock, private targets are refused, a slow
//! receiver cannot stall the others, and failed deliveries can be redelivered with their ids.

use std::sync::Arc;
use std::time::Duration;

use leadtime_host::app::HostEvent;
use leadtime_host::domain::time::{Clock, ManualClock, SystemClock, Timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::utils::receiver::{Answer, Receiver};
use crate::utils::{Api, Events, TestHost};

/// A host on a manual clock (so retries minutes or hours away need no real wait), with a short
/// attempt timeout.
async fn host_on_manual_clock(configure: impl FnOnce(&mut leadtime_host::Config)) -> (TestHost, ManualClock) {
    let clock = ManualClock::new(SystemClock.now());
    let host = TestHost::start_with(
        |config| {
            config.delivery.attempt_timeout = Duration::from_secs(1);
            configure(config);
        },
        Some(Arc::new(clock.clone())),
    )
    .await;
    (host, clock)
}

/// Opens a session of a new bot whose webhook goes to `url`; returns (bot id, session id).
async fn session_to(admin: &Api, handle: &str, url: &str) -> (String, String) {
    let bot = admin.create_bot(handle, handle, url).await;
    let task = admin.create_task(&format!("for {handle}")).await;
    let (status, body) = admin
        .patch(
            &format!("/tasks/{}", task["id"].as_str().unwrap()),
            json!({"assigneeId": bot.id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (bot.id, body["agentSessionIds"][0].as_str().unwrap().to_owned())
}

/// Waits for the next recorded attempt of `session`'s delivery.
async fn attempted(events: &mut Events, session: &str) -> bool {
    match events
        .wait_for(
            &format!("a delivery attempt for {session}"),
            |e| matches!(e, HostEvent::DeliveryAttempted { session_id: Some(s), .. } if s.as_str() == session),
        )
        .await
    {
        HostEvent::DeliveryAttempted { delivered, .. } => delivered,
        _ => unreachable!(),
    }
}

/// The session's (only) delivery, with its attempts.
async fn delivery_of(admin: &Api, session: &str) -> Value {
    let (status, body) = admin.get(&format!("/agent-sessions/{session}/deliveries")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["deliveries"][0].clone()
}

async fn session_card(admin: &Api, session: &str) -> Value {
    admin.get(&format!("/agent-sessions/{session}")).await.1
}

/// Milliseconds from `now` to the delivery's next attempt.
fn wait_ms(delivery: &Value, now: Timestamp) -> i64 {
    Timestamp::parse_iso(delivery["nextAttemptAt"].as_str().expect("a next attempt"))
        .unwrap()
        .millis()
        - now.millis()
}

/// Moves the clock on and wakes the delivery worker (it would otherwise notice on its own poll).
fn advance(host: &TestHost, clock: &ManualClock, ms: i64) {
    clock.advance(ms);
    host.app().deliveries_queued.notify_one();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_leads_to_the_right_next_step() {
    let (host, clock) = host_on_manual_clock(|_| {}).await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let receiver = Receiver::start(0, |path, attempt| match (path, attempt) {
        ("ok200", _) => Answer::Status(200),
        ("ok202", _) => Answer::Status(202),
        ("moved301", _) => Answer::WithHeaders(301, vec![("location", "/metadata".into())]),
        ("found302", _) => Answer::WithHeaders(
            302,
            vec![("location", "http://169.254.169.254/latest/meta-data".into())],
        ),
        ("gone410", _) => Answer::Status(410),
        ("limited429", 1) => Answer::WithHeaders(429, vec![("retry-after", "120".into())]),
        ("unavailable503", 1) => Answer::WithHeaders(503, vec![("retry-after", "45".into())]),
        ("error500", 1) => Answer::Status(500),
        ("slow", 1) => Answer::Slow(Duration::from_secs(3)),
        _ => Answer::Status(200),
    })
    .await;
    let cases = [
        "ok200",
        "ok202",
        "moved301",
        "found302",
        "gone410",
        "limited429",
        "unavailable503",
        "error500",
        "slow",
        "refused",
    ];
    let mut sessions = std::collections::HashMap::new();
    let mut events = host.events();
    for case in cases {
        let url = if case == "refused" {
            "http://127.0.0.1:9/leadtime/webhook".to_owned()
        } else {
            receiver.url(case)
        };
        let (bot, session) = session_to(&admin, case, &url).await;
        sessions.insert(case, (bot, session));
    }
    for case in cases {
        attempted(&mut events, &sessions[case].1).await;
    }
    let now = clock.now();
    let check = |case: &str| sessions[case].1.clone();

    for case in ["ok200", "ok202"] {
        let delivery = delivery_of(&admin, &check(case)).await;
        assert_eq!(delivery["status"], "delivered", "{case}: {delivery}");
        let card = session_card(&admin, &check(case)).await;
        // Delivery shows on the card; the session waits for its wrapper to say `running`.
        assert_eq!(card["status"], "queued", "{case}: {card}");
        assert_eq!(card["delivery"]["status"], "delivered", "{case}: {card}");
        assert_eq!(card["delivery"]["id"], delivery["id"], "{case}: {card}");
    }
    // Redirects are failures and are never followed.
    for (case, status) in [("moved301", 301), ("found302", 302)] {
        let delivery = delivery_of(&admin, &check(case)).await;
        assert_eq!(delivery["status"], "pending", "{delivery}");
        assert_eq!(delivery["attempts"][0]["statusCode"], status);
        assert!(
            delivery["attempts"][0]["error"]
                .as_str()
                .unwrap()
                .contains("redirects are not followed")
        );
        assert!(
            (4_500..=5_500).contains(&wait_ms(&delivery, now)),
            "{case}: retry on the schedule (5 s ± 10 %)"
        );
    }
    assert!(receiver.hits("metadata").is_empty(), "a redirect was followed");
    // 410 disables the endpoint and fails the session, saying why.
    let delivery = delivery_of(&admin, &check("gone410")).await;
    assert_eq!(delivery["status"], "failed");
    let card = session_card(&admin, &check("gone410")).await;
    assert_eq!(card["status"], "failed");
    assert!(card["statusMessage"].as_str().unwrap().contains("410 Gone"), "{card}");
    let (_, endpoint) = admin
        .get(&format!("/bots/{}/webhook-endpoint", sessions["gone410"].0))
        .await;
    assert_eq!(endpoint["disabled"], true, "{endpoint}");
    assert!(endpoint["disabledReason"].as_str().unwrap().contains("410 Gone"));
    // 429 and 503 wait exactly as long as Retry-After says.
    assert_eq!(wait_ms(&delivery_of(&admin, &check("limited429")).await, now), 120_000);
    assert_eq!(
        wait_ms(&delivery_of(&admin, &check("unavailable503")).await, now),
        45_000
    );
    // Server errors, timeouts and refused connections retry on the schedule.
    for (case, error) in [
        ("error500", "HTTP 500"),
        ("slow", "did not answer in time"),
        ("refused", "could not connect"),
    ] {
        let delivery = delivery_of(&admin, &check(case)).await;
        assert_eq!(delivery["status"], "pending", "{case}: {delivery}");
        assert!(
            delivery["attempts"][0]["error"].as_str().unwrap().contains(error),
            "{case}: {delivery}"
        );
        assert!((4_500..=5_500).contains(&wait_ms(&delivery, now)), "{case}");
        assert_eq!(session_card(&admin, &check(case)).await["status"], "queued");
    }
    let (_, health) = admin
        .get(&format!("/bots/{}/webhook-endpoint", sessions["error500"].0))
        .await;
    assert_eq!(health["consecutiveFailures"], 1);
    assert_eq!(health["lastError"], "HTTP 500");

    // Six seconds on: the scheduled retries happen (and succeed); Retry-After waits are still waiting.
    advance(&host, &clock, 6_000);
    assert!(
        attempted(&mut events, &check("error500")).await,
        "the retry after a 500 is delivered"
    );
    assert_eq!(
        delivery_of(&admin, &check("limited429")).await["attempts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        session_card(&admin, &check("error500")).await["delivery"]["status"],
        "delivered"
    );
    let (_, health) = admin
        .get(&format!("/bots/{}/webhook-endpoint", sessions["error500"].0))
        .await;
    assert_eq!(health["consecutiveFailures"], 0, "a success clears the failure count");
    advance(&host, &clock, 115_000);
    assert!(
        attempted(&mut events, &check("limited429")).await,
        "delivered once Retry-After has passed"
    );
    let delivery = delivery_of(&admin, &check("limited429")).await;
    let ids: Vec<String> = receiver
        .hits("limited429")
        .iter()
        .map(|h| h.webhook_id.clone())
        .collect();
    assert_eq!(
        ids,
        vec![delivery["id"].as_str().unwrap().to_owned(); 2],
        "the id is stable across retries"
    );
    let stamps: Vec<String> = receiver
        .hits("limited429")
        .iter()
        .map(|h| h.headers["leadtime-webhook-timestamp"].to_str().unwrap().to_owned())
        .collect();
    assert_ne!(stamps[0], stamps[1], "each attempt has a fresh timestamp and signature");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_keeps_failing_fails_its_session_and_can_be_redelivered() {
    let (host, clock) = host_on_manual_clock(|config| {
        config.delivery.retry_schedule = vec![Duration::from_secs(1), Duration::from_secs(1)];
    })
    .await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let receiver = Receiver::start(0, |_, _| Answer::Status(500)).await;
    let mut events = host.events();
    let (bot, first) = session_to(&admin, "claw", &receiver.url("hook")).await;
    attempted(&mut events, &first).await;
    for _ in 0..2 {
        advance(&host, &clock, 1_500);
        attempted(&mut events, &first).await;
    }
    let delivery = delivery_of(&admin, &first).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert_eq!(delivery["attempts"].as_array().unwrap().len(), 3);
    assert!(
        delivery["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["statusCode"] == 500 && a["latencyMs"].is_i64())
    );
    let card = session_card(&admin, &first).await;
    assert_eq!(card["status"], "failed");
    let reason = card["statusMessage"].as_str().unwrap();
    assert!(
        reason.contains("did not accept the session after 3 attempts (last: HTTP 500)"),
        "{reason}"
    );
    let (_, audit) = admin
        .get(&format!(
            "/audit?action=delivery.fail&targetId={}",
            delivery["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1);
    assert_eq!(audit["records"][0]["actorKind"], "system");
    let (_, health) = admin.get(&format!("/bots/{bot}/webhook-endpoint")).await;
    assert_eq!(
        (
            health["consecutiveFailures"].as_i64(),
            health["failedDeliveries"].as_i64()
        ),
        (Some(3), Some(1))
    );

    // The receiver is fixed: redelivery sends the same id, and the session runs again.
    receiver.answer_with(|_, _| Answer::Status(200));
    let (status, redelivered) = admin
        .post(
            &format!("/deliveries/{}/redeliver", delivery["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{redelivered}");
    assert_eq!(redelivered["status"], "pending");
    assert!(attempted(&mut events, &first).await);
    assert_eq!(
        receiver.hits("hook").last().unwrap().webhook_id,
        delivery["id"].as_str().unwrap()
    );
    let card = session_card(&admin, &first).await;
    assert_eq!(card["status"], "queued", "{card}");
    assert_eq!(card["delivery"]["status"], "delivered", "{card}");
    let statuses: Vec<&str> = card["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "failed", "queued"]);
    assert_eq!(
        delivery_of(&admin, &first).await["attempts"].as_array().unwrap().len(),
        4
    );

    // Every failed delivery of a time range, at once.
    receiver.answer_with(|_, _| Answer::Status(500));
    let task = admin.create_task("second").await;
    let (_, assigned) = admin
        .patch(
            &format!("/tasks/{}", task["id"].as_str().unwrap()),
            json!({"assigneeId": bot}),
        )
        .await;
    let second = assigned["agentSessionIds"][0].as_str().unwrap().to_owned();
    attempted(&mut events, &second).await;
    for _ in 0..2 {
        advance(&host, &clock, 1_500);
        attempted(&mut events, &second).await;
    }
    assert_eq!(delivery_of(&admin, &second).await["status"], "failed");
    receiver.answer_with(|_, _| Answer::Status(200));
    let (status, body) = admin
        .post(
            &format!("/bots/{bot}/deliveries/redeliver"),
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["redelivered"], 1);
    assert!(attempted(&mut events, &second).await);
    let (_, page) = admin.get(&format!("/bots/{bot}/deliveries?status=delivered")).await;
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 2);
    // A delivered webhook can be sent again too (receivers deduplicate on its id).
    let (status, again) = admin
        .post(
            &format!("/deliveries/{}/redeliver", delivery["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(attempted(&mut events, &first).await);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_internal_targets_are_refused() {
    let host = TestHost::start_with(|config| config.outbound.allow_private_targets = false, None).await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let receiver = Receiver::start(0, |_, _| Answer::Status(200)).await;
    let port = receiver.base.rsplit(':').next().unwrap().to_owned();
    let targets = [
        format!("http://127.0.0.1:{port}/hook"),
        "http://10.0.0.1/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://localhost:{port}/hook"),
    ];
    let mut events = host.events();
    for (n, target) in targets.iter().enumerate() {
        let (_, session) = session_to(&admin, &format!("bot{n}"), target).await;
        assert!(!attempted(&mut events, &session).await);
        let delivery = delivery_of(&admin, &session).await;
        assert_eq!(delivery["status"], "failed", "{target}: {delivery}");
        let error = delivery["attempts"][0]["error"].as_str().unwrap();
        assert!(
            error.contains("refused to connect") && error.contains("LEADTIME_ALLOW_PRIVATE_TARGETS"),
            "{target}: {error}"
        );
        let card = session_card(&admin, &session).await;
        assert_eq!(card["status"], "failed");
        assert!(
            card["statusMessage"].as_str().unwrap().contains("refused to connect"),
            "{card}"
        );
    }
    assert!(
        receiver.hits("hook").is_empty(),
        "nothing reached the loopback receiver"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_comes_back_gets_everything() {
    let (host, clock) = host_on_manual_clock(|_| {}).await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    // Find a free port, then leave it closed: the receiver is down.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let bot = admin.create_bot("Claw", "claw", &url).await;
    let mut events = host.events();
    let mut sessions = Vec::new();
    for n in 0..3 {
        let task = admin.create_task(&format!("queued {n}")).await;
        let (_, body) = admin
            .patch(
                &format!("/tasks/{}", task["id"].as_str().unwrap()),
                json!({"assigneeId": bot.id}),
            )
            .await;
        sessions.push(body["agentSessionIds"][0].as_str().unwrap().to_owned());
    }
    for session in &sessions {
        assert!(!attempted(&mut events, session).await);
    }
    // The receiver comes back on the same port; the next retries deliver everything.
    let receiver = Receiver::start(port, |_, _| Answer::Status(200)).await;
    advance(&host, &clock, 6_000);
    for session in &sessions {
        assert!(
            attempted(&mut events, session).await,
            "{session} delivered after the receiver returned"
        );
        assert_eq!(session_card(&admin, session).await["delivery"]["status"], "delivered");
    }
    assert_eq!(receiver.hits("hook").len(), 3);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_does_not_stall_the_others() {
    let host = TestHost::start_with(|config| config.delivery.per_endpoint_in_flight = 2, None).await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let receiver = Receiver::start(0, |path, _| {
        if path == "slow" {
            Answer::Held
        } else {
            Answer::Status(200)
        }
    })
    .await;
    let slow_bot = admin.create_bot("Slow", "slow", &receiver.url("slow")).await;
    let fast_bot = admin.create_bot("Fast", "fast", &receiver.url("fast")).await;
    let mut events = host.events();
    let mut slow = Vec::new();
    for n in 0..6 {
        let task = admin.create_task(&format!("slow {n}")).await;
        let (_, body) = admin
            .patch(
                &format!("/tasks/{}", task["id"].as_str().unwrap()),
                json!({"assigneeId": slow_bot.id}),
            )
            .await;
        slow.push(body["agentSessionIds"][0].as_str().unwrap().to_owned());
    }
    // The slow receiver holds as many requests as one endpoint may have in flight.
    receiver.wait_for_in_flight("slow", 2).await;
    let mut fast = Vec::new();
    for n in 0..4 {
        let task = admin.create_task(&format!("fast {n}")).await;
        let (_, body) = admin
            .patch(
                &format!("/tasks/{}", task["id"].as_str().unwrap()),
                json!({"assigneeId": fast_bot.id}),
            )
            .await;
        fast.push(body["agentSessionIds"][0].as_str().unwrap().to_owned());
    }
    // All fast deliveries go through while the slow receiver holds its requests.
    for session in &fast {
        assert!(attempted(&mut events, session).await);
    }
    assert_eq!(
        receiver.max_in_flight("slow"),
        2,
        "no more than the per-endpoint limit waits on the slow receiver"
    );
    assert_eq!(receiver.hits("slow").len(), 2);
    receiver.release();
    for session in &slow {
        assert!(attempted(&mut events, session).await);
    }
    assert!(receiver.max_in_flight("slow") <= 2);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_default_limits_busy_and_slow_endpoints_do_not_starve_each_other() {
    // The default limits; only the attempt timeout is long, so held attempts never time out.
    let host = TestHost::start_with(
        |config| config.delivery.attempt_timeout = Duration::from_secs(300),
        None,
    )
    .await;
    let defaults = leadtime_host::config::DeliveryConfig::default();
    let per_endpoint = defaults.per_endpoint_in_flight;
    assert!(
        per_endpoint * 2 < defaults.max_in_flight,
        "two slow endpoints must leave slots to the others"
    );
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let receiver = Receiver::start(0, |path, _| {
        if path.starts_with("slow") {
            Answer::Held
        } else {
            Answer::Status(200)
        }
    })
    .await;
    let slow_a = admin.create_bot("Slow A", "slowa", &receiver.url("slow-a")).await;
    let slow_b = admin.create_bot("Slow B", "slowb", &receiver.url("slow-b")).await;
    let busy = admin.create_bot("Busy", "busy", &receiver.url("busy")).await;

    // Two slow endpoints, each with more sessions than it may have attempts in flight.
    admin.open_sessions(&slow_a.id, per_endpoint + 5, 8).await;
    admin.open_sessions(&slow_b.id, per_endpoint + 5, 8).await;
    receiver.wait_for_in_flight("slow-a", per_endpoint).await;
    receiver.wait_for_in_flight("slow-b", per_endpoint).await;

    // A busy endpoint gets everything through while both slow ones hold their attempts.
    let busy_sessions = 200;
    admin.open_sessions(&busy.id, busy_sessions, 16).await;
    receiver.wait_for_hits("busy", busy_sessions).await;
    for slow in ["slow-a", "slow-b"] {
        assert_eq!(
            receiver.hits(slow).len(),
            per_endpoint,
            "{slow} holds exactly its share"
        );
        assert_eq!(receiver.max_in_flight(slow), per_endpoint);
    }

    // And the busy endpoint did not starve the slow ones: once they answer, all of theirs arrive.
    receiver.release();
    receiver.wait_for_hits("slow-a", per_endpoint + 5).await;
    receiver.wait_for_hits("slow-b", per_endpoint + 5).await;
    assert_eq!(receiver.hits("busy").len(), busy_sessions, "nothing sent twice");
    assert!(receiver.max_in_flight("slow-a") <= per_endpoint);
    host.stop().await;
}
