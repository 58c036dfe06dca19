//! Test harness: a real host on a loopback port with its own database, an HTTP client for the
//! public API, and loopback fakes of outside services.

pub mod anthropic;
pub mod connector;
pub mod cursor;
pub mod db;
pub mod models;
pub mod process;
pub mod provider;
pub mod receiver;
pub mod sse;
pub mod wrapper;

use std::time::Duration;

use leadtime_host::app::HostEvent;
use leadtime_host::domain::time::{SharedClock, SystemClock};
use leadtime_host::use_cases::accounts::{self, Bootstrap};
use leadtime_host::{Config, RunningHost, SharedApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use db::TestDb;

/// The hostile fixture plugin (connection type `hostile`), built from `tests/fixtures/hostile-plugin`.
pub const HOSTILE_PLUGIN: &[u8] = include_bytes!(env!("LEADTIME_TEST_FIXTURE_HOSTILE"));

/// A plugin built against `leadtime:agent-runtime@0.1.0` (`tests/fixtures/legacy-plugin`).
pub const LEGACY_PLUGIN: &[u8] = include_bytes!(env!("LEADTIME_TEST_FIXTURE_LEGACY"));

/// Longest a test waits for something the host does in the background. Only a safety net
/// against hangs: tests wait on events, never on time.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A host running for one test.
pub struct TestHost {
    pub host: Option<RunningHost>,
    pub base_url: String,
    config: Config,
    clock: SharedClock,
    /// Kept alive until the host stops; dropping it removes a PostgreSQL test database.
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl TestHost {
    /// Starts a host on 127.0.0.1:0 with a fresh database.
    pub async fn start() -> TestHost {
        Self::start_with(|_| {}, None).await
    }

    /// Starts a host after `configure` adjusted its configuration, on `clock` (the system clock
    /// when `None`).
    pub async fn start_with(configure: impl FnOnce(&mut Config), clock: Option<SharedClock>) -> TestHost {
        // `LEADTIME_TEST_LOG=debug cargo test …` shows the host's logs of failing tests.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(std::env::var("LEADTIME_TEST_LOG").unwrap_or_else(|_| "error".into()))
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDb::create(dir.path()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = Config::new(dir.path().join("data"), Some(db.url.clone()), format!("http://{addr}"));
        // Compiled plugins are shared by every test of the run.
        config.plugin_cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"));
        // Tests make many calls with one token; the limit has its own test.
        config.rate_limit_per_minute = 0;
        // Tests send bad tokens on purpose; the lockout has its own test.
        config.auth_failures_per_minute = 0;
        // The fakes listen on loopback; the SSRF tests turn this off again.
        config.outbound.allow_private_targets = true;
        configure(&mut config);
        let clock = clock.unwrap_or_else(|| std::sync::Arc::new(SystemClock));
        let host = leadtime_host::start_with_clock(config.clone(), listener, clock.clone())
            .await
            .expect("host starts");
        TestHost {
            host: Some(host),
            base_url: format!("http://{addr}"),
            config,
            clock,
            _db: db,
            _dir: dir,
        }
    }

    /// Scans every text column of every table for each of `secrets`.
    pub async fn assert_absent_from_database(&self, secrets: &[String]) {
        let columns_sql = if self.is_postgres() {
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns WHERE table_schema = 'public'"
        } else {
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'"
        };
        let mut conn = self.app().db.read().await.unwrap();
        let columns: Vec<(String, String)> = sqlx::query_as(columns_sql).fetch_all(&mut *conn).await.unwrap();
        assert!(
            columns.len() > 50,
            "expected to scan the whole schema, found {} columns",
            columns.len()
        );
        for (table, column) in &columns {
            for secret in secrets {
                let sql = format!("SELECT COUNT(*) FROM {table} WHERE CAST({column} AS TEXT) LIKE $1");
                let found: i64 = sqlx::query_scalar(&sql)
                    .bind(format!("%{secret}%"))
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                assert_eq!(found, 0, "a plaintext secret is stored in {table}.{column}");
            }
        }
    }

    /// The database URL the host uses.
    pub fn database_url(&self) -> &str {
        &self._db.url
    }

    /// Subscribes to what the host's workers finish; subscribe before triggering the work.
    pub fn events(&self) -> Events {
        Events {
            receiver: self.app().events.subscribe(),
            unclaimed: Vec::new(),
        }
    }

    /// Whether the test runs on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.app().db.backend() == leadtime_host::store::Backend::Postgres
    }

    /// Runs raw SQL as the database owner (to tamper with rows the API protects).
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let mut tx = self.app().db.begin().await.expect("begin");
        let done = sqlx::query(sql).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Audit records written by the request with `request_id`.
    pub async fn audit_records_of(&self, request_id: &str) -> i64 {
        let mut conn = self.app().db.read().await.expect("db");
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE request_id = $1")
            .bind(request_id)
            .fetch_one(&mut *conn)
            .await
            .expect("count")
    }

    /// The host's shared state.
    pub fn app(&self) -> &SharedApp {
        &self.host.as_ref().expect("host is running").app
    }

    /// A client for the public API with `token`.
    pub fn api(&self, token: &str) -> Api {
        Api {
            base: format!("{}/api/public", self.base_url),
            token: Some(token.to_owned()),
            http: http_client(),
        }
    }

    /// A client without a token.
    pub fn anonymous(&self) -> Api {
        Api {
            base: format!("{}/api/public", self.base_url),
            token: None,
            http: http_client(),
        }
    }

    /// Creates a workspace and returns its admin's token.
    pub async fn bootstrap(&self, workspace: &str) -> Workspace {
        let done = accounts::bootstrap(
            self.app(),
            Bootstrap {
                workspace_name: workspace.into(),
                admin_name: "Ada Admin".into(),
                admin_handle: "ada".into(),
                admin_email: None,
            },
        )
        .await
        .expect("bootstrap");
        Workspace {
            id: done.workspace.id.to_string(),
            admin_id: done.admin.id.to_string(),
            admin_token: done.admin_token,
        }
    }

    /// Rows in `table` (to prove bad input wrote nothing).
    pub async fn count(&self, table: &str) -> i64 {
        let mut conn = self.app().db.read().await.expect("db");
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *conn)
            .await
            .expect("count")
    }

    /// Stops the host gracefully and starts a new one on the same database, data directory, clock
    /// and (when it is still free) port. Plugins loaded by hand must be loaded again.
    pub async fn restart(&mut self) {
        self.try_restart(|_| {}).await.expect("host restarts");
    }

    /// Like [`TestHost::restart`], after `configure` changed the configuration; returns why the
    /// new host did not start, if it did not (the test host is then stopped).
    pub async fn try_restart(&mut self, configure: impl FnOnce(&mut Config)) -> anyhow::Result<()> {
        let old: std::net::SocketAddr = self.base_url.trim_start_matches("http://").parse().expect("addr");
        if let Some(host) = self.host.take() {
            host.shutdown().await;
        }
        configure(&mut self.config);
        let listener = match tokio::net::TcpListener::bind(old).await {
            Ok(listener) => listener,
            Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        };
        let addr = listener.local_addr().expect("addr");
        self.config.public_url = format!("http://{addr}");
        let host = leadtime_host::start_with_clock(self.config.clone(), listener, self.clock.clone()).await?;
        self.host = Some(host);
        self.base_url = format!("http://{addr}");
        Ok(())
    }

    /// Loads the hostile fixture plugin (connection type `hostile`; off in every workspace until
    /// an admin enables it). Loaded by hand, it must be loaded again after a restart.
    pub async fn load_hostile_plugin(&self) {
        self.app()
            .runtime
            .load("test:hostile", HOSTILE_PLUGIN)
            .await
            .expect("the hostile fixture loads");
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops the host and waits for its workers.
    pub async fn stop(mut self) {
        if let Some(host) = self.host.take() {
            host.shutdown().await;
        }
    }
}

/// What the host's workers finished, in any order: an event a test is not waiting for yet is
/// kept until it is.
pub struct Events {
    receiver: broadcast::Receiver<HostEvent>,
    unclaimed: Vec<HostEvent>,
}

impl Events {
    /// Waits for the first event matching `wanted` (a safety timeout only guards against hangs).
    pub async fn wait_for(&mut self, what: &str, wanted: impl Fn(&HostEvent) -> bool) -> HostEvent {
        if let Some(index) = self.unclaimed.iter().position(&wanted) {
            return self.unclaimed.remove(index);
        }
        let found = tokio::time::timeout(EVENT_TIMEOUT, async {
            loop {
                match self.receiver.recv().await {
                    Ok(event) if wanted(&event) => return event,
                    Ok(event) => self.unclaimed.push(event),
                    Err(broadcast::error::RecvError::Lagged(n)) => panic!("missed {n} host events"),
                    Err(broadcast::error::RecvError::Closed) => panic!("the host stopped before {what}"),
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("{what} did not happen within {EVENT_TIMEOUT:?}"))
    }

    /// Waits for the next job of `kind` (`start_session`, `session_event`, `timer`) of `session`
    /// to finish.
    pub async fn job_finished(&mut self, session: &str, kind: &str) -> HostEvent {
        self.wait_for(&format!("a {kind} job of {session}"), |e| {
            matches!(e, HostEvent::JobFinished { kind: k, session_id: Some(s), .. } if s.as_str() == session && k == kind)
        })
        .await
    }
}

/// A bootstrapped workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: String,
    pub admin_id: String,
    pub admin_token: String,
}

/// A created bot with its one-time credentials.
#[derive(Debug, Clone)]
pub struct Bot {
    pub id: String,
    pub handle: String,
    pub token: String,
    pub webhook_secret: String,
}

/// The HTTP client tests call the host with (it says who it is, as real clients do).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("leadtime-e2e")
        .build()
        .expect("http client")
}

/// What the host answered.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    /// `x-request-id`, which the audit trail records.
    pub request_id: String,
    pub headers: reqwest::header::HeaderMap,
}

/// A minimal client for the public API: every call returns the status and the JSON body.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    /// A client for the API at `base` (`…/api/public`).
    pub fn new(base: &str, token: Option<&str>) -> Api {
        Api {
            base: base.to_owned(),
            token: token.map(str::to_owned),
            http: http_client(),
        }
    }

    /// The bearer token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Sends `method path` with an optional JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let reply = self.send(method, path, body).await;
        (reply.status, reply.body)
    }

    /// Sends `method path` and returns status, JSON body and the request id the host assigned.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request reaches the host");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Reply {
            status,
            body,
            request_id,
            headers,
        }
    }

    /// Sends a raw body with the given content type.
    pub async fn raw(&self, method: Method, path: &str, content_type: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body.to_owned());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("request reaches the host");
        let status = response.status();
        let value = response.json().await.unwrap_or(Value::Null);
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(&body)).await
    }

    /// Creates a self-hosted bot delivering to `webhook_url`.
    pub async fn create_bot(&self, name: &str, handle: &str, webhook_url: &str) -> Bot {
        let (status, body) = self
            .post(
                "/bots",
                json!({"name": name, "handle": handle, "connection": {"type": "self-hosted", "config": {"webhookUrl": webhook_url, "mode": "basic", "guidance": "Keep answers short."}}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create bot: {body}");
        Bot {
            id: body["bot"]["id"].as_str().expect("bot id").to_owned(),
            handle: handle.to_owned(),
            token: body["token"].as_str().expect("bot token").to_owned(),
            webhook_secret: body["webhookSecret"].as_str().expect("webhook secret").to_owned(),
        }
    }

    /// Lets this workspace's bots use connection type `id`.
    pub async fn enable_connection_type(&self, id: &str) {
        let (status, body) = self
            .patch(&format!("/connection-types/{id}"), json!({"enabled": true}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Creates a task and returns its JSON.
    pub async fn create_task(&self, title: &str) -> Value {
        let (status, body) = self
            .post(
                "/tasks",
                json!({"title": title, "description": "Steps to reproduce: log in twice."}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create task: {body}");
        body
    }

    /// Creates `count` tasks assigned to `bot`, `parallel` requests at a time; returns the
    /// sessions they opened.
    pub async fn open_sessions(&self, bot: &str, count: usize, parallel: usize) -> Vec<String> {
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
        let mut all = tokio::task::JoinSet::new();
        for n in 0..count {
            let permit = slots.clone().acquire_owned().await.expect("semaphore");
            let (api, bot) = (self.clone(), bot.to_owned());
            all.spawn(async move {
                let (status, task) = api
                    .post("/tasks", json!({"title": format!("work {n}"), "assigneeId": bot}))
                    .await;
                drop(permit);
                assert_eq!(status, StatusCode::CREATED, "{task}");
                task["agentSessionIds"][0].as_str().expect("a session").to_owned()
            });
        }
        let mut sessions = Vec::with_capacity(count);
        while let Some(session) = all.join_next().await {
            sessions.push(session.expect("a task creation"));
        }
        sessions
    }
}

/// A host on a manual clock (timers and retries fire when the test advances it), private targets
/// allowed for the loopback fakes, one workspace: `(host, admin client, clock, admin token)`.
pub async fn manual_clock_host() -> (TestHost, Api, leadtime_host::domain::time::ManualClock, String) {
    use leadtime_host::domain::time::{Clock, ManualClock};
    let clock = ManualClock::new(SystemClock.now());
    let host = TestHost::start_with(
        |config| config.outbound.allow_private_targets = true,
        Some(std::sync::Arc::new(clock.clone())),
    )
    .await;
    let token = host.bootstrap("Acme").await.admin_token;
    let admin = host.api(&token);
    (host, admin, clock, token)
}

impl Api {
    /// Creates a task and assigns it to `bot`: `(task id, the session it opened)`.
    pub async fn assign_new_task(&self, bot: &str, title: &str, description: &str) -> (String, String) {
        let (_, task) = self
            .post("/tasks", json!({"title": title, "description": description}))
            .await;
        let task = task["id"].as_str().expect("a task id").to_owned();
        let (status, assigned) = self.patch(&format!("/tasks/{task}"), json!({"assigneeId": bot})).await;
        assert_eq!(status, StatusCode::OK, "{assigned}");
        let session = assigned["agentSessionIds"][0].as_str().expect("a session").to_owned();
        (task, session)
    }

    /// The card of agent session `session`.
    pub async fn session_card(&self, session: &str) -> Value {
        self.get(&format!("/agent-sessions/{session}")).await.1
    }
}

/// A session card's feed: `(activityType, body)` in order.
pub fn feed(card: &Value) -> Vec<(String, String)> {
    card["activities"]
        .as_array()
        .expect("activities")
        .iter()
        .map(|a| {
            (
                a["activityType"].as_str().unwrap_or_default().to_owned(),
                a["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
