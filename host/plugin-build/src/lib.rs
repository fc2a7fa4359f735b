//! What `host/build.rs` (the built-in plugins) and `tests/test-plugins/build.rs` (the plugins only tests load)
//! share: a nested cargo that builds workspace plugin crates as wasm32-wasip2 components, with reproducible bytes.
//!
//! The nested cargo has its own target directory, so it never waits for the outer build's lock; both build scripts
//! use the same one, so the SDK and wit-bindgen are compiled once for both.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

/// Builds `packages` of the workspace at `root` and returns the directory of their `.wasm` files. `sources` are
/// the paths (relative to `root`) whose changes rebuild them; the workspace manifest, lock and the WIT are always
/// among them (a feature of a shared dependency, a profile setting or a version changes a plugin's bytes too).
pub fn build(root: &Path, packages: &[&str], sources: &[&str]) -> PathBuf {
    for dir in sources.iter().chain(&["policies-wit", "Cargo.toml", "Cargo.lock"]) {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    check_target_installed();
    let target_dir = root.join("target").join("wasm-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(root).args(["build", "--locked", "--profile", PROFILE, "--target", TARGET, "--target-dir"]);
    build.arg(&target_dir);
    for package in packages {
        build.args(["-p", package]);
    }
    // The outer build's wrappers and flags (clippy, coverage, host RUSTFLAGS) are not meant for the plugins.
    for var in
        ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_TARGET"]
    {
        build.env_remove(var);
    }
    // Paths are remapped so a plugin's bytes (and sha256) do not depend on where the checkout or cargo's registry
    // lives: the committed plugin ConfigMaps in deploy/ must match what any checkout builds.
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo"));
    let flags = [
        format!("--remap-path-prefix={}=/ballast", root.display()),
        format!("--remap-path-prefix={cargo_home}=/cargo"),
    ];
    build.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    let output = build.output().expect("running cargo to build the plugins");
    if !output.status.success() {
        panic!(
            "building the plugins {packages:?} for {TARGET} failed:\n{}\nTry: rustup target add {TARGET}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    target_dir.join(TARGET).join(PROFILE)
}

/// The wasm target must be there already: a build script that installs toolchains would change the machine
/// behind the user's back (scripts/demo.sh, scripts/test.sh and the Dockerfile install it).
fn check_target_installed() {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if !sysroot.is_some_and(|s| s.join("lib/rustlib").join(TARGET).exists()) {
        panic!("the {TARGET} target is not installed; run `rustup target add {TARGET}` and build again");
    }
}
