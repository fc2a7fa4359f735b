//! A CRD's `openAPIV3Schema` applied to its custom resources (pruning, defaulting, validation), the status
//! subresource's write rules, and events.k8s.io Event validation, all through the production `kube` client.

// The CRD below is one large `json!` literal.
#![recursion_limit = "256"]

mod common;

use common::{api_error, client_for};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams, ValidationDirective,
};
use kube_standin::{StandIn, UnknownField};
use serde_json::{Value, json};

/// A CRD exercising every schema feature the stand-in applies.
fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.schema.test"},
        "spec": {
            "group": "schema.test",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["maxReplicas"],
                            "properties": {
                                "maxReplicas": {"type": "integer", "minimum": 1, "maximum": 100},
                                "minReplicas": {"type": "integer", "default": 1, "minimum": 0},
                                "mode": {"type": "string", "enum": ["hold", "fixed"], "default": "hold"},
                                "name": {"type": "string", "maxLength": 8, "pattern": "^[a-z]+$"},
                                "tolerance": {"x-kubernetes-int-or-string": true},
                                "note": {"type": "string", "nullable": true},
                                "window": {"type": "integer"},
                                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                "queues": {
                                    "type": "array",
                                    "maxItems": 2,
                                    "items": {
                                        "type": "object",
                                        "required": ["name"],
                                        "properties": {
                                            "name": {"type": "string"},
                                            "prefix": {"type": "string", "default": "bull"},
                                        },
                                    },
                                },
                                "metrics": {
                                    "type": "object",
                                    "default": {},
                                    "properties": {
                                        "resources": {"type": "boolean", "default": true},
                                        "queues": {"type": "array", "default": [], "items": {"type": "string"}},
                                    },
                                },
                            },
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "replicas": {"type": "integer", "minimum": 0},
                                "memory": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            },
                        },
                    },
                }},
            }],
        },
    }))
    .expect("a valid CRD")
}

async fn widgets(standin: &StandIn) -> Api<DynamicObject> {
    let client = client_for(standin).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd()).await.expect("creating the CRD");
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("schema.test", "v1", "Widget"));
    Api::namespaced_with(client, "default", &resource)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "schema.test/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a valid Widget")
}

fn fields(found: &[UnknownField]) -> Vec<&str> {
    found.iter().map(|f| f.field.as_str()).collect()
}

#[tokio::test]
async fn unknown_fields_are_pruned_except_where_preserved() {
    let standin = StandIn::start().await.unwrap();
    let widgets = widgets(&standin).await;
    let mut body = widget(
        "web",
        json!({
            "maxReplicas": 5,
            "bogus": true,
            "config": {"anything": {"goes": [1, 2]}},
            "labels": {"team": "speech"},
            "queues": [{"name": "stt", "weight": 3}],
        }),
    );
    body.data["status"] = json!({"replicas": 2});
    body.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
    let created = widgets.create(&PostParams::default(), &body).await.unwrap();
    let spec = &created.data["spec"];
    assert!(spec.get("bogus").is_none(), "an undeclared field is pruned: {spec}");
    assert_eq!(spec["config"], json!({"anything": {"goes": [1, 2]}}), "preserve-unknown-fields keeps everything");
    assert_eq!(spec["labels"], json!({"team": "speech"}), "additionalProperties keeps its keys");
    assert_eq!(spec["queues"], json!([{"name": "stt", "prefix": "bull"}]), "items are pruned and defaulted");
    assert!(created.data.get("status").is_none(), "create drops status when /status is a subresource");
    assert_eq!(created.metadata.labels.unwrap()["app"], "web", "metadata is not pruned");
    assert_eq!(fields(&standin.unknown_fields()), ["spec.bogus", "spec.queues[0].weight"]);

    let status = json!({"status": {"replicas": 3, "extra": "x", "memory": {"state": [1]}}});
    let written = widgets.patch_status("web", &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    assert_eq!(written.data["status"], json!({"replicas": 3, "memory": {"state": [1]}}), "status is pruned too");
    let unknown = standin.unknown_fields();
    let last = unknown.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str(), last.field.as_str()),
        ("PATCH", "/apis/schema.test/v1/namespaces/default/widgets/web/status", "status.extra")
    );

    let strict = PatchParams { field_validation: Some(ValidationDirective::Strict), ..PatchParams::default() };
    let refused = api_error(
        widgets.patch("web", &strict, &Patch::Merge(json!({"spec": {"maxReplicas": 6, "typo": 1}}))).await.unwrap_err(),
    );
    assert_eq!((refused.code, refused.reason.as_str()), (400, "BadRequest"));
    assert_eq!(refused.message, "strict decoding error: unknown field \"spec.typo\"");
    assert_eq!(widgets.get("web").await.unwrap().data["spec"]["maxReplicas"], 5, "a strict refusal writes nothing");
    standin.shutdown().await;
}

#[tokio::test]
async fn unknown_fields_come_back_as_warning_headers() {
    let standin = StandIn::start().await.unwrap();
    widgets(&standin).await;
    let client = client_for(&standin).await;
    let body = json!({
        "apiVersion": "schema.test/v1", "kind": "Widget",
        "metadata": {"name": "web", "bogusMeta": 1},
        "spec": {"maxReplicas": 5, "bogus": true},
    });
    let request = http::Request::post("/apis/schema.test/v1/namespaces/default/widgets")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let response = client.send(request.map(Into::into)).await.unwrap();
    assert_eq!(response.status(), 201);
    let warnings: Vec<&str> = response.headers().get_all("warning").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(
        warnings,
        [r#"299 - "unknown field \"spec.bogus\"""#, r#"299 - "unknown field \"metadata.bogusMeta\"""#]
    );
    standin.shutdown().await;
}

#[tokio::test]
async fn defaults_fill_absent_fields_and_non_nullable_nulls() {
    let standin = StandIn::start().await.unwrap();
    let widgets = widgets(&standin).await;
    let body = widget("web", json!({"maxReplicas": 5, "mode": null, "note": null, "window": null}));
    let created = widgets.create(&PostParams::default(), &body).await.unwrap();
    assert_eq!(
        created.data["spec"],
        json!({
            "maxReplicas": 5,
            "minReplicas": 1,
            "mode": "hold",
            "note": null,
            "metrics": {"resources": true, "queues": []},
        }),
        "defaults apply (also inside a defaulted object); a null with a default is defaulted, a nullable null is \
         kept, any other null is dropped"
    );
    let replaced = widgets
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"metrics": {"resources": false}}})))
        .await
        .unwrap();
    assert_eq!(replaced.data["spec"]["metrics"], json!({"resources": false, "queues": []}));
    standin.shutdown().await;
}

#[tokio::test]
async fn schema_violations_are_422_invalid_naming_each_field() {
    let standin = StandIn::start().await.unwrap();
    let widgets = widgets(&standin).await;
    let wrong_type = api_error(
        widgets.create(&PostParams::default(), &widget("web", json!({"maxReplicas": "many"}))).await.unwrap_err(),
    );
    assert_eq!((wrong_type.code, wrong_type.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        wrong_type.message,
        "Widget.schema.test \"web\" is invalid: spec.maxReplicas: Invalid value: \"string\": spec.maxReplicas in \
         body must be of type integer: \"string\""
    );
    let details = wrong_type.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.group.as_str(), details.kind.as_str()),
        ("web", "schema.test", "Widget")
    );
    assert_eq!(details.causes[0].reason, "FieldValueTypeInvalid");
    assert_eq!(details.causes[0].field, "spec.maxReplicas");

    let many = widget(
        "web",
        json!({
            "maxReplicas": 0,
            "mode": "drain",
            "name": "TooLongName",
            "tolerance": true,
            "queues": [{"prefix": "p"}, {"name": "a"}, {"name": "b"}],
        }),
    );
    let refused = api_error(widgets.create(&PostParams::default(), &many).await.unwrap_err());
    let causes: Vec<(String, String, String)> =
        refused.details.unwrap().causes.into_iter().map(|c| (c.field, c.reason, c.message)).collect();
    let expected = [
        (
            "spec.maxReplicas",
            "FieldValueInvalid",
            "Invalid value: 0: spec.maxReplicas in body should be greater than or equal to 1",
        ),
        ("spec.mode", "FieldValueNotSupported", "Unsupported value: \"drain\": supported values: \"hold\", \"fixed\""),
        ("spec.name", "FieldValueTooLong", "Too long: may not be more than 8 bytes"),
        ("spec.name", "FieldValueInvalid", "Invalid value: \"TooLongName\": spec.name in body should match '^[a-z]+$'"),
        ("spec.queues", "FieldValueTooMany", "Too many: 3: must have at most 2 items"),
        ("spec.queues[0].name", "FieldValueRequired", "Required value"),
        (
            "spec.tolerance",
            "FieldValueTypeInvalid",
            "Invalid value: \"boolean\": spec.tolerance in body must be of type integer,string: \"boolean\"",
        ),
    ];
    let expected: Vec<(String, String, String)> =
        expected.iter().map(|(f, r, m)| (f.to_string(), r.to_string(), m.to_string())).collect();
    assert_eq!(causes, expected);
    assert!(refused.message.starts_with("Widget.schema.test \"web\" is invalid: [spec.maxReplicas: Invalid value: 0"));

    let missing = api_error(widgets.create(&PostParams::default(), &widget("web", json!({}))).await.unwrap_err());
    assert_eq!(missing.message, "Widget.schema.test \"web\" is invalid: spec.maxReplicas: Required value");

    widgets
        .create(&PostParams::default(), &widget("web", json!({"maxReplicas": 5, "tolerance": "10%"})))
        .await
        .unwrap();
    let patch = Patch::Merge(json!({"spec": {"maxReplicas": 500}}));
    let too_big = api_error(widgets.patch("web", &PatchParams::default(), &patch).await.unwrap_err());
    assert_eq!(
        too_big.message,
        "Widget.schema.test \"web\" is invalid: spec.maxReplicas: Invalid value: 500: spec.maxReplicas in body \
         should be less than or equal to 100"
    );
    let status = Patch::Merge(json!({"status": {"replicas": -1}}));
    let bad_status = api_error(widgets.patch_status("web", &PatchParams::default(), &status).await.unwrap_err());
    assert_eq!(bad_status.details.unwrap().causes[0].field, "status.replicas");
    let stored = widgets.get("web").await.unwrap();
    assert_eq!((stored.data["spec"]["maxReplicas"].clone(), stored.data.get("status")), (json!(5), None));
    standin.shutdown().await;
}

#[tokio::test]
async fn unchanged_invalid_values_ratchet_after_the_schema_tightens() {
    let standin = StandIn::start().await.unwrap();
    let widgets = widgets(&standin).await;
    widgets.create(&PostParams::default(), &widget("web", json!({"maxReplicas": 50}))).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client_for(&standin).await);
    let mut tighter = crds.get("widgets.schema.test").await.unwrap();
    let schema = tighter.spec.versions[0].schema.as_mut().unwrap().open_api_v3_schema.as_mut().unwrap();
    let max = schema.properties.as_mut().unwrap().get_mut("spec").unwrap().properties.as_mut().unwrap();
    max.get_mut("maxReplicas").unwrap().maximum = Some(10.0);
    crds.replace("widgets.schema.test", &PostParams::default(), &tighter).await.unwrap();

    let other_field = Patch::Merge(json!({"spec": {"minReplicas": 2}}));
    let kept = widgets.patch("web", &PatchParams::default(), &other_field).await.unwrap();
    assert_eq!(kept.data["spec"]["maxReplicas"], 50, "an unchanged invalid value is not validated again");
    let still_invalid = Patch::Merge(json!({"spec": {"maxReplicas": 40}}));
    let refused = api_error(widgets.patch("web", &PatchParams::default(), &still_invalid).await.unwrap_err());
    assert_eq!(refused.details.unwrap().causes[0].field, "spec.maxReplicas");
    standin.shutdown().await;
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status_writes() {
    let standin = StandIn::start().await.unwrap();
    let widgets = widgets(&standin).await;
    let created = widgets.create(&PostParams::default(), &widget("web", json!({"maxReplicas": 5}))).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    let status_write = Patch::Merge(json!({
        "metadata": {"labels": {"from": "status"}},
        "spec": {"maxReplicas": 9},
        "status": {"replicas": 2},
    }));
    let after_status = widgets.patch_status("web", &PatchParams::default(), &status_write).await.unwrap();
    assert_eq!(after_status.data["status"]["replicas"], 2);
    assert_eq!(after_status.data["spec"]["maxReplicas"], 5, "/status ignores spec");
    assert_eq!(after_status.metadata.labels, None, "/status ignores metadata of custom resources");
    assert_eq!(after_status.metadata.generation, Some(1), "a status write keeps the generation");

    let main_write = Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}, "status": {"replicas": 7}}));
    let after_labels = widgets.patch("web", &PatchParams::default(), &main_write).await.unwrap();
    assert_eq!(after_labels.data["status"]["replicas"], 2, "the main resource ignores status");
    assert_eq!(after_labels.metadata.generation, Some(1), "a metadata change keeps the generation");

    let spec_write = Patch::Merge(json!({"spec": {"maxReplicas": 6}}));
    let after_spec = widgets.patch("web", &PatchParams::default(), &spec_write).await.unwrap();
    assert_eq!(after_spec.metadata.generation, Some(2), "a spec change bumps the generation");
    standin.shutdown().await;
}

fn event(overrides: Value) -> Event {
    let mut body = json!({
        "metadata": {"name": "web.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "ballast.dev/controller",
        "reportingInstance": "ballast-0",
        "action": "Scale",
        "reason": "SuccessfulRescale",
        "type": "Normal",
        "note": "New size: 3",
        "regarding": {"kind": "ScalingPolicy", "namespace": "default", "name": "web"},
    });
    for (key, value) in overrides.as_object().unwrap() {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key] = value.clone();
        }
    }
    serde_json::from_value(body).unwrap()
}

#[tokio::test]
async fn events_k8s_io_events_are_validated() {
    let standin = StandIn::start().await.unwrap();
    let events: Api<Event> = Api::namespaced(client_for(&standin).await, "default");
    let created = events.create(&PostParams::default(), &event(json!({}))).await.unwrap();
    assert_eq!(created.reason.as_deref(), Some("SuccessfulRescale"));

    let long_note = event(json!({"metadata": {"name": "web.2"}, "note": "é".repeat(600)}));
    let refused = api_error(events.create(&PostParams::default(), &long_note).await.unwrap_err());
    assert_eq!(
        refused.message,
        "Event.events.k8s.io \"web.2\" is invalid: message: Invalid value: \"\": can have at most 1024 characters",
        "the 1 KiB limit counts bytes: 600 two-byte characters are too many"
    );

    let missing = event(json!({
        "metadata": {"name": "web.3"},
        "eventTime": null, "action": null, "reportingInstance": null, "type": "Odd",
        "series": {"count": 1, "lastObservedTime": "2026-01-01T00:00:05.000000Z"},
    }));
    let refused = api_error(events.create(&PostParams::default(), &missing).await.unwrap_err());
    let fields: Vec<String> = refused.details.unwrap().causes.into_iter().map(|c| c.field).collect();
    assert_eq!(fields, ["series.count", "eventTime", "type"], "without an eventTime the reporting fields go unchecked");

    let change_note = Patch::Merge(json!({"note": "rewritten"}));
    let immutable = api_error(events.patch("web.1", &PatchParams::default(), &change_note).await.unwrap_err());
    assert_eq!(
        immutable.message,
        "Event.events.k8s.io \"web.1\" is invalid: message: Invalid value: \"rewritten\": field is immutable"
    );
    let series = Patch::Merge(json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:05.000000Z"}}));
    events.patch("web.1", &PatchParams::default(), &series).await.unwrap();
    standin.shutdown().await;
}
