//! The loaded plugins: the current version of each connection type (what new sessions start on)
//! and every version loaded since start (sessions finish on the version they started with).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use super::{LoadError, LoadedPlugin};

#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// The current version of each connection type, by id.
    current: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
    /// Every version loaded since start, by wasm SHA-256.
    versions: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
}

impl Registry {
    /// Makes `plugin` the current version of its connection type, unless another source already
    /// provides that type.
    pub(crate) fn install(&self, plugin: Arc<LoadedPlugin>) -> Result<(), LoadError> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = current.get(&plugin.manifest.id)
            && existing.source != plugin.source
        {
            return Err(LoadError::Duplicate {
                origin: plugin.source.clone(),
                id: plugin.manifest.id.clone(),
                existing: existing.source.clone(),
            });
        }
        // A new build of a file may have changed its id: the old id no longer comes from it.
        current.retain(|id, existing| existing.source != plugin.source || *id == plugin.manifest.id);
        current.insert(plugin.manifest.id.clone(), plugin.clone());
        drop(current);
        self.remember(plugin);
        Ok(())
    }

    /// Keeps `plugin` as a version sessions pinned to it can run on.
    pub(crate) fn remember(&self, plugin: Arc<LoadedPlugin>) {
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(plugin.wasm_sha256.clone(), plugin);
    }

    /// Stops offering the plugin loaded from `source` to new sessions; returns it.
    pub(crate) fn unload(&self, source: &str) -> Option<Arc<LoadedPlugin>> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let id = current.values().find(|p| p.source == source)?.manifest.id.clone();
        current.remove(&id)
    }

    /// Forgets replaced versions not in `in_use` (SHA-256s); how many were forgotten.
    pub(crate) fn forget_unused_versions(&self, in_use: &HashSet<String>) -> usize {
        let current: HashSet<String> = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|p| p.wasm_sha256.clone())
            .collect();
        let mut versions = self.versions.write().unwrap_or_else(|p| p.into_inner());
        let before = versions.len();
        versions.retain(|sha, _| current.contains(sha) || in_use.contains(sha));
        before - versions.len()
    }

    /// The version with wasm SHA-256 `sha256`, if it was loaded since start.
    pub(crate) fn version(&self, sha256: &str) -> Option<Arc<LoadedPlugin>> {
        self.versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(sha256)
            .cloned()
    }

    /// The current version of connection type `id`.
    pub(crate) fn current(&self, id: &str) -> Option<Arc<LoadedPlugin>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Every current plugin, by id.
    pub(crate) fn all(&self) -> Vec<Arc<LoadedPlugin>> {
        let mut all: Vec<_> = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.manifest.id.cmp(&b.manifest.id));
        all
    }
}
