//! Compiled plugins on disk, keyed by the wasm's SHA-256 and the engine's compatibility hash, so a
//! restart (or a session pinned to a replaced version) does not compile again.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The cache directory of one engine (none: compile every time).
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    pub(crate) fn new(dir: Option<PathBuf>) -> std::io::Result<Self> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self { dir })
    }

    /// Where the compiled form of the wasm with SHA-256 `sha` is cached for `engine`.
    pub(crate) fn path(&self, engine: &Engine, sha: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| {
            let mut hasher = DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut hasher);
            dir.join(format!("{sha}-{:016x}.cwasm", hasher.finish()))
        })
    }
}

/// Loads a compiled component from `cache`, or compiles `wasm` and writes the cache.
pub(crate) fn compile_cached(engine: &Engine, wasm: &[u8], cache: Option<&Path>) -> wasmtime::Result<Component> {
    if let Some(path) = cache.filter(|p| p.is_file()) {
        // SAFETY: the file is one this host wrote with `Component::serialize` into its own cache
        // directory, named by the wasm's SHA-256 and this engine's compatibility hash; wasmtime
        // additionally refuses artifacts from an incompatible engine.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compile cache entry")
            }
        }
    }
    let component = Component::new(engine, wasm)?;
    if let Some(path) = cache {
        let bytes = component.serialize()?;
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        if let Err(e) = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, path)) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the compile cache");
        }
    }
    Ok(component)
}

/// A component this host cached, brought back without its wasm.
pub(crate) fn load_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: as in `compile_cached`: a file this host wrote into its own cache directory, named
    // by the wasm's SHA-256 and this engine's compatibility hash.
    unsafe { Component::deserialize_file(engine, path) }
}
