//! A fresh database per test: a temporary SQLite file, or — when `LEADTIME_TEST_DATABASE_URL`
//! names a PostgreSQL server — a new database on it, dropped when the test ends.

use std::path::Path;

use sqlx::Connection;

/// The environment variable naming the PostgreSQL server tests run against (SQLite if unset).
pub const TEST_DATABASE_URL: &str = "LEADTIME_TEST_DATABASE_URL";

/// A database only this test uses.
pub struct TestDb {
    /// URL the host connects to.
    pub url: String,
    /// `(admin URL, database name)` to drop on PostgreSQL.
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// A new database: PostgreSQL if configured, else SQLite under `dir`.
    pub async fn create(dir: &Path) -> TestDb {
        match std::env::var(TEST_DATABASE_URL).ok().filter(|u| !u.trim().is_empty()) {
            Some(admin) if admin.starts_with("postgres") => {
                let name = format!("lt_test_{}", ulid::Ulid::new().to_string().to_lowercase());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to the test PostgreSQL server");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                conn.close().await.ok();
                let mut url = url::Url::parse(&admin).expect("LEADTIME_TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                TestDb {
                    url: url.to_string(),
                    postgres: Some((admin, name)),
                }
            }
            Some(other) => panic!("{TEST_DATABASE_URL} must be a postgres:// URL, not {other}"),
            None => TestDb {
                url: format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
                postgres: None,
            },
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime; use a thread with its own runtime to clean up.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}
