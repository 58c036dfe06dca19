//! The plugins directory: every `*.wasm` in it is a plugin, loaded at start and again whenever
//! the file changes (new size or modification time), without a restart.
//!
//! The manifest is the component's own `manifest()` export, so what the host shows can never
//! drift from what the code does. A file that fails to load is reported (logged, kept in
//! [`PluginDirectory::problems`] for admins, announced) and the host runs on without it; fixing
//! the file loads it. A removed file stops new sessions of its connection type; sessions already
//! running keep the version they started with (see `PluginRuntime::plugin_version`).
//!
//! Replace files atomically (write elsewhere, then `mv`), or the scan may catch half a file — it
//! is then reported and loaded on the next scan once the write completes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::PluginRuntime;

/// What a scan changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryChange {
    /// A new or changed file was loaded.
    Loaded {
        source: String,
        id: String,
        version: String,
        sha256: String,
    },
    /// A new or changed file could not be loaded.
    Rejected { source: String, message: String },
    /// A file disappeared; its connection type takes no new sessions.
    Removed { source: String },
}

/// A problem with one file of the directory, as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PluginProblem {
    /// The file, e.g. `cursor.wasm`.
    pub file: String,
    pub message: String,
}

/// Size and modification time: a file whose stamp changed is loaded again.
type Stamp = (u64, Option<SystemTime>);

/// The plugins directory and what the last scan saw.
#[derive(Debug)]
pub struct PluginDirectory {
    dir: PathBuf,
    seen: Mutex<HashMap<PathBuf, Stamp>>,
    problems: Mutex<BTreeMap<String, String>>,
}

impl PluginDirectory {
    /// The directory at `dir` (created when missing).
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            seen: Mutex::new(HashMap::new()),
            problems: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Files that failed to load, with why.
    pub fn problems(&self) -> Vec<PluginProblem> {
        lock(&self.problems)
            .iter()
            .map(|(file, message)| PluginProblem {
                file: file.clone(),
                message: message.clone(),
            })
            .collect()
    }

    /// Loads new and changed files into `runtime` and unloads removed ones.
    pub async fn scan(&self, runtime: &PluginRuntime) -> Vec<DirectoryChange> {
        let (changed, removed) = match self.diff() {
            Ok(diff) => diff,
            Err(error) => {
                tracing::error!(dir = %self.dir.display(), %error, "cannot read the plugins directory");
                return Vec::new();
            }
        };
        let mut changes = Vec::new();
        for path in removed {
            let source = source_of(&path);
            lock(&self.problems).remove(&file_name(&path));
            if runtime.unload(&source).is_some() {
                changes.push(DirectoryChange::Removed { source });
            }
        }
        for path in changed {
            let source = source_of(&path);
            let outcome = match tokio::fs::read(&path).await {
                Ok(wasm) => runtime.load(&source, &wasm).await.map_err(|e| e.to_string()),
                Err(error) => Err(format!("{source}: cannot read the file: {error}")),
            };
            match outcome {
                Ok(plugin) => {
                    lock(&self.problems).remove(&file_name(&path));
                    changes.push(DirectoryChange::Loaded {
                        source,
                        id: plugin.manifest.id.clone(),
                        version: plugin.manifest.version.clone(),
                        sha256: plugin.wasm_sha256.clone(),
                    });
                }
                Err(message) => {
                    tracing::error!(%message, "plugin failed to load; the host runs on without it");
                    lock(&self.problems).insert(file_name(&path), message.clone());
                    changes.push(DirectoryChange::Rejected { source, message });
                }
            }
        }
        changes
    }

    /// `*.wasm` files that are new or changed since the last scan, and those that disappeared.
    fn diff(&self) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
        let mut current = HashMap::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "wasm") {
                let meta = entry.metadata()?;
                if meta.is_file() {
                    current.insert(path, (meta.len(), meta.modified().ok()));
                }
            }
        }
        let mut seen = lock(&self.seen);
        let mut changed: Vec<PathBuf> = current
            .iter()
            .filter(|(path, stamp)| seen.get(*path) != Some(stamp))
            .map(|(path, _)| path.clone())
            .collect();
        changed.sort();
        let removed = seen.keys().filter(|p| !current.contains_key(*p)).cloned().collect();
        *seen = current;
        Ok((changed, removed))
    }
}

/// How a file is named in messages and in `LoadedPlugin::source`: `file:NAME.wasm` (never the
/// full path, which admins need not see).
fn source_of(path: &Path) -> String {
    format!("file:{}", file_name(path))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
