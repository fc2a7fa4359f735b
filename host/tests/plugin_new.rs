//! `ballast plugin new` + `ballast plugin build` for each language: the new project builds outside this workspace
//! (a Rust project with its copy of the SDK), the component passes the production runtime's validation, and it
//! decides every case of the project's own cases.yaml as expected.

use std::time::Duration;

use ballast::authoring::build::{self, Language};
use ballast::authoring::scaffold;
use ballast::observation::Observation;
use ballast::runtime::{
    CustomMetric, Observations, Plugin, PluginFailure, PolicyEngine, PolicyInput, QueueCounts, RuntimeLimits, ServiceId,
};
use serde_json::Value;

/// The input of one cases.yaml case, with the format's defaults.
fn case_input(input: &Value) -> PolicyInput {
    let current = input["currentReplicas"].as_u64().expect("currentReplicas is required") as u32;
    let count = |field: &str, default: u64| input[field].as_u64().unwrap_or(default) as u32;
    let obs: Observation =
        serde_json::from_value(input.get("observation").cloned().unwrap_or(Value::Null)).unwrap_or_default();
    let config = input.get("config").map_or_else(|| "{}".to_owned(), Value::to_string);
    PolicyInput {
        service: ServiceId { namespace: "default".into(), name: "case".into() },
        now_ms: input["nowMs"].as_u64().unwrap_or(0),
        current_replicas: current,
        ready_replicas: count("readyReplicas", u64::from(current)),
        min_replicas: count("minReplicas", 1),
        max_replicas: count("maxReplicas", 10),
        config,
        state: None,
        observations: Observations {
            gpu_duty_cycle_percent: obs.gpu_duty_cycle_percent,
            cpu_percent_of_request: obs.cpu_percent_of_request,
            memory_percent_of_request: obs.memory_percent_of_request,
            queue: obs.queue.map(|q| QueueCounts {
                waiting: q.waiting,
                prioritized: q.prioritized,
                paused: q.paused,
                active: q.active,
                delayed: q.delayed,
                failed: q.failed,
                waiting_children: q.waiting_children,
                completed_since_last: obs.completed_since_last,
            }),
            latency_p50_ms: obs.latency_p50_ms,
            latency_p95_ms: obs.latency_p95_ms,
            latency_p99_ms: obs.latency_p99_ms,
            request_rate: obs.request_rate,
            custom: obs.custom.iter().map(|(name, value)| CustomMetric { name: name.clone(), value: *value }).collect(),
        },
    }
}

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
    let mut plugin = Plugin::new(engine.clone(), engine.load("gpu-target.wasm", &bytes).unwrap());
    let cases: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("cases.yaml")).unwrap()).expect("cases.yaml");
    let cases = cases["cases"].as_array().expect("a list of cases");
    assert!(cases.len() >= 5, "the template's cases cover its behaviour");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let expect = &case["expect"];
        let result = plugin.decide(&case_input(&case["input"])).result;
        match (expect.get("error").and_then(Value::as_str), result) {
            (Some(error), Err(PluginFailure::Error(message))) => {
                assert!(message.contains(error), "{language:?} `{name}`: {message:?} lacks {error:?}")
            }
            (None, Ok(decision)) => {
                assert_eq!(u64::from(decision.replicas), expect["replicas"].as_u64().unwrap(), "{language:?} `{name}`");
                if let Some(part) = expect.get("reasonContains").and_then(Value::as_str) {
                    assert!(decision.reason.contains(part), "{language:?} `{name}`: {:?}", decision.reason);
                }
            }
            (_, other) => panic!("{language:?} `{name}`: expected {expect}, got {other:?}"),
        }
    }
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
