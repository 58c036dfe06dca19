//! Builds the built-in plugins (`plugins/*`) as `wasm32-wasip2` components and tells the host
//! where they are, so `cargo build`/`cargo run`/`cargo test` never need a prebuilt `.wasm`.
//!
//! The plugins are built by a nested `cargo build` into their own target directory
//! (`<target>/plugins`), so it never waits on the lock of the build that runs this script, and it
//! shares the outer build's jobserver (`CARGO_MAKEFLAGS`), so it does not oversubscribe the CPUs.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `(cargo package, crate file stem, env var the host reads)` for every plugin built here: the
/// built-ins the host embeds, and the test fixtures only the tests load.
const BUILTIN_PLUGINS: &[(&str, &str, &str)] = &[
    (
        "plugin-self-hosted",
        "plugin_self_hosted",
        "LEADTIME_BUILTIN_PLUGIN_SELF_HOSTED",
    ),
    (
        "plugin-cursor-cloud",
        "plugin_cursor_cloud",
        "LEADTIME_BUILTIN_PLUGIN_CURSOR_CLOUD",
    ),
    (
        "plugin-claude-agent",
        "plugin_claude_agent",
        "LEADTIME_BUILTIN_PLUGIN_CLAUDE_AGENT",
    ),
    (
        "plugin-triage-agent",
        "plugin_triage_agent",
        "LEADTIME_BUILTIN_PLUGIN_TRIAGE_AGENT",
    ),
    (
        "fixture-hostile-plugin",
        "fixture_hostile_plugin",
        "LEADTIME_TEST_FIXTURE_HOSTILE",
    ),
    (
        "fixture-legacy-plugin",
        "fixture_legacy_plugin",
        "LEADTIME_TEST_FIXTURE_LEGACY",
    ),
];

const WASM_TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ lives in the workspace root")
        .to_path_buf();
    for watched in [
        "wit",
        "sdk-guest",
        "plugins",
        "tests/fixtures",
        "migrations",
        "Cargo.lock",
        "Cargo.toml",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    ensure_wasm_target_installed();

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| if dir.is_absolute() { dir } else { root.join(dir) })
        .unwrap_or_else(|| root.join("target"))
        .join("plugins");

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args(["build", "--target", WASM_TARGET, "--profile", PROFILE])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _, _) in BUILTIN_PLUGINS {
        command.args(["-p", package]);
    }
    // Settings meant for the outer (native) build must not leak into the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        command.env_remove(var);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("could not run cargo to build the built-in plugins: {e}"));
    if !output.status.success() {
        fail(&format!(
            "building the built-in plugins for {WASM_TARGET} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }

    for (_, stem, var) in BUILTIN_PLUGINS {
        let wasm = target_dir.join(WASM_TARGET).join(PROFILE).join(format!("{stem}.wasm"));
        assert!(
            wasm.is_file(),
            "the plugin build reported success but {} is missing",
            wasm.display()
        );
        println!("cargo:rustc-env={var}={}", wasm.display());
    }
}

/// Fails with instructions when the `wasm32-wasip2` standard library is not installed
/// (`RUSTUP_AUTO_INSTALL=0` machines do not install targets from `rust-toolchain.toml`).
fn ensure_wasm_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot
        .as_deref()
        .map(|root| Path::new(root).join("lib/rustlib").join(WASM_TARGET).is_dir())
        .unwrap_or(false);
    if !installed {
        fail(&format!(
            "the Rust target `{WASM_TARGET}` is not installed, so the built-in plugins cannot be built.\n\
             Run `./dev setup` (or `rustup target add {WASM_TARGET}`) once, then build again."
        ));
    }
}

/// Stops the build with `message` (no panic backtrace to wade through).
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
