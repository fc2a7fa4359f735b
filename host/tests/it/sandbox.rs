//! The sandbox end to end: hostile plugins in `ballast run` (against the API stand-in), `ballast simulate` and
//! `ballast plugin check|test`. The runtime's own tests (runtime.rs, languages.rs) pin each limit.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ballast::controller::report;
use ballast::spec::ScalingPolicy;
use common::cluster::{HostConfig, cluster, condition, eventually};
use serde_json::json;

fn ballast(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ballast")).args(args).output().expect("running ballast")
}

fn text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn hostile_path() -> PathBuf {
    PathBuf::from(ballast_test_plugins::DIR).join("hostile.wasm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ballast_run_keeps_deciding_beside_plugins_that_print_sleep_and_escape() {
    let cluster = cluster().await;
    cluster.insert_deployment("default", "api", 1);
    // The live plugin prints, its shadow sleeps; another policy's plugin answers with terminal escapes.
    cluster
        .create_hostile_policy(
            "web",
            json!({
                "config": { "mode": "print" },
                "shadow": { "plugin": { "configMap": { "name": "hostile", "key": "plugin.wasm" } },
                            "config": { "mode": "sleep" } }
            }),
        )
        .await;
    cluster.create_hostile_policy("api", json!({ "target": { "name": "api" }, "config": { "mode": "escape" } })).await;
    let host = common::cluster::Host::start(&cluster, "host-a", None, None);
    let web = eventually(Duration::from_secs(30), "a decision of the printing plugin with its log", || {
        let policy = cluster.policy("web");
        let logs = policy["status"]["lastDecision"]["record"]["logs"].clone();
        (logs.as_array().is_some_and(|l| !l.is_empty()) && !policy["status"]["lastDecision"]["shadow"].is_null())
            .then_some(policy)
    })
    .await;
    let logs = &web["status"]["lastDecision"]["record"]["logs"];
    assert_eq!(logs[0], json!({"level": "stdout", "message": "hostile plugin prints to stdout"}), "{logs}");
    assert_eq!(web["status"]["lastDecision"]["shadow"]["reason"], "slept 3 s");
    assert_eq!(condition(&web, "PluginReady").expect("PluginReady")["status"], "True");
    // The host is still deciding, for both policies, well after: it did not crash on the first print or sleep.
    let api = eventually(Duration::from_secs(30), "a decision of the escaping plugin", || {
        let policy = cluster.policy("api");
        policy["status"]["lastDecision"].is_object().then_some(policy)
    })
    .await;
    let api: ScalingPolicy = serde_json::from_value(api).expect("status parses");
    let web: ScalingPolicy = serde_json::from_value(web).expect("status parses");
    let table = report::status_table(&[web.clone(), api.clone()], k8s_openapi::jiff::Timestamp::now());
    assert!(!table.contains('\u{1b}'), "{table}");
    assert_eq!(table.lines().count(), 3, "a header and one row per policy, none forged:\n{table}");
    let explained = report::explain(&api);
    assert!(!explained.contains('\u{1b}') && explained.contains("\\u{1b}[2J"), "{explained}");
    assert!(report::explain(&web).contains("[stdout] hostile plugin prints to stdout"));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_bomb_in_a_configmap_is_refused_and_the_host_goes_on() {
    let cluster = cluster().await;
    cluster.insert_deployment("default", "api", 1);
    // 48 MB of code in eight functions, a few hundred KB gzipped: it fits a ConfigMap.
    let func = format!("(func {})", "i32.const 1 drop ".repeat(2_000_000));
    let text = format!("(component (core module {}))", vec![func; 8].join(" "));
    let bomb = wat::parse_str(text).expect("component text");
    cluster.put_plugin_config_map("bomb", "plugin.wasm", common::cluster::gzip(&bomb)).await;
    cluster
        .create_policy(
            "bombed",
            json!({ "target": { "name": "web" }, "maxReplicas": 4,
                    "plugin": { "configMap": { "name": "bomb", "key": "plugin.wasm" } } }),
        )
        .await;
    cluster
        .create_hostile_policy(
            "api",
            json!({ "target": { "name": "api" }, "config": { "mode": "fixed", "replicas": 3 } }),
        )
        .await;
    // Compiling it takes more than the 512 MiB this host gives a compilation (`--plugin-compile-memory-mib`).
    let config = HostConfig { compile_memory_bytes: Some(512 << 20), ..HostConfig::new("host-a") };
    let host = common::cluster::Host::start_with(&cluster, config);
    let refused = eventually(Duration::from_secs(120), "PluginReady=False on the bombed policy", || {
        condition(&cluster.policy("bombed"), "PluginReady").filter(|c| c["status"] == "False")
    })
    .await;
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("compiling needed more than its 512 MiB") && message.contains("configmap:default/bomb"),
        "{refused}"
    );
    eventually(Duration::from_secs(30), "the other policy to scale api to 3", || {
        let api = cluster.standin.get("/apis/apps/v1/namespaces/default/deployments/api").expect("deployment api");
        (api["spec"]["replicas"] == 3).then_some(())
    })
    .await;
    host.stop().await;
}

fn write_policy(dir: &Path, config: &str, shadow_config: &str) -> PathBuf {
    let path = dir.join("policies.yaml");
    let plugin = hostile_path();
    let text = format!(
        "apiVersion: ballast.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: stt, namespace: ai-models}}\n\
         spec:\n  target: {{name: stt}}\n  minReplicas: 1\n  maxReplicas: 4\n  plugin: {{path: {p}}}\n  \
         config: {config}\n  shadow: {{plugin: {{path: {p}}}, config: {shadow_config}}}\n\
         simulation: {{serviceSeconds: 1, startupSeconds: 5, concurrency: 1, baseRate: 1}}\n",
        p = plugin.display()
    );
    std::fs::write(&path, text).expect("writing the policy");
    path
}

#[test]
fn simulate_runs_plugins_that_print_and_sleep() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policies = write_policy(dir.path(), r#"{"mode": "print"}"#, r#"{"mode": "sleep"}"#);
    let run = ballast(&[
        "simulate",
        "--policies",
        policies.to_str().unwrap(),
        "--trace",
        "builtin:steady",
        "--duration",
        "2m",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("stt"), "{}", text(&run));
}

#[test]
fn plugin_check_and_test_show_what_the_plugin_said() {
    let hostile = hostile_path();
    let hostile = hostile.to_str().unwrap();
    let printed = ballast(&["plugin", "check", hostile, "--config", r#"{"mode": "print"}"#]);
    assert!(printed.status.success(), "{}", text(&printed));
    assert!(text(&printed).contains("[stdout] hostile plugin prints to stdout"), "{}", text(&printed));
    let panicked = ballast(&["plugin", "check", hostile, "--config", r#"{"mode": "panic"}"#]);
    assert!(!panicked.status.success(), "{}", text(&panicked));
    assert!(text(&panicked).contains("hostile plugin panics on purpose"), "{}", text(&panicked));
    let slept = ballast(&["plugin", "check", hostile, "--config", r#"{"mode": "sleep"}"#]);
    assert!(slept.status.success(), "{}", text(&slept));

    let dir = tempfile::tempdir().expect("temp dir");
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - name: prints\n    input:\n      currentReplicas: 2\n      config: {mode: print}\n    expect:\n      replicas: 2\n",
    )
    .unwrap();
    let tested = ballast(&["plugin", "test", hostile, "--cases", cases.to_str().unwrap()]);
    assert!(tested.status.success(), "{}", text(&tested));
    assert!(text(&tested).contains("log [stderr] hostile plugin prints to stderr"), "{}", text(&tested));
}
