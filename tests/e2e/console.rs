//! The web console over HTTP, as a browser uses it (without running one): sign-in with a
//! person's token or a one-time link into an `HttpOnly`, `SameSite=Strict` cookie, the API's
//! authorization on every page, CSRF-checked forms, and the task page's live session cards.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::utils::receiver::{Answer, Receiver};
use crate::utils::sse::SseStream;
use crate::utils::{Api, TestHost};

/// A browser-like client of the console: keeps its cookie, does not follow redirects.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn new(host: &TestHost) -> Browser {
        let base = host.api("").base.trim_end_matches("/api/public").to_owned();
        Browser {
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header(COOKIE, cookie),
            None => request,
        };
        let response = request.send().await.unwrap();
        if let Some(set) = response.headers().get(SET_COOKIE) {
            let set = set.to_str().unwrap().to_owned();
            let pair = set.split(';').next().unwrap().to_owned();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        Page {
            status: response.status(),
            location: response.headers().get(LOCATION).map(|v| v.to_str().unwrap().to_owned()),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("sec-fetch-site", "same-origin")
            .form(form);
        self.send(request).await
    }

    async fn sign_in(&mut self, token: &str) -> Page {
        self.post("/console/sign-in", &[("token", token), ("next", "/console/tasks")])
            .await
    }
}

/// The CSRF value of the page's forms.
fn csrf(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a form with a CSRF value") + 19;
    body[at..at + 32].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_with_their_token_and_bots_and_bad_tokens_cannot() {
    let host = TestHost::start().await;
    let admin_token = host.bootstrap("Acme").await.admin_token;
    let admin = host.api(&admin_token);
    let bot = admin.create_bot("Coder", "coder", "http://127.0.0.1:9/unused").await;
    let mut browser = Browser::new(&host);

    // Not signed in: every page sends to the sign-in page, remembering where it was going.
    let page = browser.get("/console/tasks").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.location.as_deref(),
        Some("/console/sign-in?next=%2Fconsole%2Ftasks")
    );
    let form = browser.get("/console/sign-in").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("<label for=\"token\">"), "labelled: {}", form.body);

    // A bot's token, and a wrong one, are refused and set no cookie.
    let refused = browser.sign_in(&bot.token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body.contains("bot"), "{}", refused.body);
    assert!(browser.cookie.is_none());
    let wrong = browser.sign_in("lt_wrong").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(browser.cookie.is_none());

    // The admin's token: a sealed, HttpOnly, SameSite=Strict cookie (not the token itself).
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/console/sign-in", browser.base))
        .form(&[("token", admin_token.as_str())])
        .send()
        .await
        .unwrap();
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/console"),
        "{set}"
    );
    assert!(
        !set.contains(&admin_token),
        "the cookie does not carry the token in the clear"
    );
    let signed_in = browser.sign_in(&admin_token).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location.as_deref(), Some("/console/tasks"));
    admin.create_task("Fix the login button").await;
    let tasks = browser.get("/console/tasks").await;
    assert_eq!(tasks.status, StatusCode::OK);
    assert!(tasks.body.contains("Fix the login button"), "{}", tasks.body);
    assert!(tasks.body.contains("@ada"));

    // Revoking the token signs the browser out on its next request.
    let (_, me) = admin.get("/tokens").await;
    let id = me["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "bootstrap admin token")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = admin
        .call(reqwest::Method::DELETE, &format!("/tokens/{id}"), None)
        .await;
    assert!(status.is_success(), "{body}");
    assert_eq!(browser.get("/console/tasks").await.status, StatusCode::SEE_OTHER);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_link_signs_in_once() {
    let host = TestHost::start().await;
    host.bootstrap("Acme").await;
    let code = leadtime_host::use_cases::console::create_link(host.app(), "@ada", None)
        .await
        .unwrap();
    let mut browser = Browser::new(&host);
    let path = format!("/console/link/{code}");
    // Opening the link (as a chat preview might) does not use it.
    assert_eq!(browser.get(&path).await.status, StatusCode::OK);
    let used = browser.post(&path, &[]).await;
    assert_eq!(used.status, StatusCode::SEE_OTHER, "{}", used.body);
    assert!(browser.cookie.is_some());
    assert_eq!(browser.get("/console/tasks").await.status, StatusCode::OK);
    // Once only.
    let mut other = Browser::new(&host);
    let again = other.post(&path, &[]).await;
    assert_eq!(again.status, StatusCode::GONE, "{}", again.body);
    assert!(other.cookie.is_none());
    // Nobody by that handle: said so.
    let missing = leadtime_host::use_cases::console::create_link(host.app(), "nobody", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("no person @nobody"), "{missing}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_page_assigns_a_bot_comments_and_follows_its_session_card() {
    let host = TestHost::start_with(|config| config.outbound.allow_private_targets = true, None).await;
    let admin_token = host.bootstrap("Acme").await.admin_token;
    let admin = host.api(&admin_token);
    let wrapper = Receiver::start(0, |_, _| Answer::Status(200)).await;
    let bot = admin
        .create_bot("Coder", "coder", &wrapper.url("leadtime/webhook"))
        .await;
    let mut browser = Browser::new(&host);
    browser.sign_in(&admin_token).await;

    // A task made from the list's form.
    let list = browser.get("/console/tasks").await;
    let created = browser
        .post(
            "/console/tasks",
            &[
                ("csrf", &csrf(&list.body)),
                ("title", "Fix the login button"),
                ("description", "It does nothing."),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let task_page = browser.get(created.location.as_deref().unwrap()).await;
    assert_eq!(task_page.status, StatusCode::OK);
    // The picker shows the bot with its connection type.
    assert!(
        task_page.body.contains("Coder (@coder) — bot, self-hosted"),
        "{}",
        task_page.body
    );

    // A forged form (wrong CSRF value) changes nothing.
    let forged = browser
        .post(
            "/console/tasks/1/assign",
            &[("csrf", "0123456789abcdef0123456789abcdef"), ("assignee", &bot.id)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let (_, task) = admin.get("/tasks/1").await;
    assert!(task["assigneeId"].is_null(), "{task}");

    // Assigned from the picker: the session's card appears, following its stream.
    let token = csrf(&task_page.body);
    let assigned = browser
        .post("/console/tasks/1/assign", &[("csrf", &token), ("assignee", &bot.id)])
        .await;
    assert_eq!(assigned.status, StatusCode::SEE_OTHER, "{}", assigned.body);
    let page = browser.get("/console/tasks/1").await;
    let (_, task) = admin.get("/tasks/1").await;
    assert_eq!(task["assigneeId"], bot.id.as_str());
    let (_, history) = admin.get("/tasks/1/history").await;
    let session = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["session"]["id"].as_str())
        .unwrap()
        .to_owned();
    assert!(
        page.body
            .contains(&format!("data-stream=\"/console/sessions/{session}/stream\"")),
        "{}",
        page.body
    );
    // The card's stream, with the console's cookie: the wrapper's activity arrives.
    let bot_api = host.api(&bot.token);
    let stream_url = format!("{}/console/sessions/{session}/stream", browser.base);
    let response = browser
        .http
        .get(&stream_url)
        .header(COOKIE, browser.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    let (status, _) = bot_api
        .post(
            &format!("/agent-sessions/{session}/activities"),
            json!({"activityType": "thought", "body": "Reading the handler"}),
        )
        .await;
    assert!(status.is_success());
    let mut stream = SseStream::open(
        &format!("{}/agent-sessions/{session}/stream", admin.base),
        &admin_token,
        None,
    )
    .await
    .unwrap();
    let mut event = stream.next().await.unwrap();
    while event.event != "activity" {
        event = stream.next().await.unwrap();
    }
    assert_eq!(event.data["body"], "Reading the handler");
    let page = browser.get("/console/tasks/1").await;
    assert!(page.body.contains("Reading the handler"), "{}", page.body);

    // A comment mentioning the bot (its open session takes it as a follow-up or a new one opens).
    let comment = browser
        .post(
            "/console/tasks/1/comments",
            &[("csrf", &token), ("comment", "@coder please also check Safari")],
        )
        .await;
    assert_eq!(comment.status, StatusCode::SEE_OTHER, "{}", comment.body);
    let page = browser.get("/console/tasks/1").await;
    assert!(
        page.body.contains("<span class=\"mention\">@coder</span>"),
        "{}",
        page.body
    );

    // Cancel from the card.
    let canceled = browser
        .post(&format!("/console/sessions/{session}/cancel"), &[("csrf", &token)])
        .await;
    assert_eq!(canceled.status, StatusCode::SEE_OTHER, "{}", canceled.body);
    assert_eq!(admin.session_card(&session).await["status"], "canceled");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_workspaces_task_is_not_found_in_the_console() {
    let host = TestHost::start().await;
    let acme = host.api(&host.bootstrap("Acme").await.admin_token);
    acme.create_task("Acme's secret plan").await;
    let globex = host.bootstrap("Globex").await.admin_token;
    let mut browser = Browser::new(&host);
    browser.sign_in(&globex).await;
    let page = browser.get("/console/tasks/1").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(!page.body.contains("secret plan"));
    let _ = Api::new(&acme.base, None);
    host.stop().await;
}
