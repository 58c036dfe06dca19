//! The real `leadtime-host` binary as a child process, on its own database and data directory:
//! for tests that kill it, measure its memory, or load it as a hostile client would (its resources
//! are then its own, not shared with the test).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

use super::db::TestDb;
use super::{Api, EVENT_TIMEOUT};

/// A bootstrapped database and data directory a host process can be started on (and restarted).
pub struct HostFiles {
    _dir: tempfile::TempDir,
    pub db: TestDb,
    pub data_dir: PathBuf,
    /// The bootstrapped workspace admin's token.
    pub admin_token: String,
}

impl HostFiles {
    /// A fresh database with one workspace (`leadtime-host bootstrap`), and an empty data directory.
    pub async fn bootstrap(workspace: &str) -> HostFiles {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDb::create(dir.path()).await;
        let data_dir = dir.path().join("data");
        let bootstrap = Command::new(env!("CARGO_BIN_EXE_leadtime-host"))
            .args([
                "bootstrap",
                "--json",
                "--workspace",
                workspace,
                "--database-url",
                &db.url,
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .env("LEADTIME_LOG", "error")
            .output()
            .expect("run leadtime-host bootstrap");
        assert!(
            bootstrap.status.success(),
            "{}",
            String::from_utf8_lossy(&bootstrap.stderr)
        );
        let admin_token = serde_json::from_slice::<Value>(&bootstrap.stdout).expect("bootstrap JSON")["adminToken"]
            .as_str()
            .expect("admin token")
            .to_owned();
        HostFiles {
            _dir: dir,
            db,
            data_dir,
            admin_token,
        }
    }

    /// Puts a plugin file in the host's plugins directory (loaded at start).
    pub fn add_plugin(&self, name: &str, wasm: &[u8]) {
        let dir = self.data_dir.join("plugins");
        std::fs::create_dir_all(&dir).expect("plugins dir");
        std::fs::write(dir.join(name), wasm).expect("write plugin");
    }
}

/// Log lines of a host process kept for a test to read (the newest; older ones are counted).
const LOG_LINES_KEPT: usize = 20_000;

/// What a host process wrote to its log since it listened.
#[derive(Default)]
struct LogLines {
    lines: std::collections::VecDeque<String>,
    total: usize,
}

/// A `leadtime-host serve` child process; dropping it kills it (`kill -9`).
pub struct HostProcess {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<LogLines>>,
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl HostProcess {
    /// Starts the binary on `files` with private targets allowed and no rate limit, plus `args`,
    /// and waits until it says it is listening.
    pub async fn start(files: &HostFiles, args: &[&str]) -> HostProcess {
        Self::start_on(&files.data_dir, &files.db.url, free_port(), args).await
    }

    /// Starts the binary on a data directory and database, on `port`.
    pub async fn start_on(data_dir: &Path, database_url: &str, port: u16, args: &[&str]) -> HostProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leadtime-host"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--database-url",
                database_url,
                "--allow-private-targets",
                "--rate-limit-per-minute",
                "0",
            ])
            .args(args)
            .env("LEADTIME_LOG", "info,sqlx=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leadtime-host");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, mut rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = tokio::time::timeout(EVENT_TIMEOUT, async {
            while let Some(line) = rx.recv().await {
                if line.contains("leadtime host listening") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "the host did not start");
        // Keep draining its log so the pipe never fills, keeping the newest lines.
        let log = Arc::new(Mutex::new(LogLines::default()));
        let kept = log.clone();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                let mut kept = kept.lock().expect("log lock");
                kept.total += 1;
                if kept.lines.len() == LOG_LINES_KEPT {
                    kept.lines.pop_front();
                }
                kept.lines.push_back(line);
            }
        });
        HostProcess { child, port, log }
    }

    /// The log lines written since the host listened (the newest 20,000), and how many in all.
    pub fn log_lines(&self) -> (Vec<String>, usize) {
        let log = self.log.lock().expect("log lock");
        (log.lines.iter().cloned().collect(), log.total)
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client of its public API with `token`.
    pub fn api(&self, token: &str) -> Api {
        Api::new(&format!("{}/api/public", self.base_url()), Some(token))
    }

    /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`: the peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }
}
