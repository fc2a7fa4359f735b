//! Builds the built-in policy plugins (plugins/hpa, plugins/queue-drain) as wasm32-wasip2 components, so the
//! `ballast` binary embeds them. The plugins only tests load are built by tests/test-plugins, a dev-dependency.
//! Not all of plugins/: the JavaScript and Python plugins there are built by `ballast plugin build`, and their
//! node_modules and __pycache__ must not trigger a rebuild of the host.

fn main() {
    let manifest_dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("host/ lives in the workspace root");
    let dir = ballast_plugin_build::build(root, &["hpa", "queue-drain"], &["plugins/hpa", "plugins/queue-drain"]);
    println!("cargo:rustc-env=BALLAST_PLUGIN_DIR={}", dir.display());
}
