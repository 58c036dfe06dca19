//! `leadtime-host`: run the host, or bootstrap a workspace.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use leadtime_host::Config;
use leadtime_host::config::ServeArgs;
use leadtime_host::domain::time::SystemClock;
use leadtime_host::use_cases::accounts;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: the request path allocates a lot of small, short-lived
/// buffers across threads, where glibc's arenas spent ~14 % of the end-to-end bench's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "leadtime-host",
    version,
    about = "Agent runtime host: bots, agent sessions and WebAssembly connection plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host (API server and workers).
    Serve(Box<ServeArgs>),
    /// Create a workspace with its first admin and print the admin's API token (shown once).
    Bootstrap {
        /// Name of the new workspace.
        #[arg(long, default_value = "My workspace")]
        workspace: String,
        /// The admin's name.
        #[arg(long, default_value = "Admin")]
        admin_name: String,
        /// The admin's @handle.
        #[arg(long, default_value = "admin")]
        admin_handle: String,
        /// The admin's e-mail address.
        #[arg(long)]
        admin_email: Option<String>,
        /// Directory of the host's data (as for `serve`).
        #[arg(long, env = "LEADTIME_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Database URL (as for `serve`).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a one-time link that signs a person in to the web console (it works once, for 15
    /// minutes, and mints them a token that lasts a day).
    ConsoleLink {
        /// The person's @handle.
        #[arg(long, default_value = "admin")]
        handle: String,
        /// The workspace's name, when several have a person with that handle.
        #[arg(long)]
        workspace: Option<String>,
        /// The host's public URL, as `serve` is given it.
        #[arg(long, env = "LEADTIME_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
        public_url: String,
        /// Directory of the host's data (as for `serve`).
        #[arg(long, env = "LEADTIME_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Database URL (as for `serve`).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Check that a `.wasm` file is a plugin this host can load; print its manifest and what it
    /// may do, or explain what is wrong (exit status 1).
    Check {
        /// The plugin's `.wasm` component.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the append-only triggers, the signed checkpoints and every link of the keyed chain,
    /// and name the first problem (exit status 1).
    Verify {
        /// Directory of the host's data (as for `serve`).
        #[arg(long, env = "LEADTIME_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Database URL (as for `serve`).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
        /// The secrets key the chain is keyed with (as for `serve`).
        #[arg(long, env = "LEADTIME_SECRETS_KEY", hide_env_values = true)]
        secrets_key: Option<leadtime_host::secrets::SecretValue>,
        /// The secrets key file when no key is given; defaults to `<data dir>/secrets.key`.
        #[arg(long, env = "LEADTIME_SECRETS_KEY_FILE")]
        secrets_key_file: Option<PathBuf>,
        /// Where the signed checkpoints are; defaults to `<data dir>/audit-checkpoints`.
        #[arg(long, env = "LEADTIME_AUDIT_CHECKPOINT_DIR")]
        checkpoint_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("LEADTIME_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,wasmtime=warn,cranelift=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let config = args.clone().into_config()?;
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let host = leadtime_host::start(config, listener).await?;
            let stop = host.shutdown_token();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("shutting down");
                stop.cancel();
            });
            host.wait().await;
            Ok(())
        }
        Command::Bootstrap {
            workspace,
            admin_name,
            admin_handle,
            admin_email,
            data_dir,
            database_url,
            json,
        } => {
            let config = Config::new(data_dir, database_url, "http://127.0.0.1:8080".into());
            let app = leadtime_host::open(config, Arc::new(SystemClock)).await?;
            let request = accounts::Bootstrap {
                workspace_name: workspace,
                admin_name,
                admin_handle,
                admin_email,
            };
            let done = accounts::bootstrap(&app, request)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "workspaceId": done.workspace.id,
                        "workspaceName": done.workspace.name,
                        "adminId": done.admin.id,
                        "adminHandle": done.admin.handle,
                        "adminToken": done.admin_token,
                    })
                );
            } else {
                println!("Workspace \"{}\" ({}) created.", done.workspace.name, done.workspace.id);
                println!(
                    "Admin @{} ({}) — API token (shown once, keep it safe):",
                    done.admin.handle, done.admin.id
                );
                println!("{}", done.admin_token);
            }
            app.db.close().await;
            Ok(())
        }
        Command::ConsoleLink {
            handle,
            workspace,
            public_url,
            data_dir,
            database_url,
        } => {
            let config = Config::new(data_dir, database_url, public_url);
            let app = leadtime_host::open(config, Arc::new(SystemClock)).await?;
            let code = leadtime_host::use_cases::console::create_link(&app, &handle, workspace.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "Open this link within {} minutes to sign in as @{} (it works once):",
                leadtime_host::use_cases::console::LINK_MINUTES,
                handle.trim_start_matches('@')
            );
            println!("{}/console/link/{code}", app.config.public_url);
            app.db.close().await;
            Ok(())
        }
        Command::Plugin {
            command: PluginCommand::Check { file },
        } => {
            let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            match leadtime_host::runtime::check::check_plugin(&file.display().to_string(), &wasm).await {
                Ok(report) => {
                    println!("{report}");
                    Ok(())
                }
                Err(problem) => {
                    println!("{problem}");
                    std::process::exit(1);
                }
            }
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    data_dir,
                    database_url,
                    secrets_key,
                    secrets_key_file,
                    checkpoint_dir,
                },
        } => {
            // Verifying reads: a data directory the host never ran in has nothing to verify, and
            // must not get an empty database that would then read as "intact".
            let default_database = data_dir.join(leadtime_host::config::DEFAULT_DATABASE_FILE);
            if database_url.is_none() && !default_database.exists() {
                anyhow::bail!(
                    "no database at {}: the host has not run with this data directory yet. Start it \
                     (`./dev run`) or bootstrap a workspace first, or name the host's database with \
                     --data-dir / --database-url",
                    default_database.display()
                );
            }
            let mut config = Config::new(data_dir, database_url, "http://127.0.0.1:8080".into());
            config.secrets_key = secrets_key;
            if let Some(file) = secrets_key_file {
                config.secrets_key_file = file;
            }
            if let Some(dir) = checkpoint_dir {
                config.audit_checkpoint_dir = dir;
            }
            let outcome = leadtime_host::audit::verify_database(&config).await?;
            match outcome {
                Ok(verified) => {
                    println!(
                        "audit trail intact: {} records, head {}; {} signed checkpoints, the newest covering #{}",
                        verified.records, verified.head_hash, verified.checkpoints, verified.covered_to
                    );
                    if verified.covered_to < verified.records {
                        println!(
                            "note: records after #{} are not covered by a checkpoint yet; their removal would not show",
                            verified.covered_to
                        );
                    }
                    Ok(())
                }
                Err(broken) => {
                    println!("audit trail BROKEN: {broken}");
                    std::process::exit(1);
                }
            }
        }
    }
}
