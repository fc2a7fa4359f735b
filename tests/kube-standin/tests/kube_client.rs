//! The stand-in driven by the production `kube` client: every request here is real kube-rs code over HTTP.

mod common;

use std::time::Duration;

use common::{api_error, client_for};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event as EventsV1;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Event as RecorderEvent, EventType, Recorder, Reporter};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;
use kube::{Client, Config, CustomResource, CustomResourceExt, ResourceExt};
use kube_standin::{ContainerUsage, Fault, FaultKind, MetricsApi, StandIn};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How long a test waits for the stand-in's controller or a watch before failing (a bound, not a speed target).
const WAIT: Duration = Duration::from_secs(10);

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
        "data": {"key": "value"},
    }))
    .expect("a valid ConfigMap")
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "server", "image": "example/server:1"}]},
            },
        },
    }))
    .expect("a valid Deployment")
}

type WatcherStream = futures::stream::BoxStream<'static, Result<watcher::Event<ConfigMap>, watcher::Error>>;

async fn next_item(events: &mut WatcherStream) -> Result<watcher::Event<ConfigMap>, watcher::Error> {
    tokio::time::timeout(WAIT, events.try_next())
        .await
        .expect("a watcher item within the wait")
        .map(|e| e.expect("the watcher never ends"))
}

async fn next_event(events: &mut WatcherStream) -> watcher::Event<ConfigMap> {
    next_item(events).await.expect("a watcher event, not an error")
}

/// Polls `check` until it passes or [`WAIT`] runs out.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waited = tokio::time::timeout(WAIT, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

#[tokio::test]
async fn kubeconfig_file_drives_a_real_client() {
    let standin = StandIn::start().await.unwrap();
    let path = standin.kubeconfig().unwrap();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "35"));
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client);
    config_maps.create(&PostParams::default(), &config_map("from-kubeconfig", &[])).await.unwrap();
    assert!(standin.get("/api/v1/namespaces/default/configmaps/from-kubeconfig").is_some());
    standin.shutdown().await;
}

#[tokio::test]
async fn config_map_create_get_replace_delete_with_real_errors() {
    let standin = StandIn::start().await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client_for(&standin).await, "default");

    let created = config_maps.create(&PostParams::default(), &config_map("settings", &[])).await.unwrap();
    let metadata = &created.metadata;
    assert!(metadata.uid.as_ref().is_some_and(|uid| uid.len() == 36), "{metadata:?}");
    assert!(metadata.creation_timestamp.is_some());
    assert_eq!(metadata.generation, None, "ConfigMaps have no generation");
    let first_rv: u64 = metadata.resource_version.as_deref().unwrap().parse().unwrap();

    let duplicate =
        api_error(config_maps.create(&PostParams::default(), &config_map("settings", &[])).await.unwrap_err());
    assert_eq!((duplicate.code, duplicate.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(duplicate.message, "configmaps \"settings\" already exists");

    let mut changed = config_maps.get("settings").await.unwrap();
    changed.data.as_mut().unwrap().insert("key".into(), "changed".into());
    let replaced = config_maps.replace("settings", &PostParams::default(), &changed).await.unwrap();
    let second_rv: u64 = replaced.metadata.resource_version.as_deref().unwrap().parse().unwrap();
    assert!(second_rv > first_rv);

    // `changed` still carries the first resourceVersion: optimistic concurrency must refuse it.
    let conflict = api_error(config_maps.replace("settings", &PostParams::default(), &changed).await.unwrap_err());
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(conflict.message.starts_with("Operation cannot be fulfilled on configmaps \"settings\""), "{conflict:?}");

    let generated = config_maps
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap())
        .await
        .unwrap();
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9, "{}", generated.name_any());

    let deleted = config_maps.delete("settings", &DeleteParams::default()).await.unwrap();
    let status = deleted.right().expect("ConfigMap deletion answers with a Status");
    assert_eq!(status.details.unwrap().name, "settings");
    let missing = api_error(config_maps.get("settings").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"settings\" not found");

    let elsewhere: Api<ConfigMap> = Api::namespaced(client_for(&standin).await, "nowhere");
    let no_namespace = api_error(elsewhere.create(&PostParams::default(), &config_map("x", &[])).await.unwrap_err());
    assert_eq!((no_namespace.code, no_namespace.message.as_str()), (404, "namespaces \"nowhere\" not found"));
    let namespaces: Api<Namespace> = Api::all(client_for(&standin).await);
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "nowhere"}})).unwrap())
        .await
        .unwrap();
    elsewhere.create(&PostParams::default(), &config_map("x", &[])).await.unwrap();

    let dry = PostParams { dry_run: true, ..Default::default() };
    config_maps.create(&dry, &config_map("dry", &[])).await.unwrap();
    assert!(standin.get("/api/v1/namespaces/default/configmaps/dry").is_none(), "dryRun=All must not persist");
    standin.shutdown().await;
}

#[tokio::test]
async fn lists_filter_by_label_and_field_selectors_and_paginate() {
    let standin = StandIn::start().await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client_for(&standin).await, "default");
    for (name, tier) in [("a", "gpu"), ("b", "gpu"), ("c", "cpu"), ("d", "cpu"), ("e", "")] {
        let labels: Vec<(&str, &str)> =
            if tier.is_empty() { vec![("app", "x")] } else { vec![("app", "x"), ("tier", tier)] };
        config_maps.create(&PostParams::default(), &config_map(name, &labels)).await.unwrap();
    }
    let names =
        |list: kube::core::ObjectList<ConfigMap>| list.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>();
    for (selector, expected) in [
        ("tier=gpu", vec!["a", "b"]),
        ("tier!=gpu", vec!["c", "d", "e"]),
        ("tier in (cpu)", vec!["c", "d"]),
        ("tier notin (cpu)", vec!["a", "b", "e"]),
        ("tier", vec!["a", "b", "c", "d"]),
        ("!tier", vec!["e"]),
        ("app=x,tier=cpu", vec!["c", "d"]),
    ] {
        let listed = config_maps.list(&ListParams::default().labels(selector)).await.unwrap();
        assert_eq!(names(listed), expected, "labelSelector {selector}");
    }
    let by_name = config_maps.list(&ListParams::default().fields("metadata.name=c")).await.unwrap();
    assert_eq!(names(by_name), vec!["c"]);
    let bad_field = api_error(config_maps.list(&ListParams::default().fields("spec.foo=bar")).await.unwrap_err());
    assert_eq!((bad_field.code, bad_field.reason.as_str()), (400, "BadRequest"));

    let mut pages = Vec::new();
    let mut params = ListParams::default().limit(2);
    loop {
        let page = config_maps.list(&params).await.unwrap();
        let token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        pages.push(names(page));
        match token {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
    let first = config_maps.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.metadata.remaining_item_count, Some(3));

    let all: Api<ConfigMap> = Api::all(client_for(&standin).await);
    assert_eq!(all.list(&ListParams::default().labels("app=x")).await.unwrap().items.len(), 5);
    standin.shutdown().await;
}

#[tokio::test]
async fn watch_from_a_resource_version_streams_changes() {
    let standin = StandIn::start().await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client_for(&standin).await, "default");
    config_maps.create(&PostParams::default(), &config_map("before", &[])).await.unwrap();
    let start = config_maps.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut stream = config_maps.watch(&WatchParams::default().timeout(30), &start).await.unwrap().boxed();

    config_maps.create(&PostParams::default(), &config_map("w", &[])).await.unwrap();
    config_maps.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"key": "new"}}))).await.unwrap();
    config_maps.delete("w", &DeleteParams::default()).await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(WAIT, stream.try_next()).await.unwrap().unwrap().unwrap() {
            WatchEvent::Added(cm) => seen.push(("ADDED", cm.name_any())),
            WatchEvent::Modified(cm) => seen.push(("MODIFIED", cm.name_any())),
            WatchEvent::Deleted(cm) => seen.push(("DELETED", cm.name_any())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    assert_eq!(seen, vec![("ADDED", "w".into()), ("MODIFIED", "w".into()), ("DELETED", "w".into())]);
    standin.shutdown().await;
}

#[tokio::test]
async fn runtime_watcher_sees_changes_and_relists_after_410() {
    let standin = StandIn::start().await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client_for(&standin).await, "default");
    config_maps.create(&PostParams::default(), &config_map("first", &[("app", "w")])).await.unwrap();
    let mut events = watcher(config_maps.clone(), watcher::Config::default().labels("app=w")).boxed();

    assert!(matches!(next_event(&mut events).await, watcher::Event::Init));
    assert!(matches!(next_event(&mut events).await, watcher::Event::InitApply(cm) if cm.name_any() == "first"));
    assert!(matches!(next_event(&mut events).await, watcher::Event::InitDone));

    config_maps.create(&PostParams::default(), &config_map("second", &[("app", "w")])).await.unwrap();
    assert!(matches!(next_event(&mut events).await, watcher::Event::Apply(cm) if cm.name_any() == "second"));
    config_maps
        .patch("second", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})))
        .await
        .unwrap();
    assert!(
        matches!(next_event(&mut events).await, watcher::Event::Delete(cm) if cm.name_any() == "second"),
        "leaving the selector is a DELETED"
    );

    let lists_before = standin
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces/default/configmaps" && !r.query.contains("watch="))
        .count();
    standin.expire_watches();
    let expired = next_item(&mut events).await.unwrap_err();
    assert!(
        matches!(&expired, watcher::Error::WatchError(status) if status.code == 410 && status.reason == "Expired"),
        "{expired:?}"
    );
    assert!(matches!(next_event(&mut events).await, watcher::Event::Init), "410 Expired must make the watcher re-list");
    assert!(matches!(next_event(&mut events).await, watcher::Event::InitApply(cm) if cm.name_any() == "first"));
    assert!(matches!(next_event(&mut events).await, watcher::Event::InitDone));
    let lists_after = standin
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces/default/configmaps" && !r.query.contains("watch="))
        .count();
    assert_eq!(lists_after, lists_before + 1);
    config_maps.create(&PostParams::default(), &config_map("third", &[("app", "w")])).await.unwrap();
    assert!(
        matches!(next_event(&mut events).await, watcher::Event::Apply(cm) if cm.name_any() == "third"),
        "the watch resumed after the re-list"
    );
    standin.shutdown().await;
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_and_bookmark() {
    let standin = StandIn::start().await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client_for(&standin).await, "default");
    config_maps.create(&PostParams::default(), &config_map("streamed", &[])).await.unwrap();
    let mut events = watcher(config_maps.clone(), watcher::Config::default().streaming_lists()).boxed();
    assert!(matches!(next_event(&mut events).await, watcher::Event::Init));
    assert!(matches!(next_event(&mut events).await, watcher::Event::InitApply(cm) if cm.name_any() == "streamed"));
    assert!(matches!(next_event(&mut events).await, watcher::Event::InitDone));
    config_maps.delete("streamed", &DeleteParams::default()).await.unwrap();
    assert!(matches!(next_event(&mut events).await, watcher::Event::Delete(cm) if cm.name_any() == "streamed"));
    standin.shutdown().await;
}

#[tokio::test]
async fn deployment_scale_subresource_and_controller() {
    let standin = StandIn::start().await.unwrap();
    let client = client_for(&standin).await;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let created = deployments.create(&PostParams::default(), &deployment("web", 2)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.spec.as_ref().unwrap().revision_history_limit, Some(10), "defaults are filled in");

    eventually("status to follow 2 replicas", || async {
        let status = deployments.get_status("web").await.unwrap().status.unwrap_or_default();
        status.ready_replicas == Some(2) && status.observed_generation == Some(1)
    })
    .await;

    let scale = deployments.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(2));
    let scale_status = scale.status.as_ref().unwrap();
    assert_eq!((scale_status.replicas, scale_status.selector.as_deref()), (2, Some("app=web")));

    let mut bigger = scale.clone();
    bigger.spec = Some(ScaleSpec { replicas: Some(5) });
    let written = deployments.replace_scale("web", &PostParams::default(), &bigger).await.unwrap();
    assert_eq!(written.spec.unwrap().replicas, Some(5));
    let after = deployments.get("web").await.unwrap();
    assert_eq!(after.spec.as_ref().unwrap().replicas, Some(5));
    assert_eq!(after.metadata.generation, Some(2), "a scale write is a spec change");

    // `bigger` carries the resourceVersion from before the write.
    let stale = api_error(deployments.replace_scale("web", &PostParams::default(), &bigger).await.unwrap_err());
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(stale.message.contains("deployments.apps \"web\""), "{}", stale.message);

    let patched: Scale = deployments
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(3));
    eventually("status to follow 3 replicas", || async {
        let status = deployments.get("web").await.unwrap().status.unwrap_or_default();
        status.replicas == Some(3) && status.available_replicas == Some(3) && status.observed_generation == Some(3)
    })
    .await;

    let negative = Scale { spec: Some(ScaleSpec { replicas: Some(-1) }), ..Default::default() };
    let invalid = api_error(deployments.replace_scale("web", &PostParams::default(), &negative).await.unwrap_err());
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));

    // Writing status through the main resource is ignored; the status subresource takes only status.
    let mut with_status = deployments.get("web").await.unwrap();
    with_status.status.as_mut().unwrap().replicas = Some(99);
    let replaced = deployments.replace("web", &PostParams::default(), &with_status).await.unwrap();
    assert_eq!(replaced.status.unwrap().replicas, Some(3));

    let labelled = deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"team": "ml"}}})))
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(3), "labels are not part of a Deployment's generation");
    let annotated = deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"note": "x"}}})))
        .await
        .unwrap();
    assert_eq!(annotated.metadata.generation, Some(4), "annotations are, as in the real deployment strategy");

    let deleted = deployments.delete("web", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_right(), "Deployment deletion answers with a Status");
    standin.shutdown().await;
}

#[tokio::test]
async fn readiness_follows_after_the_configured_delay() {
    let standin = StandIn::start().await.unwrap();
    standin.set_ready_delay(Duration::from_millis(300));
    let deployments: Api<Deployment> = Api::namespaced(client_for(&standin).await, "default");
    deployments.create(&PostParams::default(), &deployment("slow", 4)).await.unwrap();
    eventually("replicas to be reported before they are ready", || async {
        let status = deployments.get("slow").await.unwrap().status.unwrap_or_default();
        status.replicas == Some(4)
    })
    .await;
    let early = deployments.get("slow").await.unwrap().status.unwrap_or_default();
    assert_eq!(early.updated_replicas, Some(4));
    assert_eq!(early.ready_replicas, None, "readiness waits for the delay");
    assert_eq!(early.unavailable_replicas, Some(4));
    eventually("replicas to become ready", || async {
        deployments.get("slow").await.unwrap().status.unwrap_or_default().ready_replicas == Some(4)
    })
    .await;
    standin.shutdown().await;
}

#[tokio::test]
async fn every_patch_type_applies() {
    let standin = StandIn::start().await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client_for(&standin).await, "default");
    config_maps.create(&PostParams::default(), &config_map("p", &[("app", "p")])).await.unwrap();
    let params = PatchParams::default();

    let merged =
        config_maps.patch("p", &params, &Patch::Merge(json!({"data": {"m": "1", "key": null}}))).await.unwrap();
    assert_eq!(merged.data.unwrap().into_iter().collect::<Vec<_>>(), vec![("m".to_string(), "1".to_string())]);

    let strategic = config_maps.patch("p", &params, &Patch::Strategic(json!({"data": {"s": "2"}}))).await.unwrap();
    assert_eq!(strategic.data.unwrap().len(), 2);

    let operations: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/m", "value": "1"},
        {"op": "add", "path": "/data/j", "value": "3"},
        {"op": "remove", "path": "/data/s"},
    ]))
    .unwrap();
    let json_patched = config_maps.patch("p", &params, &Patch::Json::<()>(operations)).await.unwrap();
    let data = json_patched.data.unwrap();
    assert_eq!((data.get("j").map(String::as_str), data.contains_key("s")), (Some("3"), false));

    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/m", "value": "no"}])).unwrap();
    let failed = api_error(config_maps.patch("p", &params, &Patch::Json::<()>(failing)).await.unwrap_err());
    assert_eq!(failed.code, 422);

    let apply = PatchParams::apply("standin-test").force();
    let applied = config_maps
        .patch(
            "p",
            &apply,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}, "data": {"a": "4"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap().get("a").map(String::as_str), Some("4"));
    let created = config_maps
        .patch(
            "fresh",
            &apply,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fresh"}, "data": {"x": "y"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(created.name_any(), "fresh", "apply creates missing objects");

    let stale_rv = json!({"metadata": {"resourceVersion": "1"}, "data": {"z": "z"}});
    let conflict = api_error(config_maps.patch("p", &params, &Patch::Merge(stale_rv)).await.unwrap_err());
    assert_eq!(conflict.code, 409, "a patch that names a stale resourceVersion conflicts");

    let unchanged_rv = config_maps.get("p").await.unwrap().metadata.resource_version;
    let noop = config_maps.patch("p", &params, &Patch::Merge(json!({"data": {"a": "4"}}))).await.unwrap();
    assert_eq!(noop.metadata.resource_version, unchanged_rv, "a no-op patch does not bump the resourceVersion");
    standin.shutdown().await;
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(group = "ballast.test", version = "v1", kind = "Model", namespaced)]
#[kube(
    status = "ModelStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    )
)]
struct ModelSpec {
    replicas: i32,
    engine: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
struct ModelStatus {
    replicas: i32,
    selector: Option<String>,
}

#[tokio::test]
async fn custom_resource_definition_serves_its_resource() {
    let standin = StandIn::start().await.unwrap();
    let client = client_for(&standin).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let models: Api<Model> = Api::namespaced(client.clone(), "default");
    let before = api_error(models.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(before.code, 404, "no CRD, no resource");

    crds.create(&PostParams::default(), &Model::crd()).await.unwrap();
    let established = await_condition(crds.clone(), "models.ballast.test", conditions::is_crd_established());
    tokio::time::timeout(WAIT, established).await.unwrap().unwrap();

    let model = Model::new("whisper", ModelSpec { replicas: 1, engine: "ct2".into() });
    let created = models.create(&PostParams::default(), &model).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(models.list(&ListParams::default()).await.unwrap().items.len(), 1);

    let patched = models
        .patch("whisper", &PatchParams::default(), &Patch::Merge(json!({"spec": {"engine": "onnx"}})))
        .await
        .unwrap();
    assert_eq!((patched.spec.engine.as_str(), patched.metadata.generation), ("onnx", Some(2)));

    let status = json!({"status": {"replicas": 1, "selector": "model=whisper"}});
    let with_status = models.patch_status("whisper", &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    assert_eq!(with_status.status.as_ref().unwrap().replicas, 1);
    assert_eq!(with_status.metadata.generation, Some(2), "status writes do not bump the generation");

    let ignored = models
        .patch("whisper", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 7}})))
        .await
        .unwrap();
    assert_eq!(ignored.status.unwrap().replicas, 1, "the main resource ignores status");

    let scale = models.get_scale("whisper").await.unwrap();
    assert_eq!(scale.status.as_ref().unwrap().selector.as_deref(), Some("model=whisper"));
    models
        .patch_scale("whisper", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await
        .unwrap();
    assert_eq!(models.get("whisper").await.unwrap().spec.replicas, 4);

    let mut without_rv = models.get("whisper").await.unwrap();
    without_rv.metadata.resource_version = None;
    let invalid = api_error(models.replace("whisper", &PostParams::default(), &without_rv).await.unwrap_err());
    assert_eq!(
        (invalid.code, invalid.reason.as_str()),
        (422, "Invalid"),
        "custom resources need a resourceVersion on PUT"
    );

    let gvk = GroupVersionKind::gvk("ballast.test", "v1", "Model");
    let legacy = kube::discovery::Discovery::new(client.clone()).run().await.unwrap();
    let aggregated = kube::discovery::Discovery::new(client.clone()).run_aggregated().await.unwrap();
    for discovery in [legacy, aggregated] {
        let (resource, capabilities) = discovery.resolve_gvk(&gvk).expect("discovery finds the CRD's kind");
        assert_eq!(resource.plural, "models");
        assert!(capabilities.subresources.iter().any(|(sub, _)| sub.plural == "scale"));
        let deployments = GroupVersionKind::gvk("apps", "v1", "Deployment");
        let (_, capabilities) = discovery.resolve_gvk(&deployments).expect("discovery finds Deployments");
        assert!(capabilities.subresources.iter().any(|(sub, _)| sub.plural == "scale"));
        assert!(discovery.resolve_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap")).is_some());
    }

    crds.delete("models.ballast.test", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(models.get("whisper").await.unwrap_err()).code, 404);
    standin.shutdown().await;
}

#[tokio::test]
async fn leases_support_leader_election_updates() {
    let standin = StandIn::start().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client_for(&standin).await, "default");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "ballast-leader"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut takeover = created.clone();
    takeover.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    leases.replace("ballast-leader", &PostParams::default(), &takeover).await.unwrap();
    let mut late = created;
    late.spec.as_mut().unwrap().holder_identity = Some("pod-c".into());
    let lost = api_error(leases.replace("ballast-leader", &PostParams::default(), &late).await.unwrap_err());
    assert_eq!(lost.code, 409, "the second writer from the same resourceVersion loses");
    assert_eq!(leases.get("ballast-leader").await.unwrap().spec.unwrap().holder_identity.as_deref(), Some("pod-b"));
    standin.shutdown().await;
}

#[tokio::test]
async fn event_recorder_creates_then_patches_events() {
    let standin = StandIn::start().await.unwrap();
    let client = client_for(&standin).await;
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "ballast".into(), instance: Some("pod-a".into()) });
    let reference = ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("Deployment".into()),
        name: Some("web".into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    let event = RecorderEvent {
        type_: EventType::Normal,
        reason: "Scaled".into(),
        note: Some("scaled to 3".into()),
        action: "Scale".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let events: Api<EventsV1> = Api::namespaced(client, "default");
    let listed = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].series.as_ref().map(|s| s.count), Some(2), "the repeat is a patch of the series");
    standin.shutdown().await;
}

#[tokio::test]
async fn pod_metrics_are_listed_read_only() {
    let standin = StandIn::start().await.unwrap();
    for (name, app) in [("web-1", "web"), ("web-2", "web"), ("db-1", "db")] {
        standin
            .insert(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
                "spec": {"containers": [{"name": "server", "image": "i"}]},
                "status": {"phase": "Running"},
            }))
            .unwrap();
    }
    let usage =
        |cpu: &str, memory: &str| [ContainerUsage { name: "server".into(), cpu: cpu.into(), memory: memory.into() }];
    standin.set_pod_metrics("default", "web-2", &usage("1234567n", "12345Ki"));
    standin.set_pod_metrics_at(
        "default",
        "web-1",
        &usage("250m", "64Mi"),
        std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        Duration::from_millis(10_808),
    );
    standin.set_pod_metrics("default", "db-1", &usage("1", "1Gi"));
    // metrics-server serves metrics only for pods that exist.
    standin.set_pod_metrics("default", "gone", &usage("1", "1Gi"));
    let client = client_for(&standin).await;
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"), "pods");
    let metrics: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let listed = metrics.list(&ListParams::default().labels("app=web")).await.unwrap();
    let names: Vec<_> = listed.items.iter().map(|m| m.name_any()).collect();
    assert_eq!(names, ["web-1", "web-2"], "sorted by name, selected by the pods' labels");
    assert_eq!(listed.metadata.resource_version, None, "metrics-server lists carry no resourceVersion");
    assert_eq!(listed.items[0].data["containers"][0]["usage"]["cpu"], "250m");
    assert_eq!(listed.items[0].data["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(listed.items[0].data["window"], "10.808s");
    assert_eq!(listed.items[1].data["containers"][0]["usage"], json!({"cpu": "1234567n", "memory": "12345Ki"}));
    assert_eq!(listed.items[1].data["window"], "15s");
    assert_eq!(listed.items[1].labels().get("app").map(String::as_str), Some("web"), "the pod's labels");
    assert!(listed.items[1].metadata.creation_timestamp.is_some());
    assert!(listed.items[1].types.is_none(), "list items carry no apiVersion/kind");
    let all = metrics.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 3, "no PodMetrics without a pod");
    let by_name = metrics.list(&ListParams::default().fields("metadata.name=db-1")).await.unwrap();
    assert_eq!(by_name.items.len(), 1);

    let one = metrics.get("web-2").await.unwrap();
    assert_eq!(one.types.as_ref().map(|t| t.kind.as_str()), Some("PodMetrics"));
    let no_pod = api_error(metrics.get("gone").await.unwrap_err());
    assert_eq!((no_pod.code, no_pod.message.as_str()), (404, "pods \"gone\" not found"));
    standin
        .insert(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "fresh", "namespace": "default"},
            "spec": {"containers": [{"name": "server", "image": "i"}]},
            "status": {"phase": "Pending"},
        }))
        .unwrap();
    let no_sample = api_error(metrics.get("fresh").await.unwrap_err());
    assert_eq!((no_sample.code, no_sample.message.as_str()), (404, "pods.metrics.k8s.io \"default/fresh\" not found"));
    let refused = api_error(metrics.delete("web-1", &DeleteParams::default()).await.unwrap_err());
    assert_eq!((refused.code, refused.reason.as_str()), (405, "MethodNotAllowed"));

    let pods: Api<Pod> = Api::namespaced(client, "default");
    assert_eq!(pods.get("web-1").await.unwrap().status.unwrap().phase.as_deref(), Some("Running"));
    let deleted = pods.delete("web-1", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_left(), "Pod deletion answers with the Pod");
    assert_eq!(metrics.list(&ListParams::default().labels("app=web")).await.unwrap().items.len(), 1);
    standin.shutdown().await;
}

#[tokio::test]
async fn metrics_api_down_or_not_installed() {
    let standin = StandIn::start().await.unwrap();
    let mut config = Config::new(standin.url().parse().unwrap());
    config.default_retry = false;
    let client = Client::try_from(config).unwrap();
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"), "pods");
    let metrics: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);

    standin.set_metrics_api(MetricsApi::Unavailable);
    let down = api_error(metrics.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((down.code, down.message.as_str()), (503, "service unavailable"), "the aggregator's plain-text 503");

    // Without an APIService the request falls through to Go's http.NotFound: plain text, not a Status.
    standin.set_metrics_api(MetricsApi::NotRegistered);
    let missing = api_error(metrics.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(missing.code, 404);
    assert!(missing.message.contains("404 page not found"), "{missing:?}");
    let request = http::Request::get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")
        .body(kube::client::Body::from(Vec::new()))
        .unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    let body = response.into_body().collect_bytes().await.unwrap();
    assert_eq!(&body[..], b"404 page not found\n");
    let groups: Vec<String> = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap()
        .groups()
        .map(|g| g.name().to_owned())
        .collect();
    assert!(!groups.iter().any(|g| g == "metrics.k8s.io"), "{groups:?}");

    standin.set_metrics_api(MetricsApi::Available);
    assert!(metrics.list(&ListParams::default()).await.unwrap().items.is_empty());
    standin.shutdown().await;
}

#[tokio::test]
async fn injected_faults_and_request_counts() {
    let standin = StandIn::start().await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client_for(&standin).await, "default");
    deployments.create(&PostParams::default(), &deployment("web", 1)).await.unwrap();
    let scale_path = "/apis/apps/v1/namespaces/default/deployments/web/scale";
    let patch = Patch::Merge(json!({"spec": {"replicas": 2}}));

    standin.inject_fault(Fault::writes(scale_path, FaultKind::Conflict, 1));
    let conflict = api_error(deployments.patch_scale("web", &PatchParams::default(), &patch).await.unwrap_err());
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));

    // kube 5's default client retries 429/503/504 itself, honouring Retry-After: one fault is invisible...
    standin.inject_fault(Fault::writes(scale_path, FaultKind::TooManyRequests { retry_after_seconds: 1 }, 1));
    deployments.patch_scale("web", &PatchParams::default(), &patch).await.unwrap();
    assert_eq!(standin.request_count("PATCH", scale_path), 3, "the 429 was retried once");

    // ...so a client that must see them turns the retry layer off.
    let mut config = Config::new(standin.url().parse().unwrap());
    config.default_retry = false;
    let raw: Api<Deployment> = Api::namespaced(Client::try_from(config).unwrap(), "default");
    standin.inject_fault(Fault::writes(scale_path, FaultKind::TooManyRequests { retry_after_seconds: 2 }, 1));
    let throttled = api_error(raw.patch_scale("web", &PatchParams::default(), &patch).await.unwrap_err());
    assert_eq!((throttled.code, throttled.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(throttled.details.unwrap().retry_after_seconds, 2);
    standin.inject_fault(Fault::writes(scale_path, FaultKind::ServiceUnavailable { retry_after_seconds: 1 }, 1));
    assert_eq!(api_error(raw.patch_scale("web", &PatchParams::default(), &patch).await.unwrap_err()).code, 503);
    standin.inject_fault(Fault::writes(scale_path, FaultKind::InternalError, 1));
    assert_eq!(api_error(raw.patch_scale("web", &PatchParams::default(), &patch).await.unwrap_err()).code, 500);

    deployments.patch_scale("web", &PatchParams::default(), &patch).await.unwrap();
    assert_eq!(deployments.get("web").await.unwrap().spec.unwrap().replicas, Some(2));
    assert_eq!(standin.request_count("PATCH", scale_path), 7);
    assert_eq!(standin.request_count("PUT", scale_path), 0);
    standin.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let standin = StandIn::start().await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client_for(&standin).await, "default");
    let mut held = config_map("held", &[]);
    held.metadata.finalizers = Some(vec!["ballast.test/cleanup".into()]);
    config_maps.create(&PostParams::default(), &held).await.unwrap();
    let terminating = config_maps.delete("held", &DeleteParams::default()).await.unwrap().left().expect("still there");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    config_maps
        .patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    assert_eq!(api_error(config_maps.get("held").await.unwrap_err()).code, 404);
    standin.shutdown().await;
}

#[tokio::test]
async fn statefulset_scale_and_core_events() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Event as CoreEvent;

    let standin = StandIn::start().await.unwrap();
    let client = client_for(&standin).await;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let mut spec = serde_json::to_value(deployment("tts", 1)).unwrap();
    spec["spec"]["serviceName"] = json!("tts");
    spec["kind"] = json!("StatefulSet");
    let statefulset: StatefulSet = serde_json::from_value(spec).unwrap();
    statefulsets.create(&PostParams::default(), &statefulset).await.unwrap();
    let scale = statefulsets.get_scale("tts").await.unwrap();
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=tts"));
    statefulsets
        .patch_scale("tts", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    eventually("statefulset status to follow", || async {
        let status = statefulsets.get("tts").await.unwrap().status.unwrap_or_default();
        status.replicas == 3 && status.ready_replicas == Some(3) && status.observed_generation == Some(2)
    })
    .await;

    let events: Api<CoreEvent> = Api::namespaced(client, "default");
    let event: CoreEvent = serde_json::from_value(json!({
        "metadata": {"generateName": "tts."},
        "involvedObject": {"kind": "StatefulSet", "name": "tts", "namespace": "default"},
        "reason": "Scaled",
        "message": "scaled to 3",
        "type": "Normal",
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    let listed = events.list(&ListParams::default().fields("involvedObject.name=tts,reason=Scaled")).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    standin.shutdown().await;
}

/// What kube's typed API hides: exact bodies, codes and headers on the wire.
#[tokio::test]
async fn wire_shapes_of_statuses_and_watch_errors() {
    let standin = StandIn::start().await.unwrap();
    let mut config = Config::new(standin.url().parse().unwrap());
    config.default_retry = false;
    let client = Client::try_from(config).unwrap();
    let send = async |method: &str, path: &str, body: serde_json::Value| {
        let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(body))
            .unwrap();
        let response = client.send(request).await.unwrap();
        let code = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect_bytes().await.unwrap();
        (code, retry_after, String::from_utf8(bytes.to_vec()).unwrap())
    };
    let collection = "/api/v1/namespaces/default/configmaps";

    let (code, _, body) = send("POST", collection, json!({"metadata": {"name": "c"}})).await;
    assert_eq!(code, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (code, _, body) = send("DELETE", &format!("{collection}/c"), serde_json::Value::Null).await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
               "details": {"name": "c", "kind": "configmaps", "uid": created["metadata"]["uid"]}})
    );

    let (code, _, body) = send("GET", "/apis/nothing.example/v1/things", serde_json::Value::Null).await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 404);
    assert_eq!(status["message"], "the server could not find the requested resource");
    assert_eq!(status["details"], json!({}));

    let (code, _, _) = send("POST", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", json!({})).await;
    assert_eq!(code, 405);

    standin.inject_fault(Fault::writes(collection, FaultKind::TooManyRequests { retry_after_seconds: 3 }, 1));
    let (code, retry_after, _) = send("POST", collection, json!({"metadata": {"name": "d"}})).await;
    assert_eq!((code, retry_after.as_deref()), (429, Some("3")));

    standin.expire_watches();
    let (code, _, body) =
        send("GET", &format!("{collection}?watch=true&resourceVersion=1"), serde_json::Value::Null).await;
    assert_eq!(code, 200, "a too-old watch is answered in-stream, as by the watch cache");
    let lines: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{body}");
    assert_eq!(lines[0]["type"], "ERROR");
    assert_eq!(
        (lines[0]["object"]["code"].as_u64(), lines[0]["object"]["reason"].as_str()),
        (Some(410), Some("Expired"))
    );
    assert!(lines[0]["object"]["message"].as_str().unwrap().starts_with("too old resource version: 1 ("));
    standin.shutdown().await;
}

/// The real server's size limits: annotations (what a client-side `kubectl apply` of a big plugin ConfigMap trips
/// over), a ConfigMap's data, and a request body; each tested at the value just over it.
#[tokio::test]
async fn annotation_config_map_and_request_size_limits() {
    let standin = StandIn::start().await.unwrap();
    let mut config = Config::new(standin.url().parse().unwrap());
    config.default_retry = false;
    let client = Client::try_from(config).unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let with = |name: &str, annotation: usize, binary: usize| -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {"a": "x".repeat(annotation)}},
            "binaryData": {"plugin.wasm": base64_of(&vec![7u8; binary])},
        }))
        .unwrap()
    };
    // 256 KiB of annotations, counting keys: "a" plus the value.
    config_maps.create(&PostParams::default(), &with("fits", 262_143, 0)).await.unwrap();
    let over = api_error(config_maps.create(&PostParams::default(), &with("over", 262_144, 0)).await.unwrap_err());
    assert_eq!((over.code, over.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        over.message,
        "ConfigMap \"over\" is invalid: metadata.annotations: Too long: must have at most 262144 bytes"
    );
    // An update over the limit is refused too, and the stored object stays.
    let mut grown = config_maps.get("fits").await.unwrap();
    grown.metadata.annotations.as_mut().unwrap().insert("b".into(), "y".into());
    assert_eq!(api_error(config_maps.replace("fits", &PostParams::default(), &grown).await.unwrap_err()).code, 422);

    // 1 MiB of (decoded) binary data.
    config_maps.create(&PostParams::default(), &with("mib", 0, 1 << 20)).await.unwrap();
    let big = api_error(config_maps.create(&PostParams::default(), &with("big", 0, (1 << 20) + 1)).await.unwrap_err());
    assert_eq!(big.message, "ConfigMap \"big\" is invalid: []: Too long: must have at most 1048576 bytes");

    // A body over 3 MiB is refused before it is decoded.
    let body = vec![b' '; 3 * 1024 * 1024 + 1];
    let request = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body))
        .unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.status(), 413);
    let bytes = response.into_body().collect_bytes().await.unwrap();
    let status: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status["message"], "Request entity too large: limit is 3145728");
    assert_eq!(status["reason"], "RequestEntityTooLarge");
    standin.shutdown().await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// events.k8s.io/v1 and core v1 Events are one storage on a real server: what a `Recorder` publishes is what
/// `kubectl get events` (core v1) lists, converted.
#[tokio::test]
async fn events_k8s_io_events_are_listed_through_core_v1() {
    let standin = StandIn::start().await.unwrap();
    let client = client_for(&standin).await;
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some("web".into()),
        namespace: Some("default".into()),
        ..ObjectReference::default()
    };
    let reporter = Reporter { controller: "ballast.dev/controller".into(), instance: Some("host-a".into()) };
    let event = RecorderEvent {
        type_: EventType::Normal,
        reason: "SuccessfulRescale".into(),
        note: Some("New size: 4".into()),
        action: "Scale".into(),
        secondary: None,
    };
    Recorder::new(client.clone(), reporter).publish(&event, &regarding).await.unwrap();
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let listed = core.list(&ListParams::default().fields("involvedObject.name=web")).await.unwrap().items;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let shown = &listed[0];
    assert_eq!(shown.message.as_deref(), Some("New size: 4"));
    assert_eq!(shown.reason.as_deref(), Some("SuccessfulRescale"));
    assert_eq!(shown.involved_object.name.as_deref(), Some("web"));
    assert_eq!(shown.reporting_component.as_deref(), Some("ballast.dev/controller"));
    let one = core.get(&shown.metadata.name.clone().unwrap()).await.unwrap();
    assert_eq!(one.message.as_deref(), Some("New size: 4"));
    standin.shutdown().await;
}

/// Without nodes no pod is ever ready: `readyReplicas` stays absent, whatever `spec.replicas` says.
#[tokio::test]
async fn without_running_pods_ready_replicas_stay_absent() {
    let standin = StandIn::start().await.unwrap();
    standin.set_pods_run(false);
    let deployments: Api<Deployment> = Api::namespaced(client_for(&standin).await, "default");
    deployments.create(&PostParams::default(), &deployment("web", 3)).await.unwrap();
    let observed = await_condition(deployments.clone(), "web", |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()).is_some_and(|s| s.replicas == Some(3))
    });
    tokio::time::timeout(WAIT, observed).await.unwrap().unwrap();
    let status = deployments.get("web").await.unwrap().status.unwrap();
    assert_eq!((status.ready_replicas, status.available_replicas), (None, None), "{status:?}");
    assert_eq!(status.unavailable_replicas, Some(3));
    standin.shutdown().await;
}
