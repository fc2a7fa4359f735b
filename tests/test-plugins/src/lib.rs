//! The plugins only tests and benchmarks load, as files: `hostile.wasm` (misbehaves as its `mode` config says),
//! `wrong_world.wasm` (exports another world), `world_0_1.wasm` (a plugin of WIT world 0.1). The built-in plugins
//! (`hpa.wasm`, `queue_drain.wasm`) and the JavaScript and Python plugins `.ci/plugins.sh` builds (`hpa_js.wasm`,
//! `hostile_py.wasm`, ...) are in the same directory: all are built into one target directory.
//!
//! A dev-dependency of the host, so `cargo build -p ballast` (and the image) never builds these.

use std::path::PathBuf;

/// The directory of the plugin files.
pub const DIR: &str = env!("BALLAST_TEST_PLUGIN_DIR");

/// The path of a plugin file in [`DIR`].
pub fn path(file: &str) -> PathBuf {
    PathBuf::from(DIR).join(file)
}

/// The bytes of a plugin file in [`DIR`]; panics naming the path when it is missing.
pub fn read(file: &str) -> Vec<u8> {
    let path = path(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
