//! The authoring kit through the real `ballast` binary: `plugin check`, `plugin test` (with the committed cases
//! files of the built-in plugins) and `plugin pack`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn plugin_file(name: &str) -> PathBuf {
    Path::new(ballast_test_plugins::DIR).join(name)
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn ballast(args: &[&str]) -> Output {
    ballast_with_cache(args, None)
}

/// `ballast` with BALLAST_CACHE_DIR set to `cache` (else the default one, under the temp dir).
fn ballast_with_cache(args: &[&str], cache: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ballast"));
    if let Some(cache) = cache {
        command.env("BALLAST_CACHE_DIR", cache);
    }
    command.args(args).output().expect("running ballast")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn the_committed_cases_of_the_builtin_plugins_pass() {
    for (wasm, cases, count) in
        [("hpa.wasm", "plugins/hpa/cases.yaml", 11), ("queue_drain.wasm", "plugins/queue-drain/cases.yaml", 8)]
    {
        let output = ballast(&["plugin", "test", path(&plugin_file(wasm)), "--cases", path(&repo(cases))]);
        let out = text(&output);
        assert!(output.status.success(), "{wasm} against {cases}:\n{out}");
        assert!(out.contains(&format!("{count} cases: {count} passed, 0 failed")), "{out}");
        assert_eq!(out.lines().filter(|l| l.starts_with("ok    ")).count(), count, "{out}");
    }
}

#[test]
fn a_failing_case_prints_a_diff_and_exits_non_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - name: wrong on purpose\n    input:\n      currentReplicas: 2\n      config: {gpuUtilization: 60}\n      \
         observation: {gpuDutyCyclePercent: 90}\n    expect: {replicas: 9, reasonContains: cpu}\n  - name: right\n    \
         input: {currentReplicas: 2, config: {gpuUtilization: 60}, observation: {gpuDutyCyclePercent: 90}}\n    \
         expect: {replicas: 3}\n",
    )
    .expect("writing cases");
    let output = ballast(&["plugin", "test", path(&plugin_file("hpa.wasm")), "--cases", path(&cases)]);
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("FAIL  wrong on purpose"), "{out}");
    assert!(out.contains("- replicas: 9") && out.contains("+ replicas: 3"), "{out}");
    assert!(out.contains("- reason containing \"cpu\""), "{out}");
    assert!(out.contains("ok    right"), "{out}");
    assert!(out.contains("2 cases: 1 passed, 1 failed") && out.contains("1 of 2 cases failed"), "{out}");

    std::fs::write(
        &cases,
        "cases:\n  - name: typo\n    input: {currentReplicas: 2, observation: {gpu: 90}}\n    expect: {replicas: 2}\n",
    )
    .expect("writing cases");
    let output = ballast(&["plugin", "test", path(&plugin_file("hpa.wasm")), "--cases", path(&cases)]);
    let out = text(&output);
    assert!(!output.status.success());
    assert!(out.contains("case 1 (typo): input.observation: unknown field `gpu`"), "{out}");
}

/// queue-drain learns the arrival rate in its state: the second step sees 30 jobs arrive in 10 s only through
/// the state the first step returned (without it, it would have no arrival rate: `arrivals 0.00/s`).
const TWO_STEPS: &str = "cases:\n  - name: learns arrivals across steps\n    steps:\n      - input:\n          \
                         currentReplicas: 2\n          config: {initialJobsPerPodPerSecond: 1, drainSeconds: 60}\n          \
                         observation: {queue: {active: 2}}\n        expect: {replicas: 1, reasonContains: arrivals 0.00/s}\n      \
                         - afterMs: 10000\n        input:\n          currentReplicas: 2\n          \
                         observation: {queue: {waiting: 20, active: 2}, completedSinceLast: 10}\n        \
                         expect: {replicas: STEP2, reasonContains: arrivals 3.00/s}\n";

#[test]
fn a_case_of_several_steps_carries_the_state_and_a_failing_step_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = dir.path().join("cases.yaml");
    std::fs::write(&cases, TWO_STEPS.replace("STEP2", "7")).expect("writing cases");
    let output = ballast(&["plugin", "test", path(&plugin_file("queue_drain.wasm")), "--cases", path(&cases)]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("ok    learns arrivals across steps") && out.contains("1 cases: 1 passed, 0 failed"), "{out}");

    std::fs::write(&cases, TWO_STEPS.replace("STEP2", "99")).expect("writing cases");
    let output = ballast(&["plugin", "test", path(&plugin_file("queue_drain.wasm")), "--cases", path(&cases)]);
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("FAIL  learns arrivals across steps"), "{out}");
    assert!(!out.contains("step 1 of 2"), "the first step passed and logged nothing:\n{out}");
    assert!(out.contains("step 2 of 2: FAIL\n          - replicas: 99\n          + replicas: 7\n"), "{out}");
    assert!(out.contains("reason: \"arrivals 3.00/s"), "{out}");
}

/// `plugin check` and `plugin test` compile a component once: a second run of the same bytes loads it from the
/// compile cache, and `check` says so instead of giving a compile time. A cache directory others may write is
/// not used (a compiled component is native code).
#[test]
fn check_and_test_load_a_component_compiled_before_from_the_cache() {
    let cache = tempfile::tempdir().expect("temp dir");
    let wasm = plugin_file("hpa.wasm");
    let digest = ballast::runtime::digest(&std::fs::read(&wasm).expect("hpa.wasm"));
    let check = || {
        let output = ballast_with_cache(&["plugin", "check", path(&wasm)], Some(cache.path()));
        assert!(output.status.success(), "{}", text(&output));
        text(&output)
    };
    let first = check();
    assert!(first.contains("compile     ") && !first.contains("compile     none"), "{first}");
    assert!(cache.path().join(format!("{digest}.cwasm")).is_file(), "the compiled component is cached");
    let second = check();
    assert!(
        second.contains("compile     none: this sha256 was compiled before, loaded from the compile cache in "),
        "{second}"
    );

    let cases = cache.path().join("cases.yaml");
    std::fs::write(&cases, "cases:\n  - name: idle\n    input: {currentReplicas: 2}\n    expect: {replicas: 2}\n")
        .expect("writing cases");
    let output = ballast_with_cache(&["plugin", "test", path(&wasm), "--cases", path(&cases)], Some(cache.path()));
    assert!(output.status.success(), "{}", text(&output));

    let shared = tempfile::tempdir().expect("temp dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    for _ in 0..2 {
        let output = ballast_with_cache(&["plugin", "check", path(&wasm)], Some(shared.path()));
        let out = text(&output);
        assert!(output.status.success() && !out.contains("compile     none"), "{out}");
        assert!(out.contains("not caching compiled plugins"), "{out}");
    }
    assert!(!shared.path().join(format!("{digest}.cwasm")).exists(), "nothing is cached where others may write");
}

#[test]
fn check_reports_a_plugin_and_refuses_what_the_host_would_refuse() {
    let output = ballast(&["plugin", "check", path(&plugin_file("hpa.wasm")), "--config", r#"{"gpuUtilization": 60}"#]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    for line in
        ["world       ballast:policy/scaling-policy@0.2.0", "gzipped", "imports", "exports", "compile", "instantiate"]
    {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(out.contains("canary      2 -> 4 replicas"), "{out}");

    let output = ballast(&["plugin", "check", path(&plugin_file("wrong_world.wasm"))]);
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("does not export `ballast:policy/policy@0.2.0` or `ballast:policy/policy@0.1.0`"), "{out}");

    // A plugin of the older world passes, and says which world it is.
    let output = ballast(&["plugin", "check", path(&plugin_file("world_0_1.wasm"))]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("world       ballast:policy/scaling-policy@0.1.0 (ok)"), "{out}");
    assert!(out.contains("log       [info] 0.1 plugin saw"), "{out}");

    let output = ballast(&["plugin", "check", path(&plugin_file("hostile.wasm")), "--config", r#"{"mode": "trap"}"#]);
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("FAILED: the plugin trapped") && out.contains("canary decision failed"), "{out}");

    let dir = tempfile::tempdir().expect("temp dir");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"#!/bin/sh\necho not wasm\n").expect("writing junk");
    let output = ballast(&["plugin", "check", path(&junk)]);
    assert!(!output.status.success());
    assert!(text(&output).contains("not WebAssembly at all"), "{}", text(&output));
}

#[test]
fn check_and_test_take_the_built_in_plugins_by_name() {
    let output = ballast(&["plugin", "check", "builtin:hpa", "--config", r#"{"gpuUtilization": 60}"#]);
    let out = text(&output);
    assert!(output.status.success() && out.contains("canary      2 -> 4 replicas"), "{out}");
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - name: idle\n    input: {currentReplicas: 2, observation: {}}\n    expect: {replicas: 2}\n",
    )
    .expect("writing cases");
    let output = ballast(&["plugin", "test", "builtin:hpa", "--cases", path(&cases)]);
    assert!(text(&output).contains("on builtin:hpa"), "{}", text(&output));
    let output = ballast(&["plugin", "check", "builtin:nope"]);
    let out = text(&output);
    assert!(!output.status.success() && out.contains("no built-in plugin `nope`: the built-ins are hpa"), "{out}");
}

#[test]
fn pack_prints_a_config_map_the_controller_reads() {
    let output = ballast(&[
        "plugin",
        "pack",
        path(&plugin_file("hpa.wasm")),
        "--config-map",
        "hpa-plugin",
        "--namespace",
        "ai-models",
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    let component = std::fs::read(plugin_file("hpa.wasm")).expect("hpa.wasm");
    let digest = ballast::runtime::digest(&component);
    let config_map: k8s_openapi::api::core::v1::ConfigMap =
        serde_saphyr::from_str(&String::from_utf8_lossy(&output.stdout)).expect("the output is one ConfigMap");
    let stored = &config_map.binary_data.as_ref().expect("binaryData")["plugin.wasm"].0;
    assert!(stored.starts_with(&[0x1f, 0x8b]) && stored.len() < component.len(), "gzip makes it smaller");
    assert_eq!(ballast::policy::plugins::config_map_component(&config_map, "plugin.wasm").unwrap(), component);
    assert_eq!(config_map.metadata.annotations.unwrap()["ballast.dev/plugin-sha256"], digest);
    assert_eq!(config_map.metadata.labels.unwrap()["ballast.dev/plugin"], "true");
    assert!(out.contains(&format!("#     sha256: {digest}")), "{out}");

    let output =
        ballast(&["plugin", "pack", path(&plugin_file("wrong_world.wasm")), "--config-map", "x", "--namespace", "y"]);
    assert!(!output.status.success(), "a component the host refuses is not packed");
}
