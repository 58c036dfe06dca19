//! The self-hosted plugin in the plugin test harness: a start queues one signed webhook to the
//! wrapper, in the wire contract's shape, and a bad config is refused field by field.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is the failure report

use leadtime_plugin_test::{Harness, Task};
use serde_json::json;

#[tokio::test]
async fn a_start_queues_the_session_webhook_for_the_wrapper() {
    let harness = Harness::builtin("self-hosted")
        .await
        .unwrap()
        .config(json!({"webhookUrl": "https://wrapper.example/leadtime/webhook"}));
    harness.validate().await.unwrap();
    harness
        .start(Task::new("Fix the login button").described("It does nothing."))
        .await
        .unwrap();
    let webhooks = harness.webhooks();
    assert_eq!(webhooks.len(), 1);
    let (url, body) = &webhooks[0];
    assert_eq!(url, "https://wrapper.example/leadtime/webhook");
    assert_eq!(body["agentRunId"], "ses_harness", "{body}");
    assert!(body.to_string().contains("Fix the login button"), "{body}");
    assert_eq!(harness.model_requests().len(), 0);

    let refused = Harness::builtin("self-hosted")
        .await
        .unwrap()
        .config(json!({"webhookUrl": "ftp://nope"}));
    let error = refused.validate().await.unwrap_err();
    assert!(error.contains("webhookUrl"), "{error}");
}
