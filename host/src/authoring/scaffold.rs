//! `ballast plugin new`: a ready plugin project in Rust, JavaScript or Python, from the templates in
//! host/templates/ (compiled into the binary). Each project has the WIT world, a small queue-backlog policy, a
//! `cases.yaml` of table tests and a README saying how to build, check and test it.
//!
//! A Rust project gets a copy of the SDK (policies-wit/sdk) in `sdk/` and of this workspace's Cargo.lock, so it
//! builds anywhere the `ballast` binary runs, without a checkout of Ballast, at the dependency versions Ballast
//! was tested with.

use std::path::{Path, PathBuf};

use super::build::Language;

const WIT: &str = include_str!("../../../policies-wit/wit/policy.wit");
const CASES: &str = include_str!("../../templates/cases.yaml");

const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/rust/Cargo.toml.tmpl")),
    ("Cargo.lock", include_str!("../../../Cargo.lock")),
    ("src/lib.rs", include_str!("../../templates/rust/src/lib.rs")),
    ("sdk/Cargo.toml", include_str!("../../templates/rust/sdk/Cargo.toml.tmpl")),
    ("sdk/src/lib.rs", include_str!("../../../policies-wit/sdk/src/lib.rs")),
    ("sdk/src/config.rs", include_str!("../../../policies-wit/sdk/src/config.rs")),
    ("sdk/src/hpa.rs", include_str!("../../../policies-wit/sdk/src/hpa.rs")),
    ("sdk/src/allocator.rs", include_str!("../../../policies-wit/sdk/src/allocator.rs")),
    // The SDK copy is formatted to Ballast's width; `cargo fmt` in the project keeps it so.
    ("rustfmt.toml", include_str!("../../templates/rust/rustfmt.toml")),
    ("README.md", include_str!("../../templates/rust/README.md")),
    (".gitignore", include_str!("../../templates/rust/gitignore")),
];

const JS: &[(&str, &str)] = &[
    ("package.json", include_str!("../../templates/js/package.json")),
    ("package-lock.json", include_str!("../../templates/js/package-lock.json")),
    ("src/policy.js", include_str!("../../templates/js/src/policy.js")),
    ("src/ballast.js", include_str!("../../templates/js/src/ballast.js")),
    ("README.md", include_str!("../../templates/js/README.md")),
    (".gitignore", include_str!("../../templates/js/gitignore")),
];

const PYTHON: &[(&str, &str)] = &[
    ("app.py", include_str!("../../templates/python/app.py")),
    ("ballast_sdk.py", include_str!("../../templates/python/ballast_sdk.py")),
    ("build-requirements.txt", include_str!("../../templates/python/build-requirements.txt")),
    ("README.md", include_str!("../../templates/python/README.md")),
    (".gitignore", include_str!("../../templates/python/gitignore")),
];

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "`{0}` is not a usable plugin name: use lowercase letters, digits and dashes, starting with a letter \
         (e.g. gpu-target)"
    )]
    BadName(String),
    #[error("{0} already exists and is not empty; pick another NAME or remove it")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The files of a new project named `name`: relative path and contents.
pub(crate) fn files(language: Language, name: &str) -> Vec<(&'static str, String)> {
    let specific = match language {
        Language::Rust => RUST,
        Language::JavaScript => JS,
        Language::Python => PYTHON,
    };
    let shared: &[(&'static str, &str)] = &[("wit/policy.wit", WIT), ("cases.yaml", CASES)];
    specific.iter().chain(shared).map(|(path, text)| (*path, text.replace("{{name}}", name))).collect()
}

/// `ballast plugin new`'s line: the project made, and what to run next.
pub fn created(project: &Path, language: Language) -> String {
    format!(
        "created {} ({} plugin); next: cd {} && ballast plugin build",
        project.display(),
        language.name(),
        project.display()
    )
}

/// Writes a new project into `parent/name` and returns its directory.
pub fn scaffold(language: Language, name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    let dir = parent.join(name);
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::Exists(dir));
    }
    for (relative, contents) in files(language, name) {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ScaffoldError::Io { path: parent.to_owned(), source })?;
        }
        std::fs::write(&path, contents).map_err(|source| ScaffoldError::Io { path, source })?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_project_carries_every_file_of_the_sdk() {
        let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies-wit/sdk/src");
        for entry in std::fs::read_dir(&sdk).unwrap() {
            let name = format!("sdk/src/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(RUST.iter().any(|(path, _)| *path == name), "{name} is missing from the Rust template's files");
        }
        let features = include_str!("../../../policies-wit/sdk/Cargo.toml").split_once("[features]").unwrap().1;
        let template = include_str!("../../templates/rust/sdk/Cargo.toml.tmpl");
        assert!(template.contains(features.trim()), "the template's sdk/Cargo.toml lacks the SDK's [features]");
    }

    #[test]
    fn names_are_checked_and_existing_projects_kept() {
        let parent = tempfile::tempdir().unwrap();
        for bad in ["", "Gpu", "9lives", "a/b", "../up", "x y"] {
            assert!(matches!(scaffold(Language::Python, bad, parent.path()), Err(ScaffoldError::BadName(_))), "{bad}");
        }
        let dir = scaffold(Language::Python, "gpu-target", parent.path()).unwrap();
        assert!(dir.join("app.py").is_file() && dir.join("wit/policy.wit").is_file());
        let again = scaffold(Language::Python, "gpu-target", parent.path()).unwrap_err();
        assert!(matches!(again, ScaffoldError::Exists(_)), "{again}");
    }

    #[test]
    fn every_project_has_the_world_cases_and_readme_and_its_name() {
        for language in [Language::Rust, Language::JavaScript, Language::Python] {
            let files = files(language, "gpu-target");
            let paths: Vec<_> = files.iter().map(|(p, _)| *p).collect();
            for needed in ["wit/policy.wit", "cases.yaml", "README.md", ".gitignore"] {
                assert!(paths.contains(&needed), "{language:?} lacks {needed}");
            }
            assert!(files.iter().all(|(_, text)| !text.contains("{{name}}")), "{language:?}: placeholder left");
            let readme = &files.iter().find(|(p, _)| *p == "README.md").unwrap().1;
            assert!(readme.contains("ballast plugin build") && readme.contains("dist/gpu-target.wasm"), "{readme}");
        }
    }

    /// README.md's "Writing a policy in Rust" shows the code `plugin new --lang rust` writes.
    #[test]
    fn the_readme_shows_the_rust_template() {
        let section = include_str!("../../../README.md").split_once("### Writing a policy in Rust").unwrap().1;
        let code = section.split_once("```rust\n").unwrap().1.split_once("```").unwrap().0;
        let lines = |text: &str, header: &str| -> Vec<String> {
            text.lines().skip_while(|l| l.starts_with(header) || l.is_empty()).map(str::to_owned).collect()
        };
        let template = include_str!("../../templates/rust/src/lib.rs");
        assert_eq!(lines(code, "//"), lines(template, "//!"), "README.md and templates/rust/src/lib.rs differ");
    }

    /// The SDK copy in a Rust project depends on the versions this workspace builds the SDK with.
    #[test]
    fn the_rust_sdk_copy_pins_the_workspace_versions() {
        let workspace = include_str!("../../../Cargo.toml");
        let sdk = &files(Language::Rust, "x").into_iter().find(|(p, _)| *p == "sdk/Cargo.toml").unwrap().1;
        for dependency in ["wit-bindgen", "serde_json", "serde"] {
            let pin = |text: &str| {
                text.lines()
                    .find(|l| l.starts_with(&format!("{dependency} =")))
                    .and_then(|l| l.split('"').nth(1))
                    .map(str::to_owned)
            };
            assert_eq!(pin(sdk), pin(workspace), "{dependency} in templates/rust/sdk/Cargo.toml.tmpl");
        }
    }
}
