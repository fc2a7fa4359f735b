//! `ballast plugin new` + `ballast plugin build` for each language: the new project builds outside this workspace
//! (a Rust project with its copy of the SDK), the component passes the production runtime's validation, and it
//! decides every case of the project's own cases.yaml as expected.

use std::time::Duration;

use ballast::authoring::build::{self, Language};
use ballast::authoring::{cases, scaffold};
use ballast::runtime::{PolicyEngine, RuntimeLimits};

fn new_project_builds_and_passes_its_cases(language: Language) {
    let parent = tempfile::tempdir().unwrap();
    let dir = scaffold::scaffold(language, "gpu-target", parent.path()).unwrap();
    let built = build::build(&dir, None).unwrap_or_else(|e| panic!("building the new {language:?} project: {e}"));
    assert_eq!(built.language, language);
    assert_eq!(built.output, dir.join("dist/gpu-target.wasm"));
    let bytes = std::fs::read(&built.output).unwrap();
    assert_eq!(built.size, bytes.len() as u64);
    assert!(built.gzipped < built.size, "{built:?}");

    let limits = RuntimeLimits { max_instances: 4, deadline: Duration::from_secs(2), ..RuntimeLimits::default() };
    let engine = PolicyEngine::new(limits).unwrap();
    let compiled = engine.load("gpu-target.wasm", &bytes).unwrap();
    let text = std::fs::read_to_string(dir.join("cases.yaml")).unwrap();
    let table = cases::parse("cases.yaml", &text).unwrap_or_else(|e| panic!("{language:?} cases.yaml: {e}"));
    assert!(table.len() >= 5, "the template's cases cover its behaviour");
    let results = cases::run(&engine, &compiled, &table);
    assert!(results.iter().all(|r| r.passed()), "{language:?}:\n{}", cases::render(&results));
}

#[test]
fn a_new_rust_project_builds_outside_the_workspace_and_passes_its_cases() {
    new_project_builds_and_passes_its_cases(Language::Rust);
}

#[test]
fn a_new_javascript_project_builds_and_passes_its_cases() {
    new_project_builds_and_passes_its_cases(Language::JavaScript);
}

#[test]
fn a_new_python_project_builds_and_passes_its_cases() {
    new_project_builds_and_passes_its_cases(Language::Python);
}

#[test]
fn build_refuses_a_directory_that_is_no_plugin_project() {
    let dir = tempfile::tempdir().unwrap();
    let err = build::build(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("not a plugin project") && err.contains("ballast plugin new --lang"), "{err}");
}
