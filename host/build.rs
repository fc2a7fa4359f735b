//! Builds the policy plugins (plugins/ and the test plugins under tests/plugins/) as wasm32-wasip2 components, so
//! the `ballast` binary can embed the built-in ones and the tests can load the rest. It runs a nested cargo with
//! its own target directory (no lock contention with the outer build) and installs the wasm target if missing.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";
const PACKAGES: &[&str] = &["hpa", "queue-drain", "hostile", "wrong-world", "world-0-1"];
/// What those packages are built from: their sources, and the workspace manifest and lock (a feature of a shared
/// dependency, a profile setting or a version changes a plugin's bytes too). Not all of plugins/: the JavaScript and
/// Python plugins there are built by `ballast plugin build`, and their node_modules and __pycache__ must not trigger
/// a rebuild of the host.
const SOURCES: &[&str] = &[
    "plugins/hpa",
    "plugins/queue-drain",
    "tests/plugins/hostile",
    "tests/plugins/wrong-world",
    "tests/plugins/world-0-1",
    "policies-wit",
    "Cargo.toml",
    "Cargo.lock",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("host/ lives in the workspace root").to_path_buf();
    for dir in SOURCES {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target_dir = root.join("target").join("wasm-plugins");
    ensure_target_installed();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(&root).args(["build", "--locked", "--profile", PROFILE, "--target", TARGET, "--target-dir"]);
    build.arg(&target_dir);
    for package in PACKAGES {
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
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", env_or("HOME", "/root")));
    let flags = [
        format!("--remap-path-prefix={}=/ballast", root.display()),
        format!("--remap-path-prefix={cargo_home}=/cargo"),
    ];
    build.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    let output = build.output().expect("running cargo to build the plugins");
    if !output.status.success() {
        panic!(
            "building the policy plugins for {TARGET} failed:\n{}\nTry: rustup target add {TARGET}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let out = target_dir.join(TARGET).join(PROFILE);
    println!("cargo:rustc-env=BALLAST_PLUGIN_DIR={}", out.display());
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

fn ensure_target_installed() {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot.is_some_and(|s| Path::new(&s).join("lib/rustlib").join(TARGET).exists());
    if !installed {
        let status = Command::new("rustup").args(["target", "add", TARGET]).status();
        if !status.is_ok_and(|s| s.success()) {
            panic!("the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it and rebuild");
        }
    }
}
