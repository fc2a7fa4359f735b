//! The Kubernetes controller against the in-repo API stand-in (real REST protocol, production kube client), with a
//! real Redis filled by the real bullmq package.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ballast::controller::lease::{DEFAULT_LEASE_NAME, LeaseConfig};
use ballast::controller::reconcile::PolicySource;
use ballast::controller::report;
use ballast::spec::ScalingPolicy;
use common::cluster::{
    Cluster, DEPLOYMENT, Host, HostConfig, cluster, condition, eventually, fast_behavior, gzip, plugin_file, rebuilt,
};
use common::{RedisServer, fixture};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube_standin::{Fault, FaultKind, StandIn};
use serde_json::{Value, json};

const SCALE: &str = "/apis/apps/v1/namespaces/default/deployments/web/scale";
const POLICY: &str = "/apis/ballast.dev/v1alpha1/namespaces/default/scalingpolicies/web";

#[test]
fn committed_crd_is_what_ballast_crd_prints() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/base/crd.yaml"))
        .expect("deploy/base/crd.yaml");
    let printed = ballast::controller::crd::crd_yaml().expect("CRD YAML");
    assert_eq!(
        committed, printed,
        "deploy/base/crd.yaml is stale: regenerate it with `ballast crd > deploy/base/crd.yaml`"
    );
}

/// `queue-drain` on Deployment `web`, fed by BullMQ queue `stt`, tuned to react within seconds.
fn queue_drain_on_stt(min_replicas: u32) -> Value {
    json!({
        "target": { "kind": "Deployment", "name": "web" },
        "minReplicas": min_replicas, "maxReplicas": 8,
        "plugin": { "builtin": "queue-drain" },
        "config": {
            "initialJobsPerPodPerSecond": 0.5, "targetWaitSeconds": 2, "drainSeconds": 2,
            "startupSeconds": 1, "smoothingSeconds": 1
        },
        "metrics": { "queues": [{ "name": "stt" }], "resources": false },
        "behavior": fast_behavior(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bullmq_queue_scales_a_deployment_up_and_back_down_and_a_bad_policy_does_not_stop_it() {
    let cluster = cluster().await;
    let redis = RedisServer::start();
    let url = redis.url("", 0);
    fixture("populate", &url, "bull", &[], &["stt"]);
    cluster.create_policy("web", queue_drain_on_stt(1)).await;
    cluster
        .create_policy(
            "broken",
            json!({
                "target": { "kind": "Deployment", "name": "web" },
                "maxReplicas": 3,
                "plugin": { "builtin": "no-such-plugin" },
            }),
        )
        .await;
    // Refused by the same spec check as `ballast run --config` and the simulator (the HPA refuses it too).
    cluster
        .create_policy(
            "zero",
            json!({ "target": { "kind": "Deployment", "name": "web" }, "minReplicas": 0, "maxReplicas": 0,
                    "plugin": { "builtin": "hpa" } }),
        )
        .await;
    let host = Host::start(&cluster, "host-a", Some(&url), None);

    let peak = eventually(Duration::from_secs(30), "the queue to scale web above 1 replica", || {
        (cluster.replicas() >= 4).then(|| cluster.replicas())
    })
    .await;
    assert!(peak <= 8, "maxReplicas 8 exceeded: {peak}");
    let broken = eventually(Duration::from_secs(10), "PluginReady=False on the broken policy", || {
        condition(&cluster.policy("broken"), "PluginReady").filter(|c| c["status"] == "False")
    })
    .await;
    assert!(broken["message"].as_str().unwrap_or_default().contains("no-such-plugin"), "{broken}");
    assert!(!cluster.events("PluginRejected").await.is_empty(), "no PluginRejected Event for the broken policy");
    let zero = eventually(Duration::from_secs(10), "ScalingActive=False on the policy with maxReplicas 0", || {
        condition(&cluster.policy("zero"), "ScalingActive").filter(|c| c["status"] == "False")
    })
    .await;
    assert_eq!(zero["reason"], "InvalidSpec", "{zero}");
    let message = zero["message"].as_str().unwrap_or_default();
    assert!(message.contains("ScalingPolicy default/zero: spec.maxReplicas is 0; it must be at least 1"), "{zero}");

    // Drained: no job waits or runs; the queue itself (its meta and id keys) remains, as in a drained BullMQ queue.
    let drained =
        ["wait", "active", "prioritized", "delayed", "waiting-children", "paused"].map(|s| format!("bull:stt:{s}"));
    let mut del = vec!["DEL"];
    del.extend(drained.iter().map(String::as_str));
    redis.cmd(&url, &del).expect("draining the queue");
    eventually(Duration::from_secs(30), "web to scale back down to 1", || (cluster.replicas() == 1).then_some(()))
        .await;
    // The Recorder folds repeats of one reason into a series; the Event for the scale-down may land just after the
    // Deployment changed.
    let up_and_down = "SuccessfulRescale Events up and down";
    cluster.await_events("SuccessfulRescale", 2, Duration::from_secs(10), up_and_down).await;

    let policy = eventually(Duration::from_secs(5), "status to show 1 replica", || {
        let p = cluster.policy("web");
        (p["status"]["currentReplicas"] == 1).then_some(p)
    })
    .await;
    let policy: ScalingPolicy = serde_json::from_value(policy).expect("status parses");
    let explained = report::explain(&policy);
    assert!(
        explained.contains("clamp steps:") && explained.contains("final:") && explained.contains("queue"),
        "{explained}"
    );
    let table = report::status_table(&[policy], k8s_openapi::jiff::Timestamp::now());
    assert!(table.contains("default/web") && table.contains("Deployment/web"), "{table}");

    // The same through the CLI, with kubectl's habits: a kubeconfig and a context, -o json|yaml, -n.
    let kubeconfig = cluster.standin.kubeconfig().expect("kubeconfig");
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ballast"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--context", "kube-standin"])
            .output()
            .expect("running ballast");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let rows: Value = serde_json::from_str(&cli(&["status", "-o", "json"])).expect("JSON");
    let items = rows["items"].as_array().expect("items");
    let web = items.iter().find(|row| row["name"] == "web").expect("web's row");
    assert_eq!((web["target"].as_str(), web["currentReplicas"].as_u64()), (Some("Deployment/web"), Some(1)), "{web}");
    let zero = items.iter().find(|row| row["name"] == "zero").expect("zero's row");
    assert_eq!(zero["conditions"][0]["reason"], "InvalidSpec", "{zero}");
    let explained: Value =
        serde_yaml_ng::from_str(&cli(&["explain", "web", "-n", "default", "-o", "yaml"])).expect("YAML");
    assert_eq!(explained["lastDecision"]["replicas"], 1, "{explained}");
    assert!(explained["lastDecision"]["record"]["clamp"]["steps"].is_array(), "{explained}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_update_swaps_the_plugin_and_a_broken_update_is_refused() {
    let cluster = cluster().await;
    let v1 = rebuilt(ballast::runtime::builtin("queue-drain").expect("queue-drain"), "v1");
    let v2 = rebuilt(ballast::runtime::builtin("queue-drain").expect("queue-drain"), "v2");
    let v1_digest = ballast::runtime::digest(&v1);
    let v2_digest = ballast::runtime::digest(&v2);
    cluster.put_plugin_config_map("policy", "plugin.wasm", gzip(&v1)).await;
    cluster
        .create_policy(
            "web",
            json!({
                "target": { "name": "web" },
                "minReplicas": 1, "maxReplicas": 5,
                "plugin": { "configMap": { "name": "policy", "key": "plugin.wasm" } },
                "config": { "initialJobsPerPodPerSecond": 1 },
            }),
        )
        .await;
    let host = Host::start(&cluster, "host-a", None, None);
    let digest_of_last_decision =
        |cluster: &Cluster| cluster.policy("web")["status"]["lastDecision"]["pluginDigest"].as_str().map(str::to_owned);
    eventually(Duration::from_secs(30), "a decision by v1 (gzipped in the ConfigMap)", || {
        (digest_of_last_decision(&cluster).as_deref() == Some(v1_digest.as_str())).then_some(())
    })
    .await;

    let updated = Instant::now();
    cluster.put_plugin_config_map("policy", "plugin.wasm", v2.clone()).await;
    eventually(Duration::from_secs(30), "a decision by v2", || {
        (digest_of_last_decision(&cluster).as_deref() == Some(v2_digest.as_str())).then_some(())
    })
    .await;
    let latency = updated.elapsed();
    println!("hot-swap: ConfigMap update to first status-visible decision by the new plugin: {latency:?}");

    cluster.put_plugin_config_map("policy", "plugin.wasm", plugin_file("wrong_world.wasm")).await;
    let refused = eventually(Duration::from_secs(30), "PluginReady=False after the broken update", || {
        condition(&cluster.policy("web"), "PluginReady").filter(|c| c["status"] == "False")
    })
    .await;
    assert_eq!(refused["reason"], "PluginRejected", "{refused}");
    assert!(refused["message"].as_str().unwrap_or_default().contains("keeps running"), "{refused}");
    assert!(!cluster.events("PluginRejected").await.is_empty(), "no PluginRejected Event");
    // The old version keeps deciding: new decisions, still by v2.
    let time_of = |p: &Value| p["status"]["lastDecision"]["time"].as_str().map(str::to_owned);
    let before = time_of(&cluster.policy("web"));
    eventually(Duration::from_secs(10), "a newer decision after the refusal", || {
        let p = cluster.policy("web");
        (time_of(&p) != before).then_some(())
    })
    .await;
    assert_eq!(digest_of_last_decision(&cluster).as_deref(), Some(v2_digest.as_str()));
    // What the PluginRejected alert reads: the leader's gauge of the refused live plugin.
    let metrics = host.metrics.encode();
    let rejected = metric_line(&metrics, "ballast_plugin_not_ready", &["reason=\"PluginRejected\"", "role=\"live\""]);
    assert!(rejected.is_some_and(|l| l.ends_with(" 1")), "{metrics}");
    assert!(metrics.contains("ballast_leader 1"), "{metrics}");
    // The bounds the pinned-at-maximum alert compares with.
    for (name, value) in [("ballast_replicas_max", " 5"), ("ballast_replicas_min", " 1")] {
        let line = metric_line(&metrics, name, &["service=\"web\""]);
        assert!(line.is_some_and(|l| l.ends_with(value)), "{name}: {metrics}");
    }
    // A deleted policy leaves no series behind (a dashboard would show it scaling, its alerts would fire on).
    cluster.delete_policy("web").await;
    eventually(Duration::from_secs(30), "no series of the deleted policy", || {
        (!host.metrics.encode().contains("service=\"web\"")).then_some(())
    })
    .await;
    host.stop().await;
}

/// The line of `name` in Prometheus text whose labels include every one of `labels`.
fn metric_line<'a>(text: &'a str, name: &str, labels: &[&str]) -> Option<&'a str> {
    text.lines().find(|line| line.starts_with(&format!("{name}{{")) && labels.iter().all(|l| line.contains(l)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_resumes_with_plugin_state_and_behavior_history_from_status() {
    let cluster = cluster().await;
    cluster.create_hostile_policy("web", json!({ "maxReplicas": 100, "config": { "mode": "echo-state" } })).await;
    let host = Host::start(&cluster, "host-a", None, None);
    eventually(Duration::from_secs(30), "a few calls counted in the plugin state", || {
        (cluster.replicas() >= 4).then_some(())
    })
    .await;
    host.stop().await;
    let memory = cluster.policy("web")["status"]["memory"].clone();
    let calls_before = state_counter(&memory);
    assert!(calls_before >= 4, "plugin state not persisted: {memory}");
    let scale_ups = memory["history"]["scaleUpEvents"].as_array().map_or(0, Vec::len);
    assert!(scale_ups > 0, "behavior history not persisted: {memory}");

    let host = Host::start(&cluster, "host-b", None, None);
    let after = eventually(Duration::from_secs(30), "a decision by the restarted host", || {
        let calls = state_counter(&cluster.policy("web")["status"]["memory"]);
        (calls > calls_before).then_some(calls)
    })
    .await;
    // A host that had lost the state would have started counting at 1 again.
    assert_eq!(after, calls_before + 1, "the restarted host did not continue from the persisted state");
    host.stop().await;
}

/// The hostile plugin's echo-state counter: the first byte of its state blob.
fn state_counter(memory: &Value) -> u64 {
    use base64::Engine as _;
    let Some(text) = memory["pluginState"].as_str() else { return 0 };
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).expect("base64 plugin state");
    bytes.first().copied().map_or(0, u64::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_fail_over_keeps_a_single_writer() {
    let cluster = cluster().await;
    cluster.create_hostile_policy("web", json!({ "maxReplicas": 200, "config": { "mode": "echo-state" } })).await;
    let lease = |identity: &str| LeaseConfig {
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
        ..LeaseConfig::new(DEFAULT_LEASE_NAME, "ballast-system", identity)
    };
    let a = Host::start(&cluster, "host-a", None, Some(lease("host-a")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = Host::start(&cluster, "host-b", None, Some(lease("host-b")));
    eventually(Duration::from_secs(30), "scaling by the leader", || (cluster.replicas() >= 5).then_some(())).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writers = scale_writers(&cluster.standin);
    assert_eq!(writers.len(), 1, "more than one host wrote /scale while both ran: {writers:?}");
    let leader = writers[0].0.clone();
    let (leader_host, follower) = if leader.ends_with("host-a") { (a, b) } else { (b, a) };

    let killed = Instant::now();
    leader_host.kill();
    let replicas_at_kill = cluster.replicas();
    eventually(Duration::from_secs(10), "the follower to take over", || {
        (cluster.replicas() > replicas_at_kill + 1).then_some(())
    })
    .await;
    let took = killed.elapsed();
    println!("fail-over: the follower scaled {took:?} after the leader died (lease duration 3 s)");
    assert!(took < Duration::from_secs(6), "fail-over took {took:?} with a 3 s lease");
    let writers = scale_writers(&cluster.standin);
    assert_eq!(writers.len(), 2, "{writers:?}");
    // Every write of the old leader precedes every write of the new one.
    let log = cluster.standin.requests();
    let positions = |manager: &str| -> Vec<usize> {
        log.iter()
            .enumerate()
            .filter(|(_, r)| r.method == "PATCH" && r.path == SCALE && r.query.contains(manager))
            .map(|(i, _)| i)
            .collect()
    };
    let new_leader = writers.iter().map(|(m, _)| m.clone()).find(|m| *m != leader).expect("a second writer");
    let (old, new) = (positions(&leader), positions(&new_leader));
    assert!(old.iter().max() < new.iter().min(), "the two hosts' /scale writes interleave: {old:?} vs {new:?}");
    follower.stop().await;
}

/// `/scale` PATCH counts by field manager (each host writes as `ballast-IDENTITY`).
fn scale_writers(standin: &StandIn) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for request in standin.requests().iter().filter(|r| r.method == "PATCH" && r.path == SCALE) {
        let manager =
            request.query.split('&').find_map(|kv| kv.strip_prefix("fieldManager=")).unwrap_or("(none)").to_owned();
        *counts.entry(manager).or_default() += 1;
    }
    counts.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_on_scale_is_retried() {
    let cluster = cluster().await;
    cluster.standin.inject_fault(Fault::writes(SCALE, FaultKind::Conflict, 2));
    cluster.create_hostile_policy("web", json!({ "config": { "mode": "fixed", "replicas": 3 } })).await;
    let host = Host::start(&cluster, "host-a", None, None);
    eventually(Duration::from_secs(30), "web at 3 replicas despite two 409s", || {
        (cluster.replicas() == 3).then_some(())
    })
    .await;
    assert_eq!(cluster.standin.request_count("PATCH", SCALE), 3, "two conflicts and one success");
    eventually(Duration::from_secs(10), "status with 3 replicas and AbleToScale=True", || {
        let policy = cluster.standin.get(POLICY)?;
        let able = condition(&policy, "AbleToScale")?;
        (policy["status"]["currentReplicas"] == 3 && able["status"] == "True").then_some(())
    })
    .await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_from_a_file_scale_the_cluster_target() {
    use ballast::authoring::pack::{PackTarget, pack};
    let cluster = cluster().await;
    cluster.insert_deployment("default", "other", 1);
    // Two policies as `ballast run --config` reads them: one on a plugin file (relative to the file's directory),
    // one on a plugin ConfigMap given in the same file, which the cluster does not have.
    let target = PackTarget { name: "hostile-plugin".into(), namespace: "default".into(), key: "plugin.wasm".into() };
    let config_map =
        pack("hostile", &plugin_file("hostile.wasm"), &target).unwrap().to_yaml("hostile", &target).unwrap();
    let yaml = format!(
        r#"
apiVersion: ballast.dev/v1alpha1
kind: ScalingPolicy
metadata: {{ name: web, namespace: default }}
spec:
  target: {{ kind: Deployment, name: web }}
  minReplicas: 1
  maxReplicas: 10
  plugin: {{ path: hostile.wasm }}
  config: {{ mode: fixed, replicas: 4 }}
simulation: {{ ignored: here }}
---
apiVersion: ballast.dev/v1alpha1
kind: ScalingPolicy
metadata: {{ name: other }}
spec:
  target: {{ name: other }}
  maxReplicas: 10
  plugin: {{ configMap: {{ name: hostile-plugin, key: plugin.wasm }} }}
  config: {{ mode: fixed, replicas: 3 }}
---
{config_map}"#
    );
    let base = std::path::Path::new(ballast_test_plugins::DIR);
    let documents = ballast::policy::documents::documents_from_yaml("inline", &yaml, Some(base)).expect("documents");
    assert_eq!((documents.policies.len(), documents.config_maps.len()), (2, 1));
    let host = Host::start_with(
        &cluster,
        HostConfig { policies: PolicySource::Fixed(documents), ..HostConfig::new("host-a") },
    );
    let other = "/apis/apps/v1/namespaces/default/deployments/other";
    eventually(Duration::from_secs(30), "web at 4 replicas and other at 3, as the file's policies say", || {
        let other = cluster.standin.get(other)?["spec"]["replicas"].as_u64();
        (cluster.replicas() == 4 && other == Some(3)).then_some(())
    })
    .await;
    assert!(cluster.standin.get(POLICY).is_none(), "--config mode must not create policy objects");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_plugin_is_reported_never_applied_and_a_broken_shadow_leaves_the_live_one_alone() {
    let cluster = cluster().await;
    cluster.put_plugin_config_map("candidate", "plugin.wasm", plugin_file("hostile.wasm")).await;
    let shadow = json!({
        "plugin": { "configMap": { "name": "candidate", "key": "plugin.wasm" } },
        "config": { "mode": "fixed", "replicas": 5 },
    });
    cluster
        .create_hostile_policy("web", json!({ "config": { "mode": "fixed", "replicas": 2 }, "shadow": shadow }))
        .await;
    let host = Host::start(&cluster, "host-a", None, None);
    let shadow = eventually(Duration::from_secs(30), "a decision with a shadow verdict", || {
        let shadow = cluster.policy("web")["status"]["lastDecision"]["shadow"].clone();
        (!shadow.is_null()).then_some(shadow)
    })
    .await;
    assert_eq!(shadow["replicas"], 5, "the shadow's count after the clamps: {shadow}");
    assert_eq!(shadow["reason"], "asks for what its config says", "{shadow}");
    assert_eq!(cluster.replicas(), 2, "only the live plugin's answer is applied");
    let ready = condition(&cluster.policy("web"), "ShadowReady").expect("a ShadowReady condition");
    assert_eq!(ready["status"], "True", "{ready}");
    let explained = report::explain(&serde_json::from_value(cluster.policy("web")).expect("policy"));
    assert!(explained.contains("shadow:         would set 5 replicas"), "{explained}");

    // A broken shadow version is refused; the old shadow and the live plugin keep deciding.
    cluster.put_plugin_config_map("candidate", "plugin.wasm", plugin_file("wrong_world.wasm")).await;
    let refused = eventually(Duration::from_secs(30), "ShadowReady=False after a broken shadow update", || {
        condition(&cluster.policy("web"), "ShadowReady").filter(|c| c["status"] == "False")
    })
    .await;
    assert!(refused["message"].as_str().unwrap_or_default().starts_with("shadow plugin: "), "{refused}");
    assert_eq!(condition(&cluster.policy("web"), "PluginReady").expect("PluginReady")["status"], "True");
    let time_of = |p: &Value| p["status"]["lastDecision"]["time"].as_str().map(str::to_owned);
    let before = time_of(&cluster.policy("web"));
    let policy = eventually(Duration::from_secs(10), "a newer decision after the refusal", || {
        let p = cluster.policy("web");
        (time_of(&p) != before).then_some(p)
    })
    .await;
    assert_eq!(policy["status"]["lastDecision"]["shadow"]["replicas"], 5, "the old shadow still decides");
    assert_eq!(cluster.replicas(), 2);

    // Removing the shadow from the spec stops it and drops its condition.
    let api: Api<ScalingPolicy> = Api::namespaced(cluster.client.clone(), "default");
    let patch = json!({ "spec": { "shadow": null } });
    api.patch("web", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.expect("patch");
    eventually(Duration::from_secs(30), "decisions without a shadow and no ShadowReady condition", || {
        let p = cluster.policy("web");
        (p["status"]["lastDecision"]["shadow"].is_null() && condition(&p, "ShadowReady").is_none()).then_some(())
    })
    .await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_rejection_with_a_long_non_ascii_message_still_gets_its_event() {
    let cluster = cluster().await;
    // The hostile plugin refuses its config naming the unknown mode: 600 two-byte characters, over the API
    // server's 1024-byte limit on an Event's note.
    let mode = "é".repeat(600);
    cluster.create_hostile_policy("web", json!({ "config": { "mode": mode } })).await;
    let host = Host::start(&cluster, "host-a", None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    let rejected = loop {
        let events = cluster.events("PluginRejected").await;
        if let Some(event) = events.into_iter().next() {
            break event;
        }
        assert!(Instant::now() < deadline, "no PluginRejected Event: the API server refused its note");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let note = rejected.note.expect("a note");
    assert!(note.len() <= 1024, "the note is cut to 1024 bytes, not {}", note.len());
    assert!(note.contains("unknown mode éé"), "the note keeps the start of the message: {note}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policy_decides_at_its_own_interval() {
    let cluster = cluster().await;
    cluster.insert_deployment("default", "slow", 1);
    for (name, interval) in [("web", 1), ("slow", 3)] {
        let overrides = json!({
            "target": { "name": name }, "decisionIntervalSeconds": interval, "config": { "mode": "echo-state" },
        });
        cluster.create_hostile_policy(name, overrides).await;
    }
    let host = Host::start(&cluster, "host-a", None, None);
    // The echo-state plugin counts its own calls in its state blob, which status persists.
    let calls = |name: &str| {
        let memory = cluster.policy(name)["status"]["memory"].clone();
        (!memory.is_null()).then(|| state_counter(&memory))
    };
    eventually(Duration::from_secs(30), "both policies deciding", || calls("web").zip(calls("slow"))).await;
    let (web0, slow0) = (calls("web").unwrap(), calls("slow").unwrap());
    tokio::time::sleep(Duration::from_secs(9)).await;
    let (web, slow) = (calls("web").unwrap() - web0, calls("slow").unwrap() - slow0);
    println!("in 9 s (host ticking every 200 ms): the 1 s policy decided {web} times, the 3 s policy {slow} times");
    // Status lags the decisions by up to `status_every` (1 s) at each end, hence the slack.
    assert!(web <= 10, "a 1 s policy decides at most once a second: {web} times in 9 s");
    assert!((1..=4).contains(&slow), "a 3 s policy decides about every 3 s: {slow} times in 9 s");
    assert!(web >= 2 * slow, "the 1 s policy decides more often than the 3 s one: {web} vs {slow}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_does_not_slow_the_decisions() {
    let cluster = cluster().await;
    let redis = RedisServer::start();
    let url = redis.url("", 0);
    fixture("populate", &url, "bull", &[], &["stt"]);
    let overrides = json!({
        "config": { "mode": "echo-state" }, "metrics": { "queues": [{ "name": "stt" }], "resources": false },
    });
    cluster.create_hostile_policy("web", overrides).await;
    let host = Host::start(&cluster, "host-a", Some(&url), None);
    // The echo-state plugin counts its own calls in its state blob, which status persists.
    let calls = || {
        let memory = cluster.policy("web")["status"]["memory"].clone();
        (!memory.is_null()).then(|| state_counter(&memory))
    };
    eventually(Duration::from_secs(30), "the policy deciding", || calls().filter(|&n| n > 0)).await;

    redis.signal("-STOP");
    let before = calls().unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let decided = calls().unwrap() - before;
    redis.signal("-CONT");
    println!("in 9 s with Redis stopped (SIGSTOP), the 1 s policy decided {decided} times");
    // Reading Redis inline (2 s timeout) allowed about 4; a decision a second is 9, less status lag at each end.
    assert!(decided >= 6, "a stalled Redis slowed the decisions to {decided} in 9 s");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_are_read_from_a_watch_cache_not_polled() {
    let cluster = cluster().await;
    cluster.create_hostile_policy("web", json!({ "config": { "mode": "fixed", "replicas": 3 } })).await;
    let host = Host::start(&cluster, "host-a", None, None);
    eventually(Duration::from_secs(30), "the Deployment at 3 replicas, all ready", || {
        let ready = cluster.standin.get(DEPLOYMENT)?["status"]["readyReplicas"].as_u64();
        (cluster.replicas() == 3 && ready == Some(3)).then_some(())
    })
    .await;
    let record = |cluster: &Cluster| cluster.policy("web")["status"]["lastDecision"]["record"].clone();
    eventually(Duration::from_secs(10), "a decision that saw 3 ready replicas", || {
        (record(&cluster)["ready"] == 3 && record(&cluster)["current"] == 3).then_some(())
    })
    .await;
    let gets = || cluster.standin.request_count("GET", DEPLOYMENT) + cluster.standin.request_count("GET", SCALE);
    let (before, decided_before) = (gets(), record(&cluster)["nowMs"].as_u64());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_ne!(record(&cluster)["nowMs"].as_u64(), decided_before, "the policy kept deciding");
    assert_eq!(gets(), before, "decisions read the Deployment from the watch cache, not with GETs");
    // One write for one change: the cache's lag after the write never made the host write (or count) it twice.
    let patches = cluster.standin.request_count("PATCH", SCALE);
    assert_eq!(patches, 1, "exactly one /scale write for the one change 1 -> 3");
    host.stop().await;
}

/// What `kubectl apply -k deploy/policies/SET` applies: the set's plugin ConfigMap, then its five policies.
async fn apply_shipped_set(cluster: &Cluster, set: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/policies").join(set);
    let documents = ballast::policy::documents::read_documents(&dir).expect("the shipped set");
    for config_map in &documents.config_maps {
        cluster.apply(config_map.as_ref()).await;
    }
    for policy in &documents.policies {
        cluster.apply(policy).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_policy_sets_run_live_and_a_new_plugin_version_rolls_out_with_its_pin() {
    const SERVICES: [&str; 5] = ["whisper-pyannote-stt", "marian-mt", "styletts", "xtts", "wav2lip"];
    let cluster = cluster().await;
    for name in SERVICES {
        cluster.insert_deployment("ai-models", name, 2);
    }
    let policy = |name: &str| {
        cluster.standin.get(&format!("/apis/ballast.dev/v1alpha1/namespaces/ai-models/scalingpolicies/{name}"))
    };
    let all_decided_by = |digest: &str| {
        SERVICES.iter().all(|name| {
            policy(name).is_some_and(|p| p["status"]["lastDecision"]["pluginDigest"].as_str() == Some(digest))
        })
    };
    let builtin_digest = |name: &str| ballast::runtime::digest(ballast::runtime::builtin(name).expect("built-in"));

    apply_shipped_set(&cluster, "hpa").await;
    let host = Host::start(&cluster, "host-a", None, None);
    let hpa = builtin_digest("hpa");
    eventually(Duration::from_secs(60), "the five services decided by the shipped hpa plugin", || {
        all_decided_by(&hpa).then_some(())
    })
    .await;

    apply_shipped_set(&cluster, "queue-drain").await;
    let queue_drain = builtin_digest("queue-drain");
    eventually(Duration::from_secs(60), "the five services decided by the shipped queue-drain plugin", || {
        all_decided_by(&queue_drain).then_some(())
    })
    .await;

    // A new version rolls out as deploy/README.md says: the ConfigMap may arrive before the re-pinned policies. Until
    // they do, the new component is refused and the pinned one keeps deciding.
    let v2 = rebuilt(ballast::runtime::builtin("queue-drain").expect("built-in"), "v2");
    let v2_digest = ballast::runtime::digest(&v2);
    let mut plugin: ConfigMap = serde_saphyr::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/policies/queue-drain/plugin.yaml"))
            .expect("plugin.yaml"),
    )
    .expect("the shipped ConfigMap");
    plugin.binary_data = Some(BTreeMap::from([("plugin.wasm".to_owned(), ByteString(gzip(&v2)))]));
    cluster.apply(&plugin).await;
    eventually(Duration::from_secs(60), "PluginReady=False on every policy: v2 is not the pinned component", || {
        SERVICES
            .iter()
            .all(|name| {
                policy(name).and_then(|p| condition(&p, "PluginReady")).is_some_and(|c| {
                    c["status"] == "False" && c["message"].as_str().unwrap_or_default().contains("pins")
                })
            })
            .then_some(())
    })
    .await;
    assert!(all_decided_by(&queue_drain), "the pinned version keeps deciding while v2 is refused");

    let api: Api<ScalingPolicy> = Api::namespaced(cluster.client.clone(), "ai-models");
    let pin = json!({ "spec": { "plugin": { "sha256": v2_digest } } });
    for name in SERVICES {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&pin)).await.expect("re-pinning");
    }
    eventually(Duration::from_secs(60), "the five services decided by v2 once re-pinned", || {
        all_decided_by(&v2_digest).then_some(())
    })
    .await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_replicas_zero_scales_to_zero_when_idle_and_back_up_on_queue_activity() {
    let cluster = cluster().await;
    let redis = RedisServer::start();
    let url = redis.url("", 0);
    cluster.create_policy("web", queue_drain_on_stt(0)).await;
    // An idle queue BullMQ has used: its meta hash (written by the first Queue.add) exists, no job does. A queue
    // without any key is unavailable, never empty.
    redis.cmd(&url, &["HSET", "bull:stt:meta", "opts.maxLenEvents", "10000"]).expect("seeding the queue's meta");
    let host = Host::start(&cluster, "host-a", Some(&url), None);
    eventually(Duration::from_secs(30), "web scaled to zero while its queue is empty", || {
        (cluster.replicas() == 0).then_some(())
    })
    .await;
    let idle = eventually(Duration::from_secs(10), "status at 0 replicas", || {
        let p = cluster.policy("web");
        (p["status"]["currentReplicas"] == 0 && p["status"]["desiredReplicas"] == 0).then_some(p)
    })
    .await;
    let able = condition(&idle, "AbleToScale").expect("AbleToScale");
    assert_eq!(able["status"], "True", "zero replicas is a normal state with minReplicas 0: {able}");

    // Jobs arrive (the real bullmq package): the first decision after them brings pods back.
    fixture("populate", &url, "bull", &[], &["stt"]);
    eventually(Duration::from_secs(30), "web back above zero for the new jobs", || {
        (cluster.replicas() >= 1).then_some(())
    })
    .await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_only_runs_out_of_time_is_tried_again_after_a_backoff() {
    let cluster = cluster().await;
    cluster.create_hostile_policy("web", json!({ "config": { "mode": "loop" } })).await;
    let host = Host::start(&cluster, "host-a", None, None);
    let refused = eventually(Duration::from_secs(30), "PluginReady=False for the looping canary", || {
        condition(&cluster.policy("web"), "PluginReady").filter(|c| c["status"] == "False")
    })
    .await;
    assert_eq!(refused["reason"], "PluginRejected", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("(timeout)") && message.contains("trying again after a backoff"), "{refused}");
    // A timeout may be the node's fault, not the plugin's: the load is attempted again (5 s later), which a
    // refusal for any other cause never is.
    let second_attempt = "a second attempt after the backoff";
    cluster.await_events("PluginRejected", 2, Duration::from_secs(20), second_attempt).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_ready_turns_true_again_when_the_configmap_is_restored_to_the_running_plugin() {
    let cluster = cluster().await;
    cluster.create_hostile_policy("web", json!({ "config": { "mode": "fixed", "replicas": 2 } })).await;
    let host = Host::start(&cluster, "host-a", None, None);
    let ready = |status: &'static str| {
        let cluster = &cluster;
        move || condition(&cluster.policy("web"), "PluginReady").filter(|c| c["status"] == status)
    };
    eventually(Duration::from_secs(30), "PluginReady=True for the hostile plugin", ready("True")).await;
    cluster.put_plugin_config_map("hostile", "plugin.wasm", plugin_file("wrong_world.wasm")).await;
    eventually(Duration::from_secs(30), "PluginReady=False after a broken update", ready("False")).await;
    // Rolled back to the bytes that never stopped running: nothing to load, and the refusal is over.
    cluster.put_plugin_config_map("hostile", "plugin.wasm", plugin_file("hostile.wasm")).await;
    let restored = eventually(Duration::from_secs(30), "PluginReady=True after the rollback", ready("True")).await;
    let digest = ballast::runtime::digest(&plugin_file("hostile.wasm"));
    assert!(restored["message"].as_str().unwrap_or_default().contains(&digest), "{restored}");
    host.stop().await;
}

/// What a policy's `plugin.path` may reach in cluster mode: only regular files inside the `--plugin-dir`s, within the
/// component size bound; nothing of a refused file shows, and the other services keep deciding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_paths_are_confined_to_the_plugin_dirs_and_refused_files_are_never_read() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("hostile.wasm"), plugin_file("hostile.wasm")).expect("plugin file");
    let fifo = std::ffi::CString::new(dir.path().join("fifo.wasm").into_os_string().into_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd.wasm")).expect("symlink");
    // One byte over the bound (a sparse file: nothing is written).
    let big = std::fs::File::create(dir.path().join("big.wasm")).expect("big file");
    big.set_len(ballast::runtime::MAX_COMPONENT_BYTES + 1).expect("sparse file");
    let passwd = std::fs::read("/etc/passwd").expect("/etc/passwd");
    let passwd_digest = ballast::runtime::digest(&passwd);
    let first_line = String::from_utf8_lossy(&passwd).lines().next().unwrap_or_default().to_owned();

    // The good plugin, from the plugin directory by a relative path.
    cluster
        .create_policy(
            "web",
            json!({ "target": { "name": "web" }, "maxReplicas": 6, "plugin": { "path": "hostile.wasm" },
                    "config": { "mode": "fixed", "replicas": 3 } }),
        )
        .await;
    let refused = [
        ("etc-passwd", "/etc/passwd", "outside the plugin directories"),
        ("passwd-link", "passwd.wasm", "through a symlink"),
        ("dotdot", "../../etc/passwd", "`..` is not allowed"),
        // /dev is a plugin directory too: a device inside one is still not a component.
        ("dev-zero", "/dev/zero", "not a regular file"),
        ("fifo", "fifo.wasm", "not a regular file"),
        ("big", "big.wasm", "67108865 bytes, over the 67108864-byte bound"),
    ];
    for (name, path, _) in refused {
        cluster
            .create_policy(name, json!({ "target": { "name": name }, "maxReplicas": 3, "plugin": { "path": path } }))
            .await;
    }
    let host = Host::start_with(
        &cluster,
        HostConfig { plugin_dirs: vec![dir.path().to_path_buf(), "/dev".into()], ..HostConfig::new("host-a") },
    );
    eventually(Duration::from_secs(30), "web at 3 replicas by the plugin file", || {
        (cluster.replicas() == 3).then_some(())
    })
    .await;
    for (name, path, why) in refused {
        let condition = eventually(Duration::from_secs(30), &format!("PluginReady=False on {name}"), || {
            condition(&cluster.policy(name), "PluginReady").filter(|c| c["status"] == "False")
        })
        .await;
        let message = condition["message"].as_str().unwrap_or_default();
        assert_eq!(condition["reason"], "PluginUnavailable", "{name}: {condition}");
        assert!(message.contains(path) && message.contains(why), "{name}: {condition}");
    }
    // The decisions of the good policy go on (the FIFO was never opened on the loop).
    let time_of = |p: &Value| p["status"]["lastDecision"]["time"].as_str().map(str::to_owned);
    let before = time_of(&cluster.policy("web"));
    eventually(Duration::from_secs(10), "a newer decision by web", || {
        (time_of(&cluster.policy("web")) != before).then_some(())
    })
    .await;
    let mut shown: Vec<String> = refused.iter().map(|(name, _, _)| cluster.policy(name).to_string()).collect();
    shown.extend(cluster.events("PluginRejected").await.into_iter().filter_map(|e| e.note));
    for text in &shown {
        assert!(!text.contains(&passwd_digest) && !text.contains(&first_line), "a refused file leaked: {text}");
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_plugin_dir_plugin_files_are_refused_naming_the_flag() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hostile.wasm");
    std::fs::write(&file, plugin_file("hostile.wasm")).expect("plugin file");
    let path = file.display().to_string();
    cluster
        .create_policy("web", json!({ "target": { "name": "web" }, "maxReplicas": 3, "plugin": { "path": path } }))
        .await;
    let host = Host::start(&cluster, "host-a", None, None);
    let refused = eventually(Duration::from_secs(30), "PluginReady=False for a file plugin", || {
        condition(&cluster.policy("web"), "PluginReady").filter(|c| c["status"] == "False")
    })
    .await;
    assert!(refused["message"].as_str().unwrap_or_default().contains("--plugin-dir"), "{refused}");
    host.stop().await;
}

/// The text of the Events of `reason`, oldest first (by when each was last seen).
async fn event_notes(cluster: &Cluster, reason: &str) -> Vec<String> {
    let mut events = cluster.events(reason).await;
    let seen = |e: &k8s_openapi::api::events::v1::Event| {
        e.series.as_ref().map(|s| s.last_observed_time.0).or_else(|| e.event_time.as_ref().map(|t| t.0))
    };
    events.sort_by_key(|e| seen(e));
    events.into_iter().filter_map(|e| e.note).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_size_and_each_new_refusal_is_an_event_of_its_own() {
    let cluster = cluster().await;
    cluster.create_hostile_policy("web", json!({ "config": { "mode": "fixed", "replicas": 2 } })).await;
    let host = Host::start(&cluster, "host-a", None, None);
    let api: Api<ScalingPolicy> = Api::namespaced(cluster.client.clone(), "default");
    for replicas in [2, 4, 2] {
        let patch = json!({ "spec": { "config": { "mode": "fixed", "replicas": replicas } } });
        api.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patching the config");
        eventually(Duration::from_secs(30), &format!("web at {replicas}"), || {
            (cluster.replicas() == replicas).then_some(())
        })
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let notes = event_notes(&cluster, "SuccessfulRescale").await;
        let sizes: Vec<bool> = notes.iter().map(|n| n.starts_with("New size: 4")).collect();
        // 1 -> 2, 2 -> 4, 4 -> 2: each readable, the last one last.
        if sizes.contains(&true) && notes.last().is_some_and(|n| n.starts_with("New size: 2")) {
            break;
        }
        assert!(Instant::now() < deadline, "the Events do not tell 2 -> 4 -> 2: {notes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.put_plugin_config_map("hostile", "plugin.wasm", plugin_file("wrong_world.wasm")).await;
    cluster.await_events("PluginRejected", 1, Duration::from_secs(30), "a refusal of the wrong world").await;
    cluster.put_plugin_config_map("hostile", "plugin.wasm", b"not a component".to_vec()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let notes = event_notes(&cluster, "PluginRejected").await;
        if notes.len() >= 2 && notes[0] != notes[1] {
            break;
        }
        assert!(Instant::now() < deadline, "the second refusal shows its own text: {notes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.stop().await;
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ballast-system/leases/ballast-leader";

/// With client-go's timings (15 s lease, 10 s renew deadline, 2 s retry period), a leader killed just after a
/// renewal is replaced within the lease duration of that renewal, and not before its renew deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_within_the_lease_duration() {
    let cluster = cluster().await;
    cluster.create_hostile_policy("web", json!({ "maxReplicas": 200, "config": { "mode": "echo-state" } })).await;
    let lease = |identity: &str| LeaseConfig::new(DEFAULT_LEASE_NAME, "ballast-system", identity);
    assert_eq!(lease("x").duration, Duration::from_secs(15));
    let a = Host::start(&cluster, "host-a", None, Some(lease("host-a")));
    let holder = || cluster.standin.get(LEASE).and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned));
    eventually(Duration::from_secs(30), "host-a leading", || (holder().as_deref() == Some("host-a")).then_some(()))
        .await;
    let b = Host::start(&cluster, "host-b", None, Some(lease("host-b")));
    // Kill the leader right after a renewal: the worst case for the follower.
    let renew_time = || cluster.standin.get(LEASE).and_then(|l| l["spec"]["renewTime"].as_str().map(str::to_owned));
    let first = renew_time();
    eventually(Duration::from_secs(10), "a renewal by host-a", || (renew_time() != first).then_some(())).await;
    let killed = Instant::now();
    a.kill();
    let replicas_at_kill = cluster.replicas();
    eventually(Duration::from_secs(40), "host-b holding the lease", || {
        (holder().as_deref() == Some("host-b")).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    eventually(Duration::from_secs(10), "host-b scaling", || (cluster.replicas() > replicas_at_kill).then_some(()))
        .await;
    let first_scale = killed.elapsed();
    println!(
        "fail-over (15 s lease): lease taken {takeover:?} after the kill, first /scale write after {first_scale:?}"
    );
    assert!(takeover >= Duration::from_secs(10), "taken over before the old leader's renew deadline: {takeover:?}");
    // The lease runs out 15 s after the renewal the kill followed; a second of slack for a loaded machine.
    assert!(takeover <= Duration::from_secs(16), "took {takeover:?}, over the 15 s lease duration");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_metrics_server_policies_reading_cpu_say_how_to_fix_it() {
    let cluster = cluster().await;
    cluster.standin.set_metrics_api(kube_standin::MetricsApi::NotRegistered);
    let reads_cpu = json!({ "config": { "mode": "fixed", "replicas": 2 }, "metrics": { "resources": true } });
    cluster.create_hostile_policy("web", reads_cpu).await;
    cluster.insert_deployment("default", "other", 1);
    let mut no_cpu = json!({ "target": { "name": "other" }, "maxReplicas": 3, "plugin": { "builtin": "hpa" } });
    no_cpu["metrics"] = json!({ "resources": false });
    cluster.create_policy("no-cpu", no_cpu).await;
    let host = Host::start(&cluster, "host-a", None, None);
    let missing = eventually(Duration::from_secs(30), "ResourceMetricsAvailable=False on web", || {
        condition(&cluster.policy("web"), "ResourceMetricsAvailable").filter(|c| c["status"] == "False")
    })
    .await;
    let message = missing["message"].as_str().unwrap_or_default();
    assert!(message.contains("metrics-server is not installed") && message.contains("Install it"), "{missing}");
    assert!(!message.contains("Failed to parse"), "{missing}");
    // A policy that does not read CPU and memory is not concerned.
    eventually(Duration::from_secs(10), "a decision for no-cpu", || {
        cluster.policy("no-cpu")["status"]["conditions"].as_array().map(|_| ())
    })
    .await;
    assert!(condition(&cluster.policy("no-cpu"), "ResourceMetricsAvailable").is_none());
    host.stop().await;
}

/// The component with a custom section of `len` incompressible bytes appended: a big plugin that still runs.
fn padded(component: &[u8], len: usize) -> Vec<u8> {
    let name = b"ballast-test-padding";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    payload.extend((0..len).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    }));
    let mut out = component.to_vec();
    out.push(0); // custom section id
    let mut size = payload.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        out.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    out.extend_from_slice(&payload);
    out
}

/// A packed plugin over ~190 KiB cannot be applied client-side (kubectl's last-applied annotation would hold the
/// whole object, over the API server's 256 KiB of annotations); `ballast plugin pack` says to apply it server-side,
/// which works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_packed_plugin_is_applied_server_side_as_pack_says() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("big.wasm");
    std::fs::write(&file, padded(&plugin_file("hostile.wasm"), 200 * 1024)).expect("component");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["plugin", "pack"])
        .arg(&file)
        .args(["--config-map", "big", "--namespace", "default"])
        .output()
        .expect("running ballast plugin pack");
    let yaml = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(yaml.starts_with("# Apply with `kubectl apply --server-side -f FILE`"), "{yaml}");
    let packed: ConfigMap = serde_saphyr::from_str(&yaml).expect("the packed ConfigMap");
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");

    // What a client-side `kubectl apply -f` sends: the object, plus itself in the last-applied annotation.
    let mut client_side = packed.clone();
    let last_applied = serde_json::to_string(&packed).expect("JSON");
    client_side
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("kubectl.kubernetes.io/last-applied-configuration".into(), last_applied);
    let refused = api.create(&kube::api::PostParams::default(), &client_side).await.expect_err("over the limit");
    let kube::Error::Api(status) = refused else { panic!("{refused}") };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(status.message.contains("metadata.annotations: Too long: must have at most 262144 bytes"), "{status:?}");

    api.patch("big", &PatchParams::apply("kubectl").force(), &Patch::Apply(&packed)).await.expect("server-side apply");
    assert!(api.get("big").await.expect("the ConfigMap").binary_data.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_an_hpa_or_keda_scales_is_held_with_a_condition_and_an_event_until_the_other_is_gone() {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};

    let cluster = cluster().await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), "default");
    let hpa = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "web-hpa", "namespace": "default" },
        "spec": { "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
                  "minReplicas": 1, "maxReplicas": 4 },
    }))
    .unwrap();
    hpas.create(&PostParams::default(), &hpa).await.unwrap();
    cluster.create_hostile_policy("web", json!({ "config": { "mode": "fixed", "replicas": 3 } })).await;
    let host = Host::start(&cluster, "host-a", None, None);

    let held = eventually(Duration::from_secs(30), "ScalingActive=False, ConflictingAutoscaler", || {
        condition(&cluster.policy("web"), "ScalingActive").filter(|c| c["reason"] == "ConflictingAutoscaler")
    })
    .await;
    let message = held["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("Deployment/web is also scaled by HorizontalPodAutoscaler default/web-hpa"), "{held}");
    assert!(message.contains("kubectl -n default delete hpa web-hpa"), "{held}");
    assert_eq!(held["status"], "False");
    cluster.await_events("ConflictingAutoscaler", 1, Duration::from_secs(10), "an Event naming the HPA").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster.replicas(), 1, "nothing written while the HPA scales web");
    assert_eq!(cluster.standin.request_count("PATCH", SCALE), 0);
    let held = |host: &Host| {
        let metrics = host.metrics.encode();
        metric_line(&metrics, "ballast_autoscaler_conflict", &["service=\"web\""]).map(str::to_owned)
    };
    assert!(held(&host).is_some_and(|l| l.ends_with(" 1")), "{}", host.metrics.encode());

    // The HPA goes: Ballast scales web again.
    hpas.delete("web-hpa", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(30), "3 replicas once the HPA is gone", || (cluster.replicas() == 3).then_some(()))
        .await;
    cluster.await_events("ConflictResolved", 1, Duration::from_secs(10), "an Event saying it scales again").await;
    assert_eq!(held(&host), None, "the conflict series is gone with the conflict");

    // KEDA is installed and a ScaledObject claims web: held again, naming the ScaledObject.
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let keda = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "scaledobjects.keda.sh" },
        "spec": {
            "group": "keda.sh", "scope": "Namespaced",
            "names": { "plural": "scaledobjects", "singular": "scaledobject", "kind": "ScaledObject",
                       "listKind": "ScaledObjectList" },
            "versions": [{ "name": "v1alpha1", "served": true, "storage": true,
                           "schema": { "openAPIV3Schema": { "type": "object",
                                                            "x-kubernetes-preserve-unknown-fields": true } } }],
        },
    }))
    .unwrap();
    crds.create(&PostParams::default(), &keda).await.unwrap();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"));
    let scaled_objects: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), "default", &resource);
    let scaled_object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": { "name": "web-queue", "namespace": "default" },
        "spec": { "scaleTargetRef": { "name": "web" }, "triggers": [] },
    }))
    .unwrap();
    scaled_objects.create(&PostParams::default(), &scaled_object).await.unwrap();
    let held = eventually(Duration::from_secs(30), "held by the ScaledObject", || {
        condition(&cluster.policy("web"), "ScalingActive").filter(|c| c["reason"] == "ConflictingAutoscaler")
    })
    .await;
    assert!(held["message"].as_str().unwrap_or_default().contains("KEDA ScaledObject default/web-queue"), "{held}");
    // KEDA scales web down; Ballast, whose plugin still asks for 3, leaves it there.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(cluster.client.clone(), "default");
    deployments
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 1 } })))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster.replicas(), 1, "KEDA's change of web is left alone");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_what_the_cluster_lacks_each_with_its_fix() {
    let cluster = cluster().await;
    cluster.standin.set_metrics_api(kube_standin::MetricsApi::NotRegistered);
    let redis = RedisServer::start();
    let url = redis.url("", 0);
    fixture("populate", &url, "bull", &[], &["stt"]);
    let mut spec = json!({
        "target": { "name": "web" }, "maxReplicas": 4, "plugin": { "builtin": "hpa" },
        "config": { "jobsPerPod": 5 },
        "metrics": { "queues": [{ "name": "stt" }, { "name": "stt-typo" }], "resources": true, "prometheus": {} },
    });
    cluster.create_policy("web", spec.clone()).await;
    cluster
        .standin
        .insert(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": { "name": "web", "namespace": "default" },
            "spec": { "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
                      "maxReplicas": 3 },
        }))
        .unwrap();
    let kubeconfig = cluster.standin.kubeconfig().expect("kubeconfig");
    let nobody = format!("http://127.0.0.1:{}", common::free_port());
    let doctor = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ballast"))
            .args(["doctor", "--redis", &url, "--prometheus", &nobody, "--kubeconfig"])
            .arg(&kubeconfig)
            .output()
            .expect("running ballast doctor");
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (passed, report) = doctor();
    println!("ballast doctor on a cluster lacking most things:\n{report}");
    assert!(!passed, "{report}");
    let line = |check: &str| {
        report.lines().find(|l| l.split_whitespace().nth(1) == Some(check)).unwrap_or_default().to_owned()
    };
    assert!(line("api").starts_with("ok") && line("crd").starts_with("ok"), "{report}");
    for (check, says) in [
        ("host", "no Lease ballast-system/ballast-leader"),
        ("rbac", "no ClusterRole `ballast`"),
        ("metrics-server", "metrics-server is not installed"),
        ("conflicts", "HorizontalPodAutoscaler default/web"),
        ("redis", "bull:stt-typo"),
        ("prometheus", &nobody),
    ] {
        let found = line(check);
        assert!(
            found.starts_with("FAIL") && found.contains(says),
            "{check}: expected FAIL naming {says:?} in\n{report}"
        );
    }

    // Fixed: the RBAC applied, the HPA and the typo gone, a host running (its Lease renewed).
    for document in serde_yaml_ng::Deserializer::from_str(include_str!("../../../deploy/base/rbac.yaml")) {
        let object: Value = serde::Deserialize::deserialize(document).unwrap();
        if object["kind"] == "ClusterRole" {
            cluster.standin.insert(object).unwrap();
        }
    }
    let hpas: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> =
        Api::namespaced(cluster.client.clone(), "default");
    hpas.delete("web", &Default::default()).await.unwrap();
    spec["metrics"]["queues"] = json!([{ "name": "stt" }]);
    let policy: ScalingPolicy = serde_json::from_value(json!({
        "apiVersion": "ballast.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": { "name": "web", "namespace": "default" }, "spec": spec,
    }))
    .unwrap();
    cluster.apply(&policy).await;
    let lease = LeaseConfig::new(DEFAULT_LEASE_NAME, "ballast-system", "host-a");
    let host = Host::start(&cluster, "host-a", Some(&url), Some(lease));
    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/ballast-system/leases/{DEFAULT_LEASE_NAME}");
    eventually(Duration::from_secs(30), "host-a leading", || {
        cluster.standin.get(&lease_path).filter(|l| l["spec"]["holderIdentity"] == "host-a")
    })
    .await;
    let (_, report) = doctor();
    println!("ballast doctor once fixed:\n{report}");
    let line = |check: &str| {
        report.lines().find(|l| l.split_whitespace().nth(1) == Some(check)).unwrap_or_default().to_owned()
    };
    for check in ["host", "rbac", "conflicts", "redis"] {
        assert!(line(check).starts_with("ok"), "{check} still failing:\n{report}");
    }
    assert!(line("host").contains("host-a leads"), "{report}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reads_its_queues_through_the_redis_connection_in_its_namespaces_secret() {
    use base64::Engine as _;
    let cluster = cluster().await;
    let redis = RedisServer::start_with(&["--requirepass", "tenant/secret#1"]);
    let url = redis.url(":tenant%2Fsecret%231@", 2);
    let jobs: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    let mut push = vec!["RPUSH", "bull:stt:wait"];
    push.extend(jobs.iter().map(String::as_str));
    redis.cmd(&url, &push).expect("seeding");
    redis.cmd(&url, &["HSET", "bull:stt:meta", "opts.maxLenEvents", "10000"]).expect("seeding");
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let port = redis.port.to_string();
    cluster
        .standin
        .insert(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "queues", "namespace": "default" },
            "data": { "host": b64("127.0.0.1"), "port": b64(&port), "password": b64("tenant/secret#1"),
                      "database": b64("2") },
        }))
        .unwrap();
    let spec = |target: &str| {
        json!({
            "target": { "name": target }, "minReplicas": 1, "maxReplicas": 6, "plugin": { "builtin": "hpa" },
            "config": { "jobsPerPod": 5 }, "behavior": fast_behavior(),
            "metrics": { "queues": [{ "name": "stt" }], "redis": { "secretName": "queues" }, "resources": false },
        })
    };
    cluster.create_policy("web", spec("web")).await;
    // A policy of another namespace naming the same Secret: it reads only its own namespace's, which is missing.
    cluster.insert_deployment("other", "web", 1);
    let policy: ScalingPolicy = serde_json::from_value(json!({
        "apiVersion": "ballast.dev/v1alpha1", "kind": "ScalingPolicy",
        "metadata": { "name": "web", "namespace": "other" }, "spec": spec("web"),
    }))
    .unwrap();
    cluster.apply(&policy).await;
    let host = Host::start(&cluster, "host-a", None, None);

    eventually(Duration::from_secs(30), "web at ceil(20 / 5) = 4 replicas", || (cluster.replicas() == 4).then_some(()))
        .await;
    let other = "/apis/ballast.dev/v1alpha1/namespaces/other/scalingpolicies/web";
    let unavailable = eventually(Duration::from_secs(30), "other/web's queue unavailable", || {
        let policy = cluster.standin.get(other)?;
        let reason = policy["status"]["lastDecision"]["record"]["observation"]["unavailable"]["queue"].as_str()?;
        // At first the Secret is being read; then its absence is the reason.
        reason.contains("does not exist").then(|| reason.to_owned())
    })
    .await;
    assert!(unavailable.contains("Secret other/queues") && unavailable.contains("does not exist"), "{unavailable}");
    let other_deployment = cluster.standin.get("/apis/apps/v1/namespaces/other/deployments/web").unwrap();
    assert_eq!(other_deployment["spec"]["replicas"], 1, "no queue, no scaling");
    host.stop().await;
}
