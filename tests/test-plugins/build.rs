//! Builds the test plugins under tests/plugins/ as wasm32-wasip2 components (see src/lib.rs).

fn main() {
    let manifest_dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().and_then(|tests| tests.parent()).expect("tests/test-plugins in the workspace");
    let dir = ballast_plugin_build::build(
        root,
        &["hostile", "wrong-world", "world-0-1"],
        &["tests/plugins/hostile", "tests/plugins/wrong-world", "tests/plugins/world-0-1"],
    );
    println!("cargo:rustc-env=BALLAST_TEST_PLUGIN_DIR={}", dir.display());
}
