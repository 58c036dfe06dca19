//! The triage agent in the plugin test harness: scripted model answers drive its loop without a
//! database, a server or a model.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is the failure report

use leadtime_plugin_test::{Harness, Reply, Task};
use serde_json::json;

async fn agent() -> Harness {
    Harness::builtin("triage-agent").await.unwrap().config(
        json!({"provider": "openai", "baseUrl": "http://127.0.0.1:11434", "model": "llama3.1:8b",
            "allowedStatuses": ["In progress"], "keyless": true}),
    )
}

#[tokio::test]
async fn it_plans_sets_a_status_and_answers() {
    let harness = agent().await;
    harness
        .start(Task::new("Fix the login button").comment("Bo", "Only on Safari."))
        .await
        .unwrap();
    assert_eq!(harness.status(), "running");
    let first = &harness.model_requests()[0];
    assert!(first.messages.to_string().contains("Only on Safari."));
    assert_eq!(first.base_url, "http://127.0.0.1:11434");
    assert_eq!(first.api_key_secret, None, "keyless: no key for a local server");
    let tools: Vec<&str> = first
        .tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["get_task", "add_comment", "ask_for_details", "set_status"]);

    harness
        .answer_model(Reply::tools(
            Some("Planning."),
            &[
                (
                    "add_comment",
                    json!({"comment": "- [ ] Reproduce on Safari\n- [ ] Fix the handler"}),
                ),
                ("set_status", json!({"status": "In progress"})),
                ("set_status", json!({"status": "Done"})),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(harness.comments().last().unwrap().0, "Harness bot");
    assert_eq!(harness.task_status(), "In progress");
    // A status it may not set is refused, and the model is told so.
    let second = harness.model_requests()[1].messages.to_string();
    assert!(second.contains("you may not set `Done`"), "{second}");

    harness.answer_model(Reply::text("Planned for Safari.")).await.unwrap();
    assert_eq!(harness.status(), "done");
    assert_eq!(harness.activities().last().unwrap().body, "Planned for Safari.");
    assert!(harness.kv().is_empty(), "no state left behind");
}

#[tokio::test]
async fn it_asks_when_the_task_is_vague_and_continues_on_a_follow_up() {
    let harness = agent().await;
    harness.start(Task::new("It is slow")).await.unwrap();
    harness
        .answer_model(Reply::tools(
            None,
            &[("ask_for_details", json!({"question": "Which page?"}))],
        ))
        .await
        .unwrap();
    assert_eq!(
        harness.waiting_model_requests(),
        0,
        "it waits for a person, not a model"
    );
    assert!(harness.activity_types().contains(&"elicitation".to_owned()));
    harness.mention("Ada", "@triage the search page").await.unwrap();
    assert!(
        harness.model_requests()[1]
            .messages
            .to_string()
            .contains("the search page")
    );
    harness
        .answer_model(Reply::failed("The model server refused the request (400)"))
        .await
        .unwrap();
    assert_eq!(harness.status(), "failed");
    assert_eq!(
        harness.status_message().as_deref(),
        Some("The model server refused the request (400)")
    );
}

#[tokio::test]
async fn a_follow_up_handed_over_twice_joins_once_and_a_repeated_text_is_still_posted() {
    let harness = agent().await;
    harness.start(Task::new("Fix the login button")).await.unwrap();
    harness
        .answer_model(Reply::tools(
            None,
            &[("add_comment", json!({"comment": "Looking into it."}))],
        ))
        .await
        .unwrap();
    // While the model thinks, a mention arrives, and is handed over again (at-least-once).
    harness.mention("Ada", "@triage also on Safari").await.unwrap();
    harness.mention("Ada", "@triage also on Safari").await.unwrap();
    assert_eq!(harness.waiting_model_requests(), 1, "no second request while one waits");
    // The model says the same thing again in a later turn: a first run posts it (only a step run
    // again after a crash looks for its earlier comment).
    harness
        .answer_model(Reply::tools(
            None,
            &[("add_comment", json!({"comment": "Looking into it."}))],
        ))
        .await
        .unwrap();
    let third = harness.model_requests()[2].messages.to_string();
    assert_eq!(third.matches("also on Safari").count(), 1, "{third}");
    let mine: Vec<_> = harness
        .comments()
        .into_iter()
        .filter(|(author, body)| author == "Harness bot" && body == "Looking into it.")
        .collect();
    assert_eq!(mine.len(), 2);
    harness.answer_model(Reply::text("Done.")).await.unwrap();
    assert_eq!(harness.status(), "done");
}
