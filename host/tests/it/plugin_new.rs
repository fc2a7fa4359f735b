//! `ballast plugin new` + `ballast plugin build` for each language: the new project builds outside this workspace
//! (a Rust project with its copy of the SDK), the component passes the production runtime's validation, it decides
//! every case of the project's own cases.yaml as expected, and every command of the project's README runs as
//! written (build, check, test, pack) with the real `ballast` binary.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ballast::authoring::build::{self, Language};
use ballast::authoring::{cases, scaffold};
use ballast::runtime::RuntimeLimits;
use ballast::testing;
use common::registry::Registry;

const NAME: &str = "queue-backlog";

fn new_project_builds_and_passes_its_cases(language: Language) {
    let parent = tempfile::tempdir().unwrap();
    let dir = scaffold::scaffold(language, NAME, parent.path()).unwrap();
    let built = build::build(&dir, None).unwrap_or_else(|e| panic!("building the new {language:?} project: {e}"));
    assert_eq!(built.language, language);
    assert_eq!(built.output, dir.join(format!("dist/{NAME}.wasm")));
    let bytes = std::fs::read(&built.output).unwrap();
    assert_eq!(built.size, bytes.len() as u64);
    assert!(built.gzipped < built.size, "{built:?}");

    let limits = RuntimeLimits { max_instances: 4, deadline: Duration::from_secs(2), ..RuntimeLimits::default() };
    let engine = testing::engine(limits);
    let compiled = engine.load(&format!("{NAME}.wasm"), &bytes).unwrap();
    let text = std::fs::read_to_string(dir.join("cases.yaml")).unwrap();
    let table = cases::parse("cases.yaml", &text).unwrap_or_else(|e| panic!("{language:?} cases.yaml: {e}"));
    assert!(table.len() >= 10, "the template's cases cover its behaviour");
    let results = cases::run(&engine, &compiled, &table);
    assert!(results.iter().all(|r| r.passed()), "{language:?}:\n{}", cases::render(&results));

    readme_commands_run_as_written(language, &dir);
}

/// Runs each line of the README's shell block in the project, as a user would paste it, with `ballast` on PATH;
/// a Python project's README pushes to `$REGISTRY`, here a local registry.
fn readme_commands_run_as_written(language: Language, dir: &Path) {
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let block = readme.split_once("```sh\n").expect("the README has a ```sh block").1.split_once("```").unwrap().0;
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    for command in ["build", "check", "test", "pack"] {
        let wanted = format!("ballast plugin {command}");
        assert!(lines.iter().any(|l| l.starts_with(&wanted)), "{language:?} README has no `{wanted}` line:\n{block}");
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_ballast")).parent().unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.to_owned()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let registry = (language == Language::Python).then(|| Registry::start(None));
    for line in lines {
        let mut shell = Command::new("bash");
        shell.args(["-euc", line]).current_dir(dir).env("PATH", &path).env("BALLAST_CACHE_DIR", cache.path());
        if let Some(registry) = &registry {
            shell.env("REGISTRY", format!("127.0.0.1:{}/plugins", registry.port));
        }
        let output = shell.output().unwrap();
        let out = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{language:?} README line `{line}` failed:\n{out}");
        if line.starts_with("ballast plugin check") {
            assert!(out.contains("canary      2 -> 9 replicas [backlog 9]: backlog 44 at 5 jobs per pod"), "{out}");
        }
        if line.starts_with("ballast plugin pack") {
            let shipped = if registry.is_some() { "reference: 127.0.0.1:" } else { "kind: ConfigMap" };
            assert!(out.contains(shipped), "{language:?} `{line}`:\n{out}");
        }
    }
}

#[test]
fn a_new_rust_project_builds_outside_the_workspace_passes_its_cases_and_runs_its_readme() {
    new_project_builds_and_passes_its_cases(Language::Rust);
}

#[test]
fn a_new_javascript_project_builds_passes_its_cases_and_runs_its_readme() {
    new_project_builds_and_passes_its_cases(Language::JavaScript);
}

#[test]
fn a_new_python_project_builds_passes_its_cases_and_runs_its_readme() {
    new_project_builds_and_passes_its_cases(Language::Python);
}

#[test]
fn build_refuses_a_directory_that_is_no_plugin_project() {
    let dir = tempfile::tempdir().unwrap();
    let err = build::build(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("not a plugin project") && err.contains("ballast plugin new --lang"), "{err}");
}
