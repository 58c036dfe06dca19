//! The console in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver, installed by `./dev test`). Signs in, enables a connection type, creates a
//! self-hosted bot from its generated form, assigns it a task and watches the session card go
//! queued → running → done without a reload while the test plays the wrapper, mentions the bot,
//! redelivers a failed delivery, and checks that a member cannot open the admin pages and a bot
//! cannot sign in. Screenshots of the task page and the bot page go to `target/screenshots/`
//! (`LEADTIME_UPDATE_SCREENSHOTS=1` writes the README's copies in `docs/screenshots/`).
//!
//! Run alone: `./dev test --test e2e browser` (with `LEADTIME_TEST_DATABASE_URL` for PostgreSQL).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::utils::receiver::{Answer, Receiver};
use crate::utils::{Api, TestHost};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and a headless Chromium session through it; both end when dropped.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
}

impl Browser {
    async fn start() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
            "the browser tests need Debian's chromium and chromium-driver: `./dev test` installs them \
             (apt-get install chromium chromium-driver)"
        );
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        // It says when it listens.
        let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("started successfully") {
                break;
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1440,1000", "--lang=en-US"]}),
        );
        // chromedriver speaks plain HTTP on loopback: no TLS.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser {
            client,
            _driver: driver,
        }
    }

    async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
    }

    async fn body(&self) -> String {
        self.text("body").await
    }

    /// Clicks `button` and waits until the page it leads to shows `css` (the page clicked on is
    /// marked first, so an element it already has does not count).
    async fn submit_and_wait_for(&self, button: &str, css: &str) {
        self.client
            .execute("document.documentElement.dataset.left = 'yes';", vec![])
            .await
            .unwrap();
        self.click(button).await;
        self.wait_for(&format!("html:not([data-left]) {css}")).await;
    }

    /// Waits (WebDriver polls the page) until `css` matches.
    async fn wait_for(&self, css: &str) {
        self.client
            .wait()
            .at_most(std::time::Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("`{css}` never appeared: {e}"));
    }

    /// A screenshot of the whole page (the window grows to the page's height for it).
    async fn screenshot(&self, name: &str) {
        let (width, height) = self.client.get_window_size().await.unwrap();
        let page: Value = self
            .client
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .unwrap();
        let full = page.as_u64().unwrap_or(height).clamp(height, 4_000) as u32;
        self.client.set_window_size(width as u32, full + 120).await.unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client.set_window_size(width as u32, height as u32).await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(screenshot_dir());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    async fn sign_in(&self, base: &str, token: &str) {
        self.open(&format!("{base}/console/sign-in")).await;
        self.fill("#token", token).await;
        self.submit_and_wait_for("form button[type=submit]", "body").await;
    }

    async fn close(self) {
        self.client.close().await.unwrap();
    }
}

/// Where screenshots go: `target/screenshots/` on every run; the README's copies in
/// `docs/screenshots/` when `LEADTIME_UPDATE_SCREENSHOTS=1` (so a test run leaves git clean).
fn screenshot_dir() -> &'static str {
    if std::env::var("LEADTIME_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        "../docs/screenshots"
    } else {
        "../target/screenshots"
    }
}

/// The host's base URL (without `/api/public`).
fn base(host: &TestHost) -> String {
    host.api("").base.trim_end_matches("/api/public").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_runs_a_bot_from_the_console_and_watches_its_session_live() {
    let host = TestHost::start_with(
        |config| {
            config.outbound.allow_private_targets = true;
            // One attempt: a refused webhook fails at once, for the redelivery below.
            config.delivery.retry_schedule = Vec::new();
        },
        None,
    )
    .await;
    let workspace = host.bootstrap("Acme").await;
    let admin = host.api(&workspace.admin_token);
    host.load_hostile_plugin().await;
    let wrapper = Receiver::start(0, |_, _| Answer::Status(200)).await;
    let base = base(&host);
    let browser = Browser::start().await;

    // Sign in with the admin's token.
    browser.sign_in(&base, &workspace.admin_token).await;
    browser.wait_for("h1").await;
    assert_eq!(browser.text("h1").await, "Tasks");

    // Enable a connection type from the plugins directory (disabled until an admin enables it).
    browser.open(&format!("{base}/console/admin")).await;
    let row = browser.text("#type-hostile").await;
    assert!(row.contains("disabled"), "{row}");
    browser.click("#type-hostile button[aria-label='Enable hostile']").await;
    browser
        .wait_for("#type-hostile button[aria-label='Disable hostile']")
        .await;
    let (_, types) = admin.get("/connection-types").await;
    let hostile = types["connectionTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "hostile")
        .unwrap()
        .clone();
    assert_eq!(hostile["enabled"], true, "{hostile}");

    // A self-hosted bot from the form its plugin's config schema generates.
    browser.open(&format!("{base}/console/admin/bots")).await;
    browser
        .client
        .find(Locator::Css("#new-type option[value='self-hosted']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.click("form[action='/console/admin/bots/new'] button").await;
    browser.wait_for("#config-webhookUrl").await;
    browser.fill("#bot-name", "Coder").await;
    browser.fill("#bot-handle", "coder").await;
    browser
        .fill("#config-webhookUrl", &wrapper.url("leadtime/webhook"))
        .await;
    browser
        .click("form[action='/console/admin/bots'] button[type=submit]")
        .await;
    browser.wait_for("#bot-token").await;
    let bot_token = browser.text("#bot-token").await;
    let bot = host.api(&bot_token);
    let (_, bots) = admin.get("/bots").await;
    let bot_id = bots["bots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["handle"] == "coder")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Edit it: the form is filled with its settings; the plugin checks the new ones.
    browser.open(&format!("{base}/console/admin/bots/{bot_id}")).await;
    browser.wait_for("#config-guidance").await;
    let url_field = browser.client.find(Locator::Css("#config-webhookUrl")).await.unwrap();
    assert_eq!(
        url_field.prop("value").await.unwrap().as_deref(),
        Some(wrapper.url("leadtime/webhook").as_str())
    );
    browser.fill("#config-webhookUrl", "not a url").await;
    browser.click("form[action$='/edit'] button[type=submit]").await;
    browser.wait_for("section[aria-labelledby='config'] p.problem").await;
    assert!(
        browser
            .text("section[aria-labelledby='config'] p.problem")
            .await
            .contains("webhookUrl")
    );
    browser.open(&format!("{base}/console/admin/bots/{bot_id}")).await;
    browser.fill("#config-guidance", "Answer in one sentence.").await;
    browser
        .submit_and_wait_for("form[action$='/edit'] button[type=submit]", "#config-guidance")
        .await;
    let (_, saved) = admin.get(&format!("/bots/{bot_id}")).await;
    assert_eq!(
        saved["connection"]["config"]["guidance"], "Answer in one sentence.",
        "{saved}"
    );
    assert_eq!(
        saved["connection"]["config"]["webhookUrl"],
        wrapper.url("leadtime/webhook"),
        "{saved}"
    );

    // Assign a task to it from the task page; the card appears and follows the session live.
    let task = admin.create_task("Fix the login button").await;
    let number = task["shortNumber"].as_i64().unwrap();
    browser.open(&format!("{base}/console/tasks/{number}")).await;
    browser
        .client
        .find(Locator::Css(&format!("#assignee-picker option[value='{bot_id}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        browser
            .text("#assignee-picker")
            .await
            .contains("Coder (@coder) — bot, self-hosted"),
        "the picker names the bot's connection type"
    );
    browser.click("form[action$='/assign'] button").await;
    browser.wait_for("article.session[data-session-status='queued']").await;
    let session = browser
        .client
        .find(Locator::Css("article.session"))
        .await
        .unwrap()
        .attr("id")
        .await
        .unwrap()
        .unwrap();
    browser
        .client
        .execute("window.__notReloaded = true; return true;", vec![])
        .await
        .unwrap();
    // The wrapper (the test) reports; the card changes without a reload.
    let report = |body: Value| {
        let bot = bot.clone();
        let session = session.clone();
        async move {
            let (status, answer) = bot.post(&format!("/agent-sessions/{session}/activities"), body).await;
            assert!(status.is_success(), "{answer}");
        }
    };
    set_status(&bot, &session, "running").await;
    browser.wait_for("article.session[data-session-status='running']").await;
    report(json!({"activityType": "thought", "body": "Reading the click handler"})).await;
    browser
        .wait_for(&format!("article.session[id='{session}'] ol.feed li:last-child"))
        .await;
    report(json!({"activityType": "response", "body": "Bound the handler; added a test."})).await;
    set_status(&bot, &session, "done").await;
    browser.wait_for("article.session[data-session-status='done']").await;
    let card = browser.text(&format!("article.session[id='{session}']")).await;
    assert!(card.contains("Reading the click handler"), "{card}");
    assert!(card.contains("Bound the handler; added a test."), "{card}");
    let still = browser
        .client
        .execute("return window.__notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(still, json!(true), "the page was not reloaded");
    browser.screenshot("task-page.png").await;

    // Mention the bot in a comment.
    browser.fill("#comment-body", "@coder please check Safari too").await;
    browser.click("form[action$='/comments'] button").await;
    browser.wait_for("span.mention").await;
    assert_eq!(browser.text("span.mention").await, "@coder");
    let (_, history) = admin.get(&format!("/tasks/{number}/history")).await;
    let sessions = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "agentSession")
        .count();
    assert_eq!(
        sessions, 2,
        "the mention opened a second session (the first had finished)"
    );

    // A delivery the wrapper refused, redelivered from the bot page once it is back.
    wrapper.answer_with(|_, _| Answer::Status(500));
    let failing_task = admin.create_task("Another one").await;
    let failing = failing_task["id"].as_str().unwrap().to_owned();
    let mut events = host.events();
    let (status, assigned) = admin
        .patch(&format!("/tasks/{failing}"), json!({"assigneeId": bot_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{assigned}");
    let failed_session = assigned["agentSessionIds"][0].as_str().unwrap().to_owned();
    events
        .wait_for("the refused delivery", |e| {
            matches!(e, leadtime_host::app::HostEvent::DeliveryAttempted { session_id: Some(s), delivered: false, .. } if s.as_str() == failed_session)
        })
        .await;
    wrapper.answer_with(|_, _| Answer::Status(200));
    browser.open(&format!("{base}/console/admin/bots/{bot_id}")).await;
    browser.wait_for("form[action$='/redeliver'] button").await;
    browser.screenshot("bot-page.png").await;
    browser.click("form[action$='/redeliver'] button").await;
    events
        .wait_for("the redelivery", |e| {
            matches!(e, leadtime_host::app::HostEvent::DeliveryAttempted { session_id: Some(s), delivered: true, .. } if s.as_str() == failed_session)
        })
        .await;

    // The audit trail verifies from the console.
    browser.open(&format!("{base}/console/admin/audit?verify=1")).await;
    assert!(browser.text("#verified").await.starts_with("The chain is intact"));

    // Narrow screens: the task page still reads as one column.
    browser.client.set_window_size(375, 900).await.unwrap();
    browser.open(&format!("{base}/console/tasks/{number}")).await;
    let width: Value = browser
        .client
        .execute("return document.documentElement.scrollWidth;", vec![])
        .await
        .unwrap();
    assert!(
        width.as_i64().unwrap() <= 375,
        "no horizontal scrolling at 375 px: {width}"
    );
    browser.screenshot("task-page-375.png").await;
    browser.close().await;
    let _ = Api::new(&base, None);
    host.stop().await;
}

async fn set_status(bot: &Api, session: &str, status: &str) {
    let (code, answer) = bot
        .call(
            reqwest::Method::PATCH,
            &format!("/agent-sessions/{session}/status"),
            Some(&json!({ "status": status })),
        )
        .await;
    assert!(code.is_success(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_open_the_admin_pages_and_a_bot_cannot_sign_in() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (status, member) = admin
        .post(
            "/people",
            json!({"name": "Max Member", "handle": "max", "role": "member"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{member}");
    let member_token = member["token"].as_str().unwrap().to_owned();
    let bot = admin.create_bot("Coder", "coder", "http://127.0.0.1:9/unused").await;
    let base = base(&host);
    let browser = Browser::start().await;

    browser.sign_in(&base, &bot.token).await;
    browser.wait_for("p.problem").await;
    assert!(browser.text("p.problem").await.contains("bot's token cannot sign in"));

    browser.sign_in(&base, &member_token).await;
    browser.wait_for("h1").await;
    assert_eq!(browser.text("h1").await, "Tasks");
    assert!(!browser.body().await.contains("Admin"), "no admin link for a member");
    // Keyboard: the first Tab reaches the skip link, Enter moves the focus to the content.
    let body = browser.client.find(Locator::Css("body")).await.unwrap();
    body.send_keys(&fantoccini::key::Key::Tab.to_string()).await.unwrap();
    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Skip to content");
    focused
        .send_keys(&fantoccini::key::Key::Enter.to_string())
        .await
        .unwrap();
    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("main"));
    for page in ["/console/admin", "/console/admin/bots", "/console/admin/audit"] {
        browser.open(&format!("{base}{page}")).await;
        assert!(
            browser.text("p.problem").await.contains("Only workspace admins"),
            "{page}"
        );
    }
    browser.close().await;
    host.stop().await;
}
